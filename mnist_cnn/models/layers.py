"""Small helpers shared by the architectures."""

from __future__ import annotations

import torch
import torch.nn as nn


def flat_features(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Size of ``features``' output for one image of ``input_shape``, found by a dry run in eval mode,
    so that batch norm's running statistics are left at their initial values."""
    training = features.training
    features.eval()
    with torch.no_grad():
        size = features(torch.zeros(1, *input_shape)).numel()
    features.train(training)
    return size


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_dropout(rate: float) -> float:
    """Reject dropout rates outside [0, 1) with a message that names the option."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {rate}")
    return rate


def init_like_keras(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, as Keras initialises Conv2D/Dense (as the
    original Keras project's models start).

    Apply with ``model.apply(init_like_keras)``. LeNet-5's tanh units converge faster from it than from
    PyTorch's default initialisation.
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
