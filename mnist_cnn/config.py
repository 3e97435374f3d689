"""Typed schemas for the root configs in ``conf/``, and the checks that types cannot express.

The YAML files hold every value but those the library defines, which the dataclasses give as defaults (``max_pixels``:
``mnist_cnn.preprocess.MAX_PIXELS``; ``opset``: ``mnist_cnn.onnx.OPSET``; the data options:
``mnist_cnn.data.options``); the dataclasses hold the types, so
OmegaConf rejects ``data.batch_size=abc`` while composing. Components (``optimizer``, ``scheduler``,
``trainer``, ``callbacks``, ``logger``) are free-form nodes naming their class in ``_target_``: their arguments are
checked against the class when it is built. ``validate`` refuses keys nothing reads (``+foo=1``), missing values
and out-of-range values before anything is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, MissingMandatoryValue, OmegaConf

from mnist_cnn.data.options import Augmentation, Corruption, Degradation, Loading
from mnist_cnn.errors import ConfigError
from mnist_cnn.inference import BACKENDS
from mnist_cnn.onnx import OPSET
from mnist_cnn.preprocess import MAX_PIXELS
from mnist_cnn.resources import CONF_DIR
from mnist_cnn.rules import FRACTION, NON_NEGATIVE, POSITIVE, Rule, between, number, one_of, refusal

# Optional[...] and Dict[...] rather than "X | None" and "dict[...]": OmegaConf 2.3 understands only the former.


@dataclass
class DataConfig(Loading):
    """Arguments of ``MNISTDataModule``: typed options with their defaults and ranges (``mnist_cnn.data.options``)."""

    augment: Optional[Augmentation] = field(default_factory=Augmentation)  # null: no distortion
    degrade: Degradation = field(default_factory=Degradation)
    corrupt: Corruption = field(default_factory=Corruption)


# The flat data keys of mnist_cnn 0.2, by the key of the typed option that holds each now (docs/configuration.md).
FORMER_KEYS = {
    **{f"data.{item.name}": f"data.augment.{item.name}" for item in dataclasses.fields(Augmentation)},
    **{
        f"data.{item.name}": f"data.degrade.{item.name}"
        for item in dataclasses.fields(Degradation)
        if item.name != "probability"
    },
    "data.degrade_prob": "data.degrade.probability",
    "data.corrupt_prob": "data.corrupt.probability",
}
# The former switch ``data.augment=true|false``, by what says the same now.
FORMER_SWITCHES = {
    ("data.augment", False): "data.augment=null",
    ("data.augment", True): "the default: leave data.augment out, or set data.augment.<setting>=...",
}


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
    compile: Optional[str] = MISSING
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


def _limit(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value >= 0 if isinstance(value, int) else 0.0 <= value <= 1.0


# torch.compile's modes (torch._inductor.list_mode_options() lists them too, but is private)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

_LIMIT = _limit, "null, a fraction in [0.0, 1.0] or a whole number of batches >= 0"

# The rules of the schemas' fields and of keys in free-form nodes; the typed options carry their own (in their fields:
# mnist_cnn.data.options), which validate checks under their keys (data.augment.rotation_degrees).
RULES: dict[str, Rule] = {
    "optimizer.lr": POSITIVE,
    "optimizer.weight_decay": NON_NEGATIVE,
    "optimizer.momentum": FRACTION,
    "label_smoothing": FRACTION,
    "model.dropout_rate": FRACTION,
    "trainer.max_epochs": POSITIVE,
    "trainer.log_every_n_steps": POSITIVE,
    "trainer.check_val_every_n_epoch": POSITIVE,
    "trainer.num_sanity_val_steps": NON_NEGATIVE,
    "trainer.accumulate_grad_batches": POSITIVE,
    "trainer.limit_train_batches": _LIMIT,
    "trainer.limit_val_batches": (
        lambda value: _limit(value) and value != 0,
        "null, a fraction in (0.0, 1.0] or a whole number of batches >= 1: validation picks the best checkpoint",
    ),
    "trainer.limit_test_batches": _LIMIT,
    "trainer.num_nodes": POSITIVE,
    "optimized_metric": one_of("best_val_acc", "test_acc"),
    "batch_scale": POSITIVE,
    "compile": (lambda value: value is None or value in COMPILE_MODES, f"null (eager) or {one_of(*COMPILE_MODES)[1]}"),
    "batch_size": POSITIVE,
    "max_pixels": POSITIVE,
    "max_request_pixels": POSITIVE,
    "max_header_kb": between(1, 1024, "a number of kilobytes in [1, 1024]"),
    "header_timeout_s": POSITIVE,
    "keep_alive_s": POSITIVE,
    "max_connections": between(1, 100_000, "a whole number in [1, 100000]"),
    "top_k": between(1, 10, "a whole number in [1, 10]"),
    "format": one_of("onnx"),
    "opset": number(lambda value: value >= 17, "an ONNX opset >= 17"),
    "backend": one_of(*BACKENDS),
    "threads": between(1, 256, "a whole number of threads in [1, 256]"),
    "port": between(0, 65535, "a port number in [0, 65535] (0: any free port)"),
    "max_batch_size": between(1, 4096, "a whole number in [1, 4096] (1: no batching)"),
    "batch_wait_ms": between(0, 1000, "a number of milliseconds in [0, 1000]"),
    "max_upload_mb": number(lambda value: 0 < value <= 1024, "a number of megabytes in (0, 1024]"),
    "max_images": between(1, 100_000, "a whole number in [1, 100000]"),
}

REQUIRED_HINTS = {
    "ckpt_path": "a shipped model name (e.g. ckpt_path=lenet5), a .ckpt file or a training run directory",
    "inputs": "image files, folders or globs, e.g. inputs=digits/ or inputs=[a.png,b.png]",
}


def _typed_options(hint: Any) -> type | None:
    """The dataclass a field's type names, alone or in ``Optional[...]``; ``None`` for any other type."""
    candidates = typing.get_args(hint) or (hint,)
    return next((candidate for candidate in candidates if dataclasses.is_dataclass(candidate)), None)


