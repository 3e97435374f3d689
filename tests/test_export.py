"""``python -m mnist_cnn.export``: an ONNX file that onnxruntime runs with PyTorch's answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, run_without

from mnist_cnn import normalize, read_test_split
from mnist_cnn.weights.checkpoints import load_network
from mnist_cnn.weights.manifest import verified_checkpoint

ort = pytest.importorskip("onnxruntime", reason='needs the export extra: pip install -e ".[export]"')


def test_onnx_logits_match_pytorch(fake_root: Path, tmp_path: Path) -> None:
    result = run_cli("mnist_cnn.export", "ckpt_path=simple_cnn", "output=digits.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    images, _ = read_test_split(fake_root)
    inputs = normalize(images[:100])
    with torch.inference_mode():
        expected = load_network(verified_checkpoint("simple_cnn"))(inputs).numpy()
    runtime = ort.InferenceSession(str(tmp_path / "digits.onnx"), providers=["CPUExecutionProvider"])
    for batch in (inputs, inputs[:1]):  # the batch dimension is dynamic
        (logits,) = runtime.run(None, {"images": batch.numpy()})
        np.testing.assert_allclose(logits, expected[: len(batch)], atol=1e-4, rtol=0)


def test_bad_output_name_is_refused(tmp_path: Path) -> None:
    result = run_cli("mnist_cnn.export", "ckpt_path=simple_cnn", "output=model.pt", cwd=tmp_path)
    assert result.returncode == 2
    assert "output=model.pt is not allowed: use a file name ending in .onnx" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_the_export_extra_it_names_the_install_command(tmp_path: Path) -> None:
    result = run_without("onnxscript", "mnist_cnn.export", "ckpt_path=simple_cnn", cwd=tmp_path)
    assert result.returncode == 2 and list(tmp_path.iterdir()) == []
    assert result.stderr.strip() == (
        'error: format=onnx needs a package that is not installed (onnxscript): pip install "mnist_cnn[export]"'
    )
