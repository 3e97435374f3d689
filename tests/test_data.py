from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnist_cnn.data.augment import (
    affine_grid,
    blurred,
    elastic_displacement,
    random_degradation,
    random_distortion,
    rescanned,
)
from mnist_cnn.data.datamodule import MNISTDataModule
from mnist_cnn.data.files import FILES, ensure_mnist, load_mnist, read_splits, read_test_split, resolve_root
from mnist_cnn.data.options import Augmentation, Degradation
from mnist_cnn.data.pixels import MEAN, STD, image_batch, maximum_filter, model_input, normalize, prepared
from mnist_cnn.errors import ConfigError, MNISTDataError

NO_AFFINE = Augmentation(rotation_degrees=0.0, shift_fraction=0.0, zoom_fraction=0.0)


def test_root_comes_from_argument_then_environment_then_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_DATA_DIR", "/from/env")
    assert resolve_root("/given") == Path("/given")
    assert resolve_root() == Path("/from/env")
    monkeypatch.delenv("MNIST_DATA_DIR")
    assert resolve_root() == Path("data")


def test_missing_files_without_download_name_the_folder_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MNISTDataError) as error:
        ensure_mnist(tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    assert "data.root=" in message and "MNIST_DATA_DIR" in message


def test_the_test_files_alone_serve_what_reads_only_the_test_split(fake_root: Path, tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES["test"]:
        (raw / name).write_bytes((fake_root / "MNIST" / "raw" / name).read_bytes())
    images, labels = read_test_split(tmp_path, download=False)
    assert images.shape == (200, 1, 28, 28) and len(labels) == 200
    datamodule = MNISTDataModule(root=str(tmp_path), download=False)
    datamodule.setup("test")
    assert set(datamodule.datasets) == {"test"}
    with pytest.raises(MNISTDataError, match="missing: train-images-idx3-ubyte, train-labels-idx1-ubyte"):
        datamodule.setup("fit")


def test_split_is_fixed_by_its_seed_and_disjoint(fake_root: Path) -> None:
    first, again = read_splits(fake_root, val_size=100), read_splits(fake_root, val_size=100)
    other = read_splits(fake_root, val_size=100, split_seed=7)
    assert len(first.train[1]) == 500 and len(first.val[1]) == 100 and len(first.test[1]) == 200
    assert torch.equal(first.val[0], again.val[0]) and not torch.equal(first.val[0], other.val[0])
    train_rows = {bytes(image.numpy()) for image in first.train[0]}
    assert not any(bytes(image.numpy()) in train_rows for image in first.val[0])


def test_val_size_must_leave_training_images(fake_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.val_size=600 is not allowed: the training file holds 600 images"):
        read_splits(fake_root, val_size=600)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size=0 is not allowed: use a number > 0"),
        ({"eval_batch_size": -1}, "eval_batch_size=-1 is not allowed: use a number > 0"),
        ({"val_size": -5}, "val_size=-5 is not allowed: use a number >= 0 (0 trains on all 60,000 images"),
    ],
)
def test_a_data_module_refuses_out_of_range_options_as_the_config_does(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        MNISTDataModule(**options)
    assert str(error.value).startswith(message)


def test_a_data_module_takes_numpy_integers() -> None:
    assert MNISTDataModule(batch_size=np.int64(32), val_size=np.int32(100)).hparams["batch_size"] == 32


def test_load_mnist_returns_normalised_floats(fake_root: Path) -> None:
    raw = read_splits(fake_root, val_size=100)
    train, val, test = load_mnist(fake_root, val_size=100)
    assert train[0].dtype == torch.float32 and train[0].shape == (500, 1, 28, 28)
    assert torch.allclose(test[0], (raw.test[0].float() / 255 - MEAN) / STD)
    assert torch.equal(val[1], raw.val[1])


def test_normalize_accepts_uint8_and_unit_floats() -> None:
    white = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(normalize(white), torch.full((1, 1, 2, 2), (1 - MEAN) / STD))
    assert torch.allclose(normalize(white.float() / 255), normalize(white))


def test_an_image_array_means_the_same_in_every_form_it_comes_in() -> None:
    rng = np.random.default_rng(0)  # ink on a third of the pixels, the rest black: MNIST-formatted digits
    pixels = np.where(rng.random((5, 28, 28)) < 0.3, rng.integers(1, 256, (5, 28, 28)), 0).astype(np.uint8)
    expected = normalize(torch.from_numpy(pixels).unsqueeze(1))
    forms = {
        "uint8": pixels,
        "float / 255": pixels.astype("float32") / 255,
        "(N, 1, 28, 28)": pixels[:, None],
        "Keras (N, 28, 28, 1)": pixels[..., None],
        "Keras float / 255": pixels[..., None] / 255.0,
        "int64": pixels.astype(np.int64),
        "torch": torch.from_numpy(pixels),
    }
    for name, images in forms.items():
        torch.testing.assert_close(model_input(images).float(), expected, msg=name)
    torch.testing.assert_close(model_input(expected.numpy(), normalized=True), expected)
    assert image_batch(pixels[0]).shape == (1, 1, 28, 28)  # one image may drop the N


@pytest.mark.parametrize(
    ("images", "normalized", "message"),
    [
        (np.full((2, 28, 28), 255.0), False, "float images must hold pixels in 0-1, got values up to 255: divide"),
        (np.full((2, 28, 28), -0.4), False, "pass normalized=True"),
        (np.where(np.eye(28) > 0, np.nan, 0.5)[None], False, "got 28 NaN pixels: fill them (with 0 for no ink)"),
        (np.full((2, 28, 28), 300), False, "integer images must hold pixels in 0-255"),
        (np.zeros((2, 28, 28), bool), False, "got dtype torch.bool"),
        (np.zeros((2, 28, 28), np.uint8), True, "normalized=True takes float images"),
        (np.zeros((2, 32, 32), np.uint8), False, "(N, 28, 28), (N, 1, 28, 28) or (N, 28, 28, 1)"),
        (np.zeros((0, 28, 28), np.uint8), False, "with N >= 1, got (0, 28, 28)"),
    ],
    ids=["float-0-255", "negative", "nan", "int-300", "bool", "normalized-uint8", "32x32", "empty"],
)
def test_an_image_array_that_fits_no_rule_is_refused_saying_which(
    images: np.ndarray, normalized: bool, message: str
) -> None:
    with pytest.raises(ValueError) as error:
        image_batch(images, normalized)
    assert message in str(error.value)


def _datamodule(fake_root: Path, **kwargs: object) -> tuple[MNISTDataModule, L.Trainer]:
    datamodule = MNISTDataModule(root=str(fake_root), val_size=100, batch_size=32, eval_batch_size=64, **kwargs)
    trainer = L.Trainer(accelerator="cpu", logger=False)
    datamodule.trainer = trainer
    datamodule.setup()
    return datamodule, trainer


def test_loaders_index_whole_uint8_batches(fake_root: Path) -> None:
    datamodule, _ = _datamodule(fake_root)
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.uint8 and labels.shape == (32,)
    assert sum(len(batch[1]) for batch in datamodule.train_dataloader()) == 500
    assert [len(batch[1]) for batch in datamodule.val_dataloader()] == [64, 36]
    assert sum(len(batch[1]) for batch in datamodule.test_dataloader()) == 200


def test_evaluation_batches_are_normalised_not_augmented(fake_root: Path) -> None:
    datamodule, trainer = _datamodule(fake_root)
    trainer.validating = True
    images, labels = next(iter(datamodule.val_dataloader()))
    out, out_labels = datamodule.on_after_batch_transfer((images, labels), 0)
    assert torch.equal(out, normalize(images)) and out_labels is labels


def test_training_batches_are_augmented_per_image(fake_root: Path) -> None:
    datamodule, trainer = _datamodule(fake_root)
    trainer.training = True
    image = datamodule.datasets["train"].images[:1]
    batch = (image.repeat(8, 1, 1, 1), torch.zeros(8, dtype=torch.long))
    out, _ = datamodule.on_after_batch_transfer(batch, 0)
    assert out.shape == (8, 1, 28, 28) and not torch.allclose(out, normalize(batch[0]))
    assert len({tuple(row.flatten().tolist()) for row in out}) == 8  # every copy transformed differently


def test_elastic_warp_alone_distorts_training_batches(fake_root: Path) -> None:
    for alpha, changed in [(0.0, False), (34.0, True)]:
        datamodule, trainer = _datamodule(fake_root, augment=replace(NO_AFFINE, elastic_alpha=alpha))
        trainer.training = True
        images = datamodule.datasets["train"].images[:4]
        out, _ = datamodule.on_after_batch_transfer((images, torch.zeros(4)), 0)
        assert torch.allclose(out, normalize(images), atol=1e-4) is not changed


def test_augmentation_can_be_switched_off(fake_root: Path) -> None:
    datamodule, trainer = _datamodule(fake_root, augment=None)
    trainer.training = True
    images = datamodule.datasets["train"].images[:4]
    out, _ = datamodule.on_after_batch_transfer((images, torch.zeros(4)), 0)
    assert torch.equal(out, normalize(images))


@pytest.mark.parametrize(("height", "width"), [(28, 28), (5, 9), (1, 1)])
def test_affine_grid_matches_torch(height: int, width: int) -> None:
    theta = torch.eye(2, 3).repeat(16, 1, 1) + 0.3 * torch.randn(16, 2, 3)
    expected = F.affine_grid(theta, [16, 1, height, width], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, height, width), expected, rtol=0, atol=1e-6)


def test_random_distortion_without_range_is_the_identity() -> None:
    images = torch.rand(3, 1, 28, 28)
    assert torch.allclose(random_distortion(images, NO_AFFINE), images, atol=1e-5)


def test_random_distortion_shift_moves_ink_by_up_to_the_range() -> None:
    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 12:16, 12:16] = 1.0
    moved = random_distortion(images, replace(NO_AFFINE, shift_fraction=0.1))
    columns = torch.arange(28.0)
    centre_x = (moved.sum(dim=(1, 2)) * columns).sum(dim=1) / moved.sum(dim=(1, 2, 3))
    assert (centre_x - 13.5).abs().max() <= 0.1 * 28 + 0.5
    assert (centre_x - 13.5).abs().max() > 0.5


