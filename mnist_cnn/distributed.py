"""DDP bookkeeping: the run dir rank 0 creates and the other processes share, and results ddp_spawn leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint

from mnist_cnn.checkpoints import read_checkpoint

RUN_DIR_ENV = "MNIST_CNN_RUN_DIR"


def is_launching_process() -> bool:
    """False in the DDP processes of rank > 0 (started by Lightning's ``ddp`` or by a cluster launcher)."""
    return rank_zero_only.rank == 0


def share_run_dir(run_dir: Path) -> None:
    """Hand ``run_dir`` to the DDP processes Lightning starts from this one: they inherit its environment."""
    os.environ[RUN_DIR_ENV] = str(run_dir)


def shared_run_dir(model_root: Path) -> Path:
    """Rank 0's run dir, in a process of rank > 0. Processes a cluster started on other nodes cannot know it
    before the process group exists: they get a path that is never created (checkpoints follow rank 0's
    directory, and loggers and reports write on rank 0 only)."""
    return Path(os.environ.get(RUN_DIR_ENV) or model_root / f"rank_{rank_zero_only.rank}")


def best_score(checkpoint: ModelCheckpoint, path: Path) -> float:
    """The monitored score of the best checkpoint at ``path``; ``ddp_spawn`` does not send it back from its
    processes (Lightning restores only the path), so then it is read from the checkpoint file."""
    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    state = read_checkpoint(path)["callbacks"][checkpoint.state_key]
    return float(state["best_model_score"])
