"""``python -m mnist_cnn.evaluate`` as a user runs it: real processes, real checkpoints and files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import run_cli
from lightning.pytorch.loggers import CSVLogger

from mnist_cnn import MNISTClassifier, MNISTDataModule
from mnist_cnn.evaluation import Evaluator

REPORT = {
    "metrics.json", "per_class.csv", "confusion_matrix.png", "confusion_matrix_normalized.png", "misclassified.png",
}  # fmt: skip
FAKE_DATA = ("data.val_size=100",)  # the generated data has only 600 training images


@pytest.fixture(scope="module")
def checkpoint(fake_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained LeNet-5 saved in a run dir that also holds Lightning's csv/version_0/metrics.csv."""
    run_dir = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=1, log_every_n_steps=1,
        logger=CSVLogger(run_dir, name="csv"), enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(MNISTClassifier("lenet5"), datamodule=MNISTDataModule(root=str(fake_root), val_size=100))
    trainer.save_checkpoint(run_dir / "best.ckpt")
    return run_dir / "best.ckpt"


def test_scores_the_test_split_and_writes_the_report(checkpoint: Path, fake_root: Path, tmp_path: Path) -> None:
    result = run_cli("mnist_cnn.evaluate", f"ckpt_path={checkpoint}", *FAKE_DATA, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    (out_dir,) = tmp_path.glob("outputs/*/*")
    assert REPORT | {"training_history.png"} <= {path.name for path in out_dir.iterdir()}
    metrics = json.loads((out_dir / "metrics.json").read_text())
    model = MNISTClassifier.load_from_checkpoint(checkpoint, map_location="cpu")
    expected = Evaluator(model, MNISTDataModule(root=str(fake_root), val_size=100)).evaluate()
    assert metrics == pytest.approx({"num_images": 200, **expected})
    assert f"accuracy       {metrics['accuracy']:.4f}" in result.stdout
    assert f"report written to {out_dir.resolve()}: metrics.json" in result.stdout


def _not_a_checkpoint(path: Path, checkpoint: Path) -> None:
    path.write_text("these are not weights\n")


def _unregistered_architecture(path: Path, checkpoint: Path) -> None:
    saved = torch.load(checkpoint, weights_only=True)
    saved["hyper_parameters"]["model_name"] = "nope"
    torch.save(saved, path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "no such file"),
        (_not_a_checkpoint, "is not a readable checkpoint"),
        (_unregistered_architecture, "unknown model 'nope'; registered models: custom_cnn, lenet5"),
    ],
    ids=["missing", "text-file", "unregistered-architecture"],
)
def test_bad_checkpoint_is_one_clear_error(
    make: Callable[[Path, Path], None] | None, message: str, checkpoint: Path, fake_root: Path, tmp_path: Path
) -> None:
    path = tmp_path / "model.ckpt"
    if make is not None:
        make(path, checkpoint)
    result = run_cli("mnist_cnn.evaluate", f"ckpt_path={path}", *FAKE_DATA, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr
    assert not list(tmp_path.glob("outputs/*/*/metrics.json"))
