"""Per-image random affine augmentation of a whole batch, on whatever device the batch is on.

Hand-written because torchvision's v2 transforms draw one random parameter set per call, so a
batch tensor would get the same rotation for every image; here each image gets its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    images: torch.Tensor, max_degrees: float = 10.0, max_shift: float = 0.1, max_zoom: float = 0.1
) -> torch.Tensor:
    """Rotate by up to ``max_degrees``, shift by up to ``max_shift`` of the size, zoom by up to ±``max_zoom``.

    ``images`` is a float batch (N, C, H, W) whose background is 0 (i.e. before normalisation).
    """
    n = images.shape[0]

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(n, device=images.device, dtype=images.dtype) * 2 - 1) * bound

    angle = uniform(math.radians(max_degrees))
    scale = 1 + uniform(max_zoom)  # > 1 samples a smaller region: zoom in
    cos, sin = angle.cos() / scale, angle.sin() / scale
    shift_x, shift_y = uniform(2 * max_shift), uniform(2 * max_shift)  # grid coordinates span 2
    theta = torch.stack([cos, -sin, shift_x, sin, cos, shift_y], dim=1).view(n, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
