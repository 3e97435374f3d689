"""Classify MNIST-formatted digits: batched inference, probabilities, top-k, and when an answer is too uncertain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mnist_cnn.data.pixels import prepared

# A prediction whose probability is below a model's threshold is flagged uncertain. Each shipped model has its own
# (manifest.json, ``uncertain_below``), chosen by ``choose_uncertain_below``; other checkpoints use this one.
# See docs/robustness.md.
UNCERTAIN_BELOW = 0.9
RIGHT_FLAGGED_ALLOWED = 0.015  # the share of right answers on clean validation digits a threshold may flag


@dataclass(frozen=True)
class Predictions:
    """``labels`` (N,) predicted digits and ``probabilities`` (N, 10) softmax outputs, as numpy arrays;
    ``confidence`` and ``uncertain`` (below the model's ``uncertain_below``) derive from them. Still unpacks and
    indexes as the pair it once was: ``labels, probabilities = predictions``, ``predictions[1]``."""

    labels: np.ndarray
    probabilities: np.ndarray
    uncertain_below: float = UNCERTAIN_BELOW

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.labels, self.probabilities))

    def __getitem__(self, index: int) -> np.ndarray:
        return (self.labels, self.probabilities)[index]

    @property
    def confidence(self) -> np.ndarray:
        """(N,) the probability of each predicted digit."""
        return self.probabilities.max(axis=1)

    @property
    def uncertain(self) -> np.ndarray:
        """(N,) bool: the prediction's probability is below ``uncertain_below``, too low to trust."""
        return self.confidence < self.uncertain_below

    def top_k(self, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) most probable digits and their probabilities, most probable first."""
        digits = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return digits, np.take_along_axis(self.probabilities, digits, axis=1)


def uncertainty_threshold(model: nn.Module) -> float:
    """The probability below which ``model``'s answers are flagged uncertain: its ``uncertain_below`` attribute
    (set on shipped models when loaded), else ``UNCERTAIN_BELOW``."""
    return float(getattr(model, "uncertain_below", UNCERTAIN_BELOW))


def choose_uncertain_below(confidence_of_right: np.ndarray, allowed: float = RIGHT_FLAGGED_ALLOWED) -> float:
    """The highest threshold, in steps of 0.01, that flags at most ``allowed`` of a model's right answers, given
    their probabilities (on clean validation digits, never test digits)."""
    thresholds = np.round(np.arange(0.50, 1.0, 0.01), 2)
    flagged = (confidence_of_right[None, :] < thresholds[:, None]).mean(axis=1)
    return float(thresholds[flagged <= allowed].max(initial=thresholds[0]))


@torch.inference_mode()
def batched_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 1024, normalized: bool = False
) -> torch.Tensor:
    """(N, 10) float32 logits on the CPU of (N, 1, 28, 28) pixels, standardised then normalised (or normalised
    floats with ``normalized=True``), computed in batches on the model's device in eval mode (the model's own mode
    is restored)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    try:
        batches = (batch.to(device) for batch in images.split(batch_size))
        inputs = (batch.float() if normalized else prepared(batch) for batch in batches)
        return torch.cat([model(batch).float().cpu() for batch in inputs])
    finally:
        model.train(was_training)


def classify(model: nn.Module, images: torch.Tensor, batch_size: int = 1024, normalized: bool = False) -> Predictions:
    """Class probabilities of (N, 1, 28, 28) pixels (standardised, see ``standardize``), in batches on the model's
    device."""
    probabilities = batched_logits(model, images, batch_size, normalized).softmax(dim=1).numpy()
    return Predictions(probabilities.argmax(axis=1), probabilities, uncertainty_threshold(model))
