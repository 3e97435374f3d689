"""The errors a user can fix, each reported by the commands as one ``error: ...`` line and an exit status.

Kept free of heavy imports so that command lines can name them without loading torch.
"""

from __future__ import annotations

import re
from pathlib import Path

EXIT_SOME_FAILED = 1  # some inputs or sweep jobs failed; the others were done
EXIT_BAD_INPUT = 2  # a bad option, config, data file, checkpoint or image, or a missing extra
EXIT_DIVERGED = 3  # training stopped on a NaN or infinite loss
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): 128 + 2, as a shell reports a command the signal stopped

# The optional extras, by the module that needs them: ``pip install "mnist_cnn[<extra>]"``.
EXTRAS = {
    "mlflow": "mlflow",
    "tensorboard": "tensorboard",
    "tensorboardX": "tensorboard",
    "onnx": "export",
    "onnxscript": "export",
    "onnxruntime": "export",
    "optuna": "sweep",
    "fastapi": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
    "swagger_ui_bundle": "serve",
    "tensorflow": "keras",
    "keras": "keras",
}


class UserError(Exception):
    """Something the user gave is wrong or missing; the message says what, and how to fix it."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(UserError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range; the message names the key."""


class MNISTDataError(UserError, RuntimeError):
    """The MNIST files are missing, truncated or inconsistent; the message says how to fix it."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable, or holds a model other than the one asked for."""


class MissingExtraError(UserError, ImportError):
    """An optional feature's packages are not installed; the message gives the install command."""


def missing_extra(feature: str, error: ImportError) -> MissingExtraError:
    """The error for ``feature`` (e.g. ``logger=mlflow``) failing with ``error`` because a package is absent."""
    text = f"{error.name or ''} {error}"
    module = next((name for name in EXTRAS if re.search(rf"\b{name}\b", text)), error.name or "unknown")
    fix = f'pip install "mnist_cnn[{EXTRAS[module]}]"' if module in EXTRAS else f"pip install {module}"
    return MissingExtraError(f"{feature} needs a package that is not installed ({module}): {fix}")


class TrainingStopped(Exception):
    """Training ended before its planned end (a signal, a diverged loss); ``exit_code`` is the status the command
    exits with, ``checkpoint`` the last good checkpoint, if any."""

    def __init__(self, message: str, exit_code: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.exit_code, self.checkpoint = exit_code, checkpoint
