"""The architectures, each registered by name on import, and the registry that builds them."""

from mnist_cnn.models import custom_cnn, lenet5, resnet, simple_cnn  # noqa: F401  (registers the models)
from mnist_cnn.models.layers import count_parameters
from mnist_cnn.models.registry import build_model, model_description, model_names, register_model

__all__ = ["build_model", "count_parameters", "model_description", "model_names", "register_model"]
