"""Small helpers shared by the architectures."""

from __future__ import annotations

import torch
import torch.nn as nn


def flat_features(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Size of ``features``' output for one image of ``input_shape``, found by a dry run."""
    with torch.no_grad():
        return features(torch.zeros(1, *input_shape)).numel()


def check_dropout(rate: float) -> float:
    """Reject dropout rates outside [0, 1) with a message that names the option."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {rate}")
    return rate
