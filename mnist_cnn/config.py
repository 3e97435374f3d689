"""Typed schemas for the Hydra config groups in ``conf/``, and the range checks types cannot express.

The YAML files hold every value; these dataclasses hold the types, so OmegaConf rejects
``optimizer.lr=abc`` or an unknown key while composing, and ``validate`` rejects out-of-range values
before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from mnist_cnn.errors import ConfigError
from mnist_cnn.optim import OPTIMIZERS, SCHEDULERS

# Optional[...] rather than "X | None": OmegaConf 2.3 does not understand the latter.


@dataclass
class ModelConfig:
    """Architecture name and its own options; an option left null takes the architecture's default."""

    name: str = MISSING
    dropout_rate: Optional[float] = None
    blocks_per_group: Optional[int] = None
    base_width: Optional[int] = None

    def kwargs(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "name" and value is not None}


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
    on_device: bool = MISSING


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = MISSING
    momentum: float = MISSING


@dataclass
class SchedulerConfig:
    name: str = MISSING
    decay_epochs: int = MISSING
    decay_rate: float = MISSING


@dataclass
class TrainerConfig:
    """Keyword arguments of ``lightning.Trainer``; ``limit_*_batches`` take a fraction (float) or a count (int)."""

    accelerator: str = MISSING
    devices: Any = MISSING
    precision: str = MISSING
    max_epochs: int = MISSING
    limit_train_batches: Optional[Any] = None
    limit_val_batches: Optional[Any] = None
    limit_test_batches: Optional[Any] = None
    deterministic: bool = MISSING
    log_every_n_steps: int = MISSING
    enable_progress_bar: bool = MISSING
    enable_model_summary: bool = MISSING
    strategy: str = MISSING  # auto, ddp (one process per device), ddp_spawn
    num_nodes: int = MISSING
    check_val_every_n_epoch: int = MISSING  # validate (and keep the best checkpoint) every N epochs
    num_sanity_val_steps: int = MISSING  # validation batches run before training, to fail early on a bug


@dataclass
class CheckpointConfig:
    """Keyword arguments of ``ModelCheckpoint``."""

    monitor: str = MISSING
    mode: str = MISSING
    filename: str = MISSING
    save_top_k: int = MISSING


@dataclass
class EarlyStoppingConfig:
    """Keyword arguments of ``EarlyStopping``, plus a switch."""

    enabled: bool = MISSING
    monitor: str = MISSING
    mode: str = MISSING
    patience: int = MISSING
    min_delta: float = MISSING


@dataclass
class EMAConfig:
    """An exponential moving average of the weights (``EMAWeightAveraging``), plus a switch."""

    enabled: bool = MISSING
    decay: float = MISSING


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)


@dataclass
class LoggerConfig:
    name: str = MISSING


@dataclass
class TrainConfig:
    """The root of ``conf/train.yaml``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: Optional[int] = MISSING
    batch_scale: int = MISSING
    label_smoothing: float = MISSING
    ckpt_path: Optional[str] = MISSING
    checkpoint_root: str = MISSING
    test: bool = MISSING
    optimized_metric: str = MISSING


@dataclass
class EvaluateConfig:
    """The root of ``conf/evaluate.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    ckpt_path: str = MISSING


@dataclass
class PredictConfig:
    """The root of ``conf/predict.yaml``."""

    ckpt_path: str = MISSING
    inputs: Any = MISSING  # one file, folder or glob, or a list of them
    output: Optional[str] = MISSING
    batch_size: int = MISSING
    top_k: int = MISSING


@dataclass
class ExportConfig:
    """The root of ``conf/export.yaml``."""

    ckpt_path: str = MISSING
    format: str = MISSING
    output: Optional[str] = MISSING
    opset: int = MISSING


