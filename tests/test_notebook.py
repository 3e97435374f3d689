"""Training from a notebook as a Keras user would: fine-tuning shipped weights, your own arrays, run lengths."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mnist_cnn import Augmentation, MNISTClassifier, MNISTDataModule, read_splits
from mnist_cnn.data.pixels import normalize

QUIET = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}


class _Modes(L.Callback):
    """At each step of each stage: whether every submodule was in train mode."""

    def __init__(self) -> None:
        self.all_training: dict[str, list[bool]] = {"train": [], "val": [], "test": []}

    def _record(self, stage: str, module: L.LightningModule) -> None:
        self.all_training[stage].append(all(child.training for child in module.modules()))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        self._record("train", pl_module)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        self._record("val", pl_module)

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        self._record("test", pl_module)


def _fine_tune(model: MNISTClassifier, fake_root: Path, tmp_path: Path) -> _Modes:
    """Three training batches of ``model`` with a plain Trainer, as a notebook would, then a test."""
    modes = _Modes()
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=3, limit_val_batches=1, limit_test_batches=1, callbacks=[modes],
        default_root_dir=tmp_path, **QUIET,
    )  # fmt: skip
    datamodule = MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=datamodule)
        trainer.test(model, datamodule=datamodule, verbose=False)
    assert not [warning for warning in caught if "in eval mode at the start of training" in str(warning.message)]
    return modes


def test_fine_tuning_shipped_resnet_updates_its_batch_norm_statistics(fake_root: Path, tmp_path: Path) -> None:
    model = MNISTClassifier.from_pretrained("resnet")
    assert not model.training  # shipped weights load ready to predict
    before = {name: value.clone() for name, value in model.state_dict().items() if "running_" in name}
    counts = {name: value.item() for name, value in model.state_dict().items() if "num_batches_tracked" in name}

    modes = _fine_tune(model, fake_root, tmp_path)

    assert modes.all_training == {"train": [True] * 3, "val": [False, False], "test": [False]}  # val: sanity, epoch
    after = model.state_dict()
    assert before and all(not torch.equal(value, after[name]) for name, value in before.items())
    assert all(after[name].item() == count + 3 for name, count in counts.items())  # the 3 training batches only


def test_fine_tuning_shipped_simple_cnn_drops_units_in_training_steps_only(fake_root: Path, tmp_path: Path) -> None:
    model = MNISTClassifier.from_pretrained("simple_cnn")
    (dropout,) = [module for module in model.modules() if isinstance(module, nn.Dropout)]
    dropped: list[bool] = []
    dropout.register_forward_hook(
        lambda module, inputs, output: dropped.append(bool((output == 0).sum() > (inputs[0] == 0).sum()))
    )

    modes = _fine_tune(model, fake_root, tmp_path)

    assert modes.all_training == {"train": [True] * 3, "val": [False, False], "test": [False]}
    assert dropped == [False, True, True, True, False, False]  # sanity val, 3 training steps, val, test


def _digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ink on a third of the pixels, the rest black, as MNIST's digits are; random labels."""
    generator = np.random.default_rng(seed)
    ink = generator.random((count, 28, 28)) < 0.3
    pixels = np.where(ink, generator.integers(1, 256, (count, 28, 28)), 0).astype(np.uint8)
    return pixels, generator.integers(0, 10, count)


def test_from_arrays_reads_every_form_that_predict_takes_as_the_same_pixels() -> None:
    pixels, labels = _digits(6)
    expected = normalize(torch.from_numpy(pixels).unsqueeze(1))
    one_hot = np.eye(10, dtype=np.float32)[labels]
    forms = {
        "uint8 (N, 28, 28)": (pixels, labels, False),
        "uint8 (N, 1, 28, 28)": (pixels[:, None], labels, False),
        "Keras float (N, 28, 28, 1) / 255, one-hot labels": (
            pixels[..., None].astype(np.float32) / 255,
            one_hot,
            False,
        ),
        "torch": (torch.from_numpy(pixels), torch.from_numpy(labels), False),
        "normalised floats": (expected.numpy(), labels, True),
    }
    for name, (images, targets, normalized) in forms.items():
        datamodule = MNISTDataModule.from_arrays(images, targets, test=(images, targets), normalized=normalized)
        (batch,) = datamodule.test_dataloader()
        batch_images, batch_labels = datamodule.on_after_batch_transfer(batch, 0)
        torch.testing.assert_close(batch_images, expected, atol=1e-5, rtol=0, msg=name)
        assert batch_labels.tolist() == labels.tolist(), name


