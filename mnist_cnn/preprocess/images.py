"""Turn a user's digit image (any size, either polarity) into a 28×28 MNIST-formatted uint8 array.

MNIST's own recipe (LeCun et al.): the digit is size-normalised to fit a 20×20 box keeping its aspect
ratio, anti-aliased, then placed in a 28×28 field so that its centre of mass sits at the centre. An image that
is 28×28 already is MNIST's format and is taken as it is. Written by hand because torchvision's transforms
resize whole images, not the ink inside them.
"""

from __future__ import annotations

import glob
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps

from mnist_cnn.data.pixels import SIZE, checked_pixels, image_batch
from mnist_cnn.preprocess import MAX_PIXELS
from mnist_cnn.preprocess.ink import find_ink, flat_paper

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray, torch.Tensor]  # bytes: an encoded file
# The file formats read, by Pillow's own decoders. Never the others Pillow knows: EPS and PS run Ghostscript, and
# each extra decoder is more code that a hostile file can reach.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
BOX = 20  # MNIST: a 20×20 box inside the 28×28 field
INK_THRESHOLD = 0.2  # the digit's box holds the pixels with at least this much ink (of full ink, see find_ink)
WORKING_SIDE = 1024  # a larger image is reduced to this many pixels a side while it is decoded, before anything else
CLEAN_INK_SIDE = 2 * BOX  # a clean image's ink is found on a copy reduced to span about this many pixels
SPECKS = 0.02  # the share of a clean image's ink at each end of its span that is left out of it (specks, dust)
MIN_SIDE = 8  # pixels: a narrower image cannot hold a legible digit (and the paper's fit needs rows and columns)
NO_DIGIT = "the image holds no digit: it is blank or has no contrast"


class ImageError(ValueError):
    """An image file that is refused or cannot be read: the message says which and why."""


