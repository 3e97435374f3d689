"""MNIST digit classification with PyTorch Lightning and Hydra.

Names are imported on first use, so ``import mnist_cnn`` (and ``--help``) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "MNISTClassifier": "mnist_cnn.module",
    "MNISTDataModule": "mnist_cnn.data",
    "MNISTSplits": "mnist_cnn.data",
    "load_mnist": "mnist_cnn.data",
    "normalize": "mnist_cnn.data",
    "MNISTDataError": "mnist_cnn.idx",
    "create_model": "mnist_cnn.models",
    "get_model_info": "mnist_cnn.models",
    "list_models": "mnist_cnn.models",
    "register_model": "mnist_cnn.models",
    "count_parameters": "mnist_cnn.models",
    "load_pretrained_model": "mnist_cnn.pretrained",
    "Evaluator": "mnist_cnn.evaluation",
    "write_report": "mnist_cnn.evaluation",
    "format_summary": "mnist_cnn.evaluation",
    "plot_training_history": "mnist_cnn.evaluation",
    "precision_recall_f1": "mnist_cnn.evaluation",
    "top_k_accuracy": "mnist_cnn.evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mnist_cnn' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
