"""What a setting may be: a check and the words that say it, one for each setting that has a range.

A typed option carries its rule in its dataclass field (``allowed``), checked when the option object is made and
by ``mnist_cnn.config.validate`` under its config key; a key of a free-form config node (``optimizer.lr``) has its
rule in ``mnist_cnn.config.RULES``.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

from mnist_cnn.errors import ConfigError

Rule = tuple[Callable[[Any], bool], str]  # (is the value allowed, what is allowed)


def number(check: Callable[[float], bool], allowed: str) -> Rule:
    """A rule for numbers (not booleans) that pass ``check``."""
    return (lambda value: isinstance(value, numbers.Real) and not isinstance(value, bool) and check(value)), allowed


def between(low: float, high: float, allowed: str) -> Rule:
    """Numbers in [``low``, ``high``]."""
    return number(lambda value: low <= value <= high, allowed)


def one_of(*choices: str) -> Rule:
    return (lambda value: value in choices), f"one of {', '.join(choices)}"


POSITIVE = number(lambda value: value > 0, "a number > 0")
NON_NEGATIVE = number(lambda value: value >= 0, "a number >= 0")
FRACTION = number(lambda value: 0 <= value < 1, "a number in [0, 1)")
PROBABILITY = between(0, 1, "a probability in [0, 1]")


def allowed(default: Any, rule: Rule) -> Any:
    """A dataclass field with ``default`` that takes only the values ``rule`` allows (see ``check_fields``)."""
    return dataclasses.field(default=default, metadata={"rule": rule})


def refusal(key: str, value: Any, rule: Rule | None) -> str | None:
    """The message refusing ``key=value``, or ``None`` when ``rule`` (if any) allows the value."""
    if rule is None or rule[0](value):
        return None
    return f"{key}={value!r} is not allowed: use {rule[1]}"


def check_fields(options: Any, prefix: str = "") -> None:
    """A ``ConfigError`` naming the first field of the dataclass object ``options`` whose value its rule refuses."""
    for item in dataclasses.fields(options):
        message = refusal(f"{prefix}{item.name}", getattr(options, item.name), item.metadata.get("rule"))
        if message:
            raise ConfigError(message)
