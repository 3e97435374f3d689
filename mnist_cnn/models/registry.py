"""Model registry, in the shape of timm's: ``@register_model``, ``model_names``, ``build_model``.

The registry knows names, classes and one-line descriptions, nothing else; what is shipped for a
model (weights, measured figures) lives in ``mnist_cnn.weights``, which refers to these names, and so does
``mnist_cnn.create_model`` (``mnist_cnn.weights.factory``), which builds a model with or without them.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

import torch.nn as nn

InputShape = tuple[int, int, int]
ModelClass = TypeVar("ModelClass", bound=type[nn.Module])

_MODELS: dict[str, type[nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator that makes an ``nn.Module`` buildable by ``build_model(name)``."""

    def decorator(cls: ModelClass) -> ModelClass:
        if name in _MODELS:
            raise ValueError(f"a model named {name!r} is already registered ({_MODELS[name].__qualname__})")
        _MODELS[name] = cls
        _DESCRIPTIONS[name] = description
        return cls

    return decorator


def model_names() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_MODELS)


def model_description(name: str) -> str:
    """The one-line description given at registration."""
    _model_class(name)
    return _DESCRIPTIONS[name]


def _model_class(name: str) -> type[nn.Module]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(model_names())}")
    return _MODELS[name]


def channels_first(input_shape: Sequence[int]) -> InputShape:
    """(C, H, W) from PyTorch's (C, H, W) or Keras' (H, W, C) order, e.g. (28, 28, 1) -> (1, 28, 28)."""
    shape = tuple(int(size) for size in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must have 3 sizes, (1, 28, 28) or Keras' (28, 28, 1), got {shape}")
    if shape[-1] in (1, 3) and shape[0] not in (1, 3):
        return shape[2], shape[0], shape[1]
    return shape  # type: ignore[return-value]


def build_model(name: str, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """A newly initialised registered architecture; ``kwargs`` are its own options (e.g. ``dropout_rate``).

    ``input_shape`` may be given in PyTorch's (1, 28, 28) or Keras' (28, 28, 1) order.
    """
    cls = _model_class(name)
    accepted = set(inspect.signature(cls).parameters) - {"input_shape", "num_classes"}
    unknown = set(kwargs) - accepted
    if unknown:
        raise ValueError(
            f"model {name!r} does not accept {', '.join(sorted(unknown))}; "
            f"its options are: {', '.join(sorted(accepted)) or 'none'}"
        )
    return cls(input_shape=channels_first(input_shape), num_classes=num_classes, **kwargs)
