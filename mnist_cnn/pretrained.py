"""Shipped pretrained weights: ``checkpoints/pretrained/<model>.ckpt``, checked against ``manifest.json``.

Loading a shipped file first compares its sha256 with the manifest: a changed or truncated file is
refused with a ``CheckpointError``, never loaded. ``python -m mnist_cnn.pretrained publish <run dir>``
turns a training run's best (or, with ``--checkpoint last``, final) checkpoint into a shipped file and its
manifest entry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from mnist_cnn.errors import CheckpointError, MNISTDataError

if TYPE_CHECKING:  # heavy imports are deferred so that ``get_model_info`` and ``--help`` stay light
    from mnist_cnn.module import MNISTClassifier

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "pretrained"
MANIFEST = "manifest.json"
# What a shipped file keeps of a Lightning checkpoint: no optimizer, scheduler, loop or callback state.
KEPT_KEYS = ("state_dict", "hyper_parameters", "pytorch-lightning_version")
RunCheckpoint = Literal["best", "last"]  # best.ckpt (best validation epoch) or last.ckpt (final epoch)


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


def pretrained_info(name: str, directory: Path = PRETRAINED_DIR) -> PretrainedInfo | None:
    """The manifest entry of ``name``, or None when no weights are shipped for it."""
    return read_manifest(directory).get(name)


def verified_checkpoint(name: str, directory: Path = PRETRAINED_DIR) -> Path:
    """The shipped file of ``name`` after checking its sha256 against the manifest."""
    manifest = read_manifest(directory)
    if name not in manifest:
        shipped = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(f"no pretrained weights for {name!r} in {directory}; shipped: {shipped}")
    entry = manifest[name]
    path = directory / entry.file
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; restore it with `git checkout -- {path}`")
    found = file_sha256(path)
    if found != entry.sha256:
        raise CheckpointError(
            f"{path} does not match its manifest (sha256 {found[:12]}…, expected {entry.sha256[:12]}…): "
            f"the file was changed or damaged; restore it with `git checkout -- {path}` or pass path=<your file>"
        )
    return path


def load_pretrained_model(name: str, path: str | os.PathLike[str] | None = None) -> MNISTClassifier:
    """The pretrained ``MNISTClassifier`` for ``name``, in eval mode on the CPU.

    With no ``path``, the shipped file (checksum verified); with a ``path``, that checkpoint, which must
    hold a ``name`` model. Either way it is read with ``weights_only=True``.
    """
    from mnist_cnn.checkpoints import load_classifier

    checkpoint = verified_checkpoint(name) if path is None else Path(path)
    model = load_classifier(checkpoint)
    if model.hparams.model_name != name:
        raise CheckpointError(f"{checkpoint} holds a {model.hparams.model_name} model, not {name}")
    return model.eval()


def resolve_checkpoint(ckpt_path: str) -> Path:
    """A checkpoint file, or for a model name (``simple_cnn``) its shipped file, checksum verified."""
    path = Path(ckpt_path).expanduser()
    if path.is_file():
        return path
    manifest = read_manifest()
    if ckpt_path in manifest:
        return verified_checkpoint(ckpt_path)
    shipped = ", ".join(sorted(manifest)) or "none"
    raise CheckpointError(f"ckpt_path={ckpt_path}: no such file, nor a pretrained model name (shipped: {shipped})")


def run_checkpoint(run_dir: Path, result: dict[str, Any], which: RunCheckpoint) -> Path:
    """``run_dir``'s best or last checkpoint file."""
    from mnist_cnn.training import LAST

    if which == "last":
        path = run_dir / LAST
    elif result["best_checkpoint"] is None:
        raise CheckpointError(
            f"{run_dir} trained without validation (data.val_size=0), so it has no best checkpoint: "
            "publish its final epoch with --checkpoint last"
        )
    else:
        best = Path(result["best_checkpoint"])
        path = best if best.is_file() else run_dir / best.name  # a run dir copied from another machine
    if not path.is_file():
        raise CheckpointError(f"{path} not found: the run dir holds no {which} checkpoint to publish")
    return path


