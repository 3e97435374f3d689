"""The LightningDataModule: MNIST (or a user's own arrays) held in memory, batches indexed whole and prepared on
the training device.

Batches are indexed whole from pixel tensors (uint8, or float 0-1 for arrays given so; no per-sample
``Dataset``/collate work); they are converted, augmented and normalised on the training device in
``on_after_batch_transfer``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mnist_cnn.data.augment import random_degradation, random_distortion
from mnist_cnn.data.corrupt import random_corruption
from mnist_cnn.data.files import Split, ensure_mnist, read_test_split, read_train_split, split_indices
from mnist_cnn.data.labels import class_indices
from mnist_cnn.data.options import Augmentation, Corruption, Degradation, Loading
from mnist_cnn.data.pixels import MEAN, STD, image_batch, normalize, standardize

# Set by from_arrays itself: its data are the arrays, and its validation set is given by ``val``.
NOT_FOR_ARRAYS = ("root", "download", "val_size")
# The options' defaults; each data module keeps its own copies of what it is given.
DEFAULT_AUGMENTATION, DEFAULT_DEGRADATION, DEFAULT_CORRUPTION = Augmentation(), Degradation(), Corruption()


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


def labelled_pixels(images: Any, labels: Any, normalized: bool = False) -> Split:
    """Images and labels in any form ``model.predict`` and the ``Evaluator`` take, as the (N, 1, 28, 28) float32
    pixels in 0-1 and int64 class indices that the loaders hold, the pixels standardised as ``predict`` reads them
    (dark ink inverted, a lifted background brought to black; MNIST-like digits unchanged) unless already
    normalised; a ``ValueError`` says what is wrong."""
    pixels = image_batch(images, normalized)
    if normalized:  # back to pixels: augmentation works on them, and its fill value 0 is the background
        pixels = pixels.float() * STD + MEAN
    else:
        pixels = standardize(pixels)
    return pixels.contiguous(), class_indices(labels, len(pixels))


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
    ``MNISTDataModule.from_arrays(x, y)`` holds a user's own arrays instead. Training batches are distorted as
    ``augment`` says (``None``: not at all), degraded as ``degrade`` says and corrupted as ``corrupt`` says
    (``mnist_cnn.data.options``: their defaults and ranges).
    """

    def __init__(
        self,
        root: str | None = Loading.root,
        download: bool = Loading.download,
        batch_size: int = Loading.batch_size,
        eval_batch_size: int = Loading.eval_batch_size,
        val_size: int = Loading.val_size,
        split_seed: int = Loading.split_seed,
        augment: Augmentation | None = DEFAULT_AUGMENTATION,
        degrade: Degradation = DEFAULT_DEGRADATION,
        corrupt: Corruption = DEFAULT_CORRUPTION,
        on_device: bool = Loading.on_device,
    ) -> None:
        super().__init__()
        Loading(  # refuses values out of range, as the config does
            root=root, download=download, batch_size=batch_size, eval_batch_size=eval_batch_size,
            val_size=val_size, split_seed=split_seed, on_device=on_device,
        )  # fmt: skip
        # Copies, so that changing one data module's options never changes the defaults every other one shares.
        self.augment = replace(augment) if augment is not None else None
        self.degrade, self.corrupt = replace(degrade), replace(corrupt)
        self.save_hyperparameters(ignore=["augment", "degrade", "corrupt"])
        # The options as plain data too: weights-only loading of a checkpoint refuses other objects.
        plain_augment = asdict(augment) if augment is not None else None
        self.hparams.update(augment=plain_augment, degrade=asdict(degrade), corrupt=asdict(corrupt))
        self.datasets: dict[str, TensorBatches] = {}
        self.reads_files = True  # False: the datasets are a user's arrays (from_arrays)

    @classmethod
    def from_arrays(
        cls,
        x: Any,
        y: Any,
        val: tuple[Any, Any] | float | None = None,
        test: tuple[Any, Any] | None = None,
        normalized: bool = False,
        **options: Any,
    ) -> MNISTDataModule:
        """Train on your own images ``x`` and labels ``y``, which mean what they mean to ``model.predict``: (N, 28,
        28), (N, 1, 28, 28) or (N, 28, 28, 1), numpy or torch, uint8 pixels 0-255 or float pixels 0-1 (floats
        already normalised with MNIST's mean and std with ``normalized=True``); labels as class indices 0-9 or
        one-hot rows. ``val``: validation arrays ``(x_val, y_val)``, or the fraction of ``x`` held out for it (a
        fixed draw, by ``split_seed``); none: no validation. ``test``: ``(x_test, y_test)`` for ``trainer.test``.
        ``options``: the other arguments of ``MNISTDataModule`` (batch sizes, ``split_seed``, ``augment``,
        ``degrade``, ``corrupt``, ``on_device``); a ``ValueError`` says what is wrong with an array."""
        refused = [name for name in NOT_FOR_ARRAYS if name in options]
        if refused:
            raise TypeError(
                f"from_arrays takes no {', '.join(refused)}: the data are x and y, a validation set is val="
            )
        datamodule = cls(download=False, **options)
        datamodule.reads_files = False
        images, labels = labelled_pixels(x, y, normalized)
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            count = round(val * len(labels)) if 0 < val < 1 else 0
            if not 0 < count < len(labels):
                raise ValueError(
                    f"val={val!r} must be a fraction in (0, 1) that holds out at least one of the {len(labels)} "
                    "images and leaves one to train on, or validation arrays (x_val, y_val)"
                )
            train, held_out = split_indices(len(labels), count, datamodule.hparams.split_seed)
            datamodule.datasets["val"] = TensorBatches(images[held_out], labels[held_out])
            images, labels = images[train], labels[train]
        elif val is not None:
            datamodule.datasets["val"] = TensorBatches(*labelled_pixels(*val, normalized))
        datamodule.datasets["train"] = TensorBatches(images, labels)
        if test is not None:
            datamodule.datasets["test"] = TensorBatches(*labelled_pixels(*test, normalized))
        datamodule.hparams.val_size = len(datamodule.datasets["val"]) if "val" in datamodule.datasets else 0
        return datamodule

    def prepare_data(self) -> None:
        if self.hparams.download:
            ensure_mnist(self.hparams.root, download=True)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if self.reads_files and stage in (None, "fit", "validate") and "train" not in self.datasets:
            train, val = read_train_split(hp.root, hp.val_size, hp.split_seed, download=False)
            self.datasets.update(train=TensorBatches(*train), val=TensorBatches(*val))
        if self.reads_files and stage in (None, "test", "predict") and "test" not in self.datasets:
            self.datasets["test"] = TensorBatches(*read_test_split(hp.root, download=False))
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if hp.on_device and device.type == "cuda":
            self.datasets = {name: dataset.to(device) for name, dataset in self.datasets.items()}

    def test_split(self) -> Split:
        """The test images and labels that ``trainer.test`` reads: those held (the arrays given to ``from_arrays``,
        or the files once set up), else the test files, read now; the data module is left as it is."""
        if self.reads_files and "test" not in self.datasets:
            return read_test_split(self.hparams.root, self.hparams.download)
        test = self._dataset("test")
        return test.images, test.labels

    def _dataset(self, split: str) -> TensorBatches:
        if split not in self.datasets and not self.reads_files:
            raise ValueError(f"no {split} arrays: pass {split}=(x_{split}, y_{split}) to MNISTDataModule.from_arrays")
        return self.datasets[split]

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader[Split]:
        batch_size = self.hparams.batch_size if split == "train" else self.hparams.eval_batch_size
        dataset = self._dataset(split)
        if self.trainer is not None and self.trainer.world_size > 1:  # Lightning hands each process its share
            return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=_whole_batch)
        order = BatchOrder(len(dataset), batch_size, shuffle, dataset.images.device)
        return DataLoader(dataset, batch_sampler=order, collate_fn=_whole_batch)

    def train_dataloader(self) -> DataLoader[Split]:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Split] | list[DataLoader[Split]]:
        if "val" not in self.datasets and not self.reads_files:
            return []  # arrays given without a validation set: Lightning skips validation
        return self._loader("val")

    def test_dataloader(self) -> DataLoader[Split]:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader[Split]:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: Split, dataloader_idx: int) -> Split:
        images, labels = batch
        images = images.float().div_(255) if images.dtype == torch.uint8 else images
        if self.trainer is not None and self.trainer.training:
            if self.augment is not None:
                images = random_distortion(images, self.augment)
            images = random_corruption(random_degradation(images, self.degrade), self.corrupt)
            if self.degrade.probability > 0 or self.corrupt.probability > 0:  # as predict sees such images
                images = standardize(images)  # (MNIST's pass unchanged)
        return normalize(images), labels
