"""Lightning callbacks: survive interruptions, resume exactly, and keep a moving average of the weights."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.optim.swa_utils import get_ema_multi_avg_fn


class GracefulInterrupt(L.Callback):
    """On Ctrl-C or SIGTERM: finish the current batch, save a resumable checkpoint to ``path``, stop.

    Lightning stops at a batch boundary on SIGTERM only (raising ``SIGTERMException``); the first Ctrl-C is
    re-sent to this process as SIGTERM so that both take that path (``_on_sigint``). A second Ctrl-C aborts at
    once. ``signal_name`` tells afterwards which signal stopped the run (``None`` if none did).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.signal_name: str | None = None
        self._previous_sigint: Any = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """Re-send the first Ctrl-C as SIGTERM. Lightning's SIGTERM handler is its one graceful stop: it sets the
        flag its loops check at each batch boundary (a private attribute, so not set from here), forwards the
        signal to the processes its launcher started and tells the other ranks. SIGINT's former handler is back
        before the SIGTERM is sent, so a second Ctrl-C raises ``KeyboardInterrupt`` at once."""
        self.signal_name = "SIGINT"
        signal.signal(signal.SIGINT, self._previous_sigint)
        os.kill(os.getpid(), signal.SIGTERM)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        signal.signal(signal.SIGINT, self._previous_sigint)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
        if isinstance(exception, SIGTERMException):
            self.signal_name = self.signal_name or "SIGTERM"
            trainer.save_checkpoint(self.path, weights_only=False)


class RandomState(L.Callback):
    """Saves torch's random generators in every checkpoint and restores them on resume.

    Shuffling and augmentation draw from them, so a run resumed from an end-of-epoch checkpoint
    sees the same batches and the same augmentations as one that was never stopped.
    """

    def state_dict(self) -> dict[str, Any]:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["cpu"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def warmed_up_decay(decay: float, updates: int) -> float:
    """The EMA decay after ``updates`` updates: ``min(decay, (1 + updates) / (10 + updates))``, the warm-up of
    TensorFlow's ``ExponentialMovingAverage(num_updates=...)``.

    Written here because Lightning's EMA has a fixed decay: its average starts as the random initial
    weights, which dominate it for ~1/(1 - decay) steps. At 0.999 and batches of 256, custom_cnn's validation
    accuracy sat near chance for 6 epochs, long enough for early stopping's patience to end a run.
    """
    return min(decay, (1 + updates) / (10 + updates))


class ExponentialMovingAverage(WeightAveraging):
    """An EMA of the weights, updated every optimizer step: validation, the checkpoints and the final model
    use the average. Its decay warms up (``warmed_up_decay``), so the average is usable from the first epoch.

    Also fixed: Lightning's callback restores the raw (unaveraged) weights whenever a checkpoint of its
    is loaded, so ``trainer.test(ckpt_path=...)`` after a fit would test those instead of the average
    that validation chose. Only a resumed fit needs them.
    """

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__(multi_avg_fn=self._update_average)
        self.decay = decay
        self._current_decay = decay

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # From the trainer's step count, a Python int: the average's own count is a tensor, on the GPU
        # when training there, and reading it would stall the GPU every step.
        self._current_decay = warmed_up_decay(self.decay, trainer.global_step - 1)
        super().on_train_batch_end(trainer, pl_module, *args)

    def _update_average(self, averages: list[torch.Tensor], currents: list[torch.Tensor], count: torch.Tensor) -> None:
        """One step for a group of same-dtype tensors: torch's EMA step (one kernel per group) at this step's decay."""
        if averages[0].is_floating_point():
            get_ema_multi_avg_fn(self._current_decay)(averages, currents, count)
        else:  # batch norm's step counters: nothing to average (torch's step would round them down)
            for average, current in zip(averages, currents):
                average.copy_(current)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
