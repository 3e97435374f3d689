"""Objects built from config nodes that name their class in ``_target_``, through ``hydra.utils.instantiate``.

Every argument is checked against the class's signature before anything is built, so a typo is one error
that names the closest argument, never a raw ``TypeError`` or a silently dropped key. Nodes that a checkpoint
carries (the optimizer and the LR scheduler) may only name classes inside ``ALLOWED_PACKAGES``: a crafted
checkpoint cannot make the code build anything else.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from hydra.utils import get_class, instantiate

from mnist_cnn.config import did_you_mean
from mnist_cnn.errors import ConfigError, missing_extra

ALLOWED_PACKAGES = ("torch.optim", "mnist_cnn")  # torch.optim.lr_scheduler lies inside torch.optim
INSTANTIATE_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})


def targets(node: Any) -> Iterator[str]:
    """Every ``_target_`` in ``node``, nested ones included."""
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield str(node["_target_"])
        for value in node.values():
            yield from targets(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from targets(value)


def check_allowed(node: Any, key: str) -> None:
    """Refuse ``node`` if any ``_target_`` in it lies outside ``ALLOWED_PACKAGES``; nothing is imported first."""
    for target in targets(node):
        if not any(target == package or target.startswith(f"{package}.") for package in ALLOWED_PACKAGES):
            raise ConfigError(
                f"{key}._target_={target!r} is not allowed: the {key} may only name a class in "
                f"{' or '.join(ALLOWED_PACKAGES)}"
            )


def component_class(node: Any, key: str) -> type:
    """The class ``node["_target_"]`` names, imported."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ConfigError(f"{key} must name the class to build in _target_, got {node!r}")
    try:
        return get_class(str(node["_target_"]))
    except Exception as error:  # Hydra reports every failed import or lookup as a plain ImportError
        raise ConfigError(f"{key}._target_={node['_target_']}: {str(error).splitlines()[0]}") from None


def check_arguments(node: Mapping[str, Any], key: str, supplied: Collection[str] = ()) -> type:
    """The class of ``node`` after checking that it takes every argument ``node`` gives; ``supplied`` are the
    arguments the code passes itself (e.g. ``params``), which the node must leave out."""
    cls = component_class(node, key)
    parameters = inspect.signature(cls).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    accepted = set(parameters) - set(supplied) - {"self"}
    for name in node:
        if name in supplied:
            raise ConfigError(f"{key}.{name} is supplied by the run itself: leave it out")
        if name not in accepted and name not in INSTANTIATE_KEYS and not takes_any:
            listed = ", ".join(sorted(accepted)) if len(accepted) <= 12 else "see its documentation"
            raise ConfigError(
                f"{key}.{name} is not an argument of {node['_target_']}: "
                f"{did_you_mean(name, accepted) or f'its arguments: {listed}'}"
            )
    return cls


def build(node: Mapping[str, Any], key: str, **supplied: Any) -> Any:
    """``instantiate(node, **supplied)`` after ``check_arguments``; a constructor's complaint about its
    arguments becomes a ``ConfigError`` naming ``key``, a missing optional package a ``MissingExtraError``."""
    check_arguments(node, key, supplied)
    try:
        return instantiate(dict(node), _convert_="all", **supplied)
    except Exception as error:  # Hydra wraps whatever the constructor raised in an InstantiationException
        cause = error.__cause__ or error
        if isinstance(cause, ImportError):
            raise missing_extra(key, cause) from None
        raise ConfigError(f"{key}: {str(cause).splitlines()[0]}") from None
