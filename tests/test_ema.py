from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from mnist_cnn import MNISTClassifier, MNISTDataModule
from mnist_cnn.callbacks import ExponentialMovingAverage, warmed_up_decay


def _weights(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([parameter.detach().flatten().clone() for parameter in module.parameters()])


class _RawWeights(L.Callback):
    """The weights when training starts and the raw (not averaged) weights when it ends."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.initial = _weights(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.final = _weights(pl_module)  # runs before the EMA callback swaps the average in


def test_decay_warms_up_to_its_cap() -> None:
    decays = [warmed_up_decay(0.99, updates) for updates in (0, 1, 10, 100, 10_000)]
    assert decays == pytest.approx([1 / 10, 2 / 11, 11 / 20, 101 / 110, 0.99])


def test_the_average_follows_the_weights_from_the_first_steps(fake_root: Path, tmp_path: Path) -> None:
    model, raw = MNISTClassifier("custom_cnn"), _RawWeights()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=20, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, callbacks=[raw, ExponentialMovingAverage(decay=0.999)], default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16))
    average = _weights(model)  # the callback leaves the average in the model
    assert not torch.equal(average, raw.final)
    # Without the warm-up, 20 steps at 0.999 would leave 98 % of the initial weights in the average.
    assert torch.linalg.norm(average - raw.final) < 0.2 * torch.linalg.norm(average - raw.initial)
    norms = [module for module in model.modules() if hasattr(module, "num_batches_tracked")]
    assert {norm.num_batches_tracked.item() for norm in norms} == {20}  # step counters are copied, not averaged
