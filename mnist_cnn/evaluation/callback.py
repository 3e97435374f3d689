"""A Lightning callback that writes the evaluation report of the weights just tested."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L

from mnist_cnn.evaluation.evaluator import Evaluator, write_report


class EvaluationReport(L.Callback):
    """After ``trainer.test`` on an ``MNISTDataModule``, write ``write_report``'s files to ``out_dir``.

    ``history`` (a run dir or metrics.csv) adds the training curves.
    """

    def __init__(self, out_dir: str | os.PathLike[str], history: str | os.PathLike[str] | None = None) -> None:
        self.out_dir, self.history = Path(out_dir), history

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # under DDP every process tests; one writes the report
            return
        evaluator = Evaluator(pl_module, trainer.datamodule, batch_size=trainer.datamodule.hparams.eval_batch_size)
        write_report(evaluator, self.out_dir, history=self.history)
