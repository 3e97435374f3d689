"""Architectures, each registered by name on import."""

from mnist_cnn.models import custom_cnn, lenet5, resnet, simple_cnn  # noqa: F401  (registers the models)
from mnist_cnn.models.registry import (
    ModelInfo,
    count_parameters,
    create_model,
    get_model_info,
    list_models,
    register_model,
)

__all__ = ["ModelInfo", "count_parameters", "create_model", "get_model_info", "list_models", "register_model"]
