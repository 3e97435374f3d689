"""Ctrl-C at any moment of ``python -m mnist_cnn.train``: real processes, real signals.

A background job of a non-interactive shell ignores SIGINT, so the signal is sent to the process directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _start(cwd: Path, data_root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MNIST_DATA_DIR": str(data_root)}
    command = [sys.executable, "-m", "mnist_cnn.train", "model=lenet5", "data.val_size=100"]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_run_dir(cwd: Path, process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until Hydra has made the run directory and written its config there (the command is then still loading)."""
    deadline = time.monotonic() + timeout
    while not list(cwd.glob("checkpoints/lenet5/*/.hydra/config.yaml")):
        assert process.poll() is None and time.monotonic() < deadline, "no run directory appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("moment", ["1.5 s after the start", "once the run directory exists"])
def test_ctrl_c_before_training_is_one_line_status_130_and_leaves_no_run_directory(
    moment: str, fake_root: Path, tmp_path: Path
) -> None:
    process = _start(tmp_path, fake_root)
    if moment == "once the run directory exists":
        _wait_for_run_dir(tmp_path, process)
    else:
        time.sleep(1.5)
    assert process.poll() is None, "the command ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (130, "error: interrupted by SIGINT\n")
    assert list(tmp_path.iterdir()) == []  # nor checkpoints/lenet5/, which the run directory was made in
