"""Shipped pretrained weights: ``<model>.ckpt`` files checked against ``manifest.json``, plain data only.

Loading a shipped file first compares its sha256 with the manifest: a changed or truncated file is
refused with a ``CheckpointError``, never loaded. Entries refer to models by their registry name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_cnn.errors import CheckpointError
from mnist_cnn.resources import PRETRAINED_DIR

MANIFEST = "manifest.json"
# What a shipped file keeps of a Lightning checkpoint: no optimizer, scheduler, loop or callback state.
KEPT_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version")


@dataclass(frozen=True)
class PretrainedInfo:
    """One manifest entry: the file, its checksum, its measured test figures and how it was trained."""

    file: str
    sha256: str
    test_acc: float  # official 10k test set, measured by ``Evaluator`` when published
    test_loss: float
    val_acc: float | None  # the shipped weights' validation accuracy: what chose them (never the test set);
    # None for a run trained on all 60k images (data.val_size=0): nothing chose among its epochs
    source_checkpoint: str  # the run's file they came from: best.ckpt or last.ckpt
    num_parameters: int
    model_kwargs: dict[str, Any]
    command: str
    seed: int | None
    epochs: int
    fit_seconds: float
    machine: str
    # Answers below this probability are flagged uncertain: the highest threshold that flags at most 1.5 % of the
    # right answers on the validation digits (``mnist_cnn.inference.classify.choose_uncertain_below``)
    uncertain_below: float | None = None


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path = PRETRAINED_DIR) -> dict[str, PretrainedInfo]:
    """Every shipped model's entry, by model name; empty when nothing is shipped."""
    path = directory / MANIFEST
    if not path.is_file():
        return {}
    return {name: PretrainedInfo(**entry) for name, entry in json.loads(path.read_text()).items()}


def most_accurate(directory: Path = PRETRAINED_DIR) -> str:
    """The name of the shipped model with the highest measured test accuracy."""
    manifest = read_manifest(directory)
    if not manifest:
        raise CheckpointError(f"no pretrained weights are shipped in {directory}: name a .ckpt file or a run directory")
    return max(manifest, key=lambda name: manifest[name].test_acc)


def shipped_info(path: str | os.PathLike[str], directory: Path = PRETRAINED_DIR) -> PretrainedInfo | None:
    """The manifest entry of the shipped file at ``path``; ``None`` for any other file."""
    resolved = Path(path).resolve()
    entries = read_manifest(directory).values()
    return next((info for info in entries if (directory / info.file).resolve() == resolved), None)


def verified_checkpoint(name: str, directory: Path = PRETRAINED_DIR) -> Path:
    """The shipped file of ``name`` after checking its sha256 against the manifest."""
    manifest = read_manifest(directory)
    if name not in manifest:
        shipped = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(f"no pretrained weights for {name!r} in {directory}; shipped: {shipped}")
    path = directory / manifest[name].file
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; reinstall the package or restore it with `git checkout -- {path}`")
    found = file_sha256(path)
    if found != manifest[name].sha256:
        raise CheckpointError(
            f"{path} does not match its manifest (sha256 {found[:12]}…, expected {manifest[name].sha256[:12]}…): "
            f"the file was changed or damaged; restore it with `git checkout -- {path}` or reinstall the package"
        )
    return path
