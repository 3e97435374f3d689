"""What the benchmarks share: timing that waits for the device, fresh processes, medians."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

CHECKOUT = Path(__file__).resolve().parents[1]  # the benchmarks run from a checkout, beside the package


def worker_environment() -> dict[str, str]:
    """This process's environment, with the checkout first on the import path: ``python -m benchmarks`` workers
    started from any directory find the benchmarks."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))}


def plain_epoch(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> int:
    """One pass of the plainest PyTorch training loop over ``batches``; returns the number of images seen."""
    count = 0
    for images, labels in batches:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        count += len(labels)
    return count


def finished(device: torch.device) -> float:
    """``perf_counter`` once the device's queued work is done (GPU kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class Stopwatch:
    """Started on creation: the wall time, once ``device``'s queued work is done, and the CPU time of all this
    process's threads (on a machine shared with other work, the CPU time shows the work that the wall time
    hides among the waiting)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.wall, self.cpu = finished(device), time.process_time()

    def read(self) -> dict[str, float]:
        return {"seconds": finished(self.device) - self.wall, "cpu_seconds": time.process_time() - self.cpu}


def alternating_medians(workers: dict[str, list[str]], repeats: int, key: str) -> dict[str, dict[str, Any]]:
    """For each named worker, the result with the median ``key`` of ``repeats`` fresh
    ``python -m benchmarks <arguments>`` processes, each printing its result as JSON on its last line, and
    under ``<key>_runs`` every run's ``key``, lowest first (a median hides a bimodal spread).

    The workers take turns, round after round (a, b, a, b, ...), so that a slow spell of a shared machine
    falls on all of them alike; a fresh process has its own peak memory.
    """
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in workers}
    for _ in range(repeats):
        for name, arguments in workers.items():
            command = [sys.executable, "-m", "benchmarks", *arguments]
            output = subprocess.run(
                command, env=worker_environment(), check=True, capture_output=True, text=True
            ).stdout
            runs[name].append(json.loads(output.strip().splitlines()[-1]))
    medians = {}
    for name, results in runs.items():
        results.sort(key=lambda run: run[key])
        medians[name] = {**results[len(results) // 2], f"{key}_runs": [run[key] for run in results]}
    return medians


def wall_seconds(command: list[str], cwd: str, repeats: int) -> float:
    """Median wall time of ``repeats`` runs of ``command`` (interpreter start and imports included)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
