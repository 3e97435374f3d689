"""Find the ink on a photographed or scanned page: how dark each pixel's ink is, with the paper, its shading and
the camera's noise taken away.

1. The paper: a smooth surface (a quadratic in x and y) fitted to the pixels that are not ink, starting from the
   page's border and leaving out, round by round, the pixels far from the surface. It follows grey paper, uneven
   light and vignetting; what departs from it is ink or noise. A clean image (its border one grey level: a
   drawing, a rendering) has flat paper at that level, without a fit.
2. The noise: the spread of the paper's pixels around that surface (median absolute deviation).
3. The polarity: ink is whichever side (darker or lighter than the paper) departs from it by more in all.
4. The strokes: the departures, smoothed when the page is noisy, above a threshold (Otsu's, and never within the
   noise); of the connected pieces, those much smaller than the largest (specks, dust, noise) are dropped.
5. The grey levels: each pixel's departure less the noise, scaled so the strokes' typical darkness is 1, kept
   only on the strokes and their soft edges (what stands out of the noise and touches a stroke).

Written with numpy and scipy.ndimage because no installed library does the background fit and its use here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FIT_SAMPLES = 64  # the paper's surface is fitted to at most about this many pixels per side (strided)
FIT_ROUNDS = 4
OUTLIER = 3.0  # pixels this many noise spreads off the surface are left out of the next round's fit
OTSU_SAMPLES = 256  # Otsu's threshold is computed from at most about this many pixels per side (strided)
NOISE_FLOOR = 2.0  # grey levels: the least noise assumed (quantisation, a perfectly flat scan)
NOISY = 3.0  # grey levels of noise above which the strokes are found on a smoothed copy (Gaussian, 1 pixel)
INK_LEVEL = 95  # percentile of the strokes' ink that counts as full ink
SPECK = 0.1  # connected pieces of ink smaller than this share of the largest piece are dropped


def find_ink(pixels: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1] of each pixel of a grayscale page (float H×W, 0-255), 0 on the paper."""
    paper, noise = paper_surface(pixels)
    departure = pixels - paper
    darker = np.clip(-departure - OUTLIER * noise, 0, None).sum()
    lighter = np.clip(departure - OUTLIER * noise, 0, None).sum()
    ink = np.clip(-departure if darker >= lighter else departure, 0, None)
    smooth = ndimage.gaussian_filter(ink, 1.0) if noise > NOISY else ink
    step = max(1, max(ink.shape) // OTSU_SAMPLES)
    strokes = _largest_pieces(smooth > max(otsu_threshold(smooth[::step, ::step]), OUTLIER * noise))
    found = np.zeros_like(ink)
    if not strokes.any():
        return found
    level = float(np.percentile(ink[strokes], INK_LEVEL)) - noise
    edges = _touching(smooth > OUTLIER * noise, strokes)  # the strokes' soft edges, down to the noise
    rows, cols = np.nonzero(edges)
    box = slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)
    if level > 0:
        found[box] = np.where(edges[box], np.clip((ink[box] - noise) / level, 0, 1), 0.0)
    return found


def flat_paper(pixels: np.ndarray) -> float | None:
    """The paper's grey level of a clean image, whose whole border has that one level (a drawing, a rendering);
    None for any other (a photo, a scan)."""
    border = _border(pixels)
    low, high = border.min(), border.max()
    return float(low) if low == high else None


