"""A small ResNet: three groups of basic residual blocks with batch norm, global average pooling."""

from __future__ import annotations

import torch
import torch.nn as nn

from mnist_cnn.models.layers import Flatten, init_like_keras
from mnist_cnn.models.registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


@register_model("resnet", "Small ResNet: stem + 3 groups (widths w, 2w, 4w) of basic residual blocks with batch norm")
class ResNet(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        blocks_per_group: int = 2,
        base_width: int = 42,
    ) -> None:
        super().__init__()
        if blocks_per_group < 1 or base_width < 1:
            raise ValueError(f"blocks_per_group and base_width must be >= 1, got {blocks_per_group}, {base_width}")
        widths = (base_width, 2 * base_width, 4 * base_width)
        layers: list[nn.Module] = [
            nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        in_channels = widths[0]
        for group, width in enumerate(widths):
            for block in range(blocks_per_group):
                stride = 2 if group > 0 and block == 0 else 1  # 28 -> 14 -> 7
                layers.append(BasicBlock(in_channels, width, stride))
                in_channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), Flatten())
        self.classifier = nn.Linear(in_channels, num_classes)
        self.apply(init_like_keras)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
