"""Sweeps and scale-out as a user runs them: Hydra multirun and Optuna in this process (the command's ``main()``);
the joblib and submitit launchers and DDP, which start processes of their own, as real processes (the slow tier)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from helpers.cli import run_command, run_process

from mnist_cnn import MNISTClassifier, load_mnist

TINY = (
    "trainer.max_epochs=1", "data.val_size=100", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)  # fmt: skip


def _sweep(cwd: Path, *overrides: str, data_root: Path, run: Callable = run_command):
    """Run a multirun (``run``: in this process, or ``run_process``); returns its outcome, the sweep dir and the rows
    of its summary.csv."""
    result = run("mnist_cnn.train", *overrides, *TINY, cwd=cwd, data_root=data_root)
    (summary,) = (cwd / "checkpoints" / "multirun").glob("*/summary.csv")
    return result, summary.parent, list(csv.DictReader(summary.open()))


MODELS = ("simple_cnn", "lenet5")  # every architecture trains in tests/test_models.py


@pytest.fixture(scope="module")
def grid(fake_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """One sweep over two models and three learning rates: a good one, one that diverges, one out of range."""
    cwd = tmp_path_factory.mktemp("grid")
    result, sweep_dir, rows = _sweep(cwd, "-m", f"model={','.join(MODELS)}", "optimizer.lr=0.002,1e38,-1",
                                     data_root=fake_root)  # fmt: skip
    return cwd, result, sweep_dir, {tuple(row["overrides"].split()[:2]): row for row in rows}, rows


@pytest.mark.xdist_group("grid")  # one worker runs every test of the grid, so the sweep runs once
@pytest.mark.parametrize("model", MODELS)
def test_each_job_trains_tests_and_keeps_everything_in_its_run_dir(model: str, grid) -> None:
    cwd, _, _, jobs, _ = grid
    job = jobs[(f"model={model}", "optimizer.lr=0.002")]
    run_dir = Path(job["run_dir"])
    assert job["status"] == "ok" and job["epochs"] == "1" and run_dir.parent == cwd / "checkpoints" / model
    assert {"best.ckpt", "last.ckpt", "result.json", "train.log", ".hydra", "csv", "evaluation"} <= {
        path.name for path in run_dir.iterdir()
    }
    assert torch.load(run_dir / "best.ckpt", weights_only=True)["hyper_parameters"]["model_name"] == model
    record = json.loads((run_dir / "result.json").read_text())  # what `pretrained publish` reads
    assert record["command"].startswith(f"python -m mnist_cnn.train model={model} optimizer.lr=0.002 ")
    assert record["best_checkpoint"] == str(run_dir / "best.ckpt") and record["seed"] == 42
    assert float(job["test_acc"]) == pytest.approx(record["metrics"]["test_acc"], abs=1e-4)
    assert (run_dir / "train.log").read_text().rstrip().endswith(f"evaluation report  {run_dir / 'evaluation'}")
    report = {path.name for path in (run_dir / "evaluation").iterdir()}
    assert {
        "metrics.json",
        "per_class.csv",
        "confusion_matrix.png",
        "misclassified.png",
        "training_history.png",
    } <= report


@pytest.mark.xdist_group("grid")
def test_the_summary_ranks_the_jobs_names_their_run_dirs_and_records_every_failure(grid) -> None:
    cwd, result, sweep_dir, jobs, rows = grid
    assert result.returncode == 1 and "error: 4 of 6 jobs failed" in result.stderr  # the sweep went on
    assert [row["status"] for row in rows] == ["ok"] * 2 + ["failed"] * 4  # best first, then the failures
    accuracies = [float(row["best_val_acc"]) for row in rows[:2]]
    assert accuracies == sorted(accuracies, reverse=True)
    for model in MODELS:
        diverged, refused = jobs[(f"model={model}", "optimizer.lr=1e+38")], jobs[(f"model={model}", "optimizer.lr=-1")]
        assert "the training loss is" in diverged["error"] and (Path(diverged["run_dir"]) / "train.log").is_file()
        assert refused["error"] == "ConfigError: optimizer.lr=-1 is not allowed: use a number > 0"
        assert refused["run_dir"] == ""  # failed before training: its directory was removed
        assert len(list((cwd / "checkpoints" / model).iterdir())) == 2  # the good run's and the diverged one's
    markdown = (sweep_dir / "summary.md").read_text()
    assert markdown.startswith("| job | overrides | status | best_val_acc") and markdown in result.stdout
    assert sorted(path.name for path in (sweep_dir / "jobs").iterdir()) == sorted(f"{job}.json" for job in range(6))


def test_optuna_search_tunes_lr_batch_size_dropout_and_weight_decay(fake_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='needs pip install -e ".[sweep]"')
    result, sweep_dir, rows = _sweep(
        tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "test=false", data_root=fake_root
    )
    assert result.returncode == 0, result.stderr
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {
        "optimizer.lr",
        "data.batch_size",
        "model.dropout_rate",
        "optimizer.weight_decay",
    }
    assert best["best_value"] == pytest.approx(max(float(row["best_val_acc"]) for row in rows), abs=1e-4)
    assert len(rows) == 2 and all("model.dropout_rate=" in row["overrides"] for row in rows)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "log_line"), [("joblib", "Joblib.Parallel(n_jobs=2"), ("submitit_local", "Submitit")]
)
def test_launchers_run_the_jobs_of_a_sweep(launcher: str, log_line: str, fake_root: Path, tmp_path: Path) -> None:
    pytest.importorskip(
        f"hydra_plugins.hydra_{launcher.split('_')[0]}_launcher", reason='needs pip install -e ".[sweep]"'
    )
    overrides = ("-m", f"hydra/launcher={launcher}", "model=lenet5,simple_cnn")
    if launcher == "joblib":
        overrides += ("hydra.launcher.n_jobs=2",)
    result, _, rows = _sweep(tmp_path, *overrides, data_root=fake_root, run=run_process)
    assert result.returncode == 0, result.stderr
    assert log_line in result.stdout + result.stderr
    assert sorted(row["overrides"].split()[0] for row in rows) == ["model=lenet5", "model=simple_cnn"]
    assert {row["status"] for row in rows} == {"ok"}


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_ddp_on_two_cpu_processes_logs_the_accuracy_of_the_whole_validation_set(
    fake_root: Path, tmp_path: Path
) -> None:
    overrides = ("trainer=ddp_cpu", "model=simple_cnn", "trainer.max_epochs=1", "trainer.limit_train_batches=4")
    result = run_process(
        "mnist_cnn.train", *overrides, "data.val_size=100", "test=false",
        cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "checkpoints" / "simple_cnn").iterdir()  # one run dir, not one per process
    (logged,) = [
        float(row["val_acc"])
        for row in csv.DictReader((run_dir / "csv/version_0/metrics.csv").open())
        if row["val_acc"]
    ]
    model = MNISTClassifier.load_from_checkpoint(run_dir / "best.ckpt", map_location="cpu").eval()
    _, (images, labels), _ = load_mnist(fake_root, val_size=100)
    with torch.no_grad():
        single_process = (model(images).argmax(dim=1) == labels).float().mean().item()
    assert logged == pytest.approx(single_process, abs=1e-6)


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_ddp_in_a_sweep_spawns_its_processes_instead_of_rerunning_the_sweep(fake_root: Path, tmp_path: Path) -> None:
    result, _, rows = _sweep(tmp_path, "-m", "trainer=ddp_cpu", "model=lenet5", data_root=fake_root, run=run_process)
    assert result.returncode == 0, result.stderr
    assert "trainer.strategy=ddp becomes ddp_spawn" in result.stdout + result.stderr
    assert len(list((tmp_path / "checkpoints" / "lenet5").iterdir())) == 1 and [row["status"] for row in rows] == ["ok"]
