"""LeNet-5 (LeCun et al. 1998) with tanh activations and average pooling."""

from __future__ import annotations

import torch
import torch.nn as nn

from mnist_cnn.models.layers import AvgPool2d, Flatten, flat_features, init_like_keras
from mnist_cnn.models.registry import register_model


@register_model("lenet5", "LeNet-5: Conv6-AvgPool-Conv16-AvgPool-120-84-10 with tanh, 28x28 padded to 32x32 geometry")
class LeNet5(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 6, kernel_size=5, padding=2),  # 28x28 + padding = the classic 32x32
            nn.Tanh(),
            AvgPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.Tanh(),
            AvgPool2d(2),
            Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(flat_features(self.features, input_shape), 120),
            nn.Tanh(),
            nn.Linear(120, 84),
            nn.Tanh(),
            nn.Linear(84, num_classes),
        )
        self.apply(init_like_keras)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
