"""Corruptions of whole batches of digits for training robust models, each image its own kind and strength.

Eight kinds of damage a digit meets, each at random strengths (the bounds are the constants beside each):
``noise`` (Gaussian or salt and pepper), ``blur`` (Gaussian, motion or glass-like pixel jitter), ``occlusion``
(blots and patches), ``lines`` (straight, dotted or zigzag strokes across), ``inversion`` (bands or patches of
the image inverted), ``edges`` (only the outline of the strokes left), ``lighting`` (the background lifted, the
contrast squeezed, haze or a shading gradient) and ``affine`` (stronger rotation, shear, scale and shift than
the default augmentation).

Written by hand, like ``augment.py``: torchvision's transforms draw one set of random parameters per call, and
most of these kinds have no counterpart there. Every function takes and returns a float batch (N, 1, H, W) in
[0, 1] with a black background, on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mnist_cnn.data.augment import affine_grid, blurred
from mnist_cnn.data.options import Corruption
from mnist_cnn.data.pixels import maximum_filter

KINDS = ("noise", "blur", "occlusion", "lines", "inversion", "edges", "lighting", "affine")

GAUSSIAN_NOISE = (0.05, 0.35)  # std, as a share of full ink
SALT_AND_PEPPER = (0.02, 0.30)  # share of the pixels
GAUSSIAN_BLUR = (0.5, 1.5)  # std in pixels
MOTION_LENGTH = (3.0, 13.0)  # pixels
GLASS_JITTER = 2  # pixels each pixel may be swapped from, at most
BLOT_COVER = (0.03, 0.25)  # share of the image under blots
LINE_WIDTH = (0.8, 2.0)  # pixels, half of the stroke's full width
BAND_WIDTH = (3, 10)  # pixels of an inverted band
BRIGHTNESS = (0.1, 0.6)  # the background lifted by this share of full ink
HAZE = (0.5, 3.0)  # haze strength relative to the ink
ROTATION = 35.0  # degrees
SHEAR = 0.6
SCALE = (0.55, 1.25)
SHIFT = 4.0  # pixels


def random_corruption(images: torch.Tensor, options: Corruption) -> torch.Tensor:
    """Corrupt an ``options.probability`` share of ``images``, in equal parts by each of ``KINDS``.

    The batch's last images are the ones corrupted (the degradations of ``augment.py`` take the first), so the
    batch must be in random order, as a shuffled training batch is: the shares are counted on the host, so a
    batch on a GPU is corrupted without waiting for it."""
    count = round(options.probability * len(images))
    if count == 0:
        return images
    result = images.clone()
    first = len(images) - count
    bounds = [first + round(count * part / len(KINDS)) for part in range(len(KINDS) + 1)]
    for name, start, stop in zip(KINDS, bounds[:-1], bounds[1:]):
        if stop > start:
            result[start:stop] = CORRUPTIONS[name](images[start:stop]).clamp(0, 1)
    return result


def _uniform(n: int, bounds: tuple[float, float], like: torch.Tensor) -> torch.Tensor:
    """(n, 1, 1, 1) uniform draws in ``bounds``."""
    low, high = bounds
    return torch.rand(n, 1, 1, 1, device=like.device, dtype=like.dtype) * (high - low) + low


def _coin(n: int, like: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """(n, 1, 1, 1) bools, each true with probability ``p``."""
    return torch.rand(n, 1, 1, 1, device=like.device) < p


def _smooth_field(n: int, size: int, cells: int, like: torch.Tensor) -> torch.Tensor:
    """(n, 1, size, size) random values varying smoothly over about ``cells`` cells a side, in [0, 1]."""
    coarse = torch.rand(n, 1, cells + 1, cells + 1, device=like.device, dtype=like.dtype)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True).clamp(0, 1)


def noise(images: torch.Tensor) -> torch.Tensor:
    """Gaussian noise, or salt and pepper, half of the images each."""
    n = len(images)
    gaussian = images + torch.randn_like(images) * _uniform(n, GAUSSIAN_NOISE, images)
    hit = torch.rand_like(images) < _uniform(n, SALT_AND_PEPPER, images)
    salted = torch.where(hit, (torch.rand_like(images) < 0.5).to(images.dtype), images)
    return torch.where(_coin(n, images), gaussian, salted)


def blur(images: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur, a motion blur along a random direction, or glass-like jitter, a third of the images each."""
    thirds = [round(len(images) * part / 3) for part in range(4)]
    parts = (_gaussian_blur, _motion_blur, _glass)
    return torch.cat([apply(images[a:b]) for apply, a, b in zip(parts, thirds[:-1], thirds[1:]) if b > a])