def publish(run_dir: Path, directory: Path = PRETRAINED_DIR, which: RunCheckpoint = "best") -> PretrainedInfo:
    """Ship ``run_dir``'s best (or last) checkpoint as ``<model>.ckpt`` (weights and hparams only) and record it.

    The validation and test figures are measured here from the file as shipped: validation on the split
    the run held out, test on the official test set. The file is staged beside the shipped one and moved
    into place only once measured, so a failure leaves the shipped file and the manifest as they were.
    """
    from mnist_cnn.checkpoint_io import AtomicCheckpointIO
    from mnist_cnn.checkpoints import read_checkpoint
    from mnist_cnn.data import read_splits
    from mnist_cnn.evaluation import Evaluator
    from mnist_cnn.models import count_parameters

    result = json.loads((run_dir / "result.json").read_text())
    source = run_checkpoint(run_dir, result, which)
    checkpoint = read_checkpoint(source)
    held_out = checkpoint.get("datamodule_hyper_parameters")
    if held_out is None:
        raise CheckpointError(f"{source} does not record its data module, so its validation split is unknown")
    name = checkpoint["hyper_parameters"]["model_name"]
    target = directory / f"{name}.ckpt"
    staged = target.with_name(f".{target.name}.staged")
    try:
        AtomicCheckpointIO().save_checkpoint({key: checkpoint[key] for key in KEPT_KEYS}, staged)
        model = load_pretrained_model(name, staged)
        splits = read_splits(val_size=held_out["val_size"], split_seed=held_out["split_seed"], download=False)
        val_acc = Evaluator(model, splits.val).evaluate()["accuracy"] if held_out["val_size"] else None
        metrics = Evaluator(model, splits.test).evaluate()
        sha256 = file_sha256(staged)
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    info = PretrainedInfo(
        file=target.name,
        sha256=sha256,
        test_acc=metrics["accuracy"],
        test_loss=metrics["loss"],
        val_acc=val_acc,
        source_checkpoint=source.name,
        num_parameters=count_parameters(model),
        model_kwargs=dict(model.hparams.model_kwargs or {}),
        command=result["command"],
        seed=result["seed"],
        epochs=result["epochs"],
        fit_seconds=result["fit_seconds"],
        machine=result["machine"],
    )
    entries = {key: asdict(value) for key, value in read_manifest(directory).items()}
    entries[name] = asdict(info)
    manifest = directory / MANIFEST
    staged_manifest = manifest.with_name(f".{MANIFEST}.staged")
    staged_manifest.write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    os.replace(staged_manifest, manifest)
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mnist_cnn.pretrained", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the manifest")
    publishing = commands.add_parser("publish", help="ship a run's best (or last) checkpoint")
    publishing.add_argument("run_dir", type=Path, help="a training run dir holding result.json")
    publishing.add_argument(
        "--checkpoint", choices=get_args(RunCheckpoint), default="best",
        help="best.ckpt (best validation epoch, the default) or last.ckpt (final epoch)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.command == "publish":
        try:
            if not (args.run_dir / "result.json").is_file():
                raise CheckpointError(
                    f"{args.run_dir}/result.json not found: pass the run dir of a finished training run"
                )
            info = publish(args.run_dir, which=args.checkpoint)
        except (CheckpointError, MNISTDataError) as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        print(
            f"published {info.file} from {info.source_checkpoint}: val_acc "
            f"{'none (no validation set)' if info.val_acc is None else f'{info.val_acc:.4f}'}, "
            f"test_acc {info.test_acc:.4f}, test_loss {info.test_loss:.4f}"
        )
        return
    for name, info in read_manifest().items():
        print(f"{name:<12} {info.test_acc:.2%}  {info.num_parameters:>9,} params  {info.command}")


if __name__ == "__main__":
    main()
