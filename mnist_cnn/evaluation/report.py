"""The evaluation report: plain-text summary tables and the files a run or ``evaluate`` writes."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mnist_cnn.evaluation import plots
from mnist_cnn.evaluation.evaluator import Evaluator

# The per-class table is written without pandas, whose import would add a third of a second to ``evaluate``.
PerClass = Mapping[str, Sequence[float]]


def per_class_rows(per_class: PerClass) -> list[list[float | int | str]]:
    """A header and one row per digit of ``per_class_scores()`` (or ``evaluate_per_class()``)."""
    columns = list(per_class)
    values = zip(*(np.asarray(per_class[column]).tolist() for column in columns))
    return [["digit", *columns], *([digit, *row] for digit, row in enumerate(values))]


def format_summary(metrics: dict[str, float], per_class: PerClass) -> str:
    """``evaluate()`` and ``per_class_scores()`` (or ``evaluate_per_class()``) as aligned plain-text tables."""
    width = max(map(len, metrics))
    lines = [f"{'images':<{width}}  {int(sum(per_class['support']))}"]
    lines += [f"{name:<{width}}  {value:.4f}" for name, value in metrics.items()]
    table = [
        [f"{cell:.4f}" if isinstance(cell, float) else str(cell) for cell in row] for row in per_class_rows(per_class)
    ]
    widths = [max(map(len, column)) for column in zip(*table)]
    lines += [""] + ["  ".join(cell.rjust(size) for cell, size in zip(row, widths)) for row in table]
    return "\n".join(lines)


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
    with open(out_dir / "per_class.csv", "w", newline="") as file:
        csv.writer(file, lineterminator="\n").writerows(per_class_rows(evaluator.per_class_scores()))
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