def _gaussian_blur(images: torch.Tensor) -> torch.Tensor:
    return blurred(images, _uniform(len(images), GAUSSIAN_BLUR, images).flatten())


def _motion_blur(images: torch.Tensor) -> torch.Tensor:
    """Each image smeared along a segment of random length and direction through its pixels."""
    n, channels, height, width = images.shape
    radius = math.ceil(MOTION_LENGTH[1] / 2)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    y, x = offsets.view(-1, 1), offsets.view(1, -1)
    angle = torch.rand(n, 1, 1, device=images.device, dtype=images.dtype) * math.pi
    length = _uniform(n, MOTION_LENGTH, images).view(n, 1, 1)
    along = x * angle.cos() + y * angle.sin()
    across = -x * angle.sin() + y * angle.cos()
    kernels = (1 - across.abs()).clamp(min=0) * (length / 2 + 0.5 - along.abs()).clamp(0, 1)
    kernels = kernels / kernels.sum(dim=(1, 2), keepdim=True)
    flat = images.reshape(1, n * channels, height, width)
    weights = kernels.repeat_interleave(channels, dim=0).unsqueeze(1)
    return F.conv2d(flat, weights, padding=radius, groups=n * channels).view(n, channels, height, width)


def _glass(images: torch.Tensor) -> torch.Tensor:
    """Each pixel replaced by one up to ``GLASS_JITTER`` pixels away, between two light blurs: frosted glass."""
    n, _, height, width = images.shape
    sigma = _uniform(n, (0.4, 0.9), images).flatten()
    images = blurred(images, sigma)
    jitter = torch.randint(-GLASS_JITTER, GLASS_JITTER + 1, (n, height, width, 2), device=images.device)
    moved = torch.where(torch.rand(n, height, width, 1, device=images.device) < 0.5, jitter, 0)
    rows = (torch.arange(height, device=images.device).view(1, -1, 1) + moved[..., 0]).clamp(0, height - 1)
    cols = (torch.arange(width, device=images.device).view(1, 1, -1) + moved[..., 1]).clamp(0, width - 1)
    flat = images.view(n, height * width)
    shuffled = flat.gather(1, (rows * width + cols).view(n, -1)).view_as(images)
    return blurred(shuffled, sigma)


def occlusion(images: torch.Tensor) -> torch.Tensor:
    """Grey or black blots of random shape, or a rectangular patch, over part of each image."""
    n, _, height, width = images.shape
    field = _smooth_field(n, height, 6, images)
    cover = _uniform(n, BLOT_COVER, images)
    ranked = field.view(n, -1).sort(dim=1).values
    level = ranked.gather(1, ((1 - cover.view(n, 1)) * (height * width - 1)).long()).view(n, 1, 1, 1)
    blots = field > level
    rows = torch.arange(height, device=images.device).view(1, 1, -1, 1)
    cols = torch.arange(width, device=images.device).view(1, 1, 1, -1)
    top, left = (torch.randint(0, height - 6, (n, 1, 1, 1), device=images.device) for _ in range(2))
    tall, wide = (torch.randint(4, 12, (n, 1, 1, 1), device=images.device) for _ in range(2))
    patch = (rows >= top) & (rows < top + tall) & (cols >= left) & (cols < left + wide)
    mask = torch.where(_coin(n, images, 0.7), blots, patch)
    shade = _uniform(n, (0.0, 0.6), images)
    return torch.where(mask, shade, images)


def lines(images: torch.Tensor) -> torch.Tensor:
    """A stroke across each image: straight, dotted or zigzag, roughly horizontal or vertical."""
    n, _, height, width = images.shape
    x = torch.arange(width, device=images.device, dtype=images.dtype).view(1, 1, 1, -1)
    y = torch.arange(height, device=images.device, dtype=images.dtype).view(1, 1, -1, 1)
    start = _uniform(n, (0, height - 1), images)
    slope = _uniform(n, (-0.5, 0.5), images)
    style = torch.randint(3, (n, 1, 1, 1), device=images.device)  # 0 straight, 1 dotted, 2 zigzag
    period = _uniform(n, (3.0, 6.0), images)
    phase = torch.remainder(x / period, 1.0)
    zigzag = (2 * (2 * phase - 1).abs() - 1) * _uniform(n, (1.0, 2.5), images)
    centre = start + slope * (x - width / 2) + torch.where(style == 2, zigzag, 0.0)
    half_width = _uniform(n, LINE_WIDTH, images)
    stroke = (1 + half_width - (y - centre).abs()).clamp(0, 1)
    dash = _uniform(n, (1.5, 3.0), images)
    gaps = torch.remainder(torch.floor(x / dash), 2) == 1
    stroke = torch.where((style == 1) & gaps, 0.0, stroke)
    stroke = torch.where(_coin(n, images), stroke, stroke.transpose(-1, -2))
    return torch.maximum(images, stroke * _uniform(n, (0.6, 1.0), images))


