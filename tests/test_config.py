"""The Hydra config groups, composed as ``python -m mnist_cnn.train`` composes them."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from mnist_cnn.config import (
    CONF_DIR,
    RULES,
    ConfigError,
    ExportConfig,
    PredictConfig,
    TrainConfig,
    compose_config,
    validate,
)
from mnist_cnn.training import build_datamodule, build_module

REQUIRED = {"train": (), "predict": ("inputs=digit.png",), "export": ("ckpt_path=model.ckpt",)}


def _config_with(key: str) -> str:
    """The root config (train, predict or export) whose schema has the dotted ``key``."""
    for schema, name in ((TrainConfig, "train"), (PredictConfig, "predict"), (ExportConfig, "export")):
        node = schema
        for part in key.split("."):
            if not dataclasses.is_dataclass(node) or part not in {item.name for item in dataclasses.fields(node)}:
                break
            node = typing.get_type_hints(node)[part]
        else:
            return name
    raise AssertionError(f"no root config has {key}")


def test_defaults_are_the_seed_base_config() -> None:
    cfg = validate(compose_config("model=resnet"))
    assert isinstance(cfg, TrainConfig)
    assert (cfg.data.batch_size, cfg.data.augment, cfg.trainer.max_epochs) == (64, True, 20)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.optimizer.momentum) == (
        "adam", 0.001, 0.0001, 0.9,
    )  # fmt: skip
    assert (cfg.scheduler.name, cfg.scheduler.decay_epochs, cfg.scheduler.decay_rate) == ("step", 5, 0.5)
    assert cfg.callbacks.checkpoint.save_top_k == 1 and cfg.callbacks.checkpoint.monitor == "val_acc"
    stopping = cfg.callbacks.early_stopping
    assert (stopping.enabled, stopping.patience, stopping.min_delta) == (True, 5, 0.001)
    assert cfg.model.kwargs() == {"blocks_per_group": 2, "base_width": 42}


def test_simple_cnn_brings_its_recipe() -> None:
    cfg = validate(compose_config("model=simple_cnn"))
    assert (cfg.data.batch_size, cfg.trainer.max_epochs, cfg.model.dropout_rate) == (128, 15, 0.5)


def test_lenet5_brings_its_recipe() -> None:
    cfg = validate(compose_config("model=lenet5"))
    assert (cfg.data.batch_size, cfg.trainer.max_epochs) == (64, 20)
    assert (cfg.optimizer.name, cfg.optimizer.lr) == ("sgd", 0.01)
    assert cfg.model.kwargs() == {}


def test_command_line_overrides_win_over_the_recipe() -> None:
    cfg = validate(compose_config("model=lenet5", "optimizer=adam", "optimizer.lr=0.003", "data.batch_size=32"))
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.data.batch_size) == ("adam", 0.003, 32)


def test_gpu_trainer_uses_bf16_mixed_precision_and_scaled_batches() -> None:
    cfg = validate(compose_config("trainer=gpu", "model=lenet5"))
    assert (cfg.trainer.accelerator, cfg.trainer.precision, cfg.batch_scale) == ("gpu", "bf16-mixed", 8)
    assert build_datamodule(cfg).hparams.batch_size == 8 * 64  # the recipe's batch, scaled
    assert build_module(cfg).hparams.lr == pytest.approx(8 * 0.01)  # and its learning rate with it
    assert validate(compose_config("trainer=ddp")).trainer.strategy == "ddp"


def test_label_smoothing_reaches_the_module() -> None:
    assert build_module(validate(compose_config("label_smoothing=0.1"))).hparams.label_smoothing == 0.1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "optimizer.lr=-1.0 is not allowed: use a number > 0"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: use a number > 0"),
        ("optimizer.momentum=1.0", "optimizer.momentum=1.0 is not allowed: use a number in [0, 1)"),
        ("optimizer.name=adamw", "optimizer.name='adamw' is not allowed: use one of adam, sgd, rmsprop"),
        ("scheduler.name=linear", "scheduler.name='linear' is not allowed: use one of constant, step"),
        ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 is not allowed: use null, a fraction"),
        ("logger.name=wandb", "logger.name='wandb' is not allowed: use one of csv, tensorboard"),
    ],
)
def test_out_of_range_values_are_refused_by_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate(compose_config(override))
    assert message in str(error.value)


@pytest.mark.parametrize("override", ["optimizer.lr=abc", "data.batch_size=many", "optimizer.lrr=0.1"])
def test_wrong_types_and_unknown_keys_fail_while_composing(override: str) -> None:
    with pytest.raises(Exception, match="optimizer.lr|data.batch_size|lrr"):
        compose_config(override)


def test_limit_batches_accept_counts_and_fractions() -> None:
    cfg = validate(compose_config("trainer.limit_train_batches=20", "trainer.limit_val_batches=0.5"))
    assert (cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches) == (20, 0.5)


def _typed_fields(schema: type, prefix: str = "") -> list[tuple[str, type]]:
    """(dotted key, type) of every int, float or bool field in a schema dataclass, recursively."""
    found = []
    for name, hint in typing.get_type_hints(schema).items():
        arguments = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        base = arguments[0] if typing.get_origin(hint) is typing.Union and len(arguments) == 1 else hint
        if dataclasses.is_dataclass(base):
            found += _typed_fields(base, f"{prefix}{name}.")
        elif base in (int, float, bool):
            found.append((f"{prefix}{name}", base))
    return found


TYPE_WORDS = {int: "Integer", float: "Float", bool: "bool"}


@pytest.mark.parametrize(("key", "kind"), _typed_fields(TrainConfig), ids=lambda value: str(value))
def test_every_typed_field_rejects_a_wrong_type_naming_the_key(key: str, kind: type) -> None:
    with pytest.raises(Exception) as error:
        compose_config(f"{key}=abc")
    message = f"{error.value} {error.value.__cause__}"
    assert key in message and TYPE_WORDS[kind] in message


@pytest.mark.parametrize("key", sorted(RULES))
def test_every_range_checked_key_rejects_a_bad_value_saying_what_is_allowed(key: str) -> None:
    _, allowed = RULES[key]
    bad = "bogus" if allowed.startswith("one of") else -5
    with pytest.raises(ConfigError) as error:
        config = _config_with(key)
        validate(compose_config(f"{key}={bad}", *REQUIRED[config], config=config))
    assert str(error.value).startswith(f"{key}=") and allowed in str(error.value)


@pytest.mark.parametrize("experiment", sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_recipe_composes_and_validates(experiment: str) -> None:
    cfg = validate(compose_config(f"experiment={experiment}"))
    assert cfg.trainer.max_epochs >= 1 and cfg.optimizer.lr > 0
    if experiment.endswith("_best"):  # the recipe of checkpoints/pretrained/<model>.ckpt
        assert cfg.model.name == experiment.removesuffix("_best")
