"""Sweeps and scale-out as a user runs them: Hydra multirun, Optuna, the joblib and submitit launchers, DDP."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli

from mnist_cnn import MNISTClassifier, load_mnist

TINY = (
    "trainer.max_epochs=1", "data.val_size=100", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
)  # fmt: skip


def _sweep(cwd: Path, *overrides: str, data_root: Path):
    """Run a multirun; returns the process, the sweep dir and the rows of its summary.csv."""
    result = run_cli("mnist_cnn.train", *overrides, *TINY, cwd=cwd, data_root=data_root)
    (summary,) = (cwd / "checkpoints" / "multirun").glob("*/summary.csv")
    return result, summary.parent, list(csv.DictReader(summary.open()))


def test_grid_sweep_runs_every_job_and_ranks_the_summary(fake_root: Path, tmp_path: Path) -> None:
    result, sweep_dir, rows = _sweep(
        tmp_path, "-m", "model=lenet5,simple_cnn", "optimizer.lr=0.001,0.01", data_root=fake_root
    )
    assert result.returncode == 0, result.stderr
    assert sorted(row["overrides"].split()[0] + " " + row["overrides"].split()[1] for row in rows) == [
        "model=lenet5 optimizer.lr=0.001", "model=lenet5 optimizer.lr=0.01",
        "model=simple_cnn optimizer.lr=0.001", "model=simple_cnn optimizer.lr=0.01",
    ]  # fmt: skip
    assert {row["status"] for row in rows} == {"ok"} and {row["epochs"] for row in rows} == {"1"}
    accuracies = [float(row["best_val_acc"]) for row in rows]
    assert accuracies == sorted(accuracies, reverse=True) and all(row["test_acc"] for row in rows)
    run_dirs = {Path(row["run_dir"]) for row in rows}  # each job trained in a run dir of its own model
    assert len(run_dirs) == 4 and all((run_dir / "best.ckpt").is_file() for run_dir in run_dirs)
    assert {run_dir.parent for run_dir in run_dirs} == {tmp_path / "checkpoints" / m for m in ("lenet5", "simple_cnn")}
    assert all((run_dir / "train.log").is_file() and (run_dir / ".hydra").is_dir() for run_dir in run_dirs)
    markdown = (sweep_dir / "summary.md").read_text()
    assert markdown.startswith("| job | overrides | status | best_val_acc") and markdown in result.stdout


def test_a_failed_job_is_recorded_and_the_sweep_goes_on(fake_root: Path, tmp_path: Path) -> None:
    result, _, rows = _sweep(tmp_path, "-m", "model=lenet5", "optimizer.lr=0.01,1e30,-1", data_root=fake_root)
    assert result.returncode == 1 and "error: 2 of 3 jobs failed" in result.stderr
    status = {row["overrides"].split()[1]: row for row in rows}
    assert status["optimizer.lr=0.01"]["status"] == "ok" and rows[0] is status["optimizer.lr=0.01"]
    assert status["optimizer.lr=1e+30"]["status"] == "failed" and status["optimizer.lr=1e+30"]["error"]
    assert status["optimizer.lr=-1"]["error"] == "ConfigError: optimizer.lr=-1 is not allowed: use a number > 0"
    assert status["optimizer.lr=-1"]["run_dir"] == ""  # the job failed before training: its dir was removed
    assert len(list((tmp_path / "checkpoints" / "lenet5").iterdir())) == 2


def test_optuna_search_tunes_lr_batch_size_dropout_and_weight_decay(fake_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='needs pip install -e ".[sweep]"')
    result, sweep_dir, rows = _sweep(tmp_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", data_root=fake_root)
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
    result, _, rows = _sweep(tmp_path, *overrides, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    assert log_line in result.stdout + result.stderr
    assert sorted(row["overrides"].split()[0] for row in rows) == ["model=lenet5", "model=simple_cnn"]
    assert {row["status"] for row in rows} == {"ok"}


@pytest.mark.xdist_group("ddp")
def test_ddp_on_two_cpu_processes_logs_the_accuracy_of_the_whole_validation_set(
    fake_root: Path, tmp_path: Path
) -> None:
    overrides = ("trainer=ddp_cpu", "model=simple_cnn", "trainer.max_epochs=1", "trainer.limit_train_batches=4")
    result = run_cli(
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
    result, _, rows = _sweep(tmp_path, "-m", "trainer=ddp_cpu", "model=lenet5", data_root=fake_root)
    assert result.returncode == 0, result.stderr
    assert "trainer.strategy=ddp becomes ddp_spawn" in result.stdout + result.stderr
    assert len(list((tmp_path / "checkpoints" / "lenet5").iterdir())) == 1 and [row["status"] for row in rows] == ["ok"]
