"""``create_model``, timm's factory: a registered architecture as a plain ``nn.Module``, newly initialised or with the
shipped weights. No Lightning: loading the weights costs what reading the file costs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from mnist_cnn.models import build_model
from mnist_cnn.models.registry import channels_first
from mnist_cnn.weights.checkpoints import architecture, network_from, read_checkpoint
from mnist_cnn.weights.manifest import verified_checkpoint


def create_model(
    name: str,
    pretrained: bool = False,
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered architecture ``name``; ``kwargs`` are its own options (e.g. ``dropout_rate``), and
    ``input_shape`` may be given in PyTorch's (1, 28, 28) or Keras' (28, 28, 1) order.

    ``pretrained=True`` loads the shipped weights (checksum verified) in eval mode on the CPU, with the
    ``uncertain_below`` its predictions use; the other arguments may then only repeat what the shipped model was
    built with (a ``ValueError`` says what differs).
    """
    if not pretrained:
        return build_model(name, input_shape, num_classes, **kwargs)
    path = verified_checkpoint(name)
    checkpoint = read_checkpoint(path)
    saved = architecture(checkpoint["hyper_parameters"])
    asked = {"input_shape": channels_first(input_shape), "num_classes": num_classes}
    asked["model_kwargs"] = {**saved["model_kwargs"], **kwargs}
    differing = [f"{key}={asked[key]!r} (shipped: {saved[key]!r})" for key in asked if asked[key] != saved[key]]
    if differing:
        raise ValueError(
            f"the shipped {name} weights fit another model than the one asked for: {', '.join(differing)}; "
            "leave these out, or build a new model with pretrained=False"
        )
    return network_from(checkpoint, path)
