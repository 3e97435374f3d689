"""What a command imports, checked in this process: the package imported anew, with some packages unimportable."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType


class _Refusing(importlib.abc.MetaPathFinder):
    """Refuses to import the ``packages`` and their modules, recording each name asked for."""

    def __init__(self, packages: Sequence[str]) -> None:
        self.packages, self.asked = tuple(packages), []

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name.partition(".")[0] in self.packages:
            self.asked.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)", name=name)
        return None


@contextmanager
def refusing_imports(*packages: str) -> Iterator[list[str]]:
    """Within: ``mnist_cnn`` and ``packages`` are out of ``sys.modules``, so that ``mnist_cnn`` is imported anew and
    any import of ``packages`` fails; yields the list of the module names that were asked for. Afterwards the
    modules of ``mnist_cnn`` and ``packages`` are the ones from before; other modules imported within stay, as some
    (torch's compiler) register themselves in other modules' globals once."""
    saved = dict(sys.modules)
    for name in saved:
        if name.partition(".")[0] in ("mnist_cnn", *packages):
            del sys.modules[name]
    finder = _Refusing(packages)
    sys.meta_path.insert(0, finder)
    try:
        yield finder.asked
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - set(saved):
            if name.partition(".")[0] in ("mnist_cnn", *packages):
                del sys.modules[name]
        sys.modules.update(saved)
        if "mnist_cnn.config" in saved:  # Hydra's ConfigStore, a global, holds the schemas of the package anew
            saved["mnist_cnn.config"].store_schemas()
