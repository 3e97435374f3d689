"""Classify a user's own digit images: MNIST preprocessing, batched inference, top-k."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from mnist_cnn.images import SIZE, ImageInput, to_mnist
from mnist_cnn.pixels import normalize


class Predictions(NamedTuple):
    """``labels`` (N,) predicted digits and ``probabilities`` (N, 10) softmax outputs, on the CPU."""

    labels: torch.Tensor
    probabilities: torch.Tensor

    def top_k(self, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, k) most probable digits and their probabilities, most probable first."""
        probabilities, digits = self.probabilities.topk(k, dim=1)
        return digits, probabilities


def as_image_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """One image or many: a path, PIL image or array is one image; an (N, 28, 28) array is N MNIST images."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, np.ndarray) or torch.is_tensor(images):
        array = np.asarray(images)
        return list(array) if array.ndim == 3 and array.shape[1:] == (SIZE, SIZE) else [array]
    return list(images)


def predict_images(model: nn.Module, images: ImageInput | Sequence[ImageInput], batch_size: int = 1024) -> Predictions:
    """Preprocess ``images`` like MNIST (see ``mnist_cnn.images.to_mnist``) and classify them with ``model``."""
    image_list = as_image_list(images)
    if not image_list:
        raise ValueError("no images to predict")
    pixels = torch.from_numpy(np.stack([to_mnist(image) for image in image_list]))
    return classify(model, pixels, batch_size)


@torch.inference_mode()
def batched_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """(N, 10) float32 logits on the CPU of (N, 1, 28, 28) images, uint8 pixels or already normalised floats,
    computed in batches on the model's device in eval mode (the model's own mode is restored)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    try:
        batches = (batch.to(device) for batch in images.split(batch_size))
        inputs = (normalize(batch) if batch.dtype == torch.uint8 else batch.float() for batch in batches)
        return torch.cat([model(batch).float().cpu() for batch in inputs])
    finally:
        model.train(was_training)


def classify(model: nn.Module, pixels: torch.Tensor, batch_size: int = 1024) -> Predictions:
    """Class probabilities of (N, 28, 28) uint8 MNIST-formatted images, in batches on the model's device."""
    probabilities = batched_logits(model, pixels.unsqueeze(1), batch_size).softmax(dim=1)
    return Predictions(probabilities.argmax(dim=1), probabilities)
