"""The benchmark runs end to end in a tiny mode and writes its JSON (no figure is asserted: machines are noisy); it is
called in this process, and the modes that time fresh processes or servers are in the slow tier. Pipeline (d) and
the profile run only where the keras extra is installed, the serving benchmark where the serve extra is."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_fake_mnist
from helpers.cli import run_command

from mnist_cnn.models import build_model, count_parameters, model_names


@pytest.mark.slow  # each measurement is a fresh process
def test_bench_compares_the_three_pipelines_and_writes_json(tmp_path: Path) -> None:
    root = write_fake_mnist(tmp_path / "data", num_train=5_300)  # room for the 5,000-image validation split
    out = tmp_path / "bench.json"
    args = ("--root", str(root), "--images", "128", "--batch-size", "64", "--repeats", "2", "--json", str(out))
    result = run_command("benchmarks", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())
    assert row["model"] == "lenet5" and row["batch_size"] == 64 and row["accelerator"] == "cpu"
    for pipeline in "abc":
        measured = row[pipeline]
        assert measured["images"] == 128 and measured["seconds"] > 0 and measured["peak_rss_mb"] > 0
        assert measured["batch_size"] == 64  # trainer=cpu has batch_scale 1
        fastest, slowest = measured["seconds_runs"]  # every run, lowest first; of two, the median is the upper
        assert fastest <= slowest == measured["seconds"]
        assert f"{fastest:.2f}-{slowest:.2f}" in result.stdout
    assert row["c/b"] == row["c"]["seconds"] / row["b"]["seconds"]
    assert row["c/b fastest"] == row["c"]["seconds_runs"][0] / row["b"]["seconds_runs"][0]
    assert row["a/c"] == row["a"]["seconds"] / row["c"]["seconds"]
    assert "ratio (c)/(b)" in result.stdout and "ratio (a)/(c)" in result.stdout
    assert set(row["inference"]) == {"batch_1", "batch_1024"} and min(row["inference"].values()) > 0
    assert "inference images/s: batch 1 " in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_bench_on_a_gpu_is_refused_clearly_without_one(tmp_path: Path) -> None:
    result = run_command("benchmarks", "--accelerator", "gpu", cwd=tmp_path)
    assert result.returncode == 2
    assert "--accelerator gpu: PyTorch sees no CUDA GPU here" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # a server process for each setting
def test_bench_serve_reports_latency_and_throughput_with_batching_on_and_off(fake_root: Path, tmp_path: Path) -> None:
    for module in ("requests", "fastapi", "uvicorn"):
        pytest.importorskip(module, reason='needs the serve extra: pip install -e ".[serve]"')
    out = tmp_path / "serve.json"
    args = ("--serve", "lenet5", "--backends", "torch", "--root", str(fake_root), "--json", str(out))
    result = run_command("benchmarks", *args, "--latency-requests", "5", "--throughput-requests", "64", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [(row["backend"], row["batching"], row["max_batch_size"]) for row in rows] == [
        ("torch", "on", 64),
        ("torch", "off", 1),
    ]
    for row in rows:
        assert row["model"] == "lenet5" and row["rss_mb_before"] > 0 and row["rss_mb_after"] > 0
        for kind in ("png28", "canvas", "canvas280"):  # a 28×28 PNG; the page's drawing as sent; the whole canvas
            assert 0 < row[f"{kind}_p50_ms"] <= row[f"{kind}_p99_ms"] and row[f"{kind}_images_per_s"] > 0
        assert row["requests"] == 3 * (1 + 5 + 64)  # each kind: the warm-up, concurrency 1, concurrency 32
    assert rows[1]["passes"] == rows[1]["requests"]  # batching off: one forward pass per request
    assert rows[0]["canvas_on/off"] == rows[0]["canvas_images_per_s"] / rows[1]["canvas_images_per_s"]
    assert "batching on/off at concurrency 32" in result.stdout


def test_bench_without_the_keras_extra_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow fails, as where it is not installed
    result = run_command("benchmarks", "--pipelines", "cd", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: the bench's pipeline (d), Keras on TensorFlow needs a package that is not installed (tensorflow): "
        'pip install "mnist_cnn[keras]"'
    ]


def test_keras_models_have_the_layers_and_parameter_counts_of_ours() -> None:
    pytest.importorskip("keras", reason='needs the keras extra: pip install "mnist_cnn[keras]"')
    from benchmarks.keras import build, import_keras, trainable_parameters

    keras = import_keras(threads=1)
    for name in model_names():
        model = build(name, keras)
        assert trainable_parameters(model) == count_parameters(build_model(name)), name
        assert model.output_shape == (None, 10) and model.input_shape == (None, 28, 28, 1)


@pytest.mark.slow
def test_bench_compares_this_project_with_keras_and_reports_augmentation_cost(tmp_path: Path) -> None:
    pytest.importorskip("keras", reason='needs the keras extra: pip install "mnist_cnn[keras]"')
    root = write_fake_mnist(tmp_path / "data", num_train=5_300)
    out = tmp_path / "bench.json"
    args = ("--root", str(root), "--pipelines", "cde", "--images", "128", "--batch-size", "64", "--repeats", "1")
    result = run_command("benchmarks", *args, "--threads", "1", "--no-inference", "--json", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())
    for pipeline in "cde":
        assert row[pipeline]["images"] == 128 and row[pipeline]["batch_size"] == 64 and row[pipeline]["seconds"] > 0
    assert row["c/d"] == row["c"]["seconds"] / row["d"]["seconds"]
    assert row["e/c"] == row["e"]["seconds"] / row["c"]["seconds"]
    assert "ratio (c)/(d) = " in result.stdout and "(the cost of augmentation)" in result.stdout


@pytest.mark.slow
def test_profile_lists_the_operators_of_both_stacks(tmp_path: Path) -> None:
    pytest.importorskip("keras", reason='needs the keras extra: pip install "mnist_cnn[keras]"')
    root = write_fake_mnist(tmp_path / "data", num_train=5_300)
    out = tmp_path / "profile.json"
    args = ("--profile", "--root", str(root), "--pipelines", "cd", "--images", "64", "--batch-size", "32")
    result = run_command("benchmarks", *args, "--repeats", "1", "--threads", "1", "--json", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())
    operators = {pipeline: {name: ms for name, _, ms in row[pipeline]["operators"]} for pipeline in "cd"}
    assert sum(name.startswith("aten::") for name in operators["c"]) >= 10  # PyTorch's operators by name
    assert any("Conv2D" in name for name in operators["d"])  # TensorFlow's
    for pipeline in "cd":
        assert sum(operators[pipeline].values()) == pytest.approx(row[pipeline]["step_ms"])
        assert all(ms >= 0 for name, ms in operators[pipeline].items() if name != "(outside operators)")


@pytest.mark.slow
@pytest.mark.real_data
def test_bench_overhead_times_the_plain_loop_the_trainer_alone_and_the_project(real_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    arguments = ("--overhead", "--repeats", "1", "--root", str(real_root), "--json", str(out))
    result = run_command("benchmarks", *arguments, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert all(figures[f"{path}_runs"] == [figures[f"{path}_ms"]] > [0] for path in ("plain", "trainer", "project"))
    for path in ("trainer", "project"):
        assert figures[f"{path}_ratio"] == pytest.approx(figures[f"{path}_ms"] / figures["plain_ms"])
    assert [line.split("  ")[0] for line in result.stdout.splitlines()[1:4]] == [
        "plain loop", "Trainer alone", "mnist_cnn (Trainer)"
    ]  # fmt: skip


@pytest.mark.slow  # each seed is a fresh training process
def test_bench_speedrun_reports_each_seed_and_the_means(tmp_path: Path) -> None:
    root = write_fake_mnist(tmp_path / "data", num_train=5_300)  # room for the 5,000-image validation split
    out = tmp_path / "speedrun.json"
    args = (
        "--speedrun",
        "speedrun_cpu",
        "trainer.max_epochs=1",
        "--seeds",
        "2",
        "--root",
        str(root),
        "--json",
        str(out),
    )
    result = run_command("benchmarks", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    assert results["recipe"] == "speedrun_cpu" and [run["seed"] for run in results["runs"]] == [1, 2]
    assert "`experiment=speedrun_cpu trainer.max_epochs=1` on " in result.stdout
    for run in results["runs"]:
        assert 0 <= run["test_acc"] <= 1 and 0 < run["fit_s"] < run["shell_s"]
        assert f"| {run['seed']} | {run['test_acc']:.2%} | {run['fit_s']:.2f} s |" in result.stdout
    assert results["mean"]["test_acc"] == pytest.approx(sum(run["test_acc"] for run in results["runs"]) / 2)
    assert f"| mean | {results['mean']['test_acc']:.2%} |" in result.stdout
