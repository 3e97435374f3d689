"""Classify images in any form a user has them: files, their bytes, PIL images, arrays of any size or of MNIST's."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from mnist_cnn.data.pixels import SIZE, image_batch
from mnist_cnn.inference.classify import Predictions, classify
from mnist_cnn.preprocess import MAX_PIXELS
from mnist_cnn.preprocess.images import ImageInput, to_mnist


def is_mnist_array(images: Any) -> bool:
    """Whether ``images`` is an array of MNIST-formatted digits: (28, 28), (N, 28, 28), (N, 1, 28, 28) or
    (N, 28, 28, 1)."""
    if not isinstance(images, (np.ndarray, torch.Tensor)):
        return False
    shape = tuple(images.shape)
    return shape[-2:] == (SIZE, SIZE) and len(shape) in (2, 3, 4) or shape[-3:] == (SIZE, SIZE, 1)


def predict_images(
    model: nn.Module,
    images: ImageInput | Sequence[ImageInput],
    batch_size: int = 1024,
    normalized: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> Predictions:
    """Classify ``images`` with ``model``.

    An array of 28 × 28 digits (see ``is_mnist_array``; uint8 0-255 or float 0-1 pixels, or normalised floats
    with ``normalized=True``) is classified as it is, standardised first like any pixels (dark ink on light paper
    inverted, a lifted background brought down to black: ``mnist_cnn.data.pixels.standardize``). Anything else, one
    image or a list of them (file paths or bytes, PIL images, H×W or H×W×3 arrays of any size, either polarity), is
    first preprocessed like MNIST (see ``mnist_cnn.preprocess.images.to_mnist``; files over ``max_pixels`` are
    refused from their header).
    """
    if is_mnist_array(images):
        return classify(model, image_batch(images, normalized), batch_size, normalized)
    single = (str, os.PathLike, bytes, Image.Image, np.ndarray, torch.Tensor)
    image_list = [images] if isinstance(images, single) else images
    if not image_list:
        raise ValueError("no images to predict")
    pixels = torch.from_numpy(np.stack([to_mnist(image, max_pixels) for image in image_list]))
    return classify(model, pixels.unsqueeze(1), batch_size)
