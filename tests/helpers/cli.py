"""Running a command as a user runs it: in this process (its ``main()``, with the arguments, working directory and
environment set and its output and exit status captured), or as a real process where the process itself is tested
(its entry point, exit code or signals)."""

from __future__ import annotations

import importlib
import io
import logging
import os
import signal
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig


@dataclass(frozen=True)
class Finished:
    """What a command run in this process left: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def environment(data_root: Path | None) -> dict[str, str]:
    """This process's environment with ``$MNIST_DATA_DIR`` set to ``data_root``, or unset."""
    env = {key: value for key, value in os.environ.items() if key != "MNIST_DATA_DIR"}
    if data_root is not None:
        env["MNIST_DATA_DIR"] = str(data_root)
    return env


def run_process(
    module: str,
    *arguments: str,
    cwd: Path,
    data_root: Path | None = None,
    timeout: float = 300,
    python_args: tuple[str, ...] = ("-m",),
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> <arguments>`` in ``cwd`` as a new process; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, *python_args, module, *arguments],
        cwd=cwd, env=environment(data_root), capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _exit_status(code: object, stderr: io.StringIO) -> int:
    """The status a process ends with on ``sys.exit(code)``; a message is printed, as Python does."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=stderr)
    return 1


class _ProcessState:
    """What a command changes in the process that runs it and a separate process would not carry into the next:
    the working directory, environment, arguments, signal handlers, logging set-up, Hydra's global state and
    PyTorch's deterministic mode."""

    def __init__(self) -> None:
        self.cwd, self.environ, self.argv = Path.cwd(), dict(os.environ), list(sys.argv)
        self.handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        self.loggers = {
            logger: (logger.level, logger.disabled, logger.propagate, list(logger.handlers))
            for logger in (logging.getLogger(), *logging.Logger.manager.loggerDict.values())
            if isinstance(logger, logging.Logger)
        }
        self.deterministic = (torch.are_deterministic_algorithms_enabled(),
                              torch.is_deterministic_algorithms_warn_only_enabled())  # fmt: skip
        self.threads = torch.get_num_threads()

    def restore(self) -> None:
        os.chdir(self.cwd)
        os.environ.clear()
        os.environ.update(self.environ)
        sys.argv[:] = self.argv
        for number, handler in self.handlers.items():
            signal.signal(number, handler)
        for logger, (level, disabled, propagate, handlers) in self.loggers.items():
            for handler in set(logger.handlers) - set(handlers):  # e.g. the file handler of Hydra's <job>.log
                handler.close()
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.disabled, logger.propagate = disabled, propagate
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        torch.use_deterministic_algorithms(self.deterministic[0], warn_only=self.deterministic[1])
        torch.set_num_threads(self.threads)


def run_command(command: str, *arguments: str, cwd: Path, data_root: Path | None = None) -> Finished:
    """Run ``python -m <command> <arguments>`` in this process: the command's ``main()`` with ``sys.argv``, the
    working directory ``cwd`` and ``$MNIST_DATA_DIR`` (``data_root``, or unset) set as ``run_process`` sets them,
    its stdout, stderr and exit status captured; the process is left as it was found."""
    module = importlib.import_module(command)
    if module.__spec__.submodule_search_locations is not None:  # a package: python -m runs its __main__
        module = importlib.import_module(f"{command}.__main__")
    stdout, stderr = io.StringIO(), io.StringIO()
    state = _ProcessState()
    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environment(data_root))
        sys.argv[:] = [module.__file__, *arguments]
        with redirect_stdout(stdout), redirect_stderr(stderr), warnings.catch_warnings():
            try:
                module.main()
                status = 0
            except SystemExit as exit:
                status = _exit_status(exit.code, stderr)
    finally:
        state.restore()
    return Finished(status, stdout.getvalue(), stderr.getvalue())
