"""``python -m mnist_cnn.export``: an ONNX file that onnxruntime runs with PyTorch's answers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli import run_command
from helpers.imports import refusing_imports

from mnist_cnn import normalize, read_test_split
from mnist_cnn.weights.checkpoints import load_network


def test_onnx_logits_match_pytorch_and_exporting_never_imports_lightning(
    trained_run: Path, fake_root: Path, tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime", reason='needs the export extra: pip install -e ".[export]"')
    pytest.importorskip("onnxscript", reason='needs the export extra: pip install -e ".[export]"')
    with refusing_imports("lightning") as asked:
        result = run_command("mnist_cnn.export", f"ckpt_path={trained_run}", "output=digits.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert asked == []
    assert result.stdout.startswith("wrote digits.onnx (")
    images, _ = read_test_split(fake_root)
    inputs = normalize(images[:100])
    with torch.inference_mode():
        expected = load_network(trained_run / "best.ckpt")(inputs).numpy()
    runtime = ort.InferenceSession(str(tmp_path / "digits.onnx"), providers=["CPUExecutionProvider"])
    for batch in (inputs, inputs[:1]):  # the batch dimension is dynamic
        (logits,) = runtime.run(None, {"images": batch.numpy()})
        np.testing.assert_allclose(logits, expected[: len(batch)], atol=1e-4, rtol=0)


def test_a_run_directory_is_exported_as_its_model_s_name(trained_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason='needs the export extra: pip install -e ".[export]"')
    result = run_command("mnist_cnn.export", f"ckpt_path={trained_run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote lenet5.onnx (")  # the model's name, not the checkpoint's (best.ckpt)
    assert [path.name for path in tmp_path.iterdir()] == ["lenet5.onnx"]


def test_bad_output_name_is_refused(tmp_path: Path) -> None:
    result = run_command("mnist_cnn.export", "ckpt_path=simple_cnn", "output=model.pt", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: output=model.pt is not allowed: use a file name ending in .onnx\n"
    assert list(tmp_path.iterdir()) == []


def test_without_the_export_extra_it_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript fails, as where it is not installed
    result = run_command("mnist_cnn.export", "ckpt_path=simple_cnn", cwd=tmp_path)
    assert result.returncode == 2 and list(tmp_path.iterdir()) == []
    assert result.stderr.strip() == (
        'error: format=onnx needs a package that is not installed (onnxscript): pip install "mnist_cnn[export]"'
    )
