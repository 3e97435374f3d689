"""MNIST as in-memory tensors: file discovery, the train/val/test split, and the LightningDataModule.

Batches are indexed whole from uint8 tensors (no per-sample ``Dataset``/collate work); they are
converted, augmented and normalised on the training device in ``on_after_batch_transfer``.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from mnist_cnn.augment import random_distortion
from mnist_cnn.idx import MNISTDataError, read_idx_pair
from mnist_cnn.pixels import normalize

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


def ensure_mnist(root: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    """Return the raw folder, downloading the files (through torchvision) when missing and allowed."""
    folder = raw_folder(root)
    missing = [name for pair in FILES.values() for name in pair if not (folder / name).is_file()]
    if not missing:
        return folder
    fix = (
        f"Fix: put the four MNIST idx files in {folder}, or point data.root=<dir> (or ${ENV_VAR}) "
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
        raise ValueError(f"val_size must be in [0, {num_samples}), got {val_size}")
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def read_splits(
    root: str | os.PathLike[str] | None = None, val_size: int = 5000, split_seed: int = 42, download: bool = True
) -> MNISTSplits:
    """The official 60k/10k files as uint8 images, with ``val_size`` images of the 60k held out."""
    folder = ensure_mnist(root, download)
    images, labels = read_idx_pair(*(folder / name for name in FILES["train"]))
    train_idx, val_idx = split_indices(len(images), val_size, split_seed)
    test = read_idx_pair(*(folder / name for name in FILES["test"]))
    return MNISTSplits((images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx]), test)


def read_test_split(root: str | os.PathLike[str] | None = None, download: bool = True) -> Split:
    """The official 10k test images (uint8) and labels alone."""
    folder = ensure_mnist(root, download)
    return read_idx_pair(*(folder / name for name in FILES["test"]))


def load_mnist(
    root: str | os.PathLike[str] | None = None, val_size: int = 5000, split_seed: int = 42, download: bool = True
) -> MNISTSplits:
    """Normalised float tensors for notebooks: ``train, val, test = load_mnist()``."""
    splits = read_splits(root, val_size, split_seed, download)
    return MNISTSplits(*((normalize(images), labels) for images, labels in splits))


class TensorBatches(Dataset[Split]):
    """Images and labels that a DataLoader indexes a whole batch at a time through ``__getitems__``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Split:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> Split:
        index = torch.as_tensor(indices, device=self.images.device)
        return self.images[index], self.labels[index]

    def to(self, device: torch.device) -> TensorBatches:
        return TensorBatches(self.images.to(device), self.labels.to(device))


def _whole_batch(batch: Split) -> Split:
    """collate_fn: ``__getitems__`` already returned the batch."""
    return batch


class MNISTDataModule(L.LightningDataModule):
    """Official MNIST split with a fixed-seed validation set, held in memory (on the GPU when training there)."""

    def __init__(
        self,
        root: str | None = None,
        download: bool = True,
        batch_size: int = 64,
        eval_batch_size: int = 1024,
        val_size: int = 5000,
        split_seed: int = 42,
        augment: bool = True,
        rotation_degrees: float = 10.0,
        shift_fraction: float = 0.1,
        zoom_fraction: float = 0.1,
        elastic_alpha: float = 0.0,
        elastic_sigma: float = 4.0,
        on_device: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datasets: dict[str, TensorBatches] = {}

    def prepare_data(self) -> None:
        ensure_mnist(self.hparams.root, self.hparams.download)

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            splits = read_splits(self.hparams.root, self.hparams.val_size, self.hparams.split_seed, download=False)
            self.datasets = {name: TensorBatches(*split) for name, split in splits._asdict().items()}
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.hparams.on_device and device.type == "cuda":
            self.datasets = {name: dataset.to(device) for name, dataset in self.datasets.items()}

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[Split]:
        batch_size = self.hparams.batch_size if split == "train" else self.hparams.eval_batch_size
        return DataLoader(self.datasets[split], batch_size=batch_size, shuffle=shuffle, collate_fn=_whole_batch)

    def train_dataloader(self) -> DataLoader[Split]:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Split]:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader[Split]:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader[Split]:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: Split, dataloader_idx: int) -> Split:
        images, labels = batch
        images = images.float().div_(255) if images.dtype == torch.uint8 else images
        if self.hparams.augment and self.trainer is not None and self.trainer.training:
            hp = self.hparams
            images = random_distortion(
                images, hp.rotation_degrees, hp.shift_fraction, hp.zoom_fraction, hp.elastic_alpha, hp.elastic_sigma
            )
        return normalize(images), labels
