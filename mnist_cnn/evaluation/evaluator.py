"""Score a classifier on a labelled image set once, then derive metrics, tables, plots and a report."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn
from torchmetrics.functional.classification import multiclass_confusion_matrix

from mnist_cnn.data import MNISTDataModule
from mnist_cnn.evaluation import plots
from mnist_cnn.evaluation.metrics import ArrayLike, precision_recall_f1, top_k_accuracy
from mnist_cnn.prediction import batched_logits

NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)
SHAPES = "(N, 28, 28) or (N, 1, 28, 28)"


def _check_images(images: ArrayLike) -> torch.Tensor:
    images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or len(images) == 0 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"images must have shape {SHAPES} with N >= 1, got {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(
            f"images must be uint8 pixels or normalised floats of shape {SHAPES}, got dtype {images.dtype}"
        )
    return images


def _check_labels(labels: ArrayLike, count: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.shape != (count,) or labels.is_floating_point():
        shape = tuple(labels.shape)
        raise ValueError(f"labels must be integer class indices of shape ({count},), got {shape} {labels.dtype}")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must lie in 0-{NUM_CLASSES - 1}, got {int(labels.min())} to {int(labels.max())}")
    return labels.long().cpu()


class Evaluator:
    """Runs ``model`` once over a labelled image set; every metric and plot reuses the cached outputs.

    ``model`` maps normalised images to logits (an ``MNISTClassifier`` or any such ``nn.Module``).
    ``data`` is an ``MNISTDataModule`` (its test split is used) or an ``(images, labels)`` pair of tensors
    or numpy arrays: images of shape (N, 28, 28) or (N, 1, 28, 28), uint8 pixels or already normalised floats.
    """

    def __init__(
        self, model: nn.Module, data: MNISTDataModule | tuple[ArrayLike, ArrayLike], batch_size: int = 1024
    ) -> None:
        if isinstance(data, MNISTDataModule):
            data.setup("test")
            data = (data.datasets["test"].images, data.datasets["test"].labels)
        images, labels = data
        self.images = _check_images(images)
        self.labels = _check_labels(labels, len(self.images))
        self.model = model
        self.batch_size = batch_size

    @cached_property
    def logits(self) -> torch.Tensor:
        """(N, 10) model outputs, computed once in batches on the model's device and kept on the CPU."""
        return batched_logits(self.model, self.images, self.batch_size)

    @cached_property
    def probabilities(self) -> torch.Tensor:
        """(N, 10) softmax of the logits."""
        return self.logits.softmax(dim=1)

    @cached_property
    def predictions(self) -> torch.Tensor:
        """(N,) predicted classes."""
        return self.logits.argmax(dim=1)

    @cached_property
    def _counts(self) -> torch.Tensor:
        return multiclass_confusion_matrix(self.predictions, self.labels, NUM_CLASSES)

    def evaluate(self) -> dict[str, float]:
        """Accuracy, mean cross-entropy loss, top-3 accuracy and macro precision, recall and F1.

        Accuracy is the confusion matrix's trace over its sum in float64, so it is exactly correct/N
        (torchmetrics' own accuracy divides in float32).
        """
        return {
            "accuracy": self._counts.trace().item() / len(self.labels),
            "loss": F.cross_entropy(self.logits, self.labels).item(),
            "top3_accuracy": top_k_accuracy(self.labels, self.logits, k=3),
            **precision_recall_f1(self.labels, self.predictions, NUM_CLASSES),
        }

    def evaluate_per_class(self) -> pd.DataFrame:
        """Precision, recall, F1 and support (number of images) of each digit, indexed by digit."""
        table = pd.DataFrame(
            precision_recall_f1(self.labels, self.predictions, NUM_CLASSES, average=None),
            index=pd.RangeIndex(NUM_CLASSES, name="digit"),
        )
        table["support"] = self._counts.sum(dim=1).numpy()
        return table

    def confusion_matrix(self, normalize: bool = False) -> np.ndarray:
        """Counts with rows = true and columns = predicted digit; ``normalize`` divides each row by its total."""
        counts = self._counts.numpy().copy()
        if not normalize:
            return counts
        totals = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)

    def plot_confusion_matrix(self, normalize: bool = False) -> Figure:
        """The confusion matrix as an annotated heatmap."""
        kind = "row-normalised" if normalize else "counts"
        title = f"Confusion matrix ({kind}), {len(self.labels):,} images"
        return plots.confusion_matrix_figure(self.confusion_matrix(normalize), title)

    @cached_property
    def _mistakes(self) -> torch.Tensor:
        """Indices of the misclassified images, highest predicted probability first."""
        wrong = (self.predictions != self.labels).nonzero().squeeze(1)
        confidence = self.probabilities[wrong].max(dim=1).values
        return wrong[confidence.argsort(descending=True, stable=True)]

    def misclassified_examples(self, num_examples: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images (K, 1, 28, 28) as given, true labels, predicted labels) of the most confidently wrong images."""
        index = self._mistakes[:num_examples]
        return self.images[index.to(self.images.device)].cpu(), self.labels[index], self.predictions[index]

    def plot_misclassified(self, num_examples: int = 10) -> Figure:
        """A grid of the most confidently wrong images titled ``true→pred (p)``."""
        images, labels, predictions = self.misclassified_examples(num_examples)
        confidence = self.probabilities[self._mistakes[:num_examples], predictions]
        return plots.misclassified_figure(images, labels, predictions, confidence)


def format_summary(metrics: dict[str, float], per_class: pd.DataFrame) -> str:
    """``evaluate()`` and ``evaluate_per_class()`` as aligned plain-text tables."""
    width = max(map(len, metrics))
    lines = [f"{'images':<{width}}  {int(per_class['support'].sum())}"]
    lines += [f"{name:<{width}}  {value:.4f}" for name, value in metrics.items()]
    return "\n".join(lines) + "\n\n" + per_class.to_string(float_format="{:.4f}".format)


def write_report(
    evaluator: Evaluator, out_dir: str | os.PathLike[str], history: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Write metrics.json, per_class.csv and the confusion-matrix and mistake PNGs to ``out_dir``.

    ``history`` (a run dir or metrics.csv) adds training_history.png. Returns the written paths.
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
