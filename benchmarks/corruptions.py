"""The conditions of the robustness benchmark, each a function ``(digit, rng) -> image`` of one 28×28 uint8 MNIST
digit (white on black) and a seeded ``numpy.random.Generator``.

``PHOTOS``: the digit as a user meets it, written dark on paper and photographed or scanned (a uint8 H×W page
of any size, dark ink on light paper), for ``predict_images``' preprocessing. ``PHOTO_LIKE`` names the ones a
phone camera adds (paper, light, sensor noise, focus, JPEG); the others change the writing or the framing.

``MNIST_C``: corruptions in the style of MNIST-C (Mu & Gilmer 2019, arXiv:1906.02337), written here from the
paper's descriptions at the severities its published set uses as far as they are known; the 28×28 result is a
float array in [0, 1] (MNIST-formatted). Figures are comparable before and after a change here, not one-to-one
with MNIST-C's files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage
from torchvision.transforms.v2.functional import perspective

from benchmarks.drawing import draw_on_paper

Photo = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]


# ---------------------------------------------------------------------------------------------------------------
# Photos: a page of paper under a light, seen by a camera


def _page(
    digit: np.ndarray,
    rng: np.random.Generator,
    canvas: tuple[int, int] = (320, 240),
    height: tuple[int, int] = (90, 150),
    stroke: ImageFilter.Filter | None = None,
) -> np.ndarray:
    """Ink coverage (float H×W in [0, 1]) of ``digit`` drawn ``height`` pixels tall at a random place on the page."""
    tall = int(rng.integers(*height, endpoint=True))
    rows, cols = np.nonzero(digit)
    wide = math.ceil((cols.max() - cols.min() + 1) * tall / (rows.max() - rows.min() + 1))
    corner = int(rng.integers(0, max(1, canvas[0] - wide))), int(rng.integers(0, max(1, canvas[1] - tall)))
    return 1.0 - np.asarray(draw_on_paper(digit, canvas, tall, corner, stroke), dtype=np.float32) / 255.0


def photograph(
    ink: np.ndarray,
    rng: np.random.Generator,
    paper: float = 255.0,
    pen: float = 0.0,
    light: float = 0.0,
    blur: float = 0.0,
    noise: float = 0.0,
    jpeg: int | None = None,
) -> np.ndarray:
    """A uint8 photo of a page whose ink coverage is ``ink``: paper and pen grey levels under a light that falls off
    linearly in a random direction (the paper ``light`` levels brighter on one side, darker on the other), a
    Gaussian blur of ``blur`` pixels (focus), Gaussian sensor noise of ``noise`` levels, then JPEG at ``jpeg``."""
    page = paper * (1.0 - ink) + pen * ink
    if light:
        angle = rng.uniform(0, 2 * math.pi)
        rows, cols = np.indices(ink.shape, dtype=np.float32)
        ramp = (cols - cols.mean()) * math.cos(angle) + (rows - rows.mean()) * math.sin(angle)
        page = page * (1.0 + light / paper * ramp / np.abs(ramp).max())  # light scales paper and ink alike
    if blur:
        page = ndimage.gaussian_filter(page, blur)
    if noise:
        page = page + rng.normal(0.0, noise, page.shape)
    pixels = np.clip(np.round(page), 0, 255).astype(np.uint8)
    if jpeg is not None:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=jpeg)
        pixels = np.asarray(Image.open(buffer).convert("L"))
    return pixels


def _grey(rng: np.random.Generator) -> dict[str, float]:
    """Grey paper (120-200) and a dark pen 60-110 levels below it."""
    paper = rng.uniform(120, 200)
    return {"paper": paper, "pen": paper - rng.uniform(60, 110)}


def clean(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photograph(_page(digit, rng), rng)


def grey_paper(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photograph(_page(digit, rng), rng, **_grey(rng))


def uneven_light(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photograph(_page(digit, rng, (640, 480)), rng, **_grey(rng), light=rng.uniform(30, 50))


def noise(sigma: float) -> Photo:
    def noisy(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return photograph(_page(digit, rng, (640, 480)), rng, paper=170.0, pen=rng.uniform(40, 90), noise=sigma)

    return noisy


def blur(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ink = _page(digit, rng)
    tall = np.ptp(np.nonzero(ink.max(axis=1) > 0)[0]) + 1
    return photograph(ink, rng, **_grey(rng), blur=tall * rng.uniform(0.02, 0.04))  # 2-4 % of the digit's height


def jpeg(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return photograph(_page(digit, rng), rng, **_grey(rng), noise=3.0, jpeg=int(rng.integers(10, 30)))


def phone_photo(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All of the above at once, milder: grey paper, light ±30, focus 1 px, noise σ 10, JPEG quality 40-70."""
    light, quality = rng.uniform(15, 30), int(rng.integers(40, 70))
    return photograph(_page(digit, rng, (640, 480)), rng, **_grey(rng), light=light, blur=1.0, noise=10.0, jpeg=quality)