def test_elastic_field_is_smooth_and_scales_with_alpha() -> None:
    like = torch.zeros(1)
    torch.manual_seed(0)
    unit = elastic_displacement(256, 28, 28, 1.0, 4.0, like)
    torch.manual_seed(0)
    field = elastic_displacement(256, 28, 28, 34.0, 4.0, like)
    assert field.shape == (256, 28, 28, 2)
    torch.testing.assert_close(field, 34 * unit)
    pixels = field * 14  # grid units span 2 over 28 pixels
    neighbour_difference = (pixels[:, :, 1:] - pixels[:, :, :-1]).abs().mean()
    assert neighbour_difference < 0.2 * pixels.abs().mean()  # smooth: neighbours move almost together
    assert 0.5 < pixels.pow(2).mean().sqrt() < 4  # a warp of a pixel or two, not a scramble


def test_elastic_field_is_in_grid_units_with_x_first() -> None:
    """On a 16 x 32 image a pixel is 2/32 of the grid across and 2/16 down: the y column is twice as large."""
    field = elastic_displacement(1024, 16, 32, 10.0, 2.0, torch.zeros(1))
    rms_x, rms_y = field.pow(2).mean(dim=(0, 1, 2)).sqrt()
    assert 1.8 < rms_y / rms_x < 2.2


