"""Two conv layers and a dense head: the Keras MNIST example network."""

from __future__ import annotations

import torch
import torch.nn as nn

from mnist_cnn.models.layers import Flatten, check_dropout, flat_features, init_like_keras
from mnist_cnn.models.registry import register_model


@register_model("simple_cnn", "Conv32-Pool-Conv64-Pool-Dense128-Dropout-Dense: the Keras MNIST example CNN")
class SimpleCNN(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        dropout_rate: float = 0.5,
        base_width: int = 32,
    ) -> None:
        super().__init__()
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}")
        # Conv-ReLU-MaxPool computed as Conv-MaxPool-ReLU: ReLU is monotonic, so both orders give the same values
        # and gradients, and ReLU then runs on a quarter of the elements.
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], base_width, kernel_size=3),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(base_width, 2 * base_width, kernel_size=3),
            nn.MaxPool2d(2),
            nn.ReLU(),
            Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(flat_features(self.features, input_shape), 128),
            nn.ReLU(),
            nn.Dropout(check_dropout(dropout_rate)),
            nn.Linear(128, num_classes),
        )
        self.apply(init_like_keras)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
