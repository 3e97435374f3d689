"""``python -m benchmarks --speedrun``: a speedrun recipe over several seeds, each as a user runs it, from the
shell (``python -m mnist_cnn.train experiment=<recipe> seed=<k>``, one fresh process each): its test accuracy, its
fit time (``trainer.fit`` alone, from ``result.json``) and the time from process start to the printed result."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def speedrun(recipe: str, overrides: list[str], seeds: int, root: str | None) -> dict:
    """``experiment=<recipe>`` with ``overrides``: each seed's test accuracy, fit time and time from process start
    to the printed result, and their means."""
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for seed in range(1, seeds + 1):
            command = [sys.executable, "-m", "mnist_cnn.train", f"experiment={recipe}", *overrides, f"seed={seed}"]
            command += [f"checkpoint_root={work}/{seed}", "trainer.enable_progress_bar=false"]
            command += [f"data.root={root}"] if root else []
            start = time.perf_counter()
            finished = subprocess.run(command, cwd=work, capture_output=True, text=True)
            shell_s = time.perf_counter() - start
            if finished.returncode != 0:
                raise RuntimeError(f"{' '.join(command[1:])} failed: {finished.stderr.strip().splitlines()[-1]}")
            (record,) = Path(work, str(seed)).glob("*/*/result.json")
            result = json.loads(record.read_text())
            runs.append({"seed": seed, "test_acc": result["metrics"]["test_acc"], "fit_s": result["fit_seconds"],
                         "shell_s": shell_s, "machine": result["machine"]})  # fmt: skip
    means = {key: statistics.mean(run[key] for run in runs) for key in ("test_acc", "fit_s", "shell_s")}
    return {"recipe": recipe, "overrides": overrides, "runs": runs, "mean": means}


def table(results: dict) -> str:
    """The runs and their means as a Markdown table."""
    command = " ".join([f"experiment={results['recipe']}", *results["overrides"]])
    lines = [f"`{command}` on {results['runs'][0]['machine']}", "",
             "| seed | test accuracy | fit time | process start to result |", "|---:|---:|---:|---:|"]  # fmt: skip
    for run in results["runs"]:
        lines.append(f"| {run['seed']} | {run['test_acc']:.2%} | {run['fit_s']:.2f} s | {run['shell_s']:.1f} s |")
    mean = results["mean"]
    lines.append(f"| mean | {mean['test_acc']:.2%} | {mean['fit_s']:.2f} s | {mean['shell_s']:.1f} s |")
    return "\n".join(lines)
