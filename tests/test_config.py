"""The Hydra config groups, composed as the commands compose them, and the checks on what a user sets."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re

import lightning as L
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from mnist_cnn import Augmentation, Corruption, Degradation
from mnist_cnn.config import RULES, TrainConfig, compose_config, validate
from mnist_cnn.errors import ConfigError
from mnist_cnn.resources import CONF_DIR
from mnist_cnn.training.run import build_datamodule, build_module, check_components

REQUIRED = {"train": (), "predict": ("inputs=digit.png",), "export": ("ckpt_path=model.ckpt",), "serve": ()}


@functools.cache
def _root_config(name: str) -> DictConfig:
    """``conf/<name>.yaml`` as its command composes it with only the required values given."""
    return compose_config(*REQUIRED[name], config=name)


def _config_with(key: str) -> str:
    """The root config (train, predict, export or serve) that has the dotted ``key``."""
    absent = object()
    for name in REQUIRED:
        if OmegaConf.select(_root_config(name), key, default=absent) is not absent:
            return name
    raise AssertionError(f"no root config has {key}")


def test_defaults_are_the_original_keras_projects() -> None:
    cfg = validate(compose_config("model=resnet"))
    assert isinstance(cfg, TrainConfig)
    assert (cfg.data.batch_size, cfg.data.augment, cfg.trainer["max_epochs"]) == (64, Augmentation(), 20)
    assert cfg.optimizer == {"_target_": "torch.optim.Adam", "lr": 0.001, "weight_decay": 0.0001}
    assert cfg.scheduler == {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": 5, "gamma": 0.5}
    assert cfg.callbacks["checkpoint"]["monitor"] == "val_acc" and cfg.callbacks["checkpoint"]["save_top_k"] == 1
    stopping = cfg.callbacks["early_stopping"]
    assert (stopping["patience"], stopping["min_delta"]) == (5, 0.001)
    assert cfg.model == {"name": "resnet", "blocks_per_group": 2, "base_width": 42}


def test_models_bring_their_recipes_and_the_command_line_wins() -> None:
    simple = validate(compose_config("model=simple_cnn"))
    assert (simple.data.batch_size, simple.trainer["max_epochs"], simple.model["dropout_rate"]) == (128, 15, 0.5)
    lenet = validate(compose_config("model=lenet5"))
    assert (lenet.optimizer["_target_"], lenet.optimizer["lr"], lenet.optimizer["momentum"]) == (
        "torch.optim.SGD",
        0.01,
        0.9,
    )
    mine = validate(compose_config("model=lenet5", "optimizer=adamw", "optimizer.lr=0.003", "data.batch_size=32"))
    assert (mine.optimizer["_target_"], mine.optimizer["lr"], mine.data.batch_size) == ("torch.optim.AdamW", 0.003, 32)


def test_gpu_trainer_uses_bf16_mixed_precision_and_scaled_batches() -> None:
    cfg = validate(compose_config("trainer=gpu", "model=lenet5"))
    assert (cfg.trainer["accelerator"], cfg.trainer["precision"], cfg.batch_scale) == ("gpu", "bf16-mixed", 8)
    assert build_datamodule(cfg).hparams.batch_size == 8 * 64  # the recipe's batch, scaled
    assert build_module(cfg).hparams.optimizer["lr"] == pytest.approx(8 * 0.01)  # and its learning rate with it
    assert validate(compose_config("trainer=ddp")).trainer["strategy"] == "ddp"


def test_trainer_config_lists_every_trainer_argument_at_lightnings_default() -> None:
    listed = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "trainer" / "default.yaml"))
    listed.pop("_target_")
    supplied = {"self", "callbacks", "logger", "plugins", "default_root_dir"}  # the run passes these
    signature = inspect.signature(L.Trainer).parameters
    assert set(listed) == set(signature) - supplied
    assert {name: value for name, value in listed.items()} == {
        name: signature[name].default for name in listed
    }  # so that a listed argument changes nothing until it is set


def test_any_trainer_argument_is_one_override_away_and_recorded() -> None:
    cfg = compose_config("trainer.gradient_clip_val=0.5", "trainer.accumulate_grad_batches=2")
    assert "gradient_clip_val: 0.5" in OmegaConf.to_yaml(cfg)  # what Hydra saves as the run's .hydra/config.yaml
    config = validate(cfg)
    check_components(config)
    assert (config.trainer["gradient_clip_val"], config.trainer["accumulate_grad_batches"]) == (0.5, 2)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-1", "optimizer.lr=-1 is not allowed: use a number > 0"),
        ("optimizer.lr=abc", "optimizer.lr='abc' is not allowed: use a number > 0"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: use a number > 0"),
        ("optimizer=sgd optimizer.momentum=1.0", "optimizer.momentum=1.0 is not allowed: use a number in [0, 1)"),
        ("model.dropout_rate=1.5", "model.dropout_rate=1.5 is not allowed: use a number in [0, 1)"),
        ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 is not allowed: use null, a fraction"),
        ("trainer.limit_val_batches=0", "trainer.limit_val_batches=0 is not allowed: use null, a fraction in (0.0"),
        ("data.val_size=-1", "data.val_size=-1 is not allowed: use a number >= 0 (0 trains on all 60,000 images"),
        ("optimized_metric=val_loss", "optimized_metric='val_loss' is not allowed: use one of best_val_acc, test_acc"),
        ("compile=fast", "compile='fast' is not allowed: use null (eager) or one of default, reduce-overhead, max-"),
        ("+foo=1", "foo is not a setting here and nothing reads it: drop the +foo"),
        (
            "+data.batch_sise=1",
            "data.batch_sise is not a setting here and nothing reads it: did you mean data.batch_size?",
        ),
    ],
)
def test_bad_values_and_unread_keys_are_refused_by_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate(compose_config(*override.split()))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ("predict", ("inputs=digit.png", "top_k=11"), "top_k=11 is not allowed: use a whole number in [1, 10]"),
        ("export", ("ckpt_path=model.ckpt", "opset=16"), "opset=16 is not allowed: use an ONNX opset >= 17"),
        ("serve", ("port=70000",), "port=70000 is not allowed: use a port number in [0, 65535] (0: any free port)"),
        ("serve", ("backend=tensorrt",), "backend='tensorrt' is not allowed: use one of torch, onnx"),
    ],
)
def test_the_other_commands_refuse_bad_values_saying_what_is_allowed(
    config: str, overrides: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        validate(compose_config(*overrides, config=config))
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("+trainer.max_epoch=1",), "trainer.max_epoch is not an argument of lightning.pytorch.Trainer: "
         "did you mean max_epochs?"),
        (("+callbacks.early_stopping.patienc=3",), "callbacks.early_stopping.patienc is not an argument of "
         "lightning.pytorch.callbacks.EarlyStopping: did you mean patience?"),
        (("+optimizer.betas=[0.9,0.99]", "optimizer=sgd"), "optimizer.betas is not an argument of torch.optim.SGD"),
        (("+logger.csv.params=1",), "logger.csv.params is not an argument of lightning.pytorch.loggers.CSVLogger"),
        (("data.val_size=0",), "data.val_size=0 leaves nothing to validate on, so callbacks.checkpoint, "
         "callbacks.early_stopping have nothing to watch: add callbacks.checkpoint=null callbacks.early_stopping=null"),
        (("data.val_size=0", "~callbacks", "scheduler=plateau"), "so scheduler has nothing to watch"),
    ],
)  # fmt: skip
def test_component_arguments_are_checked_against_their_class_before_anything_is_built(
    overrides: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        check_components(validate(compose_config(*overrides)))
    assert message in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_a_gpu_trainer_without_a_gpu_says_so(trainer: str) -> None:
    with pytest.raises(ConfigError, match="trainer.accelerator=gpu needs a CUDA GPU and PyTorch sees none here"):
        check_components(validate(compose_config(f"trainer={trainer}")))


@pytest.mark.parametrize(
    ("override", "cause", "key", "message"),
    [
        ("data.batch_size=many", ValidationError, "data.batch_size",
         "Value 'many' of type 'str' could not be converted to Integer"),
        ("test=maybe", ValidationError, "test", "Value 'maybe' is not a valid bool (type str)"),
        ("optimizer.lrr=0.1", ConfigAttributeError, "optimizer.lrr", "Key 'lrr' is not in struct"),
    ],
)  # fmt: skip
def test_wrong_types_and_unknown_keys_fail_while_composing_naming_the_key(
    override: str, cause: type[Exception], key: str, message: str
) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose_config(override)
    assert isinstance(error.value.__cause__, cause) and error.value.__cause__.full_key == key
    assert str(error.value.__cause__).startswith(message)


def test_limit_batches_accept_counts_and_fractions() -> None:
    cfg = validate(compose_config("trainer.limit_train_batches=20", "trainer.limit_val_batches=0.5"))
    assert (cfg.trainer["limit_train_batches"], cfg.trainer["limit_val_batches"]) == (20, 0.5)


@pytest.mark.parametrize("key", sorted(RULES))
def test_every_range_checked_key_is_a_setting_of_a_command_and_refuses_a_bad_value(key: str) -> None:
    overrides = ["optimizer=sgd"] if key == "optimizer.momentum" else []  # Adam has no momentum
    config = "train" if overrides else _config_with(key)
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}=(-5|-5\.0|'-5') is not allowed: use "):
        validate(compose_config(*overrides, f"{key}=-5", *REQUIRED[config], config=config))


@pytest.mark.parametrize(
    ("group", "options", "name"),
    [
        (group, options, item.name)
        for group, options in (("augment", Augmentation), ("degrade", Degradation), ("corrupt", Corruption))
        for item in dataclasses.fields(options)
    ],
)
def test_every_augmentation_option_refuses_a_bad_value_by_its_key_and_when_made(
    group: str, options: type, name: str
) -> None:
    key = f"data.{group}.{name}"
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}=(-5|-5\.0) is not allowed: use "):
        validate(compose_config(f"{key}=-5"))
    with pytest.raises(ConfigError, match=rf"^{name}=-5 is not allowed: use "):  # in a notebook, by its field
        options(**{name: -5})


def test_a_required_value_left_out_is_named_with_what_to_give() -> None:
    with pytest.raises(ConfigError, match="ckpt_path is required: give a shipped model name"):
        validate(compose_config(config="export"))
    with pytest.raises(ConfigError, match="inputs is required: give image files, folders or globs"):
        validate(compose_config(config="predict"))


@pytest.mark.parametrize("experiment", sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_recipe_composes_and_validates(experiment: str) -> None:
    cfg = validate(compose_config(f"experiment={experiment}"))
    if cfg.trainer["accelerator"] == "cpu":
        check_components(cfg)
    assert cfg.trainer["max_epochs"] >= 1 and cfg.optimizer["lr"] > 0
    if experiment.endswith("_best"):  # the recipe of checkpoints/pretrained/<model>.ckpt
        assert cfg.model["name"] == experiment.removesuffix("_best")


@pytest.mark.parametrize(
    "group", ["optimizer", "scheduler", "logger", "callbacks"], ids=["optimizer", "scheduler", "logger", "callbacks"]
)
def test_every_option_of_the_component_groups_composes_and_checks(group: str) -> None:
    for option in sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml")):
        cfg = validate(compose_config(f"{group}={option}"))
        check_components(cfg)
