"""What is available: the registered architectures, their default recipes, and the weights shipped for them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from mnist_cnn.models import build_model, count_parameters, model_description, model_names
from mnist_cnn.models.registry import InputShape, channels_first
from mnist_cnn.resources import CONF_DIR
from mnist_cnn.weights.manifest import PretrainedInfo, read_manifest


@dataclass(frozen=True)
class ModelInfo:
    """What is known about one architecture."""

    name: str
    description: str
    num_parameters: int
    input_shape: InputShape
    num_classes: int
    default_recipe: dict[str, Any]
    pretrained: PretrainedInfo | None  # the shipped weights: measured test accuracy, loss, command, ...


def list_models(pretrained: bool = False) -> list[str]:
    """Names of the registered architectures, sorted; with ``pretrained=True`` only those with shipped weights."""
    names = model_names()
    return [name for name in names if name in read_manifest()] if pretrained else names


def get_model_info(name: str, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10) -> ModelInfo:
    """Description, measured parameter count, default training recipe and shipped weights of a model."""
    model = build_model(name, input_shape=input_shape, num_classes=num_classes)
    return ModelInfo(
        name=name,
        description=model_description(name),
        num_parameters=count_parameters(model),
        input_shape=channels_first(input_shape),
        num_classes=num_classes,
        default_recipe=default_recipe(name),
        pretrained=read_manifest().get(name),
    )


def default_recipe(name: str) -> dict[str, Any]:
    """The overrides ``model=<name>`` applies on top of ``conf/train.yaml``, as dotted keys, read from
    ``conf/model/<name>.yaml`` so the recipe has one source of truth; empty when that file does not exist."""
    path = CONF_DIR / "model" / f"{name}.yaml"
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
