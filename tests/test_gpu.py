"""``trainer=gpu`` on a real CUDA GPU: skipped on machines without one (CI has none; run where one is lent)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO, run_cli
from hydra import compose, initialize_config_dir

from mnist_cnn.config import validate
from mnist_cnn.training import build_datamodule, build_module

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_gpu_trainer_keeps_data_weights_and_optimizer_on_the_gpu(fake_root: Path) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = validate(
            compose("train", overrides=["trainer=gpu", "model=lenet5", f"data.root={fake_root}", "data.val_size=100"])
        )
    datamodule, module = build_datamodule(cfg), build_module(cfg)
    trainer = L.Trainer(
        accelerator="gpu", devices=1, precision=cfg.trainer.precision, max_epochs=1, limit_train_batches=2,
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    assert datamodule.hparams.batch_size == cfg.data.batch_size * 8
    assert all(split.images.is_cuda and split.labels.is_cuda for split in datamodule.datasets.values())
    assert trainer.optimizers[0].defaults["fused"] is True
    conv = next(layer for layer in module.model.modules() if isinstance(layer, torch.nn.Conv2d))
    assert conv.weight.is_cuda and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert trainer.precision == "bf16-mixed"


def test_train_cli_on_the_gpu_learns_the_generated_digits(fake_root: Path, tmp_path: Path) -> None:
    result = run_cli(
        "mnist_cnn.train", "model=lenet5", "trainer=gpu", "batch_scale=1", "data.val_size=100", "trainer.max_epochs=8",
        "trainer.enable_progress_bar=false", cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (record_file,) = (tmp_path / "checkpoints" / "lenet5").glob("*/result.json")
    record = json.loads(record_file.read_text())
    assert record["machine"] == torch.cuda.get_device_name()
    assert record["metrics"]["test_acc"] > 0.9
