"""Interruptions, divergence, hostile or broken checkpoints: real signals to real processes (the slow tier), the
commands' ``main()`` called in this process for the rest, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import write_fake_mnist
from helpers.cli import run_command

from mnist_cnn import CheckpointError, MNISTClassifier, MNISTDataModule
from mnist_cnn.training.module import NonFiniteLossError
from mnist_cnn.training.run_dir import latest_segment
from mnist_cnn.weights.manifest import verified_checkpoint

QUICK = ("model=lenet5", "trainer.enable_model_summary=false", "data.val_size=100")


@pytest.fixture(scope="module")
def slow_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 training images: epochs long enough to be interrupted in the middle."""
    return write_fake_mnist(tmp_path_factory.mktemp("slow_mnist"), num_train=1_600, num_test=200)


def _start(cwd: Path, data_root: Path, *overrides: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MNIST_DATA_DIR": str(data_root)}
    command = [sys.executable, "-m", "mnist_cnn.train", *QUICK, *overrides]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_last_checkpoint(cwd: Path, process: subprocess.Popen[str], timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(cwd.glob("checkpoints/lenet5/*/last.ckpt"))
        if found:
            return found[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("no last.ckpt appeared")


def _test_accuracy(cwd: Path) -> float:
    (run_dir,) = cwd.glob("checkpoints/lenet5/*")
    return json.loads((latest_segment(run_dir) / "result.json").read_text())["metrics"]["test_acc"]


@pytest.mark.slow
def test_run_killed_mid_epoch_resumes_to_the_same_result(slow_root: Path, tmp_path: Path) -> None:
    args = ("seed=5", "trainer.deterministic=true", "trainer.max_epochs=2", "data.batch_size=16")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    assert run_command("mnist_cnn.train", *QUICK, *args, cwd=whole, data_root=slow_root).returncode == 0

    process = _start(killed, slow_root, *args)
    _wait_for_last_checkpoint(killed, process)
    time.sleep(0.3)  # into the second and last epoch
    assert process.poll() is None, "training ended before it could be killed"
    process.kill()
    process.communicate()
    resumed = run_command("mnist_cnn.train", *QUICK, *args, "ckpt_path=last", cwd=killed, data_root=slow_root)
    assert resumed.returncode == 0, resumed.stderr
    assert _test_accuracy(killed) == pytest.approx(_test_accuracy(whole), abs=0.001)


@pytest.mark.slow
@pytest.mark.parametrize(("sent", "name", "status"), [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGINT, "SIGINT", 130)])
def test_signal_saves_a_resumable_checkpoint_and_fails(
    sent: signal.Signals, name: str, status: int, slow_root: Path, tmp_path: Path
) -> None:
    process = _start(tmp_path, slow_root, "trainer.max_epochs=100")
    last = _wait_for_last_checkpoint(tmp_path, process)
    saved_at_epoch_end = last.stat().st_mtime_ns
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status
    assert f"error: interrupted by {name}; saved a resumable checkpoint: {last.resolve()}" in stderr
    assert f"resume with: {sys.executable} -m mnist_cnn.train" in stderr and f"ckpt_path={last.resolve()}" in stderr
    assert last.stat().st_mtime_ns > saved_at_epoch_end and "Traceback" not in stderr
    assert "Received SIGTERM" not in stderr  # the command says what happened itself, once
    if sent == signal.SIGTERM:  # the checkpoint written on the signal resumes (the same code path for both)
        resume = ("trainer.max_epochs=2", "test=false", "ckpt_path=last")
        resumed = run_command("mnist_cnn.train", *QUICK, *resume, cwd=tmp_path, data_root=slow_root)
        assert resumed.returncode == 0, resumed.stderr


@pytest.mark.slow
def test_killing_checkpoint_writes_never_leaves_a_broken_file(tmp_path: Path) -> None:
    """Checkpoints are written atomically: a SIGKILL at any moment leaves the old file or the new one."""
    path = tmp_path / "last.ckpt"
    writer = (
        "import sys, lightning as L\n"
        "from mnist_cnn import MNISTClassifier\n"
        "from mnist_cnn.training.checkpoint_io import AtomicCheckpointIO\n"
        "trainer = L.Trainer(accelerator='cpu', logger=False, plugins=[AtomicCheckpointIO()])\n"
        "trainer.strategy.connect(MNISTClassifier('resnet'))\n"
        "checkpoint = {'state_dict': trainer.lightning_module.state_dict(), 'hyper_parameters': {}}\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    trainer.strategy.save_checkpoint(checkpoint, sys.argv[1])\n"
    )
    for delay in (0.07, 0.29, 0.53):
        process = subprocess.Popen([sys.executable, "-c", writer, str(path)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline() == "ready\n"
        time.sleep(delay)
        process.kill()
        process.wait()
        assert len(torch.load(path, weights_only=True)["state_dict"]) > 0
    leftovers = {item.name for item in tmp_path.iterdir()} - {"last.ckpt"}
    assert all(name.startswith(".last.ckpt.") and name.endswith(".tmp") for name in leftovers)


def test_divergence_stops_with_epoch_and_step(fake_root: Path, tmp_path: Path) -> None:
    result = run_command("mnist_cnn.train", *QUICK, "optimizer.lr=1e30", cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "error: the training loss is" in result.stderr and "at epoch 0, step" in result.stderr
    assert "last good checkpoint: none yet" in result.stderr
    (run_dir,) = tmp_path.glob("checkpoints/lenet5/*")  # a run that started training is kept: what it ran with
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "train.log").is_file()


class PoisonWeights(L.Callback):
    """Turns a weight into NaN when the second epoch starts, as a diverging run would."""

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            with torch.no_grad():
                next(module.parameters()).fill_(float("nan"))


def test_divergence_keeps_the_last_good_checkpoint(fake_root: Path, tmp_path: Path) -> None:
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        callbacks=[checkpoint, PoisonWeights()],
    )
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, step 8"):
        trainer.fit(MNISTClassifier("lenet5"), datamodule=MNISTDataModule(root=str(fake_root), val_size=100))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 0 and all(torch.isfinite(value).all() for value in saved["state_dict"].values())


class Payload:
    """Unpickling this creates a file: what an attacker's checkpoint would do with a worse command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("command", ["mnist_cnn.train", "mnist_cnn.evaluate"])
def test_pickle_payload_in_a_checkpoint_never_runs(command: str, fake_root: Path, tmp_path: Path) -> None:
    marker, crafted = tmp_path / "pwned", tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model_name": "lenet5"}, "x": Payload(marker)}, crafted)
    result = run_command(command, "data.val_size=100", f"ckpt_path={crafted}", cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: {crafted} is not a readable checkpoint" in result.stderr
    assert not marker.exists()


def test_a_checkpoint_whose_hyperparameters_name_os_system_runs_nothing(fake_root: Path, tmp_path: Path) -> None:
    marker, crafted = tmp_path / "pwned", tmp_path / "crafted.ckpt"
    checkpoint = torch.load(verified_checkpoint("lenet5"), weights_only=True)
    checkpoint["hyper_parameters"]["optimizer"] = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    torch.save(checkpoint, crafted)
    with pytest.raises(CheckpointError) as refused:  # the LightningModule builds its optimizer node: refused
        MNISTClassifier.load(crafted)
    assert str(refused.value).startswith(f"cannot rebuild the model saved in {crafted}: optimizer._target_='os.system'")
    assert "is not allowed: the optimizer may only name a class in torch.optim or mnist_cnn" in str(refused.value)
    result = run_command("mnist_cnn.evaluate", f"ckpt_path={crafted}", cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr  # evaluation reads the architecture and weights alone
    assert not marker.exists()


def _save_untrained(path: Path, **module_kwargs: object) -> Path:
    trainer = L.Trainer(accelerator="cpu", logger=False)
    trainer.strategy.connect(MNISTClassifier(**module_kwargs))
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def lenet5_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_untrained(tmp_path_factory.mktemp("saved") / "lenet5.ckpt", model_name="lenet5")


def test_truncated_checkpoint_is_refused(lenet5_checkpoint: Path, fake_root: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(lenet5_checkpoint.read_bytes()[:5000])
    result = run_command("mnist_cnn.train", *QUICK, f"ckpt_path={truncated}", cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 2 and f"error: {truncated} is not a readable checkpoint: truncated" in result.stderr


def test_checkpoint_of_another_architecture_is_refused(
    lenet5_checkpoint: Path, fake_root: Path, tmp_path: Path
) -> None:
    overrides = [item for item in QUICK if item != "model=lenet5"]
    result = run_command(
        "mnist_cnn.train",
        *overrides,
        "model=simple_cnn",
        f"ckpt_path={lenet5_checkpoint}",
        cwd=tmp_path,
        data_root=fake_root,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "holds a different model (model_name: 'lenet5' saved, 'simple_cnn' asked" in result.stderr
    assert "use it with model=lenet5" in result.stderr


def test_checkpoint_with_another_class_count_is_refused(fake_root: Path, tmp_path: Path) -> None:
    path = _save_untrained(tmp_path / "five.ckpt", model_name="lenet5", num_classes=5)
    result = run_command("mnist_cnn.train", *QUICK, f"ckpt_path={path}", cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 2 and "num_classes: 5 saved, 10 asked" in result.stderr