def test_from_arrays_augments_training_batches_with_the_mnist_options() -> None:
    pixels, labels = _digits(8)
    trainer = L.Trainer(accelerator="cpu", logger=False)
    trainer.training = True
    for augment, changed in [(Augmentation(rotation_degrees=30.0), True), (None, False)]:
        datamodule = MNISTDataModule.from_arrays(pixels, labels, augment=augment)
        datamodule.trainer = trainer
        images = datamodule.datasets["train"].images
        out, _ = datamodule.on_after_batch_transfer((images, torch.from_numpy(labels)), 0)
        assert datamodule.augment == augment and torch.equal(out, normalize(images)) is not changed


def test_from_arrays_holds_out_a_fixed_fraction_for_validation_or_takes_arrays() -> None:
    pixels, labels = _digits(100)
    first, again = (MNISTDataModule.from_arrays(pixels, labels, val=0.2) for _ in range(2))
    other_seed = MNISTDataModule.from_arrays(pixels, labels, val=0.2, split_seed=7)
    assert (len(first.datasets["train"]), len(first.datasets["val"]), first.hparams.val_size) == (80, 20, 20)
    assert torch.equal(first.datasets["val"].images, again.datasets["val"].images)
    assert not torch.equal(first.datasets["val"].images, other_seed.datasets["val"].images)
    held_out = {image.tobytes() for image in first.datasets["val"].images.numpy()}
    assert not held_out & {image.tobytes() for image in first.datasets["train"].images.numpy()}
    given = MNISTDataModule.from_arrays(pixels[:90], labels[:90], val=(pixels[90:], labels[90:]))
    assert (len(given.datasets["train"]), len(given.datasets["val"])) == (90, 10)


def test_from_arrays_without_validation_fits_and_without_test_arrays_says_so(tmp_path: Path) -> None:
    datamodule = MNISTDataModule.from_arrays(*_digits(64), batch_size=16)
    model = MNISTClassifier("lenet5")
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 4 and set(model.history) == {"epoch", "train_loss", "train_acc"}
    with pytest.raises(ValueError, match=r"no test arrays: pass test=\(x_test, y_test\) to MNISTDataModule.from_arr"):
        trainer.test(model, datamodule=datamodule)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"y": np.zeros(9, dtype=np.int64)}, ValueError, "labels must be integer class indices of shape (10,)"),
        ({"y": np.full(10, 10)}, ValueError, "labels must lie in 0-9, got 10 to 10"),
        ({"x": np.full((10, 28, 28), 255.0)}, ValueError, "float images must hold pixels in 0-1, got values up to 255"),
        ({"x": np.zeros((10, 32, 32), np.uint8)}, ValueError, "(N, 28, 28), (N, 1, 28, 28) or (N, 28, 28, 1)"),
        ({"val": 1.5}, ValueError, "val=1.5 must be a fraction in (0, 1) that holds out at least one of the 10"),
        ({"val": 0.01}, ValueError, "val=0.01 must be a fraction in (0, 1) that holds out at least one of the 10"),
        ({"root": "data"}, TypeError, "from_arrays takes no root: the data are x and y, a validation set is val="),
    ],
    ids=["count", "label-10", "float-0-255", "32x32", "val-1.5", "val-too-small", "root"],
)
def test_from_arrays_refuses_what_it_cannot_read_saying_why(arguments: dict, error: type, message: str) -> None:
    x, y = _digits(10)
    with pytest.raises(error) as raised:
        MNISTDataModule.from_arrays(**{"x": x, "y": y, **arguments})
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("images", "labels", "got"),
    [
        (torch.rand(32, 28, 28, 1), torch.zeros(32, dtype=torch.long), "torch.float32 images (16, 28, 28, 1)"),
        (torch.zeros(32, 1, 28, 28, dtype=torch.uint8), torch.zeros(32, dtype=torch.long), "torch.uint8 images"),
        (torch.rand(32, 1, 28, 28), torch.eye(10)[torch.zeros(32, dtype=torch.long)], "torch.float32 labels (16, 10)"),
    ],
    ids=["channels-last", "uint8", "one-hot"],
)
def test_a_training_batch_the_network_cannot_read_is_refused_naming_from_arrays(
    images: torch.Tensor, labels: torch.Tensor, got: str, tmp_path: Path
) -> None:
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    with pytest.raises(ValueError) as raised:
        trainer.fit(MNISTClassifier("lenet5"), train_dataloaders=DataLoader(TensorDataset(images, labels), 16))
    assert "a train batch must be normalised float images (16, 1, 28, 28) and integer labels (16,)" in str(raised.value)
    assert got in str(raised.value) and "load them with MNISTDataModule.from_arrays(x, y)" in str(raised.value)