def settings(cfg: DictConfig, schema: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field | None]]:
    """Every key of ``cfg`` (dotted, inside typed options too) with the field of ``schema`` that types it, or
    ``None`` for a key ``schema`` has no field for (what ``+key=value`` can add)."""
    fields = {item.name: item for item in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in cfg:
        item = fields.get(str(key))
        options = _typed_options(hints[key]) if item is not None else None
        if options is not None and not OmegaConf.is_missing(cfg, key) and isinstance(cfg[key], DictConfig):
            yield from settings(cfg[key], options, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", item


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
        node = _typed_options(typing.get_type_hints(node)[part])
    return did_you_mean(name, [item.name for item in dataclasses.fields(node)], f"{parent}." if parent else "")


def validate(cfg: DictConfig) -> Any:
    """The composed config as its dataclass (``TrainConfig``, ``EvaluateConfig``, ...), or a ``ConfigError`` naming
    the first unknown key, out-of-range value or missing value; rules for keys the config lacks are skipped."""
    schema = OmegaConf.get_type(cfg)
    found = list(settings(cfg, schema))
    for key in (key for key, item in found if item is None):
        suggestion = _near(key, schema)
        raise ConfigError(f"{key} is not a setting here and nothing reads it: {suggestion or f'drop the +{key}'}")
    absent = object()  # a key the config lacks, or a value still missing
    for key, rule in [*((key, item.metadata.get("rule")) for key, item in found), *RULES.items()]:
        value = OmegaConf.select(cfg, key, default=absent)
        message = refusal(key, value, rule) if value is not absent else None
        if message:
            raise ConfigError(message)
    try:
        return OmegaConf.to_object(cfg)
    except MissingMandatoryValue as error:
        key = error.full_key
        hint = REQUIRED_HINTS.get(key, "a value")
        raise ConfigError(f"{key} is required: give {hint}") from None