def paper_surface(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """The paper's grey level at every pixel (a quadratic surface fitted to the pixels that are not ink) and the
    noise around it (a standard deviation, in grey levels)."""
    flat = flat_paper(pixels)
    if flat is not None:  # a clean image: flat paper, no noise beyond quantisation; the fit would find the same
        return np.full_like(pixels, flat), NOISE_FLOOR
    height, width = pixels.shape
    step = max(1, max(height, width) // FIT_SAMPLES)
    sample = pixels[::step, ::step].ravel()
    rows, cols = np.arange(0, height, step) / height - 0.5, np.arange(0, width, step) / width - 0.5
    y, x = np.meshgrid(rows, cols, indexing="ij")  # coordinates in [-0.5, 0.5) keep the fit well conditioned
    design = _quadratic(x.ravel(), y.ravel())
    border = _border(pixels)
    coefficients = np.array([np.median(border), 0, 0, 0, 0, 0], dtype=np.float64)  # flat, at the border's level
    noise = _spread(border)
    kept_before = None
    for _ in range(FIT_ROUNDS):
        keep = np.abs(sample - design @ coefficients) <= OUTLIER * noise
        if keep.sum() < design.shape[1] or (kept_before is not None and np.array_equal(keep, kept_before)):
            break  # too few pixels left to fit, or the same pixels as last round: the fit would not change
        kept_before = keep
        kept = design[keep]
        # least squares, 6 unknowns; lstsq, not solve: the kept pixels may span one row (an image 16 pixels tall
        # is sampled on one), which leaves some terms undetermined: they get 0
        coefficients = np.linalg.lstsq(kept.T @ kept, kept.T @ sample[keep], rcond=None)[0]
        noise = _spread(sample[keep] - design[keep] @ coefficients)
    rows = (np.arange(height, dtype=np.float32) / height - 0.5)[:, None]
    cols = (np.arange(width, dtype=np.float32) / width - 0.5)[None, :]
    return _quadratic(cols, rows, coefficients), noise


def _border(pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def _quadratic(x: np.ndarray, y: np.ndarray, coefficients: np.ndarray | None = None) -> np.ndarray:
    """The terms 1, x, y, x², xy, y² side by side, or (with ``coefficients``) their weighted sum, computed by
    broadcasting a row ``x`` against a column ``y``."""
    if coefficients is None:
        return np.stack((np.ones_like(x), x, y, x * x, x * y, y * y), axis=-1)
    c = coefficients.astype(np.float32)
    return (c[0] + c[1] * x + c[3] * x * x) + y * (c[2] + c[4] * x + c[5] * y)


def _spread(values: np.ndarray) -> float:
    """A robust standard deviation (1.4826 × the median absolute deviation), at least ``NOISE_FLOOR``."""
    return max(NOISE_FLOOR, 1.4826 * float(np.median(np.abs(values - np.median(values)))))


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the level that best splits ``values`` into two classes (most variance between them).

    Written out because it is a few lines of numpy; the libraries that have it (scikit-image, OpenCV) are not
    dependencies. The histogram is counted with ``np.bincount``: ``np.histogram`` costs twice as much."""
    low, high = float(values.min()), float(values.max())
    if high == low:
        return low
    scale = bins / (high - low)
    counts = np.bincount(np.minimum(((values.ravel() - low) * scale).astype(np.intp), bins - 1), minlength=bins)
    centres = low + (np.arange(bins) + 0.5) / scale
    below = np.cumsum(counts)
    mass = np.cumsum(counts * centres)
    above = below[-1] - below
    with np.errstate(divide="ignore", invalid="ignore"):
        between = below * above * (mass / below - (mass[-1] - mass) / above) ** 2
    return float(centres[np.nanargmax(between[:-1])]) if np.isfinite(between[:-1]).any() else low


def _largest_pieces(mask: np.ndarray) -> np.ndarray:
    """``mask`` without its connected pieces (8-connected) smaller than ``SPECK`` of the largest."""
    pieces, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count <= 1:
        return mask
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    return (sizes >= SPECK * sizes.max())[pieces]


def _touching(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected pieces of ``mask`` that hold any of ``seeds`` (hysteresis: weak ink joined to strong)."""
    pieces, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    chosen = np.zeros(pieces.max() + 1, dtype=bool)
    chosen[pieces[seeds]] = True
    chosen[0] = False
    return chosen[pieces]
