"""MNIST's pixel statistics and the normalisation every model input goes through (torch only)."""

from __future__ import annotations

import torch

MEAN, STD = 0.1307, 0.3081  # of the 60k training images, pixels scaled to [0, 1]


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (or floats in [0, 1]) to the float input the models expect."""
    if images.dtype == torch.uint8:
        images = images.float().div_(255)
    return (images - MEAN) / STD
