"""MNIST digit classification with PyTorch Lightning and Hydra: four CNNs, their training, evaluation, shipped
weights and inference.

The names below are the public API. They are imported on first use, so ``import mnist_cnn`` (and every
command's ``--help``) stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "MNISTClassifier": "mnist_cnn.training.module",
    "load_pretrained_model": "mnist_cnn.training.module",
    "MNISTDataModule": "mnist_cnn.data.datamodule",
    "Augmentation": "mnist_cnn.data.options",
    "Corruption": "mnist_cnn.data.options",
    "Degradation": "mnist_cnn.data.options",
    "MNISTSplits": "mnist_cnn.data.files",
    "load_mnist": "mnist_cnn.data.files",
    "read_splits": "mnist_cnn.data.files",
    "read_test_split": "mnist_cnn.data.files",
    "normalize": "mnist_cnn.data.pixels",
    "create_model": "mnist_cnn.weights.factory",
    "register_model": "mnist_cnn.models",
    "count_parameters": "mnist_cnn.models",
    "ModelInfo": "mnist_cnn.weights.catalog",
    "get_model_info": "mnist_cnn.weights.catalog",
    "list_models": "mnist_cnn.weights.catalog",
    "Predictions": "mnist_cnn.inference.classify",
    "predict_images": "mnist_cnn.inference.predict",
    "Evaluator": "mnist_cnn.evaluation.evaluator",
    "format_summary": "mnist_cnn.evaluation.report",
    "write_report": "mnist_cnn.evaluation.report",
    "plot_training_history": "mnist_cnn.evaluation.plots",
    "read_training_history": "mnist_cnn.evaluation.plots",
    "precision_recall_f1": "mnist_cnn.evaluation.metrics",
    "top_k_accuracy": "mnist_cnn.evaluation.metrics",
    "CheckpointError": "mnist_cnn.errors",
    "ConfigError": "mnist_cnn.errors",
    "MNISTDataError": "mnist_cnn.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mnist_cnn' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
