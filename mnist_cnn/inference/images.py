"""Turn a user's digit image (any size, either polarity) into a 28×28 MNIST-formatted uint8 array.

MNIST's own recipe (LeCun et al.): the digit is size-normalised to fit a 20×20 box keeping its aspect
ratio, anti-aliased, then placed in a 28×28 field so that its centre of mass sits at the centre.
Written by hand because torchvision's transforms resize whole images, not the ink inside them.
"""

from __future__ import annotations

import glob
import io
import os
import re
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from mnist_cnn.data.pixels import SIZE, checked_pixels, image_batch
from mnist_cnn.inference.ink import find_ink

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray, torch.Tensor]  # bytes: an encoded file
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
BOX = 20  # MNIST: a 20×20 box inside the 28×28 field
INK_THRESHOLD = 0.2  # the digit's box holds the pixels with at least this much ink (of full ink, see find_ink)
MAX_PIXELS = 50_000_000  # larger than a 48-megapixel photo; a file claiming more is refused from its header


def open_grayscale(source: str | os.PathLike[str] | bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read an image file (a path, or its bytes) as 8-bit grayscale, transparent areas as white paper.

    The size is checked from the header before any pixel is decoded: a file of more than ``max_pixels`` (a
    decompression bomb: a few hundred KB of PNG can claim 30,000 × 30,000 pixels) is refused without the time
    and memory decoding it would take. ``ValueError`` says what is wrong with a file that is refused or unreadable.
    """
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ValueError(
                    f"the image is {width:,} × {height:,} pixels, more than the {max_pixels:,} allowed (max_pixels)"
                )
            image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
            return flatten_alpha(image).convert("L")
    except Image.DecompressionBombError as error:  # PIL's own, higher limit: it refuses such files while opening
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        count = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        raise ValueError(f"the image claims {count}, more than the {max_pixels:,} allowed (max_pixels)") from None
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"not a readable image file ({type(error).__name__})") from None


def flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite an image with transparency onto white, so transparent paper is not read as black ink."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba)
    return image


def to_mnist(image: ImageInput, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A (28, 28) uint8 array of white ink on black, centred like MNIST's digits.

    ``image`` is a file path, the bytes of an image file, a PIL image or an array (H×W grayscale or H×W×3 RGB).
    A (28, 28) array is taken as already MNIST-formatted (uint8 0-255 or float 0-1 pixels, see
    ``mnist_cnn.data.pixels``). Files are read with ``open_grayscale``'s ``max_pixels`` limit.
    """
    if isinstance(image, (np.ndarray, torch.Tensor)) and tuple(image.shape) == (SIZE, SIZE):
        return as_uint8(image_batch(image)[0, 0]).numpy()
    pixels = _grayscale_pixels(image, max_pixels)
    ink = find_ink(pixels)
    rows, cols = np.nonzero(ink > INK_THRESHOLD)
    if len(rows) == 0:
        raise ValueError("the image holds no digit: it is blank or has no contrast")
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return _centre_by_mass(_fit_box(crop))


def as_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as they are; float pixels in [0, 1] scaled to 0-255 and rounded."""
    return pixels if pixels.dtype == torch.uint8 else pixels.mul(255).round_().to(torch.uint8)


def _grayscale_pixels(image: ImageInput, max_pixels: int) -> np.ndarray:
    if isinstance(image, (str, os.PathLike, bytes)):
        image = open_grayscale(image if isinstance(image, bytes) else Path(image), max_pixels)
    elif isinstance(image, Image.Image):
        image = flatten_alpha(image).convert("L")
    else:
        pixels = checked_pixels(torch.as_tensor(np.array(image))).numpy()
        array = pixels.astype(np.float32) * (255.0 if pixels.dtype != np.uint8 else 1.0)
        if array.ndim == 3 and array.shape[2] in (3, 4):
            array = array[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as PIL's "L"
        if array.ndim != 2:
            raise ValueError(f"an image array must be H×W or H×W×3, got shape {array.shape}")
        return array
    return np.asarray(image, dtype=np.float32)


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


def draw_on_paper(
    digit: np.ndarray,
    canvas: tuple[int, int],
    height: int,
    corner: tuple[int, int],
    stroke: ImageFilter.Filter | None = None,
) -> Image.Image:
    """An MNIST digit redrawn as a user's image: black ink on white paper of size ``canvas`` (width, height),
    cropped to the ink, scaled to ``height`` pixels, pasted at ``corner``, strokes thickened or thinned by
    ``stroke`` (e.g. ``ImageFilter.MaxFilter(7)``). For tests and benchmarks of the preprocessing."""
    rows, cols = np.nonzero(digit)
    ink = Image.fromarray(digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    ink = ink.resize((max(1, round(ink.width * height / ink.height)), height), Image.Resampling.BICUBIC)
    if stroke is not None:
        ink = ink.filter(stroke)
    page = Image.new("L", canvas, 255)
    page.paste(Image.eval(ink, lambda value: 255 - value), corner)
    return page
