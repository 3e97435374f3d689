"""Model registry and factory, in the shape of timm's: ``@register_model``, ``list_models``, ``create_model``."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch.nn as nn

from mnist_cnn.pretrained import PretrainedInfo, pretrained_info

InputShape = tuple[int, int, int]
ModelClass = TypeVar("ModelClass", bound=type[nn.Module])

_MODELS: dict[str, type[nn.Module]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_RECIPE_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture."""

    name: str
    description: str
    num_parameters: int
    input_shape: InputShape
    num_classes: int
    default_recipe: dict[str, Any]
    pretrained: PretrainedInfo | None  # the shipped weights: measured test accuracy, loss, command, ...


def register_model(name: str, description: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator that makes an ``nn.Module`` buildable by ``create_model(name)``."""

    def decorator(cls: ModelClass) -> ModelClass:
        if name in _MODELS:
            raise ValueError(f"a model named {name!r} is already registered ({_MODELS[name].__qualname__})")
        _MODELS[name] = cls
        _DESCRIPTIONS[name] = description
        return cls

    return decorator


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_MODELS)


def _model_class(name: str) -> type[nn.Module]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[name]


def create_model(name: str, input_shape: InputShape = (1, 28, 28), num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """Build a registered architecture; ``kwargs`` are its own options (e.g. ``dropout_rate``)."""
    cls = _model_class(name)
    accepted = set(inspect.signature(cls).parameters) - {"input_shape", "num_classes"}
    unknown = set(kwargs) - accepted
    if unknown:
        raise ValueError(
            f"model {name!r} does not accept {', '.join(sorted(unknown))}; "
            f"its options are: {', '.join(sorted(accepted)) or 'none'}"
        )
    return cls(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def get_model_info(name: str, input_shape: InputShape = (1, 28, 28), num_classes: int = 10) -> ModelInfo:
    """Description, measured parameter count, default training recipe and shipped weights of a model."""
    model = create_model(name, input_shape=input_shape, num_classes=num_classes)
    return ModelInfo(
        name=name,
        description=_DESCRIPTIONS[name],
        num_parameters=count_parameters(model),
        input_shape=input_shape,
        num_classes=num_classes,
        default_recipe=default_recipe(name),
        pretrained=pretrained_info(name),
    )


def default_recipe(name: str) -> dict[str, Any]:
    """The overrides ``model=<name>`` applies on top of ``conf/train.yaml``, as dotted keys.

    Read from ``conf/model/<name>.yaml`` so the recipe has one source of truth; empty when the
    package is used without its ``conf/`` folder.
    """
    from omegaconf import OmegaConf  # local: only needed here

    path = _RECIPE_DIR / f"{name}.yaml"
    if not path.is_file():
        return {}
    tree = OmegaConf.to_container(OmegaConf.load(path))
    recipe: dict[str, Any] = {}
    for entry in tree.pop("defaults", None) or []:
        for group, option in entry.items():
            recipe[group.removeprefix("override /")] = option
    recipe.update(_flatten(tree))
    recipe.pop("model.name", None)
    return recipe


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
