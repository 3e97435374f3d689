"""Checks against the real MNIST files; skipped where they are absent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from mnist_cnn import read_splits

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


def test_one_lenet5_epoch_reaches_97_percent(real_root: Path, tmp_path: Path) -> None:
    result = run_cli(
        "mnist_cnn.train", "model=lenet5", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        cwd=tmp_path, data_root=real_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    test_acc = float(re.search(r"^test_acc\s+([0-9.]+)$", result.stdout, re.MULTILINE).group(1))
    assert test_acc >= 0.97
