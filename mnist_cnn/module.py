"""The LightningModule shared by every architecture."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from mnist_cnn.models import create_model
from mnist_cnn.optim import PER_STEP_SCHEDULERS, build_optimizer, build_scheduler

if TYPE_CHECKING:
    from mnist_cnn.prediction import Predictions

Batch = tuple[torch.Tensor, torch.Tensor]
STAGES = ("train", "val", "test")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; raised before the step, so no checkpoint holds it."""


def _accuracies(num_classes: int, stage: str, top3: bool) -> MetricCollection:
    """``<stage>_acc`` (micro-averaged: the fraction of images right), plus ``<stage>_top3_acc`` if asked."""
    metrics = {"acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False)}
    if top3:
        metrics["top3_acc"] = MulticlassAccuracy(
            num_classes, top_k=min(3, num_classes), average="micro", validate_args=False
        )
    return MetricCollection(metrics, prefix=f"{stage}_")


class MNISTClassifier(L.LightningModule):
    """Any registered architecture, trained with cross-entropy and scored with torchmetrics.

    ``label_smoothing`` softens the training targets only; validation and test losses stay the plain
    cross-entropy, so they compare across recipes.

    Every argument is plain data and is saved as a hyperparameter, so
    ``MNISTClassifier.load_from_checkpoint(path)`` rebuilds the model with no other input.
    Inputs are normalised images (see ``mnist_cnn.data.normalize``); outputs are logits.
    """

    def __init__(
        self,
        model_name: str = "simple_cnn",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        input_shape: tuple[int, int, int] = (1, 28, 28),
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: str = "step",
        decay_epochs: int = 5,
        decay_rate: float = 0.5,
        label_smoothing: float = 0.0,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model_name, input_shape=input_shape, num_classes=num_classes, **(model_kwargs or {}))
        if channels_last:  # NHWC convolutions are faster with oneDNN on CPUs and with cuDNN on GPUs
            self.model = self.model.to(memory_format=torch.channels_last)
        # ModuleDict keys must not shadow nn.Module methods such as train(), hence the suffixes.
        # Fed per-image losses, so the plain mean is the per-image mean whatever the batch sizes. "disable":
        # a NaN loss shows as NaN instead of being dropped with a warning, and no per-step NaN scan (a GPU
        # sync) runs; it cannot take weights (torchmetrics#3434 replaces them with ones), hence no weights.
        self.losses = torch.nn.ModuleDict({f"{stage}_loss": MeanMetric(nan_strategy="disable") for stage in STAGES})
        # Top-3 only where models are judged (val, test): on a CPU it is most of the metrics' per-step cost
        # (a LeNet-5 epoch ran 0.75-1.6 s of ~8 s faster without it), for a figure nobody reads in training.
        self.accuracies = torch.nn.ModuleDict(
            {f"{stage}_acc": _accuracies(num_classes, stage, top3=stage != "train") for stage in STAGES}
        )

    @classmethod
    def from_pretrained(cls, name: str) -> MNISTClassifier:
        """The shipped pretrained ``name`` model (checksum verified), in eval mode on the CPU."""
        from mnist_cnn.pretrained import load_pretrained_model

        return load_pretrained_model(name)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def predict_images(self, images: Any, batch_size: int = 1024) -> Predictions:
        """Labels and probabilities for image files, PIL images or arrays of any size, preprocessed like
        MNIST; a (28, 28) uint8 array, or an (N, 28, 28) stack of them, is taken as already MNIST-formatted."""
        from mnist_cnn.prediction import predict_images  # local: loads PIL only when predicting

        return predict_images(self, images, batch_size)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0
        losses = F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
        self.losses[f"{stage}_loss"].update(losses.detach())
        self.accuracies[f"{stage}_acc"].update(logits.detach(), labels)
        return losses.mean()

    def _log_epoch(self, stage: str) -> None:
        # Logged once per epoch rather than from every step: self.log costs about as much as
        # LeNet-5's forward pass on a CPU. Lightning computes (synchronised) and resets the metrics.
        self.log(f"{stage}_loss", self.losses[f"{stage}_loss"], prog_bar=True)
        self.log_dict(self.accuracies[f"{stage}_acc"], prog_bar=stage != "train")

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "training stopped before applying it (try a lower optimizer.lr)"
            )
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
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
        hp = self.hparams
        # One fused kernel per step instead of several per tensor (PyTorch fuses only when asked): on a CPU,
        # LeNet-5's Adam step is several times cheaper. The model is on its device when Lightning calls this.
        fused = self.device.type in ("cpu", "cuda")
        optimizer = build_optimizer(self.parameters(), hp.optimizer, hp.lr, hp.weight_decay, hp.momentum, fused)
        attached = self._trainer is not None
        max_epochs = self.trainer.max_epochs if attached else 1
        per_step = hp.scheduler in PER_STEP_SCHEDULERS
        total_steps = self.trainer.estimated_stepping_batches if attached and per_step else 1
        if not math.isfinite(total_steps):
            raise ValueError(f"scheduler {hp.scheduler!r} needs a run of known length: set max_epochs or max_steps")
        scheduler = build_scheduler(
            optimizer, hp.scheduler, hp.decay_epochs, hp.decay_rate, max_epochs, int(total_steps)
        )
        if scheduler is None:
            return optimizer
        interval = "step" if per_step else "epoch"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
