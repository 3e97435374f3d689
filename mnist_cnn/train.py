"""``python -m mnist_cnn.train model=lenet5``: train, keep the best checkpoint, test it, print a summary."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mnist_cnn.config import validate
from mnist_cnn.errors import CheckpointError, ConfigError, MNISTDataError
from mnist_cnn.sweep import is_multirun, run_job


def resume_command(checkpoint: Path) -> str:
    """This run's command line, continuing from ``checkpoint``."""
    from hydra.core.hydra_config import HydraConfig

    overrides = [item for item in HydraConfig.get().overrides.task if not item.startswith("ckpt_path=")]
    return shlex.join([sys.executable, "-m", "mnist_cnn.train", *overrides, f"ckpt_path={checkpoint}"])


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra task: returns ``optimized_metric`` (default: best validation accuracy), the metric sweeps optimise."""
    from mnist_cnn.training import TrainingStopped, train

    logging.getLogger("lightning").handlers.clear()  # Hydra's handlers print its messages already

    if is_multirun():  # a failed job is recorded as failed and returns None: the other jobs still run
        return run_job(cfg, lambda job_cfg: train(validate(job_cfg)))
    try:
        result = train(validate(cfg))
    except (ConfigError, CheckpointError, MNISTDataError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingStopped as stop:
        print(f"error: {stop}", file=sys.stderr)
        if stop.checkpoint is not None:
            print(f"resume with: {resume_command(stop.checkpoint)}", file=sys.stderr)
        sys.exit(stop.exit_code)
    print(result.summary())
    return result.metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
