"""Classification metrics that take class indices, one-hot rows or scores, as numpy arrays or torch tensors.

The arithmetic is torchmetrics'; these functions only accept the common input forms. Macro averages skip
classes that occur in neither the labels nor the predictions, as scikit-learn's do.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

ArrayLike = np.ndarray | torch.Tensor


def as_class_indices(y: ArrayLike) -> torch.Tensor:
    """int64 class indices from indices (N,) or from one-hot or score rows (N, C)."""
    y = torch.as_tensor(y)
    if y.ndim == 2:
        return y.argmax(dim=1)
    if y.ndim != 1:
        raise ValueError(f"expected class indices of shape (N,) or one-hot rows (N, C), got shape {tuple(y.shape)}")
    return y.long()


def precision_recall_f1(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None, average: Literal["macro"] | None = "macro"
) -> dict[str, float] | dict[str, np.ndarray]:
    """Precision, recall and F1: macro averages as floats, or with ``average=None`` one value per class.

    ``num_classes`` defaults to the one-hot width, else to the largest class index seen plus one.
    """
    y_true, y_pred = torch.as_tensor(y_true), torch.as_tensor(y_pred)
    target, preds = as_class_indices(y_true), as_class_indices(y_pred)
    if num_classes is None:
        widths = [y.shape[1] for y in (y_true, y_pred) if y.ndim == 2]
        num_classes = max(widths) if widths else int(torch.cat([target, preds]).max()) + 1
    mode = average or "none"
    scores = {
        name: function(preds, target, num_classes, average=mode)
        for name, function in (
            ("precision", multiclass_precision),
            ("recall", multiclass_recall),
            ("f1", multiclass_f1_score),
        )
    }
    if average is None:
        return {name: score.cpu().numpy() for name, score in scores.items()}
    return {name: float(score) for name, score in scores.items()}


def top_k_accuracy(y_true: ArrayLike, y_prob: ArrayLike, k: int = 3) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores of ``y_prob`` (N, C)."""
    scores = torch.as_tensor(y_prob)
    if scores.ndim != 2:
        raise ValueError(f"y_prob must hold one row of class scores per sample (N, C), got shape {tuple(scores.shape)}")
    target = as_class_indices(y_true)
    return float(multiclass_accuracy(scores, target, scores.shape[1], top_k=k, average="micro"))
