"""What a client sends, turned into MNIST-formatted pixels, or a ``BadRequest`` that says what was wrong.

Image files (PNG, JPEG, BMP; any size, either polarity) go through ``to_mnist``, the preprocessing of
``predict_images``; their sizes are checked from their headers (each against ``max_pixels``, all of a request
together against ``max_request_pixels``: ``claimed_pixels``) before any is decoded (``file_images``). Pixel lists
are taken as MNIST-formatted already; their count and shape are checked before an array is built. Free of any web
framework: the server reads the body, this reads it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from mnist_cnn.data.pixels import SIZE
from mnist_cnn.preprocess.images import ImageError, image_size, to_mnist

FORMS = (
    'send the images as multipart form fields named "file", or as JSON: {"images": [<base64 image file>, ...]} '
    'or {"pixels": [<28×28 list of 0-255 per image>, ...]}'
)
PIXEL_RULE = '"pixels" must be a list of images, each 28 lists of 28 whole numbers in 0-255'

Files = list[tuple[str, bytes]]  # (name for messages, the file's bytes)


class BadRequest(Exception):
    """A request the server refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def claimed_pixels(files: Files, max_pixels: int, max_request_pixels: int) -> int:
    """The pixels image files claim together, read from their headers alone; ``BadRequest`` naming a file that is
    empty, unreadable or over ``max_pixels``, or (413) if together they claim more than ``max_request_pixels``."""
    claimed = 0
    for name, data in files:
        if not data:
            raise BadRequest(f"{name} is empty: send the bytes of a PNG, JPEG or BMP file")
        try:
            width, height = image_size(data, max_pixels)
        except ImageError as error:
            raise BadRequest(f"{name}: {error}") from None
        claimed += width * height
    if claimed > max_request_pixels:
        raise BadRequest(
            f"the images claim {claimed:,} pixels together, more than the {max_request_pixels:,} allowed in one "
            "request (max_request_pixels): send fewer or smaller images per request",
            status=413,
        )
    return claimed


def file_images(files: Files, max_pixels: int) -> np.ndarray:
    """uint8 (N, 28, 28) of image files (their sizes checked by ``claimed_pixels``); one that cannot be read
    refuses the whole request, naming it."""
    digits = []
    for name, data in files:
        try:
            digits.append(to_mnist(data, max_pixels))
        except ValueError as error:
            raise BadRequest(f"{name}: {error}") from None
    return np.stack(digits)


def read_json(body: bytes, max_images: int) -> np.ndarray | Files:
    """A JSON body: uint8 (N, 28, 28) of ``{"pixels": [28×28 lists]}``, or the files of ``{"images": [base64]}``."""
    try:
        payload = json.loads(body)
    except RecursionError:  # Python's parser stops at its recursion limit (about 1,000 levels)
        raise BadRequest(f"the JSON is nested too deeply to be a request: {FORMS}") from None
    except json.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON ({error}): {FORMS}") from None
    except ValueError:  # not UTF-8, or an integer of more than 4,300 digits (Python's limit for int())
        raise BadRequest(f"the body is not UTF-8 JSON, or holds a number too long to be a pixel: {FORMS}") from None
    if not isinstance(payload, dict) or ("images" in payload) == ("pixels" in payload):
        raise BadRequest(f'the JSON must be an object with either "images" or "pixels": {FORMS}')
    if "images" in payload:
        return decoded_files(payload["images"], max_images)
    return pixel_images(payload["pixels"], max_images)


def decoded_files(items: Any, max_images: int) -> Files:
    """The files of a JSON ``images`` list: base64 strings, with or without a ``data:image/...;base64,`` prefix."""
    if not isinstance(items, list) or not items:
        raise BadRequest('"images" must be a non-empty list of base64-encoded image files')
    check_count(len(items), max_images)
    files = []
    for index, item in enumerate(items):
        name = f"images[{index}]"
        if not isinstance(item, str):
            raise BadRequest(f"{name} must be a string: a base64-encoded PNG, JPEG or BMP file")
        encoded = item.partition(",")[2] if item.startswith("data:") else item
        try:
            files.append((name, base64.b64decode(encoded, validate=True)))
        except (binascii.Error, ValueError) as error:
            raise BadRequest(f"{name} is not valid base64 ({error})") from None
    return files


def pixel_images(pixels: Any, max_images: int) -> np.ndarray:
    """A JSON ``pixels`` list as uint8 (N, 28, 28): its count and shape checked first, then its values."""
    if not isinstance(pixels, list) or not pixels:
        raise BadRequest(PIXEL_RULE)
    check_count(len(pixels), max_images)
    for index, image in enumerate(pixels):
        if not (isinstance(image, list) and len(image) == SIZE and all(_is_row(row) for row in image)):
            raise BadRequest(f"{PIXEL_RULE}: pixels[{index}] is not 28 lists of 28")
    try:
        array = np.array(pixels)
    except ValueError:  # lists where numbers should be
        array = np.array(None)
    if array.shape != (len(pixels), SIZE, SIZE) or array.dtype.kind not in "iuf":  # "O": None, text, huge numbers
        raise BadRequest(f"{PIXEL_RULE}: found values that are not numbers, or too large for pixels")
    low, high = array.min().item(), array.max().item()
    if not 0 <= low <= high <= 255:
        raise BadRequest(f"{PIXEL_RULE}: found values from {low} to {high}")
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise BadRequest(f"{PIXEL_RULE}: found fractions (JSON pixels are 0-255, not 0-1)")
    return array.astype(np.uint8)


def _is_row(row: Any) -> bool:
    return isinstance(row, list) and len(row) == SIZE


def check_count(count: int, max_images: int) -> None:
    if count > max_images:
        raise BadRequest(f"{count} images in one request, more than the {max_images} allowed (max_images)")
