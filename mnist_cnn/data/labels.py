"""What a label array means, the same everywhere: class indices (N,) or Keras' one-hot rows (N, 10)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

NUM_CLASSES = 10


def class_indices(labels: Any, count: int) -> torch.Tensor:
    """The labels of ``count`` images, numpy or torch, as int64 class indices on the CPU; a ``ValueError`` says
    which rule they break."""
    labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    if labels.ndim == 2 and labels.shape == (count, NUM_CLASSES):  # one-hot rows, as Keras' to_categorical gives
        labels = labels.argmax(dim=1)
    if labels.shape != (count,) or labels.is_floating_point():
        shape = tuple(labels.shape)
        raise ValueError(
            f"labels must be integer class indices of shape ({count},) or one-hot rows ({count}, {NUM_CLASSES}), "
            f"got {shape} {labels.dtype}"
        )
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must lie in 0-{NUM_CLASSES - 1}, got {int(labels.min())} to {int(labels.max())}")
    return labels.long().cpu()
