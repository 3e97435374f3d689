"""Checkpoints written by mnist_cnn 0.1, whose hyperparameters named the optimizer and the LR schedule by a
short name plus flat numbers, read as today's ``_target_`` nodes (the shipped weights are such files)."""

from __future__ import annotations

from typing import Any

LEGACY_KEYS = frozenset({"lr", "weight_decay", "momentum", "decay_epochs", "decay_rate"})
OPTIMIZERS = {"adam": "torch.optim.Adam", "sgd": "torch.optim.SGD", "rmsprop": "torch.optim.RMSprop"}
SCHEDULERS = "torch.optim.lr_scheduler"

Node = dict[str, Any]


def upgrade(optimizer: Any, scheduler: Any, legacy: dict[str, Any]) -> tuple[Any, Any]:
    """``optimizer`` and ``scheduler`` with any 0.1 short name replaced by the equivalent node."""
    unknown = set(legacy) - LEGACY_KEYS
    if unknown:
        raise TypeError(f"MNISTClassifier got unexpected arguments: {', '.join(sorted(unknown))}")
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r} in a checkpoint of mnist_cnn 0.1")
        node: Node = {"_target_": OPTIMIZERS[optimizer], "lr": legacy.get("lr", 1e-3)}
        node["weight_decay"] = legacy.get("weight_decay", 0.0)
        if optimizer != "adam":
            node["momentum"] = legacy.get("momentum", 0.9)
        optimizer = node
    if isinstance(scheduler, str):
        decay, every = legacy.get("decay_rate", 0.5), legacy.get("decay_epochs", 5)
        nodes: dict[str, Node | None] = {
            "constant": None,
            "step": {"_target_": f"{SCHEDULERS}.StepLR", "step_size": every, "gamma": decay},
            "exponential": {"_target_": f"{SCHEDULERS}.ExponentialLR", "gamma": decay ** (1 / every)},
            "cosine": {"_target_": f"{SCHEDULERS}.CosineAnnealingLR"},
            "onecycle": {"_target_": f"{SCHEDULERS}.OneCycleLR", "cycle_momentum": False, "interval": "step"},
        }
        if scheduler not in nodes:
            raise ValueError(f"unknown scheduler {scheduler!r} in a checkpoint of mnist_cnn 0.1")
        scheduler = nodes[scheduler]
    return optimizer, scheduler
