"""Figures for evaluation reports, drawn on bare ``matplotlib.figure.Figure`` objects.

No pyplot: nothing is registered with a GUI backend or kept alive by one, so there is nothing to close,
and ``savefig`` renders PNGs with Agg. Notebooks still display a returned figure.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

HISTORY_COLUMNS = ("train_loss", "val_loss", "train_acc", "val_acc")


def confusion_matrix_figure(matrix: np.ndarray, title: str) -> Figure:
    """A heatmap with the value written in every cell; float matrices are shown as rates in [0, 1]."""
    rates = matrix.dtype.kind == "f"
    figure = Figure(figsize=(7.5, 6.5), layout="constrained")
    axes = figure.subplots()
    vmax = 1.0 if rates else max(int(matrix.max()), 1)
    image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=vmax)
    figure.colorbar(image, ax=axes, label="fraction of the true digit's images" if rates else "images")
    digits = range(len(matrix))
    axes.set(xticks=digits, yticks=digits, xlabel="Predicted digit", ylabel="True digit", title=title)
    for (row, col), value in np.ndenumerate(matrix):
        text = f"{value:.2f}" if rates else str(value)
        color = "white" if value > vmax / 2 else "black"
        axes.text(col, row, text, ha="center", va="center", fontsize=9, color=color)
    return figure


def misclassified_figure(
    images: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor, probabilities: torch.Tensor, columns: int = 5
) -> Figure:
    """A grid of images (N, 1, 28, 28), each titled ``true→pred (p)`` with p the predicted class's probability."""
    count = len(labels)
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    figure = Figure(figsize=(1.9 * columns, 2.0 * rows + 0.4), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in grid:
        axes.set_axis_off()
    for axes, image, true, predicted, probability in zip(
        grid, images, labels.tolist(), predictions.tolist(), probabilities.tolist()
    ):
        axes.imshow(image.squeeze(0).cpu().numpy(), cmap="gray")
        axes.set_title(f"{true}→{predicted} ({probability:.2f})", fontsize=11)
    figure.suptitle("Most confident mistakes: true→predicted (probability)" if count else "No misclassified images")
    return figure


def _metrics_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = path.glob("csv/version_*/metrics.csv")
    return sorted(files, key=lambda file: int(file.parent.name.removeprefix("version_")))


def read_training_history(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Per-epoch train/val loss and accuracy from one ``metrics.csv``, or from a run dir's
    ``csv/version_*/metrics.csv`` (one version per (re)start, merged in order; later values win)."""
    path = Path(path)
    files = _metrics_files(path)
    if not files:
        raise FileNotFoundError(f"no training log: {path} is neither a metrics.csv nor holds csv/version_*/metrics.csv")
    log = pd.concat([pd.read_csv(file) for file in files], ignore_index=True)
    columns = [column for column in HISTORY_COLUMNS if column in log]
    if "epoch" not in log or not columns:
        raise ValueError(f"{', '.join(map(str, files))}: no epoch column or none of {', '.join(HISTORY_COLUMNS)}")
    log = log.dropna(subset=["epoch"]).astype({"epoch": int})
    return log.groupby("epoch")[columns].last().dropna(how="all")  # last() skips the empty cells of other rows


def plot_training_history(path: str | os.PathLike[str]) -> Figure:
    """Loss and accuracy per epoch, train against validation, from a run dir or a ``metrics.csv`` path."""
    history = read_training_history(path)
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    for axes, quantity, label in zip(figure.subplots(1, 2), ("loss", "acc"), ("Cross-entropy loss", "Accuracy")):
        for split, name in (("train", "train"), ("val", "validation")):
            if f"{split}_{quantity}" in history:
                series = history[f"{split}_{quantity}"].dropna()
                axes.plot(series.index, series.to_numpy(), marker="o", label=name)
        axes.set(xlabel="Epoch", ylabel=label, title=f"{label} per epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    figure.suptitle(f"Training history: {Path(path).name}")
    return figure
