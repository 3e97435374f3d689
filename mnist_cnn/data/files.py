"""The four MNIST idx files: where they live, downloading them, and the fixed-seed train/val/test split."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import NamedTuple

import torch

from mnist_cnn.data.idx import read_idx_pair
from mnist_cnn.data.pixels import normalize
from mnist_cnn.errors import ConfigError, MNISTDataError

ENV_VAR = "MNIST_DATA_DIR"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

Split = tuple[torch.Tensor, torch.Tensor]


class MNISTSplits(NamedTuple):
    """(images, labels) for each split; images (N, 1, 28, 28), labels int64 (N,)."""

    train: Split
    val: Split
    test: Split


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``root`` if given, else ``$MNIST_DATA_DIR``, else ``./data``."""
    return Path(root or os.environ.get(ENV_VAR) or "data").expanduser()


def raw_folder(root: str | os.PathLike[str] | None = None) -> Path:
    """Where the four idx files live, in torchvision's layout: ``<root>/MNIST/raw``."""
    return resolve_root(root) / "MNIST" / "raw"


def ensure_mnist(
    root: str | os.PathLike[str] | None = None, download: bool = True, splits: tuple[str, ...] = ("train", "test")
) -> Path:
    """Return the raw folder once the files of ``splits`` are there, downloading them (through torchvision) when
    missing and allowed."""
    folder = raw_folder(root)
    missing = [name for split in splits for name in FILES[split] if not (folder / name).is_file()]
    if not missing:
        return folder
    fix = (
        f"Fix: put the MNIST idx files in {folder}, or point data.root=<dir> (or ${ENV_VAR}) "
        "at a folder that holds MNIST/raw/"
    )
    if not download:
        raise MNISTDataError(f"MNIST files not found in {folder} (missing: {', '.join(missing)}). {fix}.")
    from torchvision.datasets import MNIST  # heavy import, only needed to download

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints every mirror it tries
            MNIST(str(resolve_root(root)), download=True)
    except Exception as error:  # any network or HTTP failure means the same thing to the user
        reason = str(error).splitlines()[0]
        raise MNISTDataError(
            f"MNIST files not found in {folder} and downloading them failed ({reason}). {fix}, "
            "or retry with network access."
        ) from None
    return folder


def split_indices(num_samples: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed-seed random (train, val) partition of ``range(num_samples)``."""
    if not 0 <= val_size < num_samples:
        raise ConfigError(
            f"data.val_size={val_size} is not allowed: the training file holds {num_samples} images, "
            f"use a number in [0, {num_samples})"
        )
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def read_train_split(
    root: str | os.PathLike[str] | None = None, val_size: int = 5000, split_seed: int = 42, download: bool = True
) -> tuple[Split, Split]:
    """The official 60k training files as uint8 (train, val), with ``val_size`` images held out."""
    folder = ensure_mnist(root, download, splits=("train",))
    images, labels = read_idx_pair(*(folder / name for name in FILES["train"]))
    train_idx, val_idx = split_indices(len(images), val_size, split_seed)
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def read_splits(
    root: str | os.PathLike[str] | None = None, val_size: int = 5000, split_seed: int = 42, download: bool = True
) -> MNISTSplits:
    """The official 60k/10k files as uint8 images, with ``val_size`` images of the 60k held out."""
    ensure_mnist(root, download)
    train, val = read_train_split(root, val_size, split_seed, download=False)
    return MNISTSplits(train, val, read_test_split(root, download=False))


def read_test_split(root: str | os.PathLike[str] | None = None, download: bool = True) -> Split:
    """The official 10k test images (uint8) and labels alone."""
    folder = ensure_mnist(root, download, splits=("test",))
    return read_idx_pair(*(folder / name for name in FILES["test"]))


def load_mnist(
    root: str | os.PathLike[str] | None = None, val_size: int = 5000, split_seed: int = 42, download: bool = True
) -> MNISTSplits:
    """Normalised float tensors for notebooks: ``train, val, test = load_mnist()``."""
    splits = read_splits(root, val_size, split_seed, download)
    return MNISTSplits(*((normalize(images), labels) for images, labels in splits))
