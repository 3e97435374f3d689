"""``trainer=gpu`` on a real CUDA GPU: skipped on machines without one (CI has none)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.cli import run_command

from mnist_cnn import MNISTClassifier, MNISTDataModule
from mnist_cnn.config import compose_config, validate
from mnist_cnn.training.module import NonFiniteLossError
from mnist_cnn.training.run import build_datamodule, build_module, warm_up

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class OnDeviceProbe(L.Callback):
    """Records, mid-training, where the data and weights live (Lightning moves the module back to the CPU after fit)."""

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: object) -> None:
        conv = next(layer for layer in module.modules() if isinstance(layer, torch.nn.Conv2d))
        datasets = trainer.datamodule.datasets.values()
        self.seen = {
            "data_on_gpu": all(split.images.is_cuda and split.labels.is_cuda for split in datasets),
            "weights_on_gpu": conv.weight.is_cuda,
            "channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last),
            "fused": trainer.optimizers[0].defaults["fused"],
        }


def test_gpu_trainer_keeps_data_weights_and_optimizer_on_the_gpu(fake_root: Path) -> None:
    cfg = validate(compose_config("trainer=gpu", "model=lenet5", f"data.root={fake_root}", "data.val_size=100"))
    datamodule, probe = build_datamodule(cfg), OnDeviceProbe()
    trainer = L.Trainer(
        accelerator="gpu", devices=1, precision=cfg.trainer["precision"], max_epochs=1, limit_train_batches=2,
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[probe],
    )  # fmt: skip
    trainer.fit(build_module(cfg), datamodule=datamodule)
    assert datamodule.hparams.batch_size == cfg.data.batch_size * 8 and trainer.precision == "bf16-mixed"
    assert probe.seen == {"data_on_gpu": True, "weights_on_gpu": True, "channels_last": True, "fused": True}


def test_train_cli_on_the_gpu_learns_the_generated_digits(fake_root: Path, tmp_path: Path) -> None:
    result = run_command(
        "mnist_cnn.train", "model=lenet5", "trainer=gpu", "batch_scale=1", "data.val_size=100", "trainer.max_epochs=8",
        "trainer.enable_progress_bar=false", cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (record_file,) = (tmp_path / "checkpoints" / "lenet5").glob("*/result.json")
    record = json.loads(record_file.read_text())
    assert record["machine"] == torch.cuda.get_device_name()
    assert record["metrics"]["test_acc"] > 0.9


class PoisonWeightsMidEpoch(L.Callback):
    """Turns a weight into NaN at the second epoch's third batch, as a diverging run would."""

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: object, index: int) -> None:
        if trainer.current_epoch == 1 and index == 2:
            with torch.no_grad():
                next(module.parameters()).fill_(float("nan"))


def test_divergence_on_the_gpu_stops_at_the_epoch_end_before_any_checkpoint_holds_it(
    fake_root: Path, tmp_path: Path
) -> None:
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = L.Trainer(
        accelerator="gpu", devices=1, max_epochs=3, logger=False, enable_progress_bar=False,
        callbacks=[checkpoint, PoisonWeightsMidEpoch()],
    )  # fmt: skip
    with pytest.raises(NonFiniteLossError, match=r"became NaN or infinite in epoch 1; training stopped before"):
        trainer.fit(MNISTClassifier("lenet5"), datamodule=MNISTDataModule(root=str(fake_root), val_size=100))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 0 and all(torch.isfinite(value).all() for value in saved["state_dict"].values())


def test_warm_up_runs_a_throwaway_step_on_the_gpu_and_leaves_model_and_random_state_alone(fake_root: Path) -> None:
    cfg = validate(compose_config("experiment=speedrun", f"data.root={fake_root}", "data.val_size=100"))
    module, datamodule = build_module(cfg), build_datamodule(cfg)
    weights = {name: value.clone() for name, value in module.state_dict().items()}
    trainer = L.Trainer(accelerator="gpu", devices=1, precision=cfg.trainer["precision"], logger=False)
    cpu_state, gpu_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    warm_up(trainer, module, datamodule)
    assert torch.equal(torch.get_rng_state(), cpu_state) and torch.equal(torch.cuda.get_rng_state(), gpu_state)
    assert all(torch.equal(value, weights[name]) for name, value in module.state_dict().items())
    assert all(split.images.is_cuda for split in datamodule.datasets.values())  # the data already moved there


def test_warm_up_compiles_every_shape_the_fit_meets_and_puts_the_weights_back(fake_root: Path) -> None:
    overrides = ("experiment=speedrun", "compile=reduce-overhead", f"data.root={fake_root}", "data.val_size=100")
    cfg = validate(compose_config(*overrides, "trainer.max_epochs=1"))
    module, datamodule = build_module(cfg), build_datamodule(cfg)
    weights = {name: value.clone() for name, value in module.state_dict().items()}
    trainer = L.Trainer(accelerator="gpu", devices=1, precision=cfg.trainer["precision"], max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False)  # fmt: skip
    assert warm_up(trainer, module, datamodule, compiled=True) > 0
    assert all(torch.equal(value.cpu(), weights[name]) for name, value in module.state_dict().items())
    with torch.compiler.set_stance("fail_on_recompile"):  # raises if the fit has to compile anything
        trainer.fit(module, datamodule=datamodule)
    assert trainer.callback_metrics["val_acc"] >= 0
