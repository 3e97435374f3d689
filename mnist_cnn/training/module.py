"""The LightningModule shared by every architecture."""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from mnist_cnn.data.pixels import image_batch
from mnist_cnn.errors import CheckpointError
from mnist_cnn.inference.classify import UNCERTAIN_BELOW, Predictions, classify
from mnist_cnn.inference.predict import predict_images
from mnist_cnn.models import build_model
from mnist_cnn.preprocess.images import ImageInput
from mnist_cnn.training import legacy
from mnist_cnn.training.components import build, check_allowed, component_class
from mnist_cnn.weights.checkpoints import (
    HISTORY,
    cannot_rebuild,
    history_columns,
    mark_uncertainty_threshold,
    read_checkpoint,
)
from mnist_cnn.weights.manifest import verified_checkpoint

Batch = tuple[torch.Tensor, torch.Tensor]
STAGES = ("train", "val", "test")
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 1e-3, "weight_decay": 1e-4}
# Keys of a scheduler node that tell Lightning when to step it; the others are the scheduler's arguments.
LIGHTNING_SCHEDULER_KEYS = ("interval", "frequency", "monitor")
# PyTorch runs these as one kernel per step instead of several per tensor when asked (fused=True), on CPU and CUDA.
FUSED_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; raised before any checkpoint holds the weights it made."""


class MNISTClassifier(L.LightningModule):
    """Any registered architecture, trained with cross-entropy and scored with torchmetrics.

    ``optimizer`` and ``scheduler`` are config nodes: a ``torch.optim`` (``torch.optim.lr_scheduler``) class in
    ``_target_`` and its arguments, e.g. ``{"_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9}``. The
    optimizer's parameters are supplied, and so are the scheduler's optimizer and the run-length arguments it
    leaves out (``T_max``, ``total_steps``, ``max_lr``); ``interval``, ``frequency`` and ``monitor`` in the
    scheduler node tell Lightning when to step it. ``label_smoothing`` softens the training targets only;
    validation and test losses stay the plain cross-entropy, so they compare across recipes.

    Every argument is plain data and is saved as a hyperparameter, so
    ``MNISTClassifier.load_from_checkpoint(path)`` rebuilds the model with no other input. ``forward`` takes
    normalised images and returns logits; ``predict`` takes pixels and returns probabilities.
    ``history`` holds every epoch's losses and accuracies, like Keras' ``History.history``. A fit trains in train
    mode whatever mode the module is in (``from_pretrained`` returns it in eval mode); validation and test run in
    eval mode.
    ``predict_images`` flags answers below ``uncertain_below`` as uncertain (a shipped model has its own).
    """

    uncertain_below: float = UNCERTAIN_BELOW

    def __init__(
        self,
        model_name: str = "simple_cnn",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        optimizer: Mapping[str, Any] | str | None = None,
        scheduler: Mapping[str, Any] | str | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = True,
        **legacy_hparams: Any,
    ) -> None:
        super().__init__()
        optimizer, scheduler = legacy.upgrade(optimizer, scheduler, legacy_hparams)  # mnist_cnn 0.1's names
        optimizer = dict(optimizer or DEFAULT_OPTIMIZER)
        scheduler = dict(scheduler) if scheduler else None
        check_allowed(optimizer, "optimizer")
        check_allowed(scheduler, "scheduler")
        self.save_hyperparameters(
            {
                "model_name": model_name,
                "model_kwargs": dict(model_kwargs or {}),
                "num_classes": num_classes,
                "input_shape": tuple(input_shape),
                "optimizer": optimizer,
                "scheduler": scheduler,
                "label_smoothing": label_smoothing,
                "channels_last": channels_last,
            }
        )
        self.model = build_model(model_name, input_shape=input_shape, num_classes=num_classes, **(model_kwargs or {}))
        if channels_last:  # NHWC convolutions are faster with oneDNN on CPUs and with cuDNN on GPUs
            self.model = self.model.to(memory_format=torch.channels_last)
        # Each stage's epoch so far, summed on the device with no host sync: [loss sum, right, right in top 3] and
        # the image count. Written by hand rather than with torchmetrics: its per-update checks cost more than a
        # small model's whole step, for the same sums. Top-3 only where models are judged (val, test).
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._epoch_metrics: dict[int, dict[str, float]] = {}
        # On a GPU, whether this epoch's training loss was ever non-finite, kept on the device and read once per
        # epoch: reading it every step would make the host wait for the GPU at every step.
        self._diverged: torch.Tensor | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MNISTClassifier:
        """The classifier saved in ``path``, on the CPU, read with ``weights_only=True``; a ``CheckpointError``
        says what is wrong with a bad file."""
        checkpoint = read_checkpoint(path)
        try:
            model = cls(**checkpoint["hyper_parameters"])
            model.load_state_dict(checkpoint["state_dict"])
        except (ValueError, RuntimeError, TypeError) as error:  # unknown architecture, options or target; shapes
            raise cannot_rebuild(path, error) from None
        model.on_load_checkpoint(checkpoint)
        mark_uncertainty_threshold(model, path)
        return model

    @classmethod
    def from_pretrained(cls, name: str) -> MNISTClassifier:
        """The shipped pretrained ``name`` model (checksum verified), in eval mode on the CPU."""
        return cls.load(verified_checkpoint(name)).eval()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, weights_only: bool = True, **kwargs: Any) -> Any:
        """Lightning's loader, reading with ``weights_only=True`` unless told otherwise (no code in a file runs)."""
        return super().load_from_checkpoint(checkpoint_path, *args, weights_only=weights_only, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[HISTORY] = self._epoch_metrics

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only into a module that has no history yet (a resume, a loaded file), so that testing the best
        # checkpoint after a fit keeps the whole fit's history rather than the best epoch's.
        if not self._epoch_metrics:
            self._epoch_metrics = {int(epoch): dict(row) for epoch, row in checkpoint.get(HISTORY, {}).items()}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, 10) of normalised float images (N, 1, 28, 28)."""
        if not (torch.is_tensor(images) and images.is_floating_point()):
            raise TypeError(
                "forward takes normalised float tensors (N, 1, 28, 28); for numpy arrays or pixels "
                "(uint8 0-255, float 0-1) call model.predict(images)"
            )
        return self.model(images)

    def predict(
        self, images: Any, batch_size: int = 1024, normalized: bool = False, verbose: int | str | None = None
    ) -> np.ndarray:
        """(N, 10) class probabilities as a numpy array, like Keras' ``model.predict``: ``images`` (N, 28, 28),
        (N, 1, 28, 28) or (N, 28, 28, 1), numpy or torch, uint8 0-255 or float 0-1 pixels (normalised floats
        with ``normalized=True``). Runs in eval mode; the module's own mode is restored. ``verbose`` is accepted
        and ignored, so that Keras calls (``predict(x, verbose=0)``) run: there is no progress bar."""
        return classify(self, image_batch(images, normalized), batch_size, normalized).probabilities

    def predict_images(
        self, images: ImageInput | Sequence[ImageInput], batch_size: int = 1024, normalized: bool = False
    ) -> Predictions:
        """Labels and probabilities for image files, PIL images or arrays of any size, preprocessed like MNIST;
        an array of MNIST-formatted digits is classified as it is (see ``mnist_cnn.predict_images``)."""
        return predict_images(self, images, batch_size, normalized)

    def _step(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's mean loss and its logits; the epoch's sums are kept for ``epoch_metrics``."""
        images, labels = batch
        self._check_batch(images, labels, stage)
        logits = self.model(images)
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0
        losses = F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
        with torch.no_grad():
            right = logits.argmax(dim=1) == labels
            if stage == "train":
                sums = torch.stack((losses.sum(), right.sum(dtype=losses.dtype)))
            else:
                top3 = (logits.topk(min(3, logits.shape[1]), dim=1).indices == labels[:, None]).any(dim=1)
                sums = torch.stack((losses.sum(), right.sum(dtype=losses.dtype), top3.sum(dtype=losses.dtype)))
            self._sums[stage] = self._sums[stage] + sums if stage in self._sums else sums
            self._counts[stage] = self._counts.get(stage, 0) + len(labels)
        return losses.mean(), logits

    def _check_batch(self, images: torch.Tensor, labels: torch.Tensor, stage: str) -> None:
        """Refuse a batch the network cannot read, from its dtype and shape alone (no host sync)."""
        shape = (len(images), *self.hparams.input_shape)
        readable = images.is_floating_point() and tuple(images.shape) == shape
        if readable and labels.shape == shape[:1] and not (labels.is_floating_point() or labels.dtype == torch.bool):
            return
        raise ValueError(
            f"a {stage} batch must be normalised float images {shape} and integer labels ({len(images)},), got "
            f"{images.dtype} images {tuple(images.shape)} and {labels.dtype} labels {tuple(labels.shape)}: to train "
            "on your own arrays (uint8 or float pixels, channels first or last, one-hot labels), load them with "
            "MNISTDataModule.from_arrays(x, y)"
        )

    def epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """``<stage>_loss`` (the mean over images), ``<stage>_acc`` (micro: the fraction of images right) and, for
        val and test, ``<stage>_top3_acc`` of the epoch so far, summed over every process; then starts anew."""
        if stage not in self._sums:
            return {}
        count = torch.tensor([self._counts.pop(stage)], dtype=torch.float32, device=self.device)
        totals = torch.cat((self._sums.pop(stage), count))
        if self._trainer is not None:
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        names = ("loss", "acc", "top3_acc")[: len(totals) - 1]
        return {f"{stage}_{name}": value / totals[-1] for name, value in zip(names, totals)}

    @property
    def history(self) -> dict[str, list[float]]:
        """Per-epoch training and validation losses and accuracies of the fits so far, aligned with ``epoch``
        (NaN where an epoch did not validate): ``plot_training_history(model.history)`` draws them."""
        return history_columns(self._epoch_metrics)

    def _log_epoch(self, stage: str) -> None:
        # Logged once per epoch rather than from every step: a self.log call is a large share of a small model's
        # step on a CPU (`python -m benchmarks --overhead --profile` in a checkout shows where a step's time goes).
        # The sums are already over every process; sync_dist only keeps Lightning from warning.
        metrics = self.epoch_metrics(stage)
        if not metrics:
            return
        self.log(f"{stage}_loss", metrics[f"{stage}_loss"], prog_bar=True, sync_dist=True)
        self.log_dict({name: value for name, value in metrics.items() if "_acc" in name}, prog_bar=stage != "train",
                      sync_dist=True)  # fmt: skip
        if stage != "test" and not self.trainer.sanity_checking:
            self._epoch_metrics.setdefault(self.current_epoch, {}).update({k: float(v) for k, v in metrics.items()})

    def on_fit_start(self) -> None:
        # Lightning keeps the mode a module arrives in, and from_pretrained (or a predict) leaves it in eval mode:
        # fitting would then run with frozen batch norm statistics and no dropout. Validation and test switch to
        # eval mode themselves and restore this one.
        self.train()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, "train")
        if loss.device.type != "cpu":
            diverged = ~torch.isfinite(loss.detach())
            self._diverged = diverged if self._diverged is None else self._diverged | diverged
        elif not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "training stopped before applying it (try a lower optimizer.lr)"
            )
        return loss

    def _stop_if_diverged(self) -> None:
        """Raise ``NonFiniteLossError`` if the training loss was non-finite in this epoch (read on a GPU once per
        epoch, before the epoch's weights are validated or saved)."""
        diverged, self._diverged = self._diverged, None
        if diverged is not None and bool(diverged):
            raise NonFiniteLossError(
                f"the training loss became NaN or infinite in epoch {self.current_epoch}; training stopped before "
                "its weights were validated or saved (try a lower optimizer.lr)"
            )

    def on_validation_start(self) -> None:
        if not self.trainer.sanity_checking:
            self._stop_if_diverged()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """The batch's logits, which ``EvaluationReport`` reuses for the report instead of scoring the set again."""
        return self._step(batch, "test")[1]

    def on_train_epoch_end(self) -> None:
        self._stop_if_diverged()
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: Batch | torch.Tensor, batch_idx: int) -> torch.Tensor:
        """Class probabilities."""
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(images).softmax(dim=-1)

    def configure_optimizers(self) -> Any:
        node = dict(self.hparams.optimizer)
        if node["_target_"] in FUSED_OPTIMIZERS and "fused" not in node and self.device.type in ("cpu", "cuda"):
            node["fused"] = True  # the module is on its device when Lightning calls this
        optimizer = build(node, "optimizer", params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self._scheduler(optimizer)}

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Lightning's LR scheduler config: the scheduler built with the run-length arguments its node leaves
        out, plus when to step it."""
        node = dict(self.hparams.scheduler)
        when = {key: node.pop(key) for key in LIGHTNING_SCHEDULER_KEYS if key in node}
        accepted = inspect.signature(component_class(node, "scheduler")).parameters
        missing = [name for name in ("T_max", "total_steps", "max_lr") if name in accepted and node.get(name) is None]
        supplied: dict[str, Any] = {}
        if "max_lr" in missing:
            supplied["max_lr"] = [group["lr"] for group in optimizer.param_groups]
        for name in ("total_steps", "T_max"):
            if name in missing:
                in_steps = name == "total_steps" or when.get("interval") == "step"
                supplied[name] = self._run_length(node["_target_"], in_steps)
        return {"scheduler": build(node, "scheduler", optimizer=optimizer, **supplied), **when}

    def _run_length(self, target: str, in_steps: bool) -> int:
        """The number of optimizer steps (or epochs) of the run the trainer will make, which ends at ``max_epochs``
        or ``max_steps``, whichever comes first; in epochs, the last one ``max_steps`` reaches into counts."""
        trainer = self._trainer
        if trainer is None:
            length = math.inf
        elif in_steps:
            length = trainer.estimated_stepping_batches
        else:
            length = trainer.max_epochs if (trainer.max_epochs or -1) > 0 else math.inf
            if trainer.max_steps >= 0:
                length = min(length, max(1, math.ceil(trainer.max_steps / self._steps_per_epoch())))
        if not math.isfinite(length):
            raise ValueError(f"scheduler {target} needs a run of known length: set max_epochs or max_steps")
        return int(length)

    def _steps_per_epoch(self) -> float:
        """Optimizer steps in a training epoch (infinite for an endless loader)."""
        if self.trainer.train_dataloader is None:  # Lightning loads it only once a fit has begun
            self.trainer.fit_loop.setup_data()
        batches = self.trainer.num_training_batches
        return max(1, math.ceil(batches / self.trainer.accumulate_grad_batches)) if math.isfinite(batches) else batches


def load_pretrained_model(name: str, path: str | os.PathLike[str] | None = None) -> MNISTClassifier:
    """The pretrained ``MNISTClassifier`` for ``name``, in eval mode on the CPU: the shipped file (checksum
    verified), or with ``path`` that checkpoint, which must hold a ``name`` model. Read with ``weights_only=True``."""
    model = MNISTClassifier.from_pretrained(name) if path is None else MNISTClassifier.load(path)
    if model.hparams.model_name != name:
        raise CheckpointError(f"{path} holds a {model.hparams.model_name} model, not {name}")
    return model.eval()
