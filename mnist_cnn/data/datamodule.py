"""The LightningDataModule: MNIST held in memory, batches indexed whole and prepared on the training device.

Batches are indexed whole from uint8 tensors (no per-sample ``Dataset``/collate work); they are
converted, augmented and normalised on the training device in ``on_after_batch_transfer``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mnist_cnn.data.augment import random_degradation, random_distortion
from mnist_cnn.data.corrupt import random_corruption
from mnist_cnn.data.files import Split, ensure_mnist, read_test_split, read_train_split
from mnist_cnn.data.pixels import normalize, standardize


class TensorBatches(Dataset[Split]):
    """Images and labels that a DataLoader indexes a whole batch at a time through ``__getitems__``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Split:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int] | torch.Tensor) -> Split:
        index = torch.as_tensor(indices, device=self.images.device)
        return self.images[index], self.labels[index]

    def to(self, device: torch.device) -> TensorBatches:
        return TensorBatches(self.images.to(device), self.labels.to(device))


def _whole_batch(batch: Split) -> Split:
    """collate_fn: ``__getitems__`` already returned the batch."""
    return batch


class BatchOrder(Sampler[torch.Tensor]):
    """An epoch's batches as index tensors on ``device``: one permutation drawn per epoch (from torch's global
    generator, so a seed or a restored random state replays it), moved there once, split into batches; no
    per-index Python work, and no copy to a GPU (which waits for it) per batch.

    Written by hand because PyTorch's ``BatchSampler`` builds a Python list of ints for every batch.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, device: torch.device | None = None) -> None:
        self.size, self.batch_size, self.shuffle, self.device = size, batch_size, shuffle, device

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.size) if self.shuffle else torch.arange(self.size)
        return iter(order.to(self.device).split(self.batch_size))


class MNISTDataModule(L.LightningDataModule):
    """Official MNIST split with a fixed-seed validation set, held in memory (on the GPU when training there).

    ``setup("fit")`` reads the training files only and ``setup("test")`` the test files only.
    """

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
        degrade_prob: float = 0.0,
        stroke_width: float = 0.0,
        min_resolution: int = 28,
        blur_sigma: float = 0.0,
        contrast: float = 0.0,
        noise_std: float = 0.0,
        impulse_fraction: float = 0.0,
        corrupt_prob: float = 0.0,
        on_device: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.datasets: dict[str, TensorBatches] = {}

    def prepare_data(self) -> None:
        if self.hparams.download:
            ensure_mnist(self.hparams.root, download=True)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit", "validate") and "train" not in self.datasets:
            train, val = read_train_split(hp.root, hp.val_size, hp.split_seed, download=False)
            self.datasets.update(train=TensorBatches(*train), val=TensorBatches(*val))
        if stage in (None, "test", "predict") and "test" not in self.datasets:
            self.datasets["test"] = TensorBatches(*read_test_split(hp.root, download=False))
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if hp.on_device and device.type == "cuda":
            self.datasets = {name: dataset.to(device) for name, dataset in self.datasets.items()}

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[Split]:
        batch_size = self.hparams.batch_size if split == "train" else self.hparams.eval_batch_size
        dataset = self.datasets[split]
        if self.trainer is not None and self.trainer.world_size > 1:  # Lightning hands each process its share
            return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=_whole_batch)
        order = BatchOrder(len(dataset), batch_size, shuffle, dataset.images.device)
        return DataLoader(dataset, batch_sampler=order, collate_fn=_whole_batch)

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
            images = random_degradation(
                images, hp.degrade_prob, hp.stroke_width, hp.min_resolution, hp.blur_sigma, hp.contrast, hp.noise_std,
                hp.impulse_fraction,
            )  # fmt: skip
            images = random_corruption(images, hp.corrupt_prob)
            if hp.degrade_prob > 0 or hp.corrupt_prob > 0:  # as predict sees such images (MNIST's pass unchanged)
                images = standardize(images)
        return normalize(images), labels
