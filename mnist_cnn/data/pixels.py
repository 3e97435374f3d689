"""What an image array means, the same everywhere: shapes, pixel ranges, and MNIST's normalisation (torch only).

- uint8 (or any integer type) holds pixels in 0-255;
- floats hold pixels in 0-1 (what ``x / 255`` gives);
- already-normalised floats are said explicitly (``normalized=True``), never guessed.
Images come as (N, 28, 28), (N, 1, 28, 28) or Keras' (N, 28, 28, 1), numpy or torch; one image may drop the N.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

MEAN, STD = 0.1307, 0.3081  # of the 60k training images, pixels scaled to [0, 1]
SIZE = 28
SHAPES = "(N, 28, 28), (N, 1, 28, 28) or (N, 28, 28, 1)"


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Pixels (uint8 in 0-255, or floats in 0-1) to the float input the models expect."""
    images = images.float().div_(255) if not images.is_floating_point() else images.float()
    return (images - MEAN) / STD


def image_batch(images: Any, normalized: bool = False) -> torch.Tensor:
    """``images`` as an (N, 1, 28, 28) tensor of pixels (their own dtype), or of normalised floats with
    ``normalized=True``; a ``ValueError`` says which rule an array breaks."""
    batch = images if torch.is_tensor(images) else torch.as_tensor(np.asarray(images))
    shape = tuple(batch.shape)
    if batch.ndim == 4 and batch.shape[1:] == (SIZE, SIZE, 1):  # Keras: channels last
        batch = batch.permute(0, 3, 1, 2)
    elif batch.ndim == 3 and batch.shape == (SIZE, SIZE, 1):
        batch = batch.permute(2, 0, 1)
    if batch.ndim == 2:
        batch = batch.unsqueeze(0)
    if batch.ndim == 3:
        batch = batch.unsqueeze(1)
    if batch.ndim != 4 or len(batch) == 0 or tuple(batch.shape[1:]) != (1, SIZE, SIZE):
        raise ValueError(f"images must have shape {SHAPES} with N >= 1, got {shape}")
    if normalized:
        if not batch.is_floating_point():
            raise ValueError(f"normalized=True takes float images, got dtype {batch.dtype}: drop normalized=True")
        return batch
    return checked_pixels(batch)


def checked_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """``pixels`` of any shape as uint8 (integers in 0-255) or float (0-1) pixels, or a ``ValueError`` naming
    the rule they break."""
    if pixels.dtype == torch.bool or pixels.is_complex():
        raise ValueError(f"images must be uint8 pixels (0-255) or float pixels (0-1), got dtype {pixels.dtype}")
    low, high = (pixels.min().item(), pixels.max().item()) if pixels.numel() else (0, 0)
    if not pixels.is_floating_point():
        if low < 0 or high > 255:
            raise ValueError(f"integer images must hold pixels in 0-255, got values from {low} to {high}")
        return pixels if pixels.dtype == torch.uint8 else pixels.to(torch.uint8)
    if low < 0:
        raise ValueError(
            f"float images must hold pixels in 0-1, got values from {low:.3g} to {high:.3g}: if they are already "
            "normalised with MNIST's mean and std, pass normalized=True"
        )
    if high > 1:
        raise ValueError(
            f"float images must hold pixels in 0-1, got values up to {high:.3g}: divide 0-255 pixels by 255 "
            "(or pass them as uint8)"
        )
    return pixels


def model_input(images: Any, normalized: bool = False) -> torch.Tensor:
    """``images`` in any accepted form as the normalised (N, 1, 28, 28) float input of the models."""
    batch = image_batch(images, normalized)
    return batch if normalized else normalize(batch)
