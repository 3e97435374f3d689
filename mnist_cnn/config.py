"""Typed schemas for the root configs in ``conf/``, and the checks that types cannot express.

The YAML files hold every value but those the library defines, which the dataclasses give as defaults (``max_pixels``:
``mnist_cnn.preprocess.MAX_PIXELS``; ``opset``: ``mnist_cnn.onnx.OPSET``); the dataclasses hold the types, so
OmegaConf rejects ``data.batch_size=abc`` while composing. Components (``optimizer``, ``scheduler``,
``trainer``, ``callbacks``, ``logger``) are free-form nodes naming their class in ``_target_``: their arguments are
checked against the class when it is built. ``validate`` refuses keys nothing reads (``+foo=1``), missing values
and out-of-range values before anything is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, MissingMandatoryValue, OmegaConf

from mnist_cnn.errors import ConfigError
from mnist_cnn.inference import BACKENDS
from mnist_cnn.onnx import OPSET
from mnist_cnn.preprocess import MAX_PIXELS
from mnist_cnn.resources import CONF_DIR

# Optional[...] and Dict[...] rather than "X | None" and "dict[...]": OmegaConf 2.3 understands only the former.


@dataclass
class DataConfig:
    """Arguments of ``MNISTDataModule``."""

    root: Optional[str] = MISSING
    download: bool = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    val_size: int = MISSING
    split_seed: int = MISSING
    augment: bool = MISSING
    rotation_degrees: float = MISSING
    shift_fraction: float = MISSING
    zoom_fraction: float = MISSING
    elastic_alpha: float = MISSING
    elastic_sigma: float = MISSING
    degrade_prob: float = MISSING
    stroke_width: float = MISSING
    min_resolution: int = MISSING
    blur_sigma: float = MISSING
    contrast: float = MISSING
    noise_std: float = MISSING
    impulse_fraction: float = MISSING
    corrupt_prob: float = MISSING
    on_device: bool = MISSING


@dataclass
class TrainConfig:
    """The root of ``conf/train.yaml``."""

    model: Dict[str, Any] = field(default_factory=dict)  # name: a registered architecture; the rest its options
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: Dict[str, Any] = field(default_factory=dict)
    scheduler: Optional[Dict[str, Any]] = None
    trainer: Dict[str, Any] = field(default_factory=dict)
    callbacks: Dict[str, Any] = field(default_factory=dict)
    logger: Dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = MISSING
    batch_scale: int = MISSING
    label_smoothing: float = MISSING
    ckpt_path: Optional[str] = MISSING
    weights: Optional[str] = MISSING
    checkpoint_root: str = MISSING
    test: bool = MISSING
    optimized_metric: str = MISSING


@dataclass
class EvaluateConfig:
    """The root of ``conf/evaluate.yaml``."""

    ckpt_path: str = MISSING
    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class PredictConfig:
    """The root of ``conf/predict.yaml``."""

    ckpt_path: str = MISSING
    inputs: Any = MISSING  # one file, folder or glob, or a list of them
    output: Optional[str] = MISSING
    batch_size: int = MISSING
    top_k: int = MISSING
    max_pixels: int = MAX_PIXELS  # a file claiming more pixels is refused from its header, before decoding


@dataclass
class ExportConfig:
    """The root of ``conf/export.yaml``."""

    ckpt_path: str = MISSING
    format: str = MISSING
    output: Optional[str] = MISSING
    opset: int = OPSET


@dataclass
class ServeConfig:
    """The root of ``conf/serve.yaml``."""

    ckpt_path: Optional[str] = MISSING  # None: the shipped model with the highest test accuracy
    backend: str = MISSING
    threads: int = MISSING  # of the forward pass; the other cores decode images and answer HTTP
    host: str = MISSING
    port: int = MISSING
    max_batch_size: int = MISSING  # images in one forward pass, from any number of requests; 1: no batching
    batch_wait_ms: float = MISSING  # how long the oldest request of a batch may wait for others to join it
    max_upload_mb: float = MISSING
    max_images: int = MISSING
    max_pixels: int = MAX_PIXELS  # per image, from its header
    max_request_pixels: int = MISSING  # all the images of one request together, from their headers
    top_k: int = MISSING
    api_key: Optional[str] = MISSING
    allowed_hosts: List[str] = MISSING  # Host headers answered; empty: the bound address and localhost's names
    max_header_kb: float = MISSING  # a request's line and headers together
    header_timeout_s: float = MISSING  # from a connection's (or a request's) first byte to its last header
    keep_alive_s: float = MISSING  # an idle connection between requests is closed after this long
    max_connections: int = MISSING  # more concurrent connections and requests are answered 503


SCHEMAS = {
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "predict": PredictConfig,
    "export": ExportConfig,
    "serve": ServeConfig,
}


def store_schemas() -> None:
    """Give the schemas to Hydra's ConfigStore, where the defaults lists of ``conf/*.yaml`` name them."""
    for name, schema in SCHEMAS.items():
        ConfigStore.instance().store(name=f"{name}_schema", node=schema)


