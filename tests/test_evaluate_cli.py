"""``python -m mnist_cnn.evaluate`` as a user runs it, its ``main()`` called in this process: real checkpoints and
files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers.cli import run_command
from helpers.imports import refusing_imports

from mnist_cnn import Evaluator, MNISTClassifier, read_test_split
from mnist_cnn.data.files import FILES

REPORT = {
    "metrics.json", "per_class.csv", "confusion_matrix.png", "confusion_matrix_normalized.png", "misclassified.png",
}  # fmt: skip


def test_scores_a_run_on_the_test_split_and_writes_the_report(
    trained_run: Path, fake_root: Path, tmp_path: Path
) -> None:
    result = run_command("mnist_cnn.evaluate", f"ckpt_path={trained_run}", cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    (out_dir,) = tmp_path.glob("evaluations/*")  # one predictable place: evaluations/<timestamp>/
    assert REPORT | {"training_history.png", "evaluate.log"} <= {path.name for path in out_dir.iterdir()}
    metrics = json.loads((out_dir / "metrics.json").read_text())
    model = MNISTClassifier.load(trained_run / "best.ckpt")
    expected = Evaluator(model, read_test_split(fake_root)).evaluate()
    assert metrics == pytest.approx({"num_images": 200, **expected})
    assert f"accuracy       {metrics['accuracy']:.4f}" in result.stdout
    assert f"report written to {out_dir.resolve()}: metrics.json" in result.stdout


def test_evaluating_never_imports_lightning(trained_run: Path, fake_root: Path, tmp_path: Path) -> None:
    with refusing_imports("lightning") as asked:
        result = run_command("mnist_cnn.evaluate", f"ckpt_path={trained_run}", cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    assert asked == []
    assert "training_history.png" in {path.name for path in tmp_path.glob("evaluations/*/*")}  # from the checkpoint


def test_a_shipped_model_is_evaluated_by_name_from_the_test_files_alone_without_pandas(
    fake_root: Path, tmp_path: Path
) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES["test"]:  # evaluation reads only the test set
        (raw / name).write_bytes((fake_root / "MNIST" / "raw" / name).read_bytes())
    import mnist_cnn.evaluate  # noqa: F401  (its run-dir resolvers registered by this copy, which later runs use)

    with refusing_imports("lightning", "pandas") as asked:  # pandas: only to read a run's training history
        result = run_command("mnist_cnn.evaluate", "ckpt_path=lenet5", f"data.root={tmp_path / 'data'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert asked == []
    (out_dir,) = tmp_path.glob("evaluations/*")
    expected = Evaluator(MNISTClassifier.from_pretrained("lenet5"), read_test_split(tmp_path / "data")).evaluate()
    assert json.loads((out_dir / "metrics.json").read_text())["accuracy"] == pytest.approx(expected["accuracy"])


def _not_a_checkpoint(path: Path, checkpoint: Path) -> None:
    path.write_text("these are not weights\n")


def _unregistered_architecture(path: Path, checkpoint: Path) -> None:
    saved = torch.load(checkpoint, weights_only=True)
    saved["hyper_parameters"]["model_name"] = "nope"
    torch.save(saved, path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "no such file or directory, nor a shipped model name"),
        (_not_a_checkpoint, "is not a readable checkpoint"),
        (_unregistered_architecture, "unknown model 'nope'; registered models: custom_cnn, lenet5"),
    ],
    ids=["missing", "text-file", "unregistered-architecture"],
)
def test_bad_checkpoint_is_one_clear_error(
    make: Callable[[Path, Path], None] | None, message: str, trained_run: Path, fake_root: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.ckpt"
    if make is not None:
        make(path, trained_run / "best.ckpt")
    result = run_command("mnist_cnn.evaluate", f"ckpt_path={path}", cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr
    assert not (tmp_path / "evaluations").exists()


def test_without_ckpt_path_it_says_what_to_give(tmp_path: Path) -> None:
    result = run_command("mnist_cnn.evaluate", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "error: ckpt_path is required: give a shipped model name (e.g. ckpt_path=lenet5), a .ckpt file or a "
        "training run directory"
    )
    assert list(tmp_path.iterdir()) == []
