"""A Lightning callback that writes the evaluation report of the weights just tested."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

from mnist_cnn.evaluation.evaluator import Evaluator
from mnist_cnn.evaluation.report import write_report


class EvaluationReport(L.Callback):
    """After ``trainer.test`` on an ``MNISTDataModule``, write ``write_report``'s files to ``out_dir``, with the
    training curves when the module keeps a ``history`` (as ``MNISTClassifier`` does). The logits that the module's
    ``test_step`` returns are reused, so the test set is scored once; a module whose ``test_step`` returns none, or
    a test spread over several processes (each scores its share), has the report score the test set again."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.logits: list[Any] = []

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.logits = []

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self.logits.append(outputs)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # under DDP every process tests; one writes the report
            return
        images, labels = trainer.datamodule.test_split()
        reusable = trainer.world_size == 1 and self.logits and all(isinstance(x, torch.Tensor) for x in self.logits)
        logits = torch.cat(self.logits) if reusable else None
        tested = len(labels) if logits is None else len(logits)  # limit_test_batches tests the first batches only
        batch_size = trainer.datamodule.hparams.eval_batch_size
        evaluator = Evaluator(pl_module, (images[:tested], labels[:tested]), batch_size=batch_size, logits=logits)
        self.logits = []
        history = getattr(pl_module, "history", None)
        write_report(evaluator, self.out_dir, history=history if history and history["epoch"] else None)
