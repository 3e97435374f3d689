"""Checkpoint files: weights-only reading with one clear error for every bad file, architecture checks, and a
Lightning-free loader of the bare network and its training history for inference, evaluation and export."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_cnn.errors import CheckpointError
from mnist_cnn.models import build_model
from mnist_cnn.weights.manifest import shipped_info

# The hyperparameters that fix the shapes of the weights: resuming or loading needs them to agree.
ARCHITECTURE_KEYS = ("model_name", "model_kwargs", "num_classes", "input_shape")
HISTORY = "history"  # the checkpoint key of the per-epoch metrics: {epoch: {metric: value}}


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint dict, unpickled with ``weights_only=True`` so that no code in the file can run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or foreign files fail with anything from EOFError to UnpicklingError
        raise CheckpointError(
            f"{path} is not a readable checkpoint: truncated, not written by torch.save, or holding objects "
            f"that weights-only loading refuses ({type(error).__name__})"
        ) from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "hyper_parameters"} <= checkpoint.keys():
        raise CheckpointError(f"{path} is not an MNISTClassifier checkpoint: it has no state_dict and hyper_parameters")
    return checkpoint


def is_resumable(checkpoint: dict[str, Any]) -> bool:
    """Whether ``checkpoint`` holds a training run's state (optimizer, loops), not only weights."""
    return "optimizer_states" in checkpoint and "loops" in checkpoint


def architecture(hparams: dict[str, Any]) -> dict[str, Any]:
    """The shape-defining part of a module's hyperparameters, in a comparable form."""
    missing = [key for key in ARCHITECTURE_KEYS if key not in hparams]
    if missing:
        raise CheckpointError(f"not an MNISTClassifier checkpoint: its hyperparameters lack {', '.join(missing)}")
    found = {key: hparams[key] for key in ARCHITECTURE_KEYS}
    found["model_kwargs"] = dict(found["model_kwargs"] or {})
    found["input_shape"] = tuple(found["input_shape"])
    return found


def check_same_architecture(path: str | os.PathLike[str], expected: dict[str, Any], option: str) -> None:
    """Refuse ``path`` for a module whose architecture differs from the checkpoint's; ``option`` is the setting
    (``ckpt_path`` or ``weights``) named in the message."""
    saved, wanted = architecture(read_checkpoint(path)["hyper_parameters"]), architecture(expected)
    if saved != wanted:
        differences = ", ".join(
            f"{key}: {saved[key]!r} saved, {wanted[key]!r} asked" for key in saved if saved[key] != wanted[key]
        )
        raise CheckpointError(
            f"{option}={path} holds a different model ({differences}); use it with model={saved['model_name']} "
            "and the model options it was trained with"
        )


def cannot_rebuild(path: str | os.PathLike[str], error: Exception) -> CheckpointError:
    return CheckpointError(f"cannot rebuild the model saved in {path}: {str(error).splitlines()[0]}")


def load_network(path: str | os.PathLike[str]) -> nn.Module:
    """Only the architecture's ``nn.Module`` saved in ``path`` (eval mode, CPU), built without Lightning.

    For inference, evaluation and export, where importing Lightning would cost more than the work itself.
    """
    return network_from(read_checkpoint(path), path)


def network_from(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> nn.Module:
    """The architecture's ``nn.Module`` that ``checkpoint`` (read from ``path``) holds, in eval mode on the CPU, its
    weights channels-last as ``MNISTClassifier`` keeps them (faster convolutions on CPUs)."""
    saved = architecture(checkpoint["hyper_parameters"])
    prefix = "model."  # MNISTClassifier keeps the architecture in its ``model`` attribute
    weights = {key[len(prefix) :]: value for key, value in checkpoint["state_dict"].items() if key.startswith(prefix)}
    try:
        network = build_model(saved["model_name"], saved["input_shape"], saved["num_classes"], **saved["model_kwargs"])
        network.load_state_dict(weights)
    except (ValueError, RuntimeError) as error:
        raise cannot_rebuild(path, error) from None
    mark_uncertainty_threshold(network, path)
    return network.eval().to(memory_format=torch.channels_last)


def history_columns(epoch_metrics: Mapping[int, Mapping[str, float]]) -> dict[str, list[float]]:
    """Per-epoch metrics ``{epoch: {name: value}}`` as columns aligned with ``epoch`` (NaN where an epoch lacks a
    metric), the form ``plot_training_history`` takes."""
    epochs = sorted(epoch_metrics)
    names = sorted({name for row in epoch_metrics.values() for name in row})
    return {"epoch": epochs, **{name: [epoch_metrics[e].get(name, math.nan) for e in epochs] for name in names}}


def training_history(checkpoint: dict[str, Any]) -> dict[str, list[float]] | None:
    """The per-epoch metrics of the fit that wrote ``checkpoint``, as ``history_columns``; None when it has none."""
    saved = {int(epoch): dict(row) for epoch, row in checkpoint.get(HISTORY, {}).items()}
    return history_columns(saved) if saved else None


def mark_uncertainty_threshold(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Give a model loaded from a shipped file its ``uncertain_below`` from the manifest (predictions read it)."""
    info = shipped_info(path)
    if info is not None and info.uncertain_below is not None:
        model.uncertain_below = info.uncertain_below
