"""Figures for evaluation reports, drawn on bare ``matplotlib.figure.Figure`` objects.

No pyplot: nothing is registered with a GUI backend or kept alive by one, so there is nothing to close,
and ``savefig`` renders PNGs with Agg. Notebooks still display a returned figure. The confusion matrices and the
mistakes have fixed margins: a layout engine draws the figure once more to measure it, which doubled the time
``evaluate`` spent saving them. pandas, which takes a third of a second to import, is imported only to read
training logs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    import pandas as pd

HISTORY_COLUMNS = ("train_loss", "val_loss", "train_acc", "val_acc")
CAPTION, GAP = 9, 4  # pixels above each tile of a mosaic for its caption, and between tiles


def confusion_matrix_figure(matrix: np.ndarray, title: str) -> Figure:
    """A heatmap with the value written in every cell; float matrices are shown as rates in [0, 1]."""
    rates = matrix.dtype.kind == "f"
    figure = Figure(figsize=(7.5, 6.5))
    figure.subplots_adjust(left=0.09, right=1.0, bottom=0.08, top=0.94)
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
    """Images (N, 1, H, W) tiled in rows of ``columns``, each captioned ``true→pred (p)`` with p the predicted
    class's probability.

    One mosaic on one axes: an axes per image made saving the figure three times as slow."""
    count = len(labels)
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    inches = 2.0 * rows + 0.4
    figure = Figure(figsize=(max(1.9 * columns, 6.0), inches))  # wide enough for the title
    axes = figure.add_axes((0.01, 0.01, 0.98, 1 - 0.5 / inches))
    axes.set_axis_off()
    height, width = images.shape[-2:]
    cell_height, cell_width = height + CAPTION, width + GAP
    mosaic = np.full((rows * cell_height, columns * cell_width), np.nan)  # NaN: not drawn, the page shows through
    for index, (image, true, predicted, probability) in enumerate(
        zip(images, labels.tolist(), predictions.tolist(), probabilities.tolist())
    ):
        top, left = index // columns * cell_height + CAPTION, index % columns * cell_width + GAP // 2
        mosaic[top : top + height, left : left + width] = image.squeeze(0).float().cpu().numpy()
        caption = f"{true}→{predicted} ({probability:.2f})"
        axes.text(left + width / 2, top - 1, caption, ha="center", va="bottom", fontsize=11)
    axes.imshow(mosaic, cmap="gray")
    figure.suptitle("Most confident mistakes: true→predicted (probability)" if count else "No misclassified images")
    return figure


History = Union[Mapping[str, Sequence[float]], "pd.DataFrame", str, os.PathLike]
# Keras' History.history names, as our metrics are named.
KERAS_NAMES = {"loss": "train_loss", "accuracy": "train_acc", "acc": "train_acc", "val_accuracy": "val_acc"}


def _metrics_files(path: Path) -> list[Path]:
    """A metrics.csv, or those a folder holds: its own, or its loggers' version_*/metrics.csv in order."""
    if path.is_file():
        return [path]
    if (path / "metrics.csv").is_file():
        return [path / "metrics.csv"]
    files = path.glob("**/version_*/metrics.csv")
    return sorted(files, key=lambda file: (file.parent.parent, int(file.parent.name.removeprefix("version_"))))


def _read_logs(path: Path) -> pd.DataFrame:
    import pandas as pd

    files = _metrics_files(path)
    if not files:
        raise FileNotFoundError(
            f"no training log: {path} is neither a metrics.csv nor a folder holding one (a CSVLogger's log_dir or "
            "a run dir with csv/version_*/metrics.csv)"
        )
    return pd.concat([pd.read_csv(file) for file in files], ignore_index=True)


def read_training_history(history: History) -> pd.DataFrame:
    """Per-epoch train/val loss and accuracy, indexed by epoch, from any of: a dict of per-epoch lists (Keras'
    ``history.history``, or ``MNISTClassifier.history``), a DataFrame of the same, a ``metrics.csv``, a
    CSVLogger's ``log_dir``, or a run dir (its ``csv/version_*/metrics.csv``, one per (re)start, merged in order;
    later values win)."""
    import pandas as pd

    if isinstance(history, (str, os.PathLike)):
        log = _read_logs(Path(history))
    else:
        log = pd.DataFrame(history)
    log = log.rename(columns=KERAS_NAMES)
    if "epoch" not in log:
        log.insert(0, "epoch", range(len(log)))
    columns = [column for column in HISTORY_COLUMNS if column in log]
    if not columns:
        raise ValueError(f"no {', '.join(HISTORY_COLUMNS)} (or Keras' loss, accuracy, val_loss, val_accuracy) found")
    log = log.dropna(subset=["epoch"]).astype({"epoch": int})
    return log.groupby("epoch")[columns].last().dropna(how="all")  # last() skips the empty cells of other rows


def plot_training_history(history: History) -> Figure:
    """Loss and accuracy per epoch, train against validation, from any form ``read_training_history`` takes."""
    table = read_training_history(history)
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    for axes, quantity, label in zip(figure.subplots(1, 2), ("loss", "acc"), ("Cross-entropy loss", "Accuracy")):
        for split, name in (("train", "train"), ("val", "validation")):
            if f"{split}_{quantity}" in table:
                series = table[f"{split}_{quantity}"].dropna()
                axes.plot(series.index, series.to_numpy(), marker="o", label=name)
        axes.set(xlabel="Epoch", ylabel=label, title=f"{label} per epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    source = f": {Path(history).name}" if isinstance(history, (str, os.PathLike)) else ""
    figure.suptitle(f"Training history{source}")
    return figure
