"""The README's notebook snippet runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_fake_mnist


def _snippet() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- snippet: notebook[^>]*-->\s*```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md lost its notebook snippet"
    return match.group(1)


def test_notebook_snippet_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_root = write_fake_mnist(tmp_path / "data", num_train=6_000)  # room for the default 5,000 val split
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_DATA_DIR", str(data_root))
    namespace: dict = {}
    exec(compile(_snippet(), "README.md", "exec"), namespace)
    assert (tmp_path / "lenet5.ckpt").is_file() and (tmp_path / "history.png").stat().st_size > 0
    assert namespace["trainer"].global_step == 16  # 1,000 training images in batches of 64
    probabilities, pixels = namespace["probabilities"], namespace["pixels"][:8]
    assert probabilities.shape == (8, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(namespace["model"].predict(pixels), probabilities)  # the reload is exact
    assert namespace["pretrained"].predict_images(namespace["page"]).labels.shape == (1,)
    own = namespace["own"]  # the fine-tuning on arrays: 900 images to train on, 100 held out
    assert (len(own.datasets["train"]), len(own.datasets["val"])) == (900, 100)
