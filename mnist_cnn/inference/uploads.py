"""What a client sends, turned into MNIST-formatted pixels, or a ``BadRequest`` that says what was wrong.

Image files (PNG, JPEG, BMP; any size, either polarity) go through ``to_mnist``, the preprocessing of
``predict_images``, with its ``max_pixels`` check from the header; pixel lists are taken as MNIST-formatted
already and checked by ``image_batch``. Free of any web framework: the server reads the body, this reads it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from mnist_cnn.data.pixels import image_batch
from mnist_cnn.inference.images import to_mnist

FORMS = (
    'send the images as multipart form fields named "file", or as JSON: {"images": [<base64 image file>, ...]} '
    'or {"pixels": [<28×28 list of 0-255 per image>, ...]}'
)


class BadRequest(Exception):
    """A request the server refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def file_images(files: list[tuple[str, bytes]], max_pixels: int) -> np.ndarray:
    """uint8 (N, 28, 28) of image files given as (name for messages, bytes)."""
    digits = []
    for name, data in files:
        if not data:
            raise BadRequest(f"{name} is empty: send the bytes of a PNG, JPEG or BMP file")
        try:
            digits.append(to_mnist(data, max_pixels))
        except ValueError as error:
            raise BadRequest(f"{name}: {error}") from None
    return np.stack(digits)


def json_images(body: bytes, max_images: int, max_pixels: int) -> np.ndarray:
    """uint8 (N, 28, 28) of a JSON body: ``{"images": [base64 files]}`` or ``{"pixels": [28×28 lists]}``."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON ({error}): {FORMS}") from None
    if not isinstance(payload, dict) or ("images" in payload) == ("pixels" in payload):
        raise BadRequest(f'the JSON must be an object with either "images" or "pixels": {FORMS}')
    if "images" in payload:
        return file_images(decoded_files(payload["images"], max_images), max_pixels)
    return pixel_images(payload["pixels"], max_images)


def decoded_files(items: Any, max_images: int) -> list[tuple[str, bytes]]:
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
    """A JSON ``pixels`` list as uint8 (N, 28, 28): whole numbers in 0-255, one 28×28 nested list per image."""
    rule = '"pixels" must be a list of images, each 28 lists of 28 whole numbers in 0-255'
    if not isinstance(pixels, list) or not pixels:
        raise BadRequest(rule)
    try:
        array = np.array(pixels)
    except ValueError:  # ragged nesting
        raise BadRequest(f"{rule}: the lists are of unequal lengths") from None
    if array.dtype.kind not in "iuf":
        raise BadRequest(f"{rule}: found values that are not numbers")
    if array.dtype.kind == "f":  # JSON 255.0 is a pixel value, not a float pixel in 0-1
        if not np.all(np.isfinite(array) & (array == np.round(array)) & (array >= 0) & (array <= 255)):
            raise BadRequest(f"{rule}: found fractional or out-of-range values")
        array = array.astype(np.uint8)
    try:
        batch = image_batch(array)
    except ValueError as error:
        raise BadRequest(f'"pixels": {error}') from None
    check_count(len(batch), max_images)
    return batch[:, 0].numpy()


def check_count(count: int, max_images: int) -> None:
    if count > max_images:
        raise BadRequest(f"{count} images in one request, more than the {max_images} allowed (max_images)")
