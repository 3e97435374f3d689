"""Checks against the real MNIST files; skipped where they are absent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers.cli import run_command

from mnist_cnn import Evaluator, MNISTClassifier, predict_images, read_splits, read_test_split

pytestmark = pytest.mark.real_data

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_files_match_the_published_figures(real_root: Path) -> None:
    splits = read_splits(real_root)
    assert (len(splits.train[1]), len(splits.val[1]), len(splits.test[1])) == (55_000, 5_000, 10_000)
    labels = torch.cat([splits.train[1], splits.val[1]])
    assert labels.bincount().tolist() == TRAIN_COUNTS
    assert splits.test[1].bincount().tolist() == TEST_COUNTS
    pixels = torch.cat([splits.train[0], splits.val[0]]).float() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert pixels.std().item() == pytest.approx(0.3081, abs=1e-4)


@pytest.mark.slow
def test_half_a_lenet5_epoch_from_scratch_reaches_95_percent(real_root: Path, tmp_path: Path) -> None:
    result = run_command(
        "mnist_cnn.train", "model=lenet5", "trainer.max_epochs=1", "trainer.limit_train_batches=0.5",
        cwd=tmp_path, data_root=real_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    test_acc = float(re.search(r"^test_acc\s+([0-9.]+)$", result.stdout, re.MULTILINE).group(1))
    assert test_acc >= 0.95


def test_an_image_array_scores_the_same_in_every_form_and_every_api(real_root: Path) -> None:
    model = MNISTClassifier.from_pretrained("simple_cnn")
    images, labels = read_test_split(real_root)
    pixels, labels = images[:2000, 0].numpy(), labels[:2000].numpy()
    forms = {"uint8": pixels, "float / 255": pixels / 255.0, "(N, 28, 28, 1)": pixels[..., None],
             "(N, 28, 28, 1) float / 255": pixels[..., None].astype("float32") / 255}  # fmt: skip
    scores = {}
    for name, x in forms.items():
        scores[f"Evaluator, {name}"] = Evaluator(model, (x, labels)).evaluate()["accuracy"]
        scores[f"predict_images, {name}"] = float((predict_images(model, x).labels == labels).mean())
        scores[f"predict, {name}"] = float((model.predict(x).argmax(axis=1) == labels).mean())
    assert len(set(scores.values())) == 1, scores
    assert next(iter(scores.values())) >= 0.99


@pytest.mark.slow
def test_fine_tuning_the_shipped_lenet5_keeps_its_accuracy(real_root: Path, tmp_path: Path) -> None:
    tune = ("model=lenet5", "weights=lenet5", "optimizer.lr=0.0001", "trainer.max_epochs=1")
    result = run_command("mnist_cnn.train", *tune, "trainer.limit_train_batches=3", cwd=tmp_path, data_root=real_root)
    assert result.returncode == 0, result.stderr
    test_acc = float(re.search(r"^test_acc\s+([0-9.]+)$", result.stdout, re.MULTILINE).group(1))
    assert test_acc >= 0.98
