"""A deeper VGG-style CNN with LeakyReLU, batch norm and dropout after every stage."""

from __future__ import annotations

import torch
import torch.nn as nn

from mnist_cnn.models.layers import Flatten, check_dropout, flat_features, init_like_keras
from mnist_cnn.models.registry import register_model


def _conv(in_channels: int, out_channels: int, pool: bool = False) -> list[nn.Module]:
    """Conv-BN-LeakyReLU, then 2×2 max-pooling if ``pool``: computed as Conv-BN-MaxPool-LeakyReLU, since LeakyReLU
    is monotonic (the same values and gradients, with the activation on a quarter of the elements)."""
    conv = [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(out_channels)]
    return [*conv, *([nn.MaxPool2d(2)] if pool else []), nn.LeakyReLU(0.1)]


@register_model(
    "custom_cnn", "Conv32-Conv32-Pool-Conv64-Conv64-Pool-Conv128-Pool-Dense128 with LeakyReLU, batch norm, dropout"
)
class CustomCNN(nn.Module):
    def __init__(
        self, input_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10, dropout_rate: float = 0.4
    ) -> None:
        super().__init__()
        check_dropout(dropout_rate)
        self.features = nn.Sequential(
            *_conv(input_shape[0], 32), *_conv(32, 32, pool=True), nn.Dropout(dropout_rate),
            *_conv(32, 64), *_conv(64, 64, pool=True), nn.Dropout(dropout_rate),
            *_conv(64, 128, pool=True), nn.Dropout(dropout_rate),
            Flatten(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(flat_features(self.features, input_shape), 128),
            nn.LeakyReLU(0.1),
            nn.BatchNorm1d(128),
            nn.Dropout(dropout_rate),
            nn.Linear(128, num_classes),
        )
        self.apply(init_like_keras)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
