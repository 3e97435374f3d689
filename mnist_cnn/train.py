"""``python -m mnist_cnn.train model=lenet5``: train, keep the best checkpoint, test it, print a summary.

Every run writes into its own directory, ``<checkpoint_root>/<model>/<timestamp>[_N]/``: Hydra's ``.hydra/`` and
``train.log``, the checkpoints, metrics, ``result.json`` and the evaluation report. ``ckpt_path=`` resumes a run
in its directory; ``weights=`` starts a new run from trained weights. ``-m`` runs a sweep.
"""

from __future__ import annotations

import signal

from mnist_cnn.training.run_dir import (
    exit_on_sigint,
    model_root,
    register_resolvers,
    remove_new_dir,
    resumed_run,
    segment_dir,
)

if __name__ == "__main__":  # python -m: from the first moment, so that Ctrl-C during the imports below ends cleanly
    signal.signal(signal.SIGINT, exit_on_sigint)

import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mnist_cnn.cli import fail, hydra_command
from mnist_cnn.config import validate
from mnist_cnn.errors import TrainingStopped, UserError
from mnist_cnn.training.sweep import is_multirun, run_job

if TYPE_CHECKING:
    from mnist_cnn.training.run import TrainResult

log = logging.getLogger(__name__)


def resume_command(checkpoint: Path) -> str:
    """This run's command line, continuing from ``checkpoint``."""
    overrides = [item for item in HydraConfig.get().overrides.task if not item.startswith("ckpt_path=")]
    return shlex.join([sys.executable, "-m", "mnist_cnn.train", *overrides, f"ckpt_path={checkpoint}"])


def fit(cfg: DictConfig) -> TrainResult:
    """Validate ``cfg`` and train in Hydra's output dir, the run dir; a run that fails before training starts
    (a bad value, missing data) leaves no directory behind."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    made = run_dir  # what an early failure removes, if this process made it
    try:
        config = validate(cfg)
        from mnist_cnn.training.run import train  # Lightning: only once the config is known to be good

        resumed = resumed_run(config.ckpt_path, model_root(config.checkpoint_root, config.model["name"])) == run_dir
        made = segment = segment_dir(run_dir, resumed)
        if resumed:  # Hydra kept the first segment's .hydra/: this one's config goes beside its result
            OmegaConf.save(cfg, segment / "config.yaml")
            OmegaConf.save(OmegaConf.create(list(HydraConfig.get().overrides.task)), segment / "overrides.yaml")
        return train(config, run_dir, segment)
    except UserError:
        remove_new_dir(made, parents=2 if made == run_dir else 0)
        raise


@hydra_command("train")
def run(cfg: DictConfig) -> float | None:
    """Hydra task: returns ``optimized_metric`` (default: best validation accuracy), the metric sweeps optimise."""
    if is_multirun():  # a failed job is recorded as failed and returns None: the other jobs still run
        return run_job(cfg, fit)
    try:
        result = fit(cfg)
    except TrainingStopped as stop:
        resume = f"\nresume with: {resume_command(stop.checkpoint)}" if stop.checkpoint is not None else ""
        fail(f"{stop}{resume}", stop.exit_code)
    log.info(result.summary())
    return result.metrics.get(cfg.optimized_metric)


def main() -> float | None:
    """The command: Ctrl-C at any moment ends it with one line and exit status 130, and a run directory that
    holds no checkpoint yet is removed; while fitting, ``GracefulInterrupt`` first saves a resumable checkpoint."""
    previous = signal.signal(signal.SIGINT, exit_on_sigint)
    try:
        return run()
    finally:
        signal.signal(signal.SIGINT, previous)


register_resolvers()

if __name__ == "__main__":
    main()