def _strokes(count: int = 64) -> torch.Tensor:
    """``count`` copies of a white cross (3-pixel strokes) on black, floats in [0, 1]."""
    images = torch.zeros(count, 1, 28, 28)
    images[:, :, 6:22, 13:16] = 1.0
    images[:, :, 13:16, 6:22] = 1.0
    return images


def test_degradation_touches_only_the_drawn_share_of_images() -> None:
    images = _strokes(400)
    assert torch.equal(random_degradation(images, Degradation(0.0, noise_std=0.5)), images)
    # every option at its default: nothing to do
    assert torch.equal(random_degradation(images, Degradation(1.0)), images)
    torch.manual_seed(0)
    out = random_degradation(images, Degradation(0.3, noise_std=0.2))
    changed = (out != images).flatten(1).any(dim=1).float().mean()
    assert 0.22 < changed < 0.38


def test_stroke_width_thickens_and_thins_by_up_to_one_pixel() -> None:
    images = _strokes(256)
    torch.manual_seed(0)
    out = random_degradation(images, Degradation(1.0, stroke_width=1.0))
    ink = out.sum(dim=(1, 2, 3)) / images[0].sum()
    assert ink.min() < 0.6 and ink.max() > 1.6  # some strokes much thinner, some much thicker
    assert (out <= maximum_filter(images) + 1e-6).all()  # never more than one pixel beyond the strokes
    assert (out >= -maximum_filter(-images) - 1e-6).all()  # never less than the strokes' cores


