"""The package's shape: imports run one way between layers (import-linter's contract in pyproject.toml), and no
module reaches itself through others."""

from __future__ import annotations

import grimp
import pytest
from conftest import REPO
from importlinter.cli import lint_imports


def test_the_layer_contract_holds(capsys: pytest.CaptureFixture[str]) -> None:
    status = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True)
    output = capsys.readouterr().out
    assert status == 0 and "Contracts: 1 kept, 0 broken." in output, output


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
