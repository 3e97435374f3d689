"""A Lightning callback that writes the evaluation report of the weights just tested."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L

from mnist_cnn.evaluation.evaluator import Evaluator
from mnist_cnn.evaluation.report import write_report


class EvaluationReport(L.Callback):
    """After ``trainer.test`` on an ``MNISTDataModule``, write ``write_report``'s files to ``out_dir``, with the
    training curves when the module keeps a ``history`` (as ``MNISTClassifier`` does)."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # under DDP every process tests; one writes the report
            return
        evaluator = Evaluator(pl_module, trainer.datamodule, batch_size=trainer.datamodule.hparams.eval_batch_size)
        history = getattr(pl_module, "history", None)
        write_report(evaluator, self.out_dir, history=history if history and history["epoch"] else None)
