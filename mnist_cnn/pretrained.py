"""``python -m mnist_cnn.pretrained list|publish``: show the shipped weights, or ship a training run's.

``publish <run dir>`` turns the run's best (or, with ``--checkpoint last``, final) checkpoint into
``checkpoints/pretrained/<model>.ckpt`` (weights and hyperparameters only) and its manifest entry, with the
validation and test figures measured from the file as shipped, and the probability below which its answers are
flagged uncertain, chosen on the validation digits.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from mnist_cnn.cli import fail
from mnist_cnn.errors import CheckpointError, UserError
from mnist_cnn.resources import PRETRAINED_DIR
from mnist_cnn.training.run_dir import RESULT, finished_segment
from mnist_cnn.weights.manifest import KEPT_KEYS, MANIFEST, PretrainedInfo, file_sha256, read_manifest
from mnist_cnn.weights.resolve import LAST

if TYPE_CHECKING:  # torch: only once there is work to do
    from torch import nn

    from mnist_cnn.data.files import Split

RunCheckpoint = Literal["best", "last"]  # best.ckpt (best validation epoch) or last.ckpt (final epoch)


def run_checkpoint(run_dir: Path, result: dict[str, Any], which: RunCheckpoint) -> Path:
    """``run_dir``'s best or last checkpoint file."""
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


def validation_figures(model: nn.Module, val: Split) -> tuple[float, float]:
    """The model's accuracy on the validation digits, and its ``uncertain_below``: the threshold chosen on them."""
    from mnist_cnn.inference.classify import choose_uncertain_below, classify

    images, labels = val
    predictions = classify(model, images)
    right = predictions.labels == labels.numpy()
    return float(right.mean()), choose_uncertain_below(predictions.confidence[right])


def publish(run_dir: Path, directory: Path = PRETRAINED_DIR, which: RunCheckpoint = "best") -> PretrainedInfo:
    """Ship ``run_dir``'s best (or last) checkpoint as ``<model>.ckpt`` (weights and hparams only) and record it.

    The validation and test figures are measured here from the file as shipped: validation on the split
    the run held out, test on the official test set. The file is staged beside the shipped one and moved
    into place only once measured, so a failure leaves the shipped file and the manifest as they were.
    """
    from mnist_cnn.data.files import read_splits  # torch, Lightning: only once there is work to do
    from mnist_cnn.evaluation.evaluator import Evaluator
    from mnist_cnn.models import count_parameters
    from mnist_cnn.training.checkpoint_io import AtomicCheckpointIO
    from mnist_cnn.training.module import load_pretrained_model
    from mnist_cnn.weights.checkpoints import read_checkpoint

    finished = finished_segment(run_dir)
    if finished is None:
        raise CheckpointError(
            f"{run_dir} holds no {RESULT}, nor do its resume_<k>/ folders: pass the run dir of a finished training run"
        )
    result = json.loads((finished / RESULT).read_text())
    source = run_checkpoint(run_dir, result, which)
    checkpoint = read_checkpoint(source)
    if result.get("steps") is not None and checkpoint.get("global_step", 0) > result["steps"]:
        raise CheckpointError(
            f"{source} was saved after step {checkpoint['global_step']}, later than the {result['steps']} steps "
            f"that {finished / RESULT} describes: a resume that did not finish saved it; resume the run "
            f"(ckpt_path={run_dir}) and let it finish, then publish"
        )
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
        val_acc, uncertain_below = validation_figures(model, splits.val) if held_out["val_size"] else (None, None)
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
        uncertain_below=uncertain_below,
    )
    entries = {key: asdict(value) for key, value in read_manifest(directory).items()}
    entries[name] = asdict(info)
    manifest = directory / MANIFEST
    staged_manifest = manifest.with_name(f".{MANIFEST}.staged")
    staged_manifest.write_text(json.dumps(dict(sorted(entries.items())), indent=2) + "\n")
    os.replace(staged_manifest, manifest)
    return info


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m mnist_cnn.pretrained``."""
    parser = argparse.ArgumentParser(prog="python -m mnist_cnn.pretrained", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the manifest")
    publishing = commands.add_parser("publish", help="ship a run's best (or last) checkpoint")
    publishing.add_argument("run_dir", type=Path, help="a training run dir holding result.json")
    publishing.add_argument(
        "--checkpoint", choices=get_args(RunCheckpoint), default="best",
        help="best.ckpt (best validation epoch, the default) or last.ckpt (final epoch)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "publish":
        try:
            info = publish(args.run_dir, which=args.checkpoint)
        except UserError as error:
            fail(str(error), error.exit_code)
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
