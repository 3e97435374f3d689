"""Each command started as a shell starts it, in a new process: the console scripts pyproject.toml installs (and
``python -m mnist_cnn.pretrained``), their exit statuses, and output free of library noise. One process per command;
every other test calls the command's ``main()`` in its own process (tests/helpers/cli.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import environment

from benchmarks.drawing import draw_on_paper
from mnist_cnn.weights.manifest import read_manifest

pytestmark = pytest.mark.slow


def _start(*command: str | Path, cwd: Path, data_root: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd, env=environment(data_root), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _script(name: str) -> Path:
    """The console script ``name`` installed beside this interpreter; skips where the package is not installed."""
    path = Path(sysconfig.get_path("scripts")) / name
    if not path.is_file():
        pytest.skip(f"{name} is not installed beside {sys.executable}: pip install -e .")
    return path


def test_mnist_train_trains_prints_only_its_own_lines_and_exits_0(fake_root: Path, tmp_path: Path) -> None:
    tiny = ("model=lenet5", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "data.val_size=100")
    result = _start(_script("mnist-train"), *tiny, cwd=tmp_path, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no library warnings, tips or progress bars
    assert "Tip:" not in result.stdout and "GPU available" not in result.stdout
    (run_dir,) = (tmp_path / "checkpoints" / "lenet5").iterdir()
    assert re.search(rf"^run dir +{re.escape(str(run_dir))}$", result.stdout, re.MULTILINE)
    assert (run_dir / "best.ckpt").is_file()


def test_mnist_evaluate_without_a_model_exits_2_with_one_error_line(tmp_path: Path) -> None:
    result = _start(_script("mnist-evaluate"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "error: ckpt_path is required: give a shipped model name (e.g. ckpt_path=lenet5), a .ckpt file or a "
        "training run directory\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_mnist_predict_with_one_unreadable_image_classifies_the_other_and_exits_1(tmp_path: Path) -> None:
    draw_on_paper(np.eye(28, dtype=np.uint8) * 255, (60, 60), 40, (10, 10)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    result = _start(_script("mnist-predict"), "ckpt_path=lenet5", f"inputs={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1
    message = "not a readable image file: PNG, JPEG and BMP are read (UnidentifiedImageError)"
    assert result.stderr == f"error: {tmp_path / 'broken.png'}: {message}\n"
    (row,) = [line for line in result.stdout.splitlines() if line.startswith(str(tmp_path / "good.png"))]
    assert row.split()[1].isdigit()


def test_mnist_export_refusing_an_output_name_exits_2(tmp_path: Path) -> None:
    result = _start(_script("mnist-export"), "ckpt_path=lenet5", "output=model.pt", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: output=model.pt is not allowed: use a file name ending in .onnx\n"
    assert list(tmp_path.iterdir()) == []


def test_mnist_serve_refusing_a_port_exits_2(tmp_path: Path) -> None:
    result = _start(_script("mnist-serve"), "port=70000", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: port=70000 is not allowed: use a port number in [0, 65535] (0: any free port)\n"


def test_python_m_mnist_cnn_pretrained_lists_the_shipped_models_and_exits_0(tmp_path: Path) -> None:
    result = _start(sys.executable, "-m", "mnist_cnn.pretrained", "list", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    listed = [line.split()[0] for line in result.stdout.splitlines()]
    assert listed == list(read_manifest())
