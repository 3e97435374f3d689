"""What an image array means, the same everywhere: shapes, pixel ranges, and MNIST's normalisation (torch only).

- uint8 (or any integer type) holds pixels in 0-255;
- floats hold pixels in 0-1 (what ``x / 255`` gives);
- already-normalised floats are said explicitly (``normalized=True``), never guessed.
Images come as (N, 28, 28), (N, 1, 28, 28) or Keras' (N, 28, 28, 1), numpy or torch; one image may drop the N.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

MEAN, STD = 0.1307, 0.3081  # of the 60k training images, pixels scaled to [0, 1]
SIZE = 28
SHAPES = "(N, 28, 28), (N, 1, 28, 28) or (N, 28, 28, 1)"
BACKGROUND_SIZE = 9  # pixels: wider than any stroke of a 28 × 28 digit, narrower than haze and shading


def unit_floats(images: torch.Tensor) -> torch.Tensor:
    """Pixels (uint8 in 0-255, or floats in 0-1) as float32 in 0-1."""
    return images.float().div_(255) if not images.is_floating_point() else images.float()


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Pixels (uint8 in 0-255, or floats in 0-1) to the float input the models expect."""
    return (unit_floats(images) - MEAN) / STD


def standardize(images: torch.Tensor) -> torch.Tensor:
    """Pixels (N, 1, H, W) as float32 in 0-1 with light ink on a black background, as MNIST's digits are.

    An image whose ink is darker than its background (see ``ink_is_dark``) is inverted. An image whose
    background is above black (grey paper, a brightened or hazy image: the median of its pixels, of its middle
    rows and of its middle columns are all above black) keeps only what is narrower than ``BACKGROUND_SIZE``
    pixels (the strokes; a grey top-hat), stretched to full ink. MNIST's digits, whose median pixel is black,
    pass unchanged: neither rule can change such an image, so the others alone are examined.
    """
    images = unit_floats(images)
    return only_where(median_above_black(images), _light_ink_on_black, images)


def _light_ink_on_black(images: torch.Tensor) -> torch.Tensor:
    images = torch.where(ink_is_dark(images).view(-1, 1, 1, 1), 1 - images, images)
    height, width = images.shape[-2:]
    middle_rows, middle_cols = images[..., height // 4 : -(height // 4), :], images[..., width // 4 : -(width // 4)]
    lifted = median_above_black(images) & median_above_black(middle_rows) & median_above_black(middle_cols)
    return only_where(lifted, strokes_only, images)


def median_above_black(images: torch.Tensor) -> torch.Tensor:
    """(N,) bools: the median pixel (the lower one of an even count, as ``torch.median``'s) of each image of pixels
    (N, ...) in 0-1 is above black; counted, which is several times faster than sorting."""
    pixels = images.flatten(1)
    return (pixels > 0).sum(dim=1) > pixels.shape[1] // 2


def only_where(
    chosen: torch.Tensor, change: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor
) -> torch.Tensor:
    """``images`` (N, ...) with ``change`` applied to those where ``chosen`` (N,) holds: on the CPU to those alone;
    on a GPU to all, then picked (finding the chosen ones would make the host wait for the GPU)."""
    if images.device.type != "cpu":
        return torch.where(chosen.view(-1, *[1] * (images.ndim - 1)), change(images), images)
    index = chosen.nonzero().squeeze(1)
    return images.index_copy(0, index, change(images[index])) if len(index) else images


def strokes_only(images: torch.Tensor) -> torch.Tensor:
    """What of each image (N, 1, H, W) is narrower than ``BACKGROUND_SIZE`` pixels (a grey top-hat), stretched to
    full ink."""
    background = maximum_filter(-maximum_filter(-images, BACKGROUND_SIZE), BACKGROUND_SIZE)  # a grey opening
    strokes = images - background
    return strokes / strokes.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-3)


def maximum_filter(images: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Each pixel's largest neighbour in the ``size`` × ``size`` square around it (edge pixels repeated): a grey
    dilation; ``-maximum_filter(-images)`` is the erosion.

    As two passes of shifted maxima, because ``F.max_pool2d`` with stride 1 is twenty times slower on CPUs."""
    radius = size // 2
    height, width = images.shape[-2:]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    rows = padded[..., :height, :]
    for offset in range(1, size):
        rows = torch.maximum(rows, padded[..., offset : offset + height, :])
    result = rows[..., :width]
    for offset in range(1, size):
        result = torch.maximum(result, rows[..., offset : offset + width])
    return result


def ink_is_dark(images: torch.Tensor) -> torch.Tensor:
    """(N,) bools: each image of float pixels (N, 1, H, W) holds dark ink on a lighter background.

    The pixels that depart from the median (the background) depart below it by more in all than above, and
    each of the four edges is background rather than ink (its median is nearer the image's median than its
    darkest pixels): bright bands along two sides of a dark image do not make it one of dark ink.
    """
    pixels = images.flatten(1)
    background = pixels.median(dim=1, keepdim=True).values
    departure = pixels - background
    darker = departure.clamp(max=0).sum(dim=1).neg() > departure.clamp(min=0).sum(dim=1)
    ink = pixels.kthvalue(max(1, pixels.shape[1] // 20), dim=1, keepdim=True).values  # the darkest 5 %
    edges = torch.stack([images[:, 0, 0], images[:, 0, -1], images[:, 0, :, 0], images[:, 0, :, -1]], dim=1)
    edge_level = edges.median(dim=2).values
    framed = ((edge_level - background).abs() < (edge_level - ink).abs()).all(dim=1)
    return darker & framed


def prepared(pixels: torch.Tensor) -> torch.Tensor:
    """Pixels of any polarity and background as the normalised float input of the models."""
    return normalize(standardize(pixels))


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
    if math.isnan(low):  # the minimum of floats is NaN if any of them is
        raise ValueError(
            f"float images must hold pixels in 0-1, got {int(pixels.isnan().sum()):,} NaN pixels: fill them "
            "(with 0 for no ink) before passing the images"
        )
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
    """``images`` in any accepted form as the normalised (N, 1, 28, 28) float input of the models, standardised
    first (see ``standardize``) unless they are already normalised."""
    batch = image_batch(images, normalized)
    return batch if normalized else prepared(batch)
