"""``python -m mnist_cnn.train`` as a user runs it, its ``main()`` called in this process: real files, one directory
per run."""

from __future__ import annotations

import csv
import importlib
import json
import math
import re
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAKE_TRAIN_IMAGES
from helpers.cli import run_command
from helpers.imports import refusing_imports
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from lightning.pytorch.loggers import mlflow as lightning_mlflow
from lightning_utilities.core import imports as lightning_imports
from lightning_utilities.core.imports import RequirementCache

from mnist_cnn import Evaluator, MNISTClassifier, read_test_split
from mnist_cnn.models.lenet5 import LeNet5
from mnist_cnn.training.run_dir import new_dir

QUICK = ("trainer.max_epochs=1", "data.val_size=100")
NO_VALIDATION = ("data.val_size=0", "callbacks.checkpoint=null", "callbacks.early_stopping=null")


def _run_dirs(cwd: Path, model: str) -> list[Path]:
    return sorted(path for path in (cwd / "checkpoints" / model).glob("*") if path.is_dir())


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        rows += list(csv.DictReader(path.open()))
    return rows


def _validated_epochs(run_dir: Path) -> list[int]:
    return sorted(int(row["epoch"]) for row in _metrics(run_dir) if row.get("val_acc"))


def test_components_come_from_yaml_and_every_trainer_argument_from_the_command_line(
    fake_root: Path, tmp_path: Path
) -> None:
    components = ("optimizer=adamw", "scheduler=plateau", "trainer.gradient_clip_val=0.5")
    args = (
        "model=lenet5",
        *components,
        "trainer.accumulate_grad_batches=2",
        "trainer.limit_train_batches=6",
        "test=false",
    )
    result = run_command("mnist_cnn.train", *args, *QUICK, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoints"]  # one directory per run, no outputs/
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    assert re.search(rf"^run dir +{re.escape(str(run_dir))}$", result.stdout, re.MULTILINE)
    assert (run_dir / "train.log").is_file()
    saved = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert (saved["trainer"]["gradient_clip_val"], saved["trainer"]["accumulate_grad_batches"]) == (0.5, 2)
    last = torch.load(run_dir / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3  # 6 batches, one optimizer step per 2
    assert last["hyper_parameters"]["optimizer"]["_target_"] == "torch.optim.AdamW"
    (scheduler,) = last["lr_schedulers"]
    assert {"patience", "factor", "best"} <= set(scheduler) and scheduler["mode"] == "min"  # ReduceLROnPlateau


def test_several_loggers_at_once_mlflow_among_them_write_inside_the_run_dir(fake_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason='needs pip install "mnist_cnn[mlflow]"')
    args = ("model=lenet5", "logger=[csv,tensorboard,mlflow]", "trainer.limit_train_batches=2", "test=false")
    result = run_command("mnist_cnn.train", *args, *QUICK, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    assert list(run_dir.glob("tensorboard/version_0/events.out.tfevents.*")) and _validated_epochs(run_dir) == [0]
    (val_acc,) = run_dir.glob("mlruns/*/*/metrics/val_acc")
    (logged,) = [row["val_acc"] for row in _metrics(run_dir) if row.get("val_acc")]
    assert float(val_acc.read_text().split()[1]) == pytest.approx(float(logged))
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoints"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("trainer.max_epoch=1",), "error: trainer.max_epoch is not a setting: did you mean trainer.max_epochs?"),
        (("+trainer.max_epoch=1",), "error: trainer.max_epoch is not an argument of lightning.pytorch.Trainer: did"),
        (("model=nope",), "error: model=nope is not an option: choose one of custom_cnn, lenet5, resnet, simple_cnn"),
        (("data.val_size=0",), "error: data.val_size=0 leaves nothing to validate on"),
        (("ckpt_path=last",), "error: ckpt_path=last: no"),
        (("ckpt_path=lenet5",), "holds weights only, no optimizer or training state to resume: to start a new run "
         "from these weights (fine-tuning), use weights=lenet5 instead"),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_line_and_leaves_nothing_behind(
    overrides: tuple[str, ...], message: str, fake_root: Path, tmp_path: Path
) -> None:
    result = run_command("mnist_cnn.train", "model=lenet5", *overrides, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def _without_the_sweep_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra as it is without the sweep extra: no ``hydra/sweeper=optuna`` among its configs."""
    Plugins.instance()  # the installed plugins are imported, and their configs stored, before one is taken away
    monkeypatch.delitem(ConfigStore.instance().repo["hydra"]["sweeper"], "optuna.yaml", raising=False)


def _without_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import mlflow`` fails, and Lightning, which remembers whether it could, tries again (without remembering)."""
    monkeypatch.setitem(sys.modules, "mlflow", None)
    for check in ("package_available", "module_available"):
        monkeypatch.setattr(lightning_imports, check, getattr(lightning_imports, check).__wrapped__)
    monkeypatch.setattr(lightning_mlflow, "_MLFLOW_AVAILABLE", RequirementCache("mlflow>=1.0.0", "mlflow"))


@pytest.mark.parametrize(
    ("hide", "overrides", "message"),
    [
        (_without_the_sweep_extra, ("hparams_search=optuna",),
         'error: hydra/sweeper=optuna needs the sweep extra: pip install "mnist_cnn[sweep]"'),
        (_without_mlflow, ("logger=mlflow",),
         'error: logger.mlflow needs a package that is not installed (mlflow): pip install "mnist_cnn[mlflow]"'),
    ],
    ids=["sweep", "mlflow"],
)  # fmt: skip
def test_a_missing_extra_names_its_install_command(
    hide: Callable[[pytest.MonkeyPatch], None],
    overrides: tuple[str, ...],
    message: str,
    fake_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide(monkeypatch)
    result = run_command("mnist_cnn.train", *overrides, *QUICK, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 2 and result.stderr.strip() == message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_trainer_on_a_machine_without_one_says_what_to_do(fake_root: Path, tmp_path: Path) -> None:
    result = run_command("mnist_cnn.train", "trainer=gpu", *QUICK, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert (
        "error: trainer.accelerator=gpu needs a CUDA GPU and PyTorch sees none here: train on the CPU" in result.stderr
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export"])
def test_help_says_what_the_command_does_with_examples(command: str, tmp_path: Path) -> None:
    result = run_command(f"mnist_cnn.{command}", "--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith(f"python -m mnist_cnn.{command} ")
    assert f"Examples:\n  python -m mnist_cnn.{command} " in result.stdout
    assert ("optimizer: adam, adamw" in result.stdout) == (command == "train")  # groups only where they apply
    assert list(tmp_path.iterdir()) == []


def test_missing_data_offline_names_the_path_and_the_fix(tmp_path: Path) -> None:
    result = run_command("mnist_cnn.train", f"data.root={tmp_path / 'empty'}", "data.download=false", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"MNIST files not found in {tmp_path / 'empty' / 'MNIST' / 'raw'}" in result.stderr
    assert "data.root=<dir>" in result.stderr and list(tmp_path.iterdir()) == []


def test_corrupted_data_file_stops_before_training(fake_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(fake_root, root)
    labels = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-10])
    result = run_command("mnist_cnn.train", "data.val_size=100", cwd=tmp_path, data_root=root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: {labels} has 598 bytes but its header [600] implies 608" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_resume_continues_the_run_in_its_directory_and_keeps_each_segment(fake_root: Path, tmp_path: Path) -> None:
    first = run_command("mnist_cnn.train", "model=lenet5", *QUICK, "test=false", cwd=tmp_path, data_root=fake_root)
    assert first.returncode == 0, first.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    first_result = (run_dir / "result.json").read_text()
    resumed = run_command(
        "mnist_cnn.train", "model=lenet5", *QUICK, "trainer.max_epochs=2", "ckpt_path=last", cwd=tmp_path,
        data_root=fake_root,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert _run_dirs(tmp_path, "lenet5") == [run_dir] and _validated_epochs(run_dir) == [0, 1]
    assert (run_dir / "result.json").read_text() == first_result  # the first segment's record is kept
    segment = run_dir / "resume_1"
    assert json.loads((segment / "result.json").read_text())["epochs"] == 2 and (segment / "evaluation").is_dir()
    assert yaml.safe_load((segment / "config.yaml").read_text())["trainer"]["max_epochs"] == 2  # what it ran with
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["trainer"]["max_epochs"] == 1

    again = run_command(
        "mnist_cnn.train", "model=lenet5", *QUICK, "trainer.max_epochs=3", "test=false", f"ckpt_path={run_dir}",
        cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert _validated_epochs(run_dir) == [0, 1, 2] and (run_dir / "resume_2" / "result.json").is_file()


def test_last_checkpoint_is_the_final_epoch_even_after_validation_stops_improving(
    fake_root: Path, tmp_path: Path
) -> None:
    flat = ("optimizer.lr=1e-12", "callbacks.early_stopping=null")  # the weights barely move: no new best
    result = run_command(
        "mnist_cnn.train", "model=lenet5", *QUICK, "trainer.max_epochs=3", "trainer.limit_train_batches=2", *flat,
        "test=false", cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    assert torch.load(run_dir / "best.ckpt", weights_only=True)["epoch"] == 0
    assert torch.load(run_dir / "last.ckpt", weights_only=True)["epoch"] == 2


def test_training_on_all_images_keeps_and_tests_the_final_epoch(fake_root: Path, tmp_path: Path) -> None:
    result = run_command(
        "mnist_cnn.train", "model=lenet5", *NO_VALIDATION, "data.batch_size=64", "trainer.max_epochs=2",
        cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "best checkpoint    none: no validation, the final epoch is last.ckpt" in result.stdout
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    assert not (run_dir / "best.ckpt").exists() and _validated_epochs(run_dir) == []
    last = torch.load(run_dir / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 2 * math.ceil(FAKE_TRAIN_IMAGES / 64)  # every image
    record = json.loads((run_dir / "result.json").read_text())
    final = MNISTClassifier.load(run_dir / "last.ckpt").eval()
    test_acc = Evaluator(final, read_test_split(fake_root, download=False)).evaluate()["accuracy"]
    assert record["best_checkpoint"] is None and record["metrics"]["test_acc"] == pytest.approx(test_acc, abs=1e-6)


def test_the_test_set_is_scored_once_for_the_test_metrics_and_the_report(
    fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scored: list[int] = []  # the images of each batch the network reads in eval mode
    forward = LeNet5.forward

    def counting(network: LeNet5, images: torch.Tensor) -> torch.Tensor:
        if not network.training:
            scored.append(len(images))
        return forward(network, images)

    monkeypatch.setattr(LeNet5, "forward", counting)
    result = run_command(
        "mnist_cnn.train", "model=lenet5", *NO_VALIDATION, "trainer.max_epochs=1", cwd=tmp_path, data_root=fake_root
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    _, test_labels = read_test_split(fake_root, download=False)
    assert sum(scored) == len(test_labels)  # without validation, only testing reads in eval mode: once
    record = json.loads((run_dir / "result.json").read_text())
    report = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert report["accuracy"] == pytest.approx(record["metrics"]["test_acc"], abs=1e-6)


def test_a_run_hides_the_warning_that_its_run_dir_holds_files_and_leaves_the_warning_filters_alone(
    fake_root: Path, tmp_path: Path
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning the run lets through is recorded, however often it repeats
        result = run_command(
            "mnist_cnn.train", "model=lenet5", *QUICK, "trainer.limit_train_batches=1", "test=false",
            cwd=tmp_path, data_root=fake_root,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [str(item.message) for item in caught if "exists and is not empty" in str(item.message)] == []
    with refusing_imports():  # the training library, imported anew, adds no filter to the process's
        importlib.import_module("mnist_cnn.training.run")
        added = [entry for entry in warnings.filters if entry[1] is not None and "not empty" in entry[1].pattern]
    assert added == []


def test_fine_tuning_starts_from_the_given_weights_with_a_fresh_optimizer(fake_root: Path, tmp_path: Path) -> None:
    args = ("model=lenet5", "weights=lenet5", "optimizer.lr=1e-12", "trainer.limit_train_batches=1", "test=false")
    result = run_command("mnist_cnn.train", *args, *QUICK, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    tuned = torch.load(run_dir / "last.ckpt", weights_only=True)
    shipped = MNISTClassifier.from_pretrained("lenet5").state_dict()
    for name, weights in shipped.items():  # one step at a learning rate of 1e-12 leaves the shipped weights
        torch.testing.assert_close(tuned["state_dict"][name], weights, rtol=0, atol=1e-6)
    assert tuned["global_step"] == 1 and tuned["epoch"] == 0  # a new run, not the shipped run resumed


def test_seeded_deterministic_runs_are_identical(fake_root: Path, tmp_path: Path) -> None:
    args = ("model=simple_cnn", *QUICK, "seed=3", "trainer.deterministic=true", "test=false")
    for _ in range(2):
        assert run_command("mnist_cnn.train", *args, cwd=tmp_path, data_root=fake_root).returncode == 0
    first, second = (_metrics(run_dir) for run_dir in _run_dirs(tmp_path, "simple_cnn"))
    assert first == second and first


def test_run_directories_are_unique_even_within_one_second(tmp_path: Path) -> None:
    made = {new_dir(tmp_path) for _ in range(3)}
    assert len(made) == 3 and all(path.is_dir() for path in made)


def test_ema_weights_are_validated_checkpointed_and_tested(fake_root: Path, tmp_path: Path) -> None:
    args = ("model=lenet5", *QUICK, "trainer.max_epochs=2", "callbacks=[default,ema]", "callbacks.ema.decay=0.9")
    result = run_command("mnist_cnn.train", *args, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "lenet5")
    checkpoint = torch.load(run_dir / "best.ckpt", weights_only=True)
    average = MNISTClassifier.load(run_dir / "best.ckpt")
    raw = MNISTClassifier.load(run_dir / "best.ckpt")
    raw.load_state_dict(checkpoint["current_model_state"])  # the weights the optimizer was stepping
    test_split = read_test_split(fake_root, download=False)
    average_loss, raw_loss = (Evaluator(model.eval(), test_split).evaluate()["loss"] for model in (average, raw))
    assert average_loss != pytest.approx(raw_loss, rel=1e-3)  # two different models: the next line tells which
    record = json.loads((run_dir / "result.json").read_text())
    assert record["metrics"]["test_loss"] == pytest.approx(average_loss, rel=1e-4)


def test_speedrun_recipe_validates_and_checkpoints_once_after_the_last_epoch(fake_root: Path, tmp_path: Path) -> None:
    on_cpu = ("trainer=cpu", "batch_scale=1", "trainer.limit_train_batches=3")
    args = ("experiment=speedrun", *on_cpu, *QUICK, "trainer.max_epochs=3", "test=false")
    result = run_command("mnist_cnn.train", *args, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    (run_dir,) = _run_dirs(tmp_path, "simple_cnn")
    assert _validated_epochs(run_dir) == [2]  # check_val_every_n_epoch follows max_epochs; no sanity check
    assert torch.load(run_dir / "best.ckpt", weights_only=True)["epoch"] == 2
    assert json.loads((run_dir / "result.json").read_text())["metrics"]["best_val_acc"] > 0