def inversion(images: torch.Tensor) -> torch.Tensor:
    """Part of each image inverted: a band at both sides, one band anywhere, or a rectangle."""
    n, _, height, width = images.shape
    cols = torch.arange(width, device=images.device).view(1, 1, 1, -1)
    band = torch.randint(BAND_WIDTH[0], BAND_WIDTH[1] + 1, (n, 1, 1, 1), device=images.device)
    start = torch.randint(0, width - BAND_WIDTH[0], (n, 1, 1, 1), device=images.device)
    sides = (cols < band) | (cols >= width - band)
    one_band = (cols >= start) & (cols < start + band)
    rows = cols.transpose(-1, -2)
    tall = torch.randint(BAND_WIDTH[0], height // 2, (n, 1, 1, 1), device=images.device)
    top = torch.randint(0, height - BAND_WIDTH[0], (n, 1, 1, 1), device=images.device)
    rectangle = one_band & (rows >= top) & (rows < top + tall)
    which = torch.randint(3, (n, 1, 1, 1), device=images.device)
    region = torch.where(which == 0, sides, torch.where(which == 1, one_band, rectangle))
    region = torch.where(_coin(n, images), region, region.transpose(-1, -2))
    return torch.where(region, 1 - images, images)


def edges(images: torch.Tensor) -> torch.Tensor:
    """Only the outline of the strokes, one pixel wide, inside or outside them: an edge detector's output."""
    n = len(images)
    ink = images > _uniform(n, (0.25, 0.6), images)
    solid = ink.to(images.dtype)
    inner = ink & (-maximum_filter(-solid) < 0.5)
    outer = (maximum_filter(solid) > 0.5) & ~ink
    return torch.where(_coin(n, images), inner, outer).to(images.dtype)


def lighting(images: torch.Tensor) -> torch.Tensor:
    """The background lifted, the contrast squeezed, haze over the image, or a shading gradient."""
    n, _, height, _ = images.shape
    lifted = images + _uniform(n, BRIGHTNESS, images)
    squeeze = _uniform(n, (0.2, 0.7), images)
    squeezed = images * squeeze + torch.rand_like(squeeze) * (1 - squeeze)
    haze = sum(_smooth_field(n, height, cells, images) / cells**0.5 for cells in (2, 4, 8, 16))
    haze = (haze - haze.amin(dim=(2, 3), keepdim=True)) / (haze.amax(dim=(2, 3), keepdim=True) + 1e-6)
    strength = _uniform(n, HAZE, images)
    hazy = (images + strength * haze) / (1 + strength)
    ramp = _smooth_field(n, height, 1, images) * _uniform(n, (0.3, 0.8), images)
    shaded = images * (1 - ramp) + ramp
    which = torch.randint(4, (n, 1, 1, 1), device=images.device)
    return torch.where(which == 0, lifted, torch.where(which == 1, squeezed, torch.where(which == 2, hazy, shaded)))


def affine(images: torch.Tensor) -> torch.Tensor:
    """Rotation, shear, scale and shift together, each at a random strength within its bound."""
    n, _, height, width = images.shape

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, device=images.device, dtype=images.dtype) * (high - low) + low

    angle = uniform(-math.radians(ROTATION), math.radians(ROTATION))
    shear = uniform(-SHEAR, SHEAR)
    scale = uniform(*SCALE)
    cos, sin = angle.cos() / scale, angle.sin() / scale  # the grid maps output pixels to input: inverse scale
    shift_x, shift_y = uniform(-SHIFT, SHIFT) * 2 / width, uniform(-SHIFT, SHIFT) * 2 / height
    theta = torch.stack([cos, -sin + shear * cos, shift_x, sin, cos + shear * sin, shift_y], dim=1).view(n, 2, 3)
    grid = affine_grid(theta, height, width)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


CORRUPTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "noise": noise,
    "blur": blur,
    "occlusion": occlusion,
    "lines": lines,
    "inversion": inversion,
    "edges": edges,
    "lighting": lighting,
    "affine": affine,
}
