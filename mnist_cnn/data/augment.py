"""Per-image random affine and elastic distortion of a whole batch, on whatever device the batch is on.

Hand-written because torchvision's v2 transforms draw one random parameter set per call, so a
batch tensor would get the same rotation (or the same elastic field) for every image; here each
image gets its own, and both distortions share one ``grid_sample``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur


def random_distortion(
    images: torch.Tensor,
    max_degrees: float = 10.0,
    max_shift: float = 0.1,
    max_zoom: float = 0.1,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 4.0,
) -> torch.Tensor:
    """Rotate by up to ``max_degrees``, shift by up to ``max_shift`` of the size, zoom by up to ±``max_zoom``,
    then, if ``elastic_alpha`` > 0, displace pixels by an elastic field (see ``elastic_displacement``).

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
    height, width = images.shape[-2:]
    grid = affine_grid(theta, height, width)
    if elastic_alpha > 0:
        grid = grid + elastic_displacement(n, height, width, elastic_alpha, elastic_sigma, images)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, height, width), align_corners=False)``, computed by broadcasting.

    Written out because ``F.affine_grid`` multiplies by ``theta`` with a batched matmul whose inner
    dimension is 3, which is slow on CPUs; broadcasting computes the same grid without it. tests/test_data.py
    checks they agree.
    """

    def pixel_centres(size: int) -> torch.Tensor:
        return torch.linspace(-1 + 1 / size, 1 - 1 / size, size, device=theta.device, dtype=theta.dtype)

    x, y = pixel_centres(width), pixel_centres(height).view(-1, 1)
    rows = theta.view(-1, 2, 3, 1, 1)
    grid = rows[:, :, 0] * x + rows[:, :, 1] * y + rows[:, :, 2]  # theta @ (x, y, 1): (N, 2, height, width)
    return grid.permute(0, 2, 3, 1)  # (N, height, width, 2) with x first, as grid_sample expects


def elastic_displacement(
    n: int, height: int, width: int, alpha: float, sigma: float, like: torch.Tensor
) -> torch.Tensor:
    """Simard et al. (2003) elastic fields in grid units, shape (N, height, width, 2), on ``like``'s device.

    Uniform noise in [-1, 1] per pixel and direction, smoothed by a Gaussian of ``sigma`` pixels and
    scaled by ``alpha`` pixels: a smooth, local warp like the wobble of a hand-drawn stroke.
    """
    noise = torch.rand(n, 2, height, width, device=like.device, dtype=like.dtype) * 2 - 1
    radius = min(math.ceil(3 * sigma), height - 1, width - 1)  # reflect padding needs radius < size
    field = gaussian_blur(noise, [2 * radius + 1, 2 * radius + 1], [sigma, sigma]) * alpha
    pixel_to_grid = torch.tensor([2 / width, 2 / height], device=like.device, dtype=like.dtype)
    return field.permute(0, 2, 3, 1) * pixel_to_grid  # grid coordinates span 2 over each side