ConfigStore.instance().store(name="train_schema", node=TrainConfig)
ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)
ConfigStore.instance().store(name="predict_schema", node=PredictConfig)
ConfigStore.instance().store(name="export_schema", node=ExportConfig)

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(*overrides: str, config: str = "train") -> DictConfig:
    """``conf/<config>.yaml`` composed with command-line style ``overrides``, outside ``@hydra.main``."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def _limit(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value >= 0 if isinstance(value, int) else 0.0 <= value <= 1.0


def _one_of(*choices: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value in choices), f"one of {', '.join(choices)}"


_POSITIVE = (lambda value: value > 0), "a number > 0"
_NON_NEGATIVE = (lambda value: value >= 0), "a number >= 0"
_FRACTION = (lambda value: 0 <= value < 1), "a number in [0, 1)"
_LIMIT = _limit, "null, a fraction in [0.0, 1.0] or a whole number of batches >= 0"

RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "optimizer.name": _one_of(*OPTIMIZERS),
    "optimizer.lr": _POSITIVE,
    "optimizer.weight_decay": _NON_NEGATIVE,
    "optimizer.momentum": _FRACTION,
    "label_smoothing": _FRACTION,
    "scheduler.name": _one_of(*SCHEDULERS),
    "scheduler.decay_epochs": _POSITIVE,
    "scheduler.decay_rate": ((lambda value: 0 < value <= 1), "a number in (0, 1]"),
    "data.batch_size": _POSITIVE,
    "data.eval_batch_size": _POSITIVE,
    "data.val_size": ((lambda value: value >= 0), "a number >= 0 (0 trains on all 60,000 images, without validation)"),
    "data.rotation_degrees": ((lambda value: 0 <= value <= 180), "a number of degrees in [0, 180]"),
    "data.shift_fraction": _FRACTION,
    "data.zoom_fraction": _FRACTION,
    "data.elastic_alpha": _NON_NEGATIVE,
    "data.elastic_sigma": _POSITIVE,
    "trainer.max_epochs": _POSITIVE,
    "trainer.log_every_n_steps": _POSITIVE,
    "trainer.check_val_every_n_epoch": _POSITIVE,
    "trainer.num_sanity_val_steps": _NON_NEGATIVE,
    "trainer.limit_train_batches": _LIMIT,
    "trainer.limit_val_batches": (
        lambda value: _limit(value) and value != 0,
        "null, a fraction in (0.0, 1.0] or a whole number of batches >= 1: validation picks the best checkpoint",
    ),
    "trainer.limit_test_batches": _LIMIT,
    "callbacks.checkpoint.mode": _one_of("min", "max"),
    "callbacks.checkpoint.save_top_k": ((lambda value: value >= -1), "-1 (keep all), 0 or more"),
    "callbacks.early_stopping.mode": _one_of("min", "max"),
    "callbacks.early_stopping.patience": _NON_NEGATIVE,
    "callbacks.early_stopping.min_delta": _NON_NEGATIVE,
    "callbacks.ema.decay": ((lambda value: 0 < value < 1), "a number in (0, 1), e.g. 0.999"),
    "logger.name": _one_of("csv", "tensorboard"),
    "trainer.num_nodes": _POSITIVE,
    "optimized_metric": _one_of("best_val_acc", "test_acc"),
    "batch_scale": _POSITIVE,
    "batch_size": _POSITIVE,
    "top_k": ((lambda value: 1 <= value <= 10), "a whole number in [1, 10]"),
    "format": _one_of("onnx"),
    "opset": ((lambda value: value >= 17), "an ONNX opset >= 17"),
}


def validate(cfg: DictConfig) -> Any:
    """The composed config as its dataclass (``TrainConfig``, ``EvaluateConfig``), or a ``ConfigError``
    naming the first out-of-range key; keys the config does not have are skipped."""
    config = OmegaConf.to_object(cfg)  # raises on missing values
    absent = object()
    for key, (is_valid, allowed) in RULES.items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is not absent and not is_valid(value):
            raise ConfigError(f"{key}={value!r} is not allowed: use {allowed}")
    if isinstance(config, TrainConfig) and config.data.val_size == 0 and config.callbacks.early_stopping.enabled:
        raise ConfigError(
            "data.val_size=0 leaves nothing to validate on, so early stopping has nothing to watch: "
            "add callbacks.early_stopping.enabled=false (the run then keeps its final epoch)"
        )
    return config
