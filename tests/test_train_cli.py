"""``python -m mnist_cnn.train`` as a user runs it: real processes, real files."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import FAKE_TRAIN_IMAGES, run_cli

from mnist_cnn.data import read_test_split
from mnist_cnn.evaluation import Evaluator
from mnist_cnn.module import MNISTClassifier
from mnist_cnn.training import new_run_dir

QUICK = ("trainer.max_epochs=1", "trainer.enable_progress_bar=false", "data.val_size=100")


def _run_dirs(cwd: Path, model: str) -> list[Path]:
    return sorted(path for path in (cwd / "checkpoints" / model).glob("*") if path.is_dir())


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        rows += list(csv.DictReader(path.open()))
    return rows


def _validated_epochs(run_dir: Path) -> list[int]:
    return sorted(int(row["epoch"]) for row in _metrics(run_dir) if row.get("val_acc"))


@pytest.mark.parametrize("model", ["simple_cnn", "lenet5", "resnet", "custom_cnn"])
def test_each_model_trains_checkpoints_and_tests(model: str, fake_root: Path, tmp_path: Path) -> None:
    result = run_cli(
        "mnist_cnn.train", f"model={model}", *QUICK, "trainer.limit_train_batches=20", cwd=tmp_path, data_root=fake_root
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, model)
    assert {"best.ckpt", "last.ckpt", "config.yaml"} <= {path.name for path in run_dir.iterdir()}
    assert f"run dir            {run_dir}" in result.stdout and "test_acc" in result.stdout
    checkpoint = torch.load(run_dir / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["model_name"] == model
    assert any(row.get("val_acc") for row in _metrics(run_dir))
    record = json.loads((run_dir / "result.json").read_text())  # what `pretrained publish` reads
    assert record["command"].startswith(f"python -m mnist_cnn.train model={model} ") and record["epochs"] == 1
    assert record["best_checkpoint"] == str(run_dir / "best.ckpt") and record["seed"] == 42
    assert f"test_acc           {record['metrics']['test_acc']:.4f}" in result.stdout
    report = {path.name for path in (run_dir / "evaluation").iterdir()}
    assert {
        "metrics.json",
        "per_class.csv",
        "confusion_matrix.png",
        "misclassified.png",
        "training_history.png",
    } <= report


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=abc", "Value 'abc' of type 'str' could not be converted to Float"),
        ("optimizer.lr=-1", "optimizer.lr=-1.0 is not allowed: use a number > 0"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: use a number > 0"),
        ("model.dropout_rate=1.5", "dropout_rate must be in [0, 1), got 1.5"),
        ("model=nope", "Could not find 'model/nope'"),
        ("data.val_size=-1", "data.val_size=-1 is not allowed: use a number >= 0"),
        ("data.val_size=0", "early stopping has nothing to watch: add callbacks.early_stopping.enabled=false"),
    ],
)
def test_bad_configuration_stops_before_training(override: str, message: str, fake_root: Path, tmp_path: Path) -> None:
    result = run_cli("mnist_cnn.train", override, cwd=tmp_path, data_root=fake_root)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_missing_data_offline_names_the_path_and_the_fix(tmp_path: Path) -> None:
    result = run_cli("mnist_cnn.train", f"data.root={tmp_path / 'empty'}", "data.download=false", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"MNIST files not found in {tmp_path / 'empty' / 'MNIST' / 'raw'}" in result.stderr
    assert "data.root=<dir>" in result.stderr and not (tmp_path / "checkpoints").exists()


def test_corrupted_data_file_stops_before_training(fake_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(fake_root, root)
    labels = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-10])
    result = run_cli("mnist_cnn.train", "data.val_size=100", cwd=tmp_path, data_root=root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: {labels} has 598 bytes but its header [600] implies 608" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_resume_continues_the_latest_run_in_its_directory(fake_root: Path, tmp_path: Path) -> None:
    first = run_cli("mnist_cnn.train", "model=lenet5", *QUICK, "test=false", cwd=tmp_path, data_root=fake_root)
    assert first.returncode == 0, first.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    resumed = run_cli(
        "mnist_cnn.train",
        "model=lenet5",
        *QUICK,
        "trainer.max_epochs=2",
        "ckpt_path=last",
        cwd=tmp_path,
        data_root=fake_root,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _run_dirs(tmp_path, "lenet5") == [run_dir]
    assert _validated_epochs(run_dir) == [0, 1]  # both attempts' metrics kept: csv/version_0 and csv/version_1

    explicit = run_cli(
        "mnist_cnn.train", "model=lenet5", *QUICK, "trainer.max_epochs=3", f"ckpt_path={run_dir / 'last.ckpt'}",
        cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert explicit.returncode == 0, explicit.stderr
    assert _validated_epochs(run_dir) == [0, 1, 2]


def test_last_checkpoint_is_the_final_epoch_even_after_validation_stops_improving(
    fake_root: Path, tmp_path: Path
) -> None:
    flat = ("optimizer.lr=1e-12", "callbacks.early_stopping.enabled=false")  # the weights barely move: no new best
    result = run_cli(
        "mnist_cnn.train", "model=lenet5", *QUICK, "trainer.max_epochs=3", "trainer.limit_train_batches=2", *flat,
        "test=false", cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    assert torch.load(run_dir / "best.ckpt", weights_only=True)["epoch"] == 0
    assert torch.load(run_dir / "last.ckpt", weights_only=True)["epoch"] == 2


def test_training_on_all_images_keeps_and_tests_the_final_epoch(fake_root: Path, tmp_path: Path) -> None:
    all_images = ("data.val_size=0", "callbacks.early_stopping.enabled=false", "data.batch_size=64")
    result = run_cli(
        "mnist_cnn.train", "model=lenet5", *all_images, "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "best checkpoint    none: no validation, the final epoch is last.ckpt" in result.stdout
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    assert not (run_dir / "best.ckpt").exists() and _validated_epochs(run_dir) == []
    last = torch.load(run_dir / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 2 * math.ceil(FAKE_TRAIN_IMAGES / 64)  # every image
    record = json.loads((run_dir / "result.json").read_text())
    final = MNISTClassifier.load_from_checkpoint(run_dir / "last.ckpt", weights_only=True).eval()
    test_acc = Evaluator(final, read_test_split(fake_root, download=False)).evaluate()["accuracy"]
    assert record["best_checkpoint"] is None and record["metrics"]["test_acc"] == pytest.approx(test_acc, abs=1e-6)


def test_resume_without_a_previous_run_is_refused(fake_root: Path, tmp_path: Path) -> None:
    result = run_cli("mnist_cnn.train", "model=lenet5", "ckpt_path=last", cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 2 and "ckpt_path=last: no" in result.stderr


def test_seeded_deterministic_runs_are_identical(fake_root: Path, tmp_path: Path) -> None:
    args = ("model=simple_cnn", *QUICK, "seed=3", "trainer.deterministic=true", "test=false")
    for _ in range(2):
        assert run_cli("mnist_cnn.train", *args, cwd=tmp_path, data_root=fake_root).returncode == 0
    first, second = (_metrics(run_dir) for run_dir in _run_dirs(tmp_path, "simple_cnn"))
    assert first == second and first


def test_run_directories_are_unique_even_within_one_second(tmp_path: Path) -> None:
    made = {new_run_dir(tmp_path) for _ in range(3)}
    assert len(made) == 3 and all(path.is_dir() for path in made)


def test_tensorboard_logger_writes_event_files_in_the_run_dir(fake_root: Path, tmp_path: Path) -> None:
    result = run_cli(
        "mnist_cnn.train", "model=lenet5", "logger=tensorboard", *QUICK, "test=false", cwd=tmp_path, data_root=fake_root
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    assert list(run_dir.glob("tensorboard/version_0/events.out.tfevents.*")) and not (run_dir / "csv").exists()


def test_ema_weights_are_validated_checkpointed_and_tested(fake_root: Path, tmp_path: Path) -> None:
    args = ("model=lenet5", *QUICK, "trainer.max_epochs=2", "callbacks.ema.enabled=true", "callbacks.ema.decay=0.9")
    result = run_cli("mnist_cnn.train", *args, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    checkpoint = torch.load(run_dir / "best.ckpt", weights_only=True)
    average = MNISTClassifier.load_from_checkpoint(run_dir / "best.ckpt", weights_only=True)
    raw = MNISTClassifier.load_from_checkpoint(run_dir / "best.ckpt", weights_only=True)
    raw.load_state_dict(checkpoint["current_model_state"])  # the weights the optimizer was stepping
    test_split = read_test_split(fake_root, download=False)
    average_acc, raw_acc = (Evaluator(model.eval(), test_split).evaluate()["accuracy"] for model in (average, raw))
    assert average_acc != raw_acc  # two different models, so the next line tells which one was tested
    record = json.loads((run_dir / "result.json").read_text())
    assert record["metrics"]["test_acc"] == pytest.approx(average_acc, abs=1e-6)


def test_speedrun_recipe_validates_and_checkpoints_once_after_the_last_epoch(fake_root: Path, tmp_path: Path) -> None:
    on_cpu = ("trainer.accelerator=cpu", "trainer.precision=32-true", "batch_scale=1", "trainer.limit_train_batches=3")
    args = ("experiment=speedrun", *on_cpu, *QUICK, "trainer.max_epochs=3")
    result = run_cli("mnist_cnn.train", *args, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "simple_cnn")
    assert _validated_epochs(run_dir) == [2]  # check_val_every_n_epoch follows max_epochs; no sanity check
    assert torch.load(run_dir / "best.ckpt", weights_only=True)["epoch"] == 2
    assert json.loads((run_dir / "result.json").read_text())["metrics"]["best_val_acc"] > 0
