"""Optimizers and learning-rate schedules selectable by name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so the config schema (and --help) loads without it
    import torch
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler

OPTIMIZERS = ("adam", "sgd", "rmsprop")
SCHEDULERS = ("constant", "step", "exponential", "cosine", "onecycle")
PER_STEP_SCHEDULERS = ("onecycle",)  # stepped after every optimizer step, not every epoch


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float,
    fused: bool = False,
) -> Optimizer:
    """``weight_decay`` is L2 regularisation added to the gradient (Keras' ``l2`` regulariser, up to a factor 2).

    ``fused`` (CPU or CUDA parameters) updates every parameter of Adam or SGD in one kernel, not several per tensor.
    """
    import torch

    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum, fused=fused or None)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def build_scheduler(
    optimizer: Optimizer, name: str, decay_epochs: int, decay_rate: float, max_epochs: int, total_steps: int = 1
) -> LRScheduler | None:
    """``step`` multiplies the LR by ``decay_rate`` every ``decay_epochs`` epochs, ``exponential`` decays smoothly
    at the same average rate, ``cosine`` anneals to 0 over ``max_epochs``; ``onecycle`` (per step, for short runs)
    warms up from LR/25 to LR over the first 30 % of ``total_steps``, then anneals to ~0."""
    from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, OneCycleLR, StepLR

    if name == "constant":
        return None
    if name == "step":
        return StepLR(optimizer, step_size=decay_epochs, gamma=decay_rate)
    if name == "exponential":
        return ExponentialLR(optimizer, gamma=decay_rate ** (1 / decay_epochs))
    if name == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(max_epochs, 1))
    if name == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return OneCycleLR(optimizer, max_lr=max_lr, total_steps=max(total_steps, 1), cycle_momentum=False)
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