def thin_strokes(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fine pen: strokes eroded by a 7-pixel minimum filter at 100-150 pixels tall."""
    return photograph(_page(digit, rng, height=(100, 150), stroke=ImageFilter.MinFilter(7)), rng)


def thick_strokes(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A marker: strokes dilated by an 11-pixel maximum filter at 90-130 pixels tall."""
    return photograph(_page(digit, rng, height=(90, 130), stroke=ImageFilter.MaxFilter(11)), rng)


def low_resolution(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scanned with the digit 8-16 pixels tall, then upscaled eight times (bilinear)."""
    ink = _page(digit, rng, (40, 30), height=(8, 16))
    small = Image.fromarray(photograph(ink, rng))
    return np.asarray(small.resize((small.width * 8, small.height * 8), Image.Resampling.BILINEAR))


def tilted(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photographed at a slant: rotated by up to ±15° and each corner of the page moved by up to 8 %."""
    page = Image.fromarray(photograph(_page(digit, rng), rng))
    width, height = page.size
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    angle = math.radians(rng.uniform(-15, 15))
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = np.array([width, height]) / 2
    moved = (corners - centre) @ turn.T + centre + rng.uniform(-0.08, 0.08, (4, 2)) * [width, height]
    return np.asarray(perspective(page, corners.tolist(), moved.tolist(), fill=255))


def off_centre(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small digit (40-80 pixels) anywhere on a large page (640×480)."""
    return photograph(_page(digit, rng, (640, 480), height=(40, 80)), rng)


PHOTOS: dict[str, Photo] = {
    "clean scan": clean,
    "grey paper": grey_paper,
    "uneven light ±30-50": uneven_light,
    "noise σ 5": noise(5.0),
    "noise σ 10": noise(10.0),
    "noise σ 15": noise(15.0),
    "blur": blur,
    "JPEG q10-30": jpeg,
    "phone photo": phone_photo,
    "thin strokes": thin_strokes,
    "thick strokes": thick_strokes,
    "low resolution": low_resolution,
    "rotation, perspective": tilted,
    "off-centre, margins": off_centre,
}
PHOTO_LIKE = ("grey paper", "uneven light ±30-50", "noise σ 5", "noise σ 10", "noise σ 15", "blur", "JPEG q10-30",
              "phone photo")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# MNIST-C: float [0, 1] digits in, float [0, 1] digits out


def _pixels(digit: np.ndarray) -> np.ndarray:
    return digit.astype(np.float32) / 255.0


def shot_noise(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson noise: 3 photons at full ink."""
    return np.clip(rng.poisson(_pixels(digit) * 3.0) / 3.0, 0, 1)


def impulse_noise(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper on 17 % of the pixels."""
    x = _pixels(digit)
    hit = rng.random(x.shape) < 0.17
    return np.where(hit, (rng.random(x.shape) < 0.5).astype(np.float32), x)


def glass_blur(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur (σ 0.7); twice, half the pixels take the value of a neighbour up to one pixel up and left (frosted
    glass); blur again."""
    x = ndimage.gaussian_filter(_pixels(digit), 0.7)
    rows, cols = np.indices(x.shape)
    for _ in range(2):
        shift = rng.integers(-1, 1, (2, *x.shape)) * (rng.random(x.shape) < 0.5)
        x = x[np.clip(rows + shift[0], 0, 27), np.clip(cols + shift[1], 0, 27)]
    return np.clip(ndimage.gaussian_filter(x, 0.7), 0, 1)


def motion_blur(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A one-sided streak 10 pixels long (Gaussian weights, σ 3) at an angle within ±45°."""
    angle = math.radians(rng.uniform(-45, 45))
    kernel = np.zeros((21, 21), dtype=np.float32)
    for step in range(11):
        kernel[round(10 + step * math.sin(angle)), round(10 + step * math.cos(angle))] += math.exp(-(step**2) / 18)
    return np.clip(ndimage.convolve(_pixels(digit), kernel / kernel.sum(), mode="constant"), 0, 1)


def _warp(digit: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The digit moved by the 2×2 linear map ``matrix`` about its field's centre (bilinear, black outside)."""
    inverse = np.linalg.inv(matrix)
    centre = np.array([13.5, 13.5])
    offset = centre - inverse @ centre
    return np.clip(ndimage.affine_transform(_pixels(digit), inverse, offset, order=1, cval=0.0), 0, 1)


def shear(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sheared sideways by ±0.4 (rows slide by 0.4 pixels per pixel)."""
    return _warp(digit, np.array([[1.0, 0.0], [rng.choice([-0.4, 0.4]), 1.0]]))


def scale(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shrunk to 70 % about the centre."""
    return _warp(digit, np.eye(2) * 0.7)


def rotate(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotated by ±0.4 radians (23°)."""
    angle = rng.choice([-0.4, 0.4])
    return _warp(digit, np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]))


def brightness(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every pixel 0.5 brighter: the black field turns mid-grey."""
    return np.clip(_pixels(digit) + 0.5, 0, 1)


def stripe(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 7 columns at each side inverted."""
    x = _pixels(digit)
    x[:, :7], x[:, 21:] = 1 - x[:, :7], 1 - x[:, 21:]
    return x


def fractal(rng: np.random.Generator, size: int = 28, decay: float = 1.4) -> np.ndarray:
    """Cloud-like noise in [0, 1]: random grids of 2, 4, 8, ... cells upsampled and summed, each octave weaker
    by ``decay`` (a stand-in for the diamond-square plasma fractal)."""
    field = np.zeros((size, size))
    cells, weight = 2, 1.0
    while cells <= size:
        coarse = rng.random((cells + 1, cells + 1))
        field += weight * ndimage.zoom(coarse, size / (cells + 1), order=1)[:size, :size]
        cells, weight = cells * 2, weight / decay
    return (field - field.min()) / (field.max() - field.min())


def fog(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fractal fog three times as bright as the ink, then rescaled so the brightest ink stays in range."""
    x = _pixels(digit)
    peak = x.max()
    return np.clip((x + 3.0 * fractal(rng)) * peak / (peak + 3.0), 0, 1)


def spatter(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blobs of mud (grey 63) cover parts of the field."""
    liquid = ndimage.gaussian_filter(rng.normal(0.65, 0.3, (28, 28)), 1.0)
    mud = ndimage.gaussian_filter((liquid > 0.65).astype(np.float32), 1.5)
    mud[mud < 0.8] = 0
    return np.clip(_pixels(digit) * (1 - mud) + 63 / 255 * mud, 0, 1)


def _line(points: np.ndarray) -> np.ndarray:
    """A 28×28 field with a bright polyline through ``points`` ((x, y) pixel centres), fading over 2.3 pixels."""
    rows, cols = np.indices((28, 28), dtype=np.float64)
    distance = np.full((28, 28), np.inf)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((cols - x0) * dx + (rows - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        distance = np.minimum(distance, np.hypot(cols - x0 - t * dx, rows - y0 - t * dy))
    return np.clip(np.log(np.clip(1 - distance / 2.3, 1e-9, None)) + 1, 0, 1)


def dotted_line(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A straight line across the field, drawn in dashes two pixels long."""
    y0, y1 = rng.integers(0, 27, 2)
    line = _line(np.array([[0.0, y0], [27.0, y1]]))
    line[:, (np.arange(28) // 2) % 2 == 0] = 0
    return np.maximum(_pixels(digit), line)


def zigzag(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A zigzag (corners 2 pixels above and below its axis, 2 pixels apart) across the field at a slight slope."""
    y0 = rng.integers(0, 27)
    y1 = y0 + rng.integers(-5, 5)
    x = np.arange(2.0, 25.1, 2.0)
    y = y0 + (y1 - y0) * (x - 2) / 23 + 2.0 * (-1.0) ** np.arange(len(x))
    return np.maximum(_pixels(digit), _line(np.stack([x, y], axis=1)))


def canny_edges(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit replaced by its Canny edges (Gaussian σ 1, hysteresis thresholds 0.1 and 0.2).

    Written out because no installed library has a Canny detector (scikit-image's would add a dependency for
    one benchmark condition): gradient, thinning to the local maxima across the edge, then the weak edges that
    touch a strong one."""
    x = ndimage.gaussian_filter(_pixels(digit), 1.0)
    gy, gx = ndimage.sobel(x, axis=0), ndimage.sobel(x, axis=1)
    magnitude = np.hypot(gx, gy)
    direction = (np.round(np.arctan2(gy, gx) / (math.pi / 4)) % 4).astype(int)  # 0: -, 1: \, 2: |, 3: /
    steps = np.array([[0, 1], [1, 1], [1, 0], [1, -1]])
    padded = np.pad(magnitude, 1)
    rows, cols = np.indices(x.shape) + 1
    ahead = padded[rows + steps[direction, 0], cols + steps[direction, 1]]
    behind = padded[rows - steps[direction, 0], cols - steps[direction, 1]]
    peak = (magnitude >= ahead) & (magnitude >= behind) & (magnitude > 0.1)
    regions, count = ndimage.label(peak, structure=np.ones((3, 3)))
    strong = np.zeros(count + 1, dtype=bool)
    strong[np.unique(regions[peak & (magnitude > 0.2)])] = True
    strong[0] = False
    return strong[regions].astype(np.float32)


MNIST_C: dict[str, Corruption] = {
    "shot noise": shot_noise,
    "impulse noise": impulse_noise,
    "glass blur": glass_blur,
    "motion blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted line": dotted_line,
    "zigzag": zigzag,
    "canny edges": canny_edges,
}