@pytest.mark.parametrize(
    ("limits", "per_step"),
    [
        ({"max_steps": 5}, [1.0, 1.0, 0.75, 0.75, 0.25]),  # 2 steps an epoch: 5 steps reach into 3 epochs
        ({"max_epochs": 2, "max_steps": 100}, [1.0, 1.0, 0.5, 0.5]),  # the epochs end the run first
        ({"max_epochs": 3, "max_steps": 3}, [1.0, 1.0, 0.5]),  # the steps do, within the second epoch
    ],
)
def test_an_epoch_scheduler_spans_the_run_that_max_steps_or_max_epochs_ends(
    limits: dict, per_step: list[float], fake_root: Path, tmp_path: Path
) -> None:
    seen: list[float] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    cosine = {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR"}  # T_max: the run's epochs, supplied
    model = MNISTClassifier("lenet5", optimizer={"_target_": "torch.optim.Adam", "lr": 1.0}, scheduler=cosine)
    trainer = L.Trainer(
        limit_train_batches=2, limit_val_batches=0, callbacks=[Record()], default_root_dir=tmp_path, **limits, **QUIET
    )
    trainer.fit(model, datamodule=MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16))
    assert seen == pytest.approx(per_step)
    assert trainer.lr_scheduler_configs[0].scheduler.T_max == math.ceil(len(per_step) / 2)


def test_predict_accepts_and_ignores_keras_verbose() -> None:
    model = MNISTClassifier("lenet5")
    pixels, _ = _digits(3)
    for verbose in (0, 1, "auto"):
        np.testing.assert_array_equal(model.predict(pixels, verbose=verbose), model.predict(pixels))


@pytest.mark.real_data
@pytest.mark.parametrize("form", ["float32 / 255", "uint8"])
def test_one_epoch_on_10000_of_your_own_keras_arrays_reaches_95_percent(form: str, real_root: Path) -> None:
    (train_images, train_labels), _, (test_images, test_labels) = read_splits(real_root, val_size=0, download=False)
    x = train_images[:10_000].permute(0, 2, 3, 1).numpy()  # Keras' (N, 28, 28, 1)
    x = x.astype(np.float32) / 255 if form == "float32 / 255" else x
    datamodule = MNISTDataModule.from_arrays(
        x, train_labels[:10_000].numpy(), test=(test_images.numpy(), test_labels.numpy()), batch_size=32
    )
    # Chosen by validation accuracy on training images 55,000-59,999 (outside these 10,000), never by the test set.
    sgd = {"_target_": "torch.optim.SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True}
    onecycle = {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "interval": "step"}
    L.seed_everything(0, verbose=False)
    model = MNISTClassifier("lenet5", optimizer=sgd, scheduler=onecycle)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", **QUIET)
    trainer.fit(model, datamodule=datamodule)
    (tested,) = trainer.test(model, datamodule=datamodule, verbose=False)
    assert tested["test_acc"] >= 0.95


def test_from_arrays_reads_dark_ink_on_light_paper_as_predict_does() -> None:
    pixels, labels = _digits(6)
    paper = 230 - (pixels.astype(np.int64) * 200) // 255  # dark grey ink on light grey paper
    datamodule = MNISTDataModule.from_arrays(paper.astype(np.uint8), labels, test=(paper.astype(np.uint8), labels))
    (batch,) = datamodule.test_dataloader()
    images, _ = datamodule.on_after_batch_transfer(batch, 0)
    ink = torch.from_numpy(pixels).unsqueeze(1).float() / 255
    assert torch.corrcoef(torch.stack([images.flatten(), ink.flatten()]))[0, 1] > 0.99  # light ink on black again
