"""The README's notebook snippet runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
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
    assert (tmp_path / "lenet5.ckpt").is_file()
    assert (
        namespace["predicted"].shape == (8,) and namespace["trainer"].global_step == 16
    )  # 1,000 training images in batches of 64
    images = namespace["images"][:8]
    namespace["model"].eval()
    with torch.no_grad():
        assert torch.equal(namespace["model"](images), namespace["restored"](images))
