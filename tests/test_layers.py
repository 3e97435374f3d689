"""The package's shape: imports run one way between layers, and no module reaches itself through others."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
from conftest import REPO


def _lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's contracts from pyproject.toml, checked on the ``mnist_cnn`` found in ``package_parent``."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    return subprocess.run(
        [*command, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=package_parent, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_layer_contract_holds() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_the_layer_contract_fails_on_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    shutil.copytree(REPO / "mnist_cnn", tmp_path / "mnist_cnn", ignore=shutil.ignore_patterns("__pycache__"))
    registry = tmp_path / "mnist_cnn" / "models" / "registry.py"
    registry.write_text(registry.read_text() + "\n\ndef _upward() -> None:\n    from mnist_cnn.training import run\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1 and "BROKEN" in result.stdout
    assert "mnist_cnn.models.registry -> mnist_cnn.training.run" in result.stdout


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    graph = grimp.build_graph("mnist_cnn", cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(component)

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert cycles == []