def test_min_resolution_blurs_fine_detail_like_a_low_resolution_scan() -> None:
    checkerboard = (torch.arange(28).view(-1, 1) + torch.arange(28)).remainder(2).float().expand(32, 1, 28, 28)
    torch.manual_seed(0)
    out = rescanned(checkerboard, 8)  # each image at 8-28 pixels: only those drawn at 28 keep 1-pixel detail
    assert (out.std(dim=(1, 2, 3)) < 0.9 * checkerboard.std()).float().mean() > 0.8
    assert torch.equal(random_degradation(checkerboard, Degradation(1.0, min_resolution=28)), checkerboard)


def test_blur_spreads_each_image_by_its_own_sigma_keeping_the_ink() -> None:
    dot = torch.zeros(3, 1, 28, 28)
    dot[:, :, 14, 14] = 1.0
    out = blurred(dot, torch.tensor([0.0, 1.0, 2.0]))
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), torch.ones(3))
    assert out[0, 0, 14, 14] == 1.0 and 1.0 > out[1, 0, 14, 14] > out[2, 0, 14, 14]
    columns = torch.arange(28.0) - 14
    spread = (out.sum(dim=(1, 2)) * columns**2).sum(dim=1).sqrt()  # the blur's std along x
    torch.testing.assert_close(spread[1:], torch.tensor([1.0, 2.0]), atol=0.05, rtol=0)


def test_contrast_lifts_the_background_and_squeezes_the_range() -> None:
    images = _strokes(256)
    torch.manual_seed(0)
    out = random_degradation(images, Degradation(1.0, contrast=0.5))
    background, ink = out[:, 0, 0, 0], out[:, 0, 14, 14]
    assert background.min() >= 0 and background.max() > 0.25 and (ink <= 1).all()
    assert ((ink - background) >= 0.5 - 1e-6).all() and (ink - background).min() < 0.6


def test_noise_is_gaussian_up_to_its_std_and_impulses_flip_pixels_to_black_or_white() -> None:
    grey = torch.full((256, 1, 28, 28), 0.5)
    torch.manual_seed(0)
    noisy = random_degradation(grey, Degradation(1.0, noise_std=0.2))
    stds = noisy.std(dim=(1, 2, 3))
    assert stds.max() < 0.2 * 1.1 and stds.min() < 0.02 and (noisy - 0.5).abs().mean() > 0.02
    salted = random_degradation(grey, Degradation(1.0, impulse_fraction=0.2))
    flipped = (salted != 0.5).float().mean(dim=(1, 2, 3))
    assert set(salted.unique().tolist()) <= {0.0, 0.5, 1.0}
    assert flipped.max() <= 0.2 * 1.15 and flipped.min() < 0.02


def test_training_batches_are_degraded_when_asked_evaluation_batches_never(fake_root: Path) -> None:
    datamodule, trainer = _datamodule(fake_root, augment=NO_AFFINE, degrade=Degradation(1.0, noise_std=0.3))
    images = datamodule.datasets["train"].images[:64]
    trainer.training = True
    out, _ = datamodule.on_after_batch_transfer((images, torch.zeros(64)), 0)
    changed = (out - prepared(images)).abs().flatten(1).amax(dim=1) > 0.5  # standardised, as predict sees images
    assert changed.float().mean() > 0.5
    trainer.training, trainer.validating = False, True
    out, _ = datamodule.on_after_batch_transfer((images, torch.zeros(64)), 0)
    assert torch.equal(out, normalize(images))