store_schemas()


def compose_config(*overrides: str, config: str = "train") -> DictConfig:
    """``conf/<config>.yaml`` composed with command-line style ``overrides``, outside a command."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def _number(check: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, (int, float)) and not isinstance(value, bool) and check(value)


def _limit(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value >= 0 if isinstance(value, int) else 0.0 <= value <= 1.0


def _one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value in choices), f"one of {', '.join(choices)}"


_POSITIVE = _number(lambda value: value > 0), "a number > 0"
_NON_NEGATIVE = _number(lambda value: value >= 0), "a number >= 0"
_FRACTION = _number(lambda value: 0 <= value < 1), "a number in [0, 1)"
_LIMIT = _limit, "null, a fraction in [0.0, 1.0] or a whole number of batches >= 0"

RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "optimizer.lr": _POSITIVE,
    "optimizer.weight_decay": _NON_NEGATIVE,
    "optimizer.momentum": _FRACTION,
    "label_smoothing": _FRACTION,
    "data.batch_size": _POSITIVE,
    "data.eval_batch_size": _POSITIVE,
    "data.val_size": (
        _number(lambda value: value >= 0),
        "a number >= 0 (0 trains on all 60,000 images, without validation)",
    ),
    "data.rotation_degrees": (_number(lambda value: 0 <= value <= 180), "a number of degrees in [0, 180]"),
    "data.shift_fraction": _FRACTION,
    "data.zoom_fraction": _FRACTION,
    "data.elastic_alpha": _NON_NEGATIVE,
    "data.elastic_sigma": _POSITIVE,
    "data.degrade_prob": (_number(lambda value: 0 <= value <= 1), "a probability in [0, 1]"),
    "data.corrupt_prob": (_number(lambda value: 0 <= value <= 1), "a probability in [0, 1]"),
    "data.stroke_width": (_number(lambda value: 0 <= value <= 1), "a number of pixels in [0, 1]"),
    "data.min_resolution": (_number(lambda value: 4 <= value <= 28), "a whole number of pixels in [4, 28]"),
    "data.blur_sigma": _NON_NEGATIVE,
    "data.contrast": _FRACTION,
    "data.noise_std": _NON_NEGATIVE,
    "data.impulse_fraction": _FRACTION,
    "model.dropout_rate": _FRACTION,
    "trainer.max_epochs": _POSITIVE,
    "trainer.log_every_n_steps": _POSITIVE,
    "trainer.check_val_every_n_epoch": _POSITIVE,
    "trainer.num_sanity_val_steps": _NON_NEGATIVE,
    "trainer.accumulate_grad_batches": _POSITIVE,
    "trainer.limit_train_batches": _LIMIT,
    "trainer.limit_val_batches": (
        lambda value: _limit(value) and value != 0,
        "null, a fraction in (0.0, 1.0] or a whole number of batches >= 1: validation picks the best checkpoint",
    ),
    "trainer.limit_test_batches": _LIMIT,
    "trainer.num_nodes": _POSITIVE,
    "optimized_metric": _one_of("best_val_acc", "test_acc"),
    "batch_scale": _POSITIVE,
    "batch_size": _POSITIVE,
    "max_pixels": _POSITIVE,
    "max_request_pixels": _POSITIVE,
    "max_header_kb": (_number(lambda value: 1 <= value <= 1024), "a number of kilobytes in [1, 1024]"),
    "header_timeout_s": _POSITIVE,
    "keep_alive_s": _POSITIVE,
    "max_connections": (_number(lambda value: 1 <= value <= 100_000), "a whole number in [1, 100000]"),
    "top_k": (_number(lambda value: 1 <= value <= 10), "a whole number in [1, 10]"),
    "format": _one_of("onnx"),
    "opset": (_number(lambda value: value >= 17), "an ONNX opset >= 17"),
    "backend": _one_of(*BACKENDS),
    "threads": (_number(lambda value: 1 <= value <= 256), "a whole number of threads in [1, 256]"),
    "port": (_number(lambda value: 0 <= value <= 65535), "a port number in [0, 65535] (0: any free port)"),
    "max_batch_size": (_number(lambda value: 1 <= value <= 4096), "a whole number in [1, 4096] (1: no batching)"),
    "batch_wait_ms": (_number(lambda value: 0 <= value <= 1000), "a number of milliseconds in [0, 1000]"),
    "max_upload_mb": (_number(lambda value: 0 < value <= 1024), "a number of megabytes in (0, 1024]"),
    "max_images": (_number(lambda value: 1 <= value <= 100_000), "a whole number in [1, 100000]"),
}

REQUIRED_HINTS = {
    "ckpt_path": "a shipped model name (e.g. ckpt_path=lenet5), a .ckpt file or a training run directory",
    "inputs": "image files, folders or globs, e.g. inputs=digits/ or inputs=[a.png,b.png]",
}


def unknown_keys(cfg: DictConfig, schema: type, prefix: str = "") -> list[str]:
    """Dotted keys of ``cfg`` that ``schema`` has no field for (what ``+key=value`` can add), recursively."""
    fields = {item.name: item for item in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    found = []
    for key in cfg:
        if key not in fields:
            found.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(cfg[key], DictConfig):
            found += unknown_keys(cfg[key], hints[key], f"{prefix}{key}.")
    return found


def did_you_mean(word: str, choices: Collection[str], prefix: str = "") -> str:
    """``"did you mean <prefix><closest>? "`` when one of ``choices`` is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {prefix}{close[0]}?" if close else ""