def image_size(source: str | os.PathLike[str] | bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of an image file from its header alone, or an ``ImageError``: not a readable PNG, JPEG or
    BMP file, or more than ``max_pixels``."""
    with _opened(source, max_pixels) as image:
        return image.size


def open_grayscale(source: str | os.PathLike[str] | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read a PNG, JPEG or BMP file (a path, or its bytes) as 8-bit grayscale, transparent areas as white paper.

    The size is checked from the header before any pixel is decoded: a file of more than ``max_pixels`` (a
    decompression bomb: a few hundred KB of PNG can claim 30,000 × 30,000 pixels) is refused without the time
    and memory decoding it would take. A larger side than ``WORKING_SIDE`` is reduced while decoding (a JPEG is
    decoded at 1/2, 1/4 or 1/8 scale). ``ImageError`` says what is wrong with a file that is refused or unreadable.
    """
    with _opened(source, max_pixels) as image:
        try:
            image.draft("L", (WORKING_SIDE, WORKING_SIDE))  # JPEG: grey, and scaled down, straight from the decoder
            image.thumbnail((WORKING_SIDE, WORKING_SIDE))
            ImageOps.exif_transpose(image, in_place=True)  # phone photos store their rotation in EXIF
            return flatten_alpha(eight_bit(image)).convert("L")
        except Exception as error:  # noqa: BLE001  (a malformed file makes decoders raise nearly anything)
            raise ImageError(
                f"not a readable image file: its pixels cannot be decoded ({type(error).__name__})"
            ) from None


@contextmanager
def _opened(source: str | os.PathLike[str] | bytes, max_pixels: int) -> Iterator[Image.Image]:
    """The image file opened (its header read, no pixel decoded) and its size checked against ``max_pixels``."""
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as error:  # PIL's own, higher limit: it refuses such files while opening
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        count = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise ImageError(f"the image claims {count}, more than the {max_pixels:,} allowed (max_pixels)") from None
    except Exception as error:  # noqa: BLE001  (not one of IMAGE_FORMATS, or a header a decoder chokes on)
        raise ImageError(f"not a readable image file: PNG, JPEG and BMP are read ({type(error).__name__})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"the image is {width:,} × {height:,} pixels, more than the {max_pixels:,} allowed (max_pixels)"
            )
        check_digit_size(width, height, min(1.0, WORKING_SIDE / max(width, height)))
        yield image


def check_digit_size(width: int, height: int, scale: float = 1.0) -> None:
    """An ``ImageError`` unless the image, read at ``scale`` (a file's reduction to ``WORKING_SIDE``), keeps at least
    ``MIN_SIDE`` pixels a side."""
    if min(width, height) * scale < MIN_SIDE:
        reduced = f" once its long side is reduced to {WORKING_SIDE:,}" if scale < 1 else ""
        raise ImageError(
            f"the image is {width:,} × {height:,} pixels: a digit needs at least {MIN_SIDE} pixels a side{reduced}"
        )


def eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grey image (a PNG: Pillow's mode I;16, or I) scaled to 8 bits; Pillow's ``convert("L")`` would
    clip every level above 255 to white instead."""
    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        return image
    levels = np.asarray(image).astype(np.float32) / 257  # 65535 → 255
    return Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8))


def flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite an image with transparency onto white, so transparent paper is not read as black ink."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] == 255:  # opaque after all (a canvas drawing): nothing to composite
            return rgba
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba)
    return image


def to_mnist(image: ImageInput, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A (28, 28) uint8 array of the digit, placed like MNIST's: white ink on black, fitted in 20 × 20, centred by mass.

    ``image`` is a file path, the bytes of an image file, a PIL image or an array (H×W grayscale or H×W×3 RGB).
    An image of 28 × 28 pixels (array, file or PIL image) is MNIST's format already: it comes back as it is, in its
    own polarity (the model input standardises it: ``mnist_cnn.data.pixels.standardize``); a 28 × 28 array of
    uint8 0-255 or float 0-1 pixels, see ``mnist_cnn.data.pixels``. Files are read with ``open_grayscale``'s
    ``max_pixels`` limit. A ``ValueError`` (``ImageError`` for a file) says why an image cannot be read.
    """
    if isinstance(image, (np.ndarray, torch.Tensor)) and tuple(image.shape) == (SIZE, SIZE):
        return as_uint8(image_batch(image)[0, 0]).numpy()
    pixels = _grayscale_pixels(image, max_pixels)
    if pixels.shape == (SIZE, SIZE):  # MNIST's own size: formatted already, as a 28 × 28 array is
        if pixels.min() == pixels.max():
            raise ValueError(NO_DIGIT)
        return pixels.copy()  # the caller's own, writable array
    paper = flat_paper(pixels)
    if paper is not None:
        pixels = _clean_working_copy(pixels, paper)
    ink = find_ink(pixels.astype(np.float32))
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    if len(rows) == 0:
        raise ValueError(NO_DIGIT)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return _centre_by_mass(_fit_box(crop))


def as_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as they are; float pixels in [0, 1] scaled to 0-255 and rounded."""
    return pixels if pixels.dtype == torch.uint8 else pixels.mul(255).round_().to(torch.uint8)


def _grayscale_pixels(image: ImageInput, max_pixels: int) -> np.ndarray:
    """The image's grey levels, uint8 0-255, whatever the input: a clean image is reduced before it becomes float."""
    if isinstance(image, (str, os.PathLike, bytes)):
        image = open_grayscale(image if isinstance(image, bytes) else Path(image), max_pixels)
    elif isinstance(image, Image.Image):
        check_digit_size(*image.size)
        image = flatten_alpha(image).convert("L")
    else:
        pixels = checked_pixels(torch.as_tensor(np.array(image))).numpy()
        array = pixels.astype(np.float32) * (255.0 if pixels.dtype != np.uint8 else 1.0)
        if array.ndim == 3 and array.shape[2] in (3, 4):
            array = array[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as PIL's "L"
        if array.ndim != 2:
            raise ValueError(f"an image array must be H×W or H×W×3, got shape {array.shape}")
        check_digit_size(array.shape[1], array.shape[0])
        return np.round(array).astype(np.uint8)  # as a file of the same pixels would give them
    return np.asarray(image)


def _clean_working_copy(pixels: np.ndarray, paper: float) -> np.ndarray:
    """A clean image (flat ``paper``: a drawing, a rendering) reduced by block means so that its ink spans about
    ``CLEAN_INK_SIDE`` pixels, for ``find_ink``: the digit is fitted to 20 pixels anyway, and a smaller copy costs
    less. The span leaves out ``SPECKS`` of the ink at each end, so that specks do not change the reduction. The
    uint8 pixels are reduced as they are (the means rounded), before any float copy of the whole image."""
    if max(pixels.shape) < 2 * CLEAN_INK_SIDE:
        return pixels
    ink = pixels != paper
    factor = max(_span(ink.sum(axis=1)), _span(ink.sum(axis=0))) // CLEAN_INK_SIDE
    return np.asarray(Image.fromarray(pixels).reduce(factor)) if factor > 1 else pixels  # mode "L"


def _span(counts: np.ndarray) -> int:
    """How many rows (or columns) hold the ink, given each one's count of ink pixels, less ``SPECKS`` at each end."""
    cumulative = np.cumsum(counts)
    first, last = np.searchsorted(cumulative, [SPECKS * cumulative[-1], (1 - SPECKS) * cumulative[-1]])
    return int(last - first) + 1


def _fit_box(crop: np.ndarray) -> np.ndarray:
    """Resize so the longer side is 20 pixels, keeping the aspect ratio (anti-aliased)."""
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)  # mode "F"
    return np.clip(np.asarray(resized), 0.0, 1.0)


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Paste ``digit`` into a 28×28 field so that its centre of mass lands on the field's centre."""
    rows, cols = np.indices(digit.shape)
    mass = digit.sum()
    centre = (rows * digit).sum() / mass, (cols * digit).sum() / mass
    top, left = round(SIZE / 2 - centre[0]), round(SIZE / 2 - centre[1])  # MNIST's mass centres average (14, 14)
    top = min(max(top, 0), SIZE - digit.shape[0])  # keep the whole digit inside the field
    left = min(max(left, 0), SIZE - digit.shape[1])
    field = np.zeros((SIZE, SIZE), dtype=np.float32)
    field[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return np.round(field * 255).astype(np.uint8)


def image_files(pattern: str) -> list[Path]:
    """The image files an input names: a file, a folder (searched recursively) or a glob; may be empty."""
    path = Path(pattern).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(Path(match) for match in glob.glob(str(path), recursive=True) if Path(match).is_file())
