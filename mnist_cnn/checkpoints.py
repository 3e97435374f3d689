"""Checkpoint files: atomic writes, weights-only reads, and one clear error for every bad file."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mnist_cnn.module import MNISTClassifier

# The hyperparameters that fix the shapes of the weights: resuming or loading needs them to agree.
ARCHITECTURE_KEYS = ("model_name", "model_kwargs", "num_classes", "input_shape")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside its target, syncs it, then renames it into place.

    Written by hand because Lightning stages checkpoints in the system temp dir and moves them: where
    that is another filesystem (a tmpfs /tmp) the move is a copy, and a kill during it leaves a
    truncated file. A rename within one directory is atomic: a reader sees the old file or the new one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with temporary.open("wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or holds a model other than the one asked for."""


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


def architecture(hparams: dict[str, Any]) -> dict[str, Any]:
    """The shape-defining part of a module's hyperparameters, in a comparable form."""
    defaults = inspect.signature(MNISTClassifier).parameters  # for checkpoints that predate a key
    found = {key: hparams.get(key, defaults[key].default) for key in ARCHITECTURE_KEYS}
    found["model_kwargs"] = dict(found["model_kwargs"] or {})
    found["input_shape"] = tuple(found["input_shape"])
    return found


def check_resumable(path: str | os.PathLike[str], expected: dict[str, Any]) -> None:
    """Refuse to resume ``path`` into a module whose architecture differs from the checkpoint's."""
    saved, wanted = architecture(read_checkpoint(path)["hyper_parameters"]), architecture(expected)
    if saved != wanted:
        differences = ", ".join(
            f"{key}: {saved[key]!r} saved, {wanted[key]!r} asked" for key in saved if saved[key] != wanted[key]
        )
        raise CheckpointError(
            f"{path} holds a different model ({differences}); resume it with model={saved['model_name']} "
            "and the model options it was trained with"
        )


def load_classifier(path: str | os.PathLike[str]) -> MNISTClassifier:
    """The ``MNISTClassifier`` saved in ``path``, on the CPU, or a ``CheckpointError`` saying what is wrong."""
    read_checkpoint(path)
    try:
        return MNISTClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except (ValueError, RuntimeError) as error:  # unknown architecture or options; weights of another shape
        raise CheckpointError(f"cannot rebuild the model saved in {path}: {str(error).splitlines()[0]}") from None