def did_you_mean_inside(word: str, tree: Mapping[str, Any], prefix: str = "") -> str:
    """``"did you mean <prefix><group>.<setting>?"`` naming every setting inside the groups of ``tree`` (at any
    depth) that is called ``word``, or else has the name closest to it; ``""`` when none is close."""
    found: dict[str, list[str]] = {}

    def collect(node: Mapping[str, Any], path: str) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                collect(value, f"{path}{key}.")
            elif path != prefix:  # a setting of a group, not of tree itself
                found.setdefault(str(key), []).append(f"{path}{key}")

    collect(tree, prefix)
    close = difflib.get_close_matches(word, list(found), n=1)
    return f"did you mean {' or '.join(found[close[0]])}?" if close else ""


def _near(key: str, schema: type) -> str:
    parent, _, name = key.rpartition(".")
    node = schema
    for part in filter(None, parent.split(".")):
        node = typing.get_type_hints(node)[part]
    return did_you_mean(name, [item.name for item in dataclasses.fields(node)], f"{parent}." if parent else "")


def validate(cfg: DictConfig) -> Any:
    """The composed config as its dataclass (``TrainConfig``, ``EvaluateConfig``, ...), or a ``ConfigError`` naming
    the first unknown key, missing value or out-of-range value; rules for keys the config lacks are skipped."""
    schema = OmegaConf.get_type(cfg)
    for key in unknown_keys(cfg, schema):
        suggestion = _near(key, schema)
        raise ConfigError(f"{key} is not a setting here and nothing reads it: {suggestion or f'drop the +{key}'}")
    try:
        config = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as error:
        key = error.full_key
        hint = REQUIRED_HINTS.get(key, "a value")
        raise ConfigError(f"{key} is required: give {hint}") from None
    absent = object()
    for key, (is_valid, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is not absent and not is_valid(value):
            raise ConfigError(f"{key}={value!r} is not allowed: use {allowed}")
    return config
