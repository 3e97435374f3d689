"""Score a classifier on a labelled image set once, then derive metrics, tables and plots from its outputs."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from mnist_cnn.data.labels import NUM_CLASSES, class_indices
from mnist_cnn.data.pixels import image_batch
from mnist_cnn.evaluation import metrics, plots
from mnist_cnn.inference.classify import batched_logits

if TYPE_CHECKING:
    import pandas as pd


@runtime_checkable
class HasTestSplit(Protocol):
    """Data that holds a test split, as ``MNISTDataModule`` does."""

    def test_split(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class Evaluator:
    """Runs ``model`` once over a labelled image set; every metric and plot reuses the cached outputs.

    ``model`` maps normalised images to logits (an ``MNISTClassifier`` or any such ``nn.Module``).
    ``data`` is an ``MNISTDataModule`` (its test split, read without changing the data module) or an ``(images,
    labels)`` pair of tensors or numpy arrays: images (N, 28, 28), (N, 1, 28, 28) or (N, 28, 28, 1) as uint8 pixels
    (0-255), float pixels (0-1), or normalised floats with ``normalized=True``; labels as class indices or one-hot
    rows. ``logits``: the model's outputs for these images when already computed (e.g. by ``trainer.test``), so that
    the model does not run again.
    """

    def __init__(
        self,
        model: nn.Module,
        data: HasTestSplit | tuple[Any, Any],
        batch_size: int = 1024,
        normalized: bool = False,
        logits: torch.Tensor | None = None,
    ) -> None:
        if isinstance(data, HasTestSplit):
            data, normalized = data.test_split(), False
        images, labels = data
        self.images = image_batch(images, normalized)
        self.labels = class_indices(labels, len(self.images))
        self.model = model
        self.batch_size = batch_size
        self.normalized = normalized
        self._given_logits = logits

    @cached_property
    def logits(self) -> torch.Tensor:
        """(N, 10) model outputs, computed once in batches on the model's device and kept on the CPU."""
        if self._given_logits is not None:
            return self._given_logits.float().cpu()
        return batched_logits(self.model, self.images, self.batch_size, self.normalized)

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
        return metrics.confusion_matrix(self.labels, self.predictions, NUM_CLASSES)

    def evaluate(self) -> dict[str, float]:
        """Accuracy, mean cross-entropy loss, top-3 accuracy and macro precision, recall and F1.

        Accuracy is the confusion matrix's trace over its sum in float64, so it is exactly correct/N.
        """
        return {
            "accuracy": self._counts.trace().item() / len(self.labels),
            "loss": F.cross_entropy(self.logits, self.labels).item(),
            "top3_accuracy": metrics.top_k_accuracy(self.labels, self.logits, k=3),
            **metrics.precision_recall_f1(self.labels, self.predictions, NUM_CLASSES),
        }

    def per_class_scores(self) -> dict[str, np.ndarray]:
        """Precision, recall, F1 and support (number of images) of each digit, one array of 10 values each."""
        scores = metrics.precision_recall_f1(self.labels, self.predictions, NUM_CLASSES, average=None)
        return {**scores, "support": self._counts.sum(dim=1).numpy()}

    def evaluate_per_class(self) -> pd.DataFrame:
        """``per_class_scores`` as a table indexed by digit."""
        import pandas as pd  # a third of a second to import, which ``evaluate`` does not spend

        return pd.DataFrame(self.per_class_scores(), index=pd.RangeIndex(NUM_CLASSES, name="digit"))

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
        """A mosaic of the most confidently wrong images captioned ``true→pred (p)``."""
        images, labels, predictions = self.misclassified_examples(num_examples)
        confidence = self.probabilities[self._mistakes[:num_examples], predictions]
        return plots.misclassified_figure(images, labels, predictions, confidence)
