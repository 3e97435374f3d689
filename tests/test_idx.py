from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnist_cnn.data.idx import read_idx_images, read_idx_labels, read_idx_pair, write_idx
from mnist_cnn.errors import MNISTDataError


def test_round_trip(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 9])
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels", labels)
    read_images, read_labels = read_idx_pair(tmp_path / "images", tmp_path / "labels")
    assert read_images.shape == (7, 1, 28, 28) and torch.equal(read_images[:, 0], images)
    assert read_labels.dtype == torch.int64 and torch.equal(read_labels, labels)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "images"
    write_idx(path, torch.zeros(5, 28, 28, dtype=torch.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MNISTDataError, match="truncated or corrupted"):
        read_idx_images(path)


def test_file_shorter_than_header(tmp_path: Path) -> None:
    (tmp_path / "labels").write_bytes(b"\x00\x00")
    with pytest.raises(MNISTDataError, match="shorter than its 8-byte header"):
        read_idx_labels(tmp_path / "labels")


def test_wrong_magic_number(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels", torch.zeros(5, dtype=torch.uint8))
    with pytest.raises(MNISTDataError, match="not an MNIST idx file: magic number 0x00000801, expected 0x00000803"):
        read_idx_images(tmp_path / "labels")


def test_count_mismatch(tmp_path: Path) -> None:
    write_idx(tmp_path / "images", torch.zeros(5, 28, 28, dtype=torch.uint8))
    write_idx(tmp_path / "labels", torch.zeros(4, dtype=torch.uint8))
    with pytest.raises(MNISTDataError, match="has 5 images but labels has 4 labels"):
        read_idx_pair(tmp_path / "images", tmp_path / "labels")


def test_label_out_of_range(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels", torch.tensor([1, 2, 12]))
    with pytest.raises(MNISTDataError, match="holds label 12, outside 0-9"):
        read_idx_labels(tmp_path / "labels")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MNISTDataError, match="missing MNIST file"):
        read_idx_labels(tmp_path / "absent")
