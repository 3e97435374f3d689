"""Reading and validating MNIST's idx files.

Written by hand rather than through ``torchvision.datasets.MNIST`` because that class reads files
without checking their sizes and gives an opaque error (or silently wrong data) on a truncated file.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from mnist_cnn.errors import MNISTDataError

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def _read(path: Path, magic: int, header_ints: int) -> tuple[list[int], torch.Tensor]:
    if not path.is_file():
        raise MNISTDataError(f"missing MNIST file {path}")
    raw = bytearray(path.read_bytes())
    found_magic = int.from_bytes(raw[:4], "big")
    if len(raw) >= 4 and found_magic != magic:
        raise MNISTDataError(
            f"{path} is not an MNIST idx file: magic number {found_magic:#010x}, expected {magic:#010x}"
        )
    header_size = 4 * header_ints
    if len(raw) < header_size:
        raise MNISTDataError(f"{path} is truncated: {len(raw)} bytes, shorter than its {header_size}-byte header")
    header = [int.from_bytes(raw[i : i + 4], "big") for i in range(0, header_size, 4)]
    expected = header_size + math.prod(header[1:])
    if len(raw) != expected:
        raise MNISTDataError(
            f"{path} has {len(raw)} bytes but its header {header[1:]} implies {expected}: "
            "the file is truncated or corrupted; delete it and download it again"
        )
    return header[1:], torch.frombuffer(raw, dtype=torch.uint8, offset=header_size)


def read_idx_images(path: Path) -> torch.Tensor:
    """Images as a ``uint8`` tensor of shape (N, 1, rows, cols)."""
    (count, rows, cols), pixels = _read(path, IMAGES_MAGIC, 4)
    return pixels.view(count, 1, rows, cols)


def read_idx_labels(path: Path, num_classes: int = 10) -> torch.Tensor:
    """Labels as an ``int64`` tensor of shape (N,), checked to lie in ``[0, num_classes)``."""
    _, labels = _read(path, LABELS_MAGIC, 2)
    if labels.numel() and int(labels.max()) >= num_classes:
        raise MNISTDataError(f"{path} holds label {int(labels.max())}, outside 0-{num_classes - 1}")
    return labels.long()


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of one split, checked to have the same count."""
    images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise MNISTDataError(
            f"{images_path.name} has {len(images)} images but {labels_path.name} has {len(labels)} labels"
        )
    return images, labels


def write_idx(path: Path, data: torch.Tensor) -> None:
    """Write a ``uint8`` tensor as an idx file (images: (N, rows, cols) or (N, 1, rows, cols); labels: (N,))."""
    data = data.to(torch.uint8).contiguous()
    shape = [data.shape[0], *data.shape[-2:]] if data.dim() > 1 else [data.shape[0]]
    magic = IMAGES_MAGIC if len(shape) == 3 else LABELS_MAGIC
    header = b"".join(value.to_bytes(4, "big") for value in [magic, *shape])
    path.write_bytes(header + data.numpy().tobytes())
