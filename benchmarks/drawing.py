"""MNIST digits redrawn as users' images: dark ink on white paper, of any size, at any place (for the benchmarks
and the tests of the preprocessing)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def draw_on_paper(
    digit: np.ndarray,
    canvas: tuple[int, int],
    height: int,
    corner: tuple[int, int],
    stroke: ImageFilter.Filter | None = None,
) -> Image.Image:
    """An MNIST digit redrawn as a user's image: black ink on white paper of size ``canvas`` (width, height),
    cropped to the ink, scaled to ``height`` pixels, pasted at ``corner``, strokes thickened or thinned by
    ``stroke`` (e.g. ``ImageFilter.MaxFilter(7)``)."""
    rows, cols = np.nonzero(digit)
    ink = Image.fromarray(digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    ink = ink.resize((max(1, round(ink.width * height / ink.height)), height), Image.Resampling.BICUBIC)
    if stroke is not None:
        ink = ink.filter(stroke)
    page = Image.new("L", canvas, 255)
    page.paste(Image.eval(ink, lambda value: 255 - value), corner)
    return page


def paper_png(digit: np.ndarray) -> bytes:
    """A PNG file of an MNIST-formatted digit drawn black on 280×280 white paper, like the page's canvas."""
    rows, cols = np.nonzero(digit)
    ink_height, ink_width = np.ptp(rows) + 1, np.ptp(cols) + 1
    height = min(200, round(200 * ink_height / ink_width))  # the ink fits a 200×200 box in the middle
    width = round(ink_width * height / ink_height)
    buffer = io.BytesIO()
    draw_on_paper(digit, (280, 280), height, ((280 - width) // 2, (280 - height) // 2)).save(buffer, "PNG")
    return buffer.getvalue()
