"""Classification metrics that take class indices, one-hot rows or scores, as numpy arrays or torch tensors.

Every count comes from one confusion matrix; macro averages skip classes that occur in neither the labels nor the
predictions, as scikit-learn's and torchmetrics' do (tests/test_evaluation.py checks them against scikit-learn).
Computed here rather than by torchmetrics: importing it loads torchvision and scipy.signal, seconds of start-up that
``python -m mnist_cnn.evaluate`` would spend before scoring (docs/performance.md), for arithmetic on a 10 × 10 table.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def as_class_indices(y: ArrayLike) -> torch.Tensor:
    """int64 class indices from indices (N,) or from one-hot or score rows (N, C)."""
    y = torch.as_tensor(y)
    if y.ndim == 2:
        return y.argmax(dim=1)
    if y.ndim != 1:
        raise ValueError(f"expected class indices of shape (N,) or one-hot rows (N, C), got shape {tuple(y.shape)}")
    return y.long()


def confusion_matrix(target: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts, rows the true class and columns the predicted one."""
    pairs = target.long().cpu() * num_classes + preds.long().cpu()
    return torch.bincount(pairs, minlength=num_classes**2).view(num_classes, num_classes)


def _share(part: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """``part / whole``, 0 where ``whole`` is 0 (scikit-learn's ``zero_division=0``)."""
    return torch.where(whole > 0, part / whole.clamp(min=1), 0.0)


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
    counts = confusion_matrix(target, preds, num_classes).double()
    right, predicted, actual = counts.diagonal(), counts.sum(dim=0), counts.sum(dim=1)
    scores = {
        "precision": _share(right, predicted),
        "recall": _share(right, actual),
        "f1": _share(2 * right, predicted + actual),  # 2PR / (P + R) = 2TP / (2TP + FP + FN)
    }
    if average is None:
        return {name: score.numpy() for name, score in scores.items()}
    seen = (predicted + actual) > 0
    return {name: score[seen].mean().item() for name, score in scores.items()}


def top_k_accuracy(y_true: ArrayLike, y_prob: ArrayLike, k: int = 3) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores of ``y_prob`` (N, C)."""
    scores = torch.as_tensor(y_prob)
    if scores.ndim != 2:
        raise ValueError(f"y_prob must hold one row of class scores per sample (N, C), got shape {tuple(scores.shape)}")
    target = as_class_indices(y_true).to(scores.device)
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return (top == target[:, None]).any(dim=1).double().mean().item()
