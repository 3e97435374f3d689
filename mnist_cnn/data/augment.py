"""Per-image random augmentation of a whole batch, on whatever device the batch is on: affine and elastic
distortion, and degradations that make a digit look photographed or scanned (stroke width, resolution, blur,
contrast, noise).

Hand-written because torchvision's v2 transforms draw one random parameter set per call, so a
batch tensor would get the same rotation (or the same elastic field, blur, noise level) for every image; here
each image gets its own, and both distortions share one ``grid_sample``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur

from mnist_cnn.data.options import Augmentation, Degradation
from mnist_cnn.data.pixels import maximum_filter


def random_distortion(images: torch.Tensor, options: Augmentation) -> torch.Tensor:
    """Rotate each image by up to ``options.rotation_degrees``, shift it by up to ``shift_fraction`` of its side and
    zoom it by up to ±``zoom_fraction``, then, if ``elastic_alpha`` > 0, displace its pixels by an elastic field (see
    ``elastic_displacement``).

    ``images`` is a float batch (N, C, H, W) whose background is 0 (i.e. before normalisation).
    """
    n = images.shape[0]

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(n, device=images.device, dtype=images.dtype) * 2 - 1) * bound

    angle = uniform(math.radians(options.rotation_degrees))
    scale = 1 + uniform(options.zoom_fraction)  # > 1 samples a smaller region: zoom in
    cos, sin = angle.cos() / scale, angle.sin() / scale
    shift_x, shift_y = uniform(2 * options.shift_fraction), uniform(2 * options.shift_fraction)  # grid spans 2
    theta = torch.stack([cos, -sin, shift_x, sin, cos, shift_y], dim=1).view(n, 2, 3)
    height, width = images.shape[-2:]
    grid = affine_grid(theta, height, width)
    if options.elastic_alpha > 0:
        grid = grid + elastic_displacement(n, height, width, options.elastic_alpha, options.elastic_sigma, images)
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


def random_degradation(images: torch.Tensor, options: Degradation) -> torch.Tensor:
    """Make an ``options.probability`` share of the images (the batch's first: it must be in random order, as a
    shuffled training batch is) look photographed or scanned, each at its own random strengths up to the given ones,
    in this order: strokes thicker or thinner by up to ``stroke_width`` pixels (at most 1), scanned at
    ``min_resolution``-28 pixels and scaled back, a Gaussian blur of up to ``blur_sigma`` pixels, the range squeezed
    to a share of at least ``1 - contrast`` and lifted off black (grey paper), Gaussian noise of up to ``noise_std``
    and salt-and-pepper on up to ``impulse_fraction`` of the pixels.

    ``images`` is a float batch (N, 1, H, W) in [0, 1] with a black background (before normalisation); so is the
    result. The other images, and any option at its default, are left as they are.
    """
    n = round(options.probability * len(images))  # counted on the host: a batch on a GPU is not waited for
    if n == 0:
        return images
    degraded = images[:n]

    def strength(bound: float) -> torch.Tensor:  # (n, 1, 1, 1) uniform in [0, bound]
        return torch.rand(n, 1, 1, 1, device=images.device, dtype=images.dtype) * bound

    if options.stroke_width > 0:
        width = min(options.stroke_width, 1.0)
        amount = strength(2 * width) - width  # < 0 thins, > 0 thickens
        thicker, thinner = maximum_filter(degraded), -maximum_filter(-degraded)
        degraded = degraded + amount.clamp(min=0) * (thicker - degraded) + amount.clamp(max=0) * (degraded - thinner)
    if options.min_resolution < degraded.shape[-1]:
        degraded = rescanned(degraded, options.min_resolution)
    if options.blur_sigma > 0:
        degraded = blurred(degraded, strength(options.blur_sigma).flatten())
    if options.contrast > 0:
        squeeze = 1 - strength(options.contrast)  # the range shrinks to this share ...
        degraded = degraded * squeeze + torch.rand_like(squeeze) * (1 - squeeze)  # ... and rises by up to the rest
    if options.noise_std > 0:
        degraded = degraded + torch.randn_like(degraded) * strength(options.noise_std)
    if options.impulse_fraction > 0:
        hit = torch.rand_like(degraded) < strength(options.impulse_fraction)
        degraded = torch.where(hit, (torch.rand_like(degraded) < 0.5).to(degraded.dtype), degraded)
    result = images.clone()
    result[:n] = degraded.clamp(0, 1)
    return result


def rescanned(images: torch.Tensor, min_resolution: int) -> torch.Tensor:
    """Each image reduced to a random size of ``min_resolution`` to full pixels a side (area averaging), then
    scaled back up (bilinear): a low-resolution scan, enlarged."""
    size = images.shape[-1]
    sides = torch.randint(min_resolution, size + 1, (len(images),), device=images.device)
    result = images.clone()
    for side in sides.unique().tolist():
        if side < size:
            pick = sides == side
            small = F.interpolate(images[pick], size=(side, side), mode="area")
            result[pick] = F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return result


def blurred(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Each image blurred by a Gaussian of its own ``sigmas`` pixels (separable, zero padding: the background)."""
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernels = torch.exp(-(offsets**2) / (2 * sigmas.clamp(min=1e-3).view(-1, 1) ** 2))
    kernels = kernels / kernels.sum(dim=1, keepdim=True)  # (N, 2 * radius + 1)
    n, channels, height, width = images.shape
    flat = images.reshape(1, n * channels, height, width)
    weights = kernels.repeat_interleave(channels, dim=0)
    flat = F.conv2d(flat, weights.view(-1, 1, 1, 2 * radius + 1), padding=(0, radius), groups=n * channels)
    flat = F.conv2d(flat, weights.view(-1, 1, 2 * radius + 1, 1), padding=(radius, 0), groups=n * channels)
    return flat.view(n, channels, height, width)
