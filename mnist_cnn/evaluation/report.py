"""The evaluation report: plain-text summary tables and the files a run or ``evaluate`` writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from mnist_cnn.evaluation import plots
from mnist_cnn.evaluation.evaluator import Evaluator


def format_summary(metrics: dict[str, float], per_class: pd.DataFrame) -> str:
    """``evaluate()`` and ``evaluate_per_class()`` as aligned plain-text tables."""
    width = max(map(len, metrics))
    lines = [f"{'images':<{width}}  {int(per_class['support'].sum())}"]
    lines += [f"{name:<{width}}  {value:.4f}" for name, value in metrics.items()]
    return "\n".join(lines) + "\n\n" + per_class.to_string(float_format="{:.4f}".format)


def write_report(
    evaluator: Evaluator, out_dir: str | os.PathLike[str], history: plots.History | None = None
) -> list[Path]:
    """Write metrics.json, per_class.csv and the confusion-matrix and mistake PNGs to ``out_dir``.

    ``history`` (any form ``plot_training_history`` takes) adds training_history.png. Returns the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"num_images": len(evaluator.labels), **evaluator.evaluate()}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    evaluator.evaluate_per_class().to_csv(out_dir / "per_class.csv")
    figures = {
        "confusion_matrix.png": evaluator.plot_confusion_matrix(),
        "confusion_matrix_normalized.png": evaluator.plot_confusion_matrix(normalize=True),
        "misclassified.png": evaluator.plot_misclassified(),
    }
    if history is not None:
        figures["training_history.png"] = plots.plot_training_history(history)
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=120)
    return [out_dir / "metrics.json", out_dir / "per_class.csv", *(out_dir / name for name in figures)]
