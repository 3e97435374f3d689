"""The architectures and their registry, and the catalog that tells what is available for each."""

from __future__ import annotations

import pytest
import torch

from mnist_cnn import get_model_info, list_models
from mnist_cnn.models import count_parameters, create_model, model_names, register_model
from mnist_cnn.weights.manifest import read_manifest

EXPECTED_PARAMETERS = {"simple_cnn": 225_034, "lenet5": 61_706, "custom_cnn": 288_298, "resnet": 1_197_472}


def test_registry_lists_the_four_architectures_and_the_catalog_those_shipped() -> None:
    assert model_names() == list_models() == sorted(EXPECTED_PARAMETERS)
    assert list_models(pretrained=True) == sorted(read_manifest()) == sorted(EXPECTED_PARAMETERS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_models_map_a_batch_to_logits_and_train(name: str) -> None:
    model = create_model(name)
    images, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    logits = model(images)
    assert logits.shape == (4, 10)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_a_new_model_is_in_train_mode_with_untouched_batch_norm_statistics(name: str) -> None:
    model = create_model(name)
    assert model.training and all(module.training for module in model.modules())
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            assert module.num_batches_tracked == 0
            assert torch.equal(module.running_var, torch.ones_like(module.running_var))


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_model_info_reports_the_measured_parameter_count(name: str) -> None:
    info = get_model_info(name)
    assert info.num_parameters == count_parameters(create_model(name)) == EXPECTED_PARAMETERS[name]
    assert info.input_shape == (1, 28, 28) and info.description


def test_model_info_reports_the_recipe_from_the_model_config() -> None:
    assert get_model_info("lenet5").default_recipe == {"optimizer": "sgd", "optimizer.lr": 0.01}
    recipe = get_model_info("simple_cnn").default_recipe
    assert recipe["data.batch_size"] == 128 and recipe["trainer.max_epochs"] == 15


def test_create_model_follows_input_shape_and_classes() -> None:
    model = create_model("simple_cnn", input_shape=(3, 32, 32), num_classes=5)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_create_model_takes_the_keras_channel_last_input_shape() -> None:
    keras, torch_order = create_model("simple_cnn", input_shape=(28, 28, 1)), create_model("simple_cnn")
    assert count_parameters(keras) == count_parameters(torch_order)
    assert keras(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert get_model_info("lenet5", input_shape=(28, 28, 1)).input_shape == (1, 28, 28)


def test_resnet_depth_is_configurable() -> None:
    shallow, deep = create_model("resnet", blocks_per_group=1), create_model("resnet", blocks_per_group=3)
    assert count_parameters(shallow) < count_parameters(create_model("resnet")) < count_parameters(deep)


def test_dropout_rate_reaches_the_layers() -> None:
    model = create_model("custom_cnn", dropout_rate=0.25)
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.25}


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("nope", {}, "unknown model 'nope'; registered models: custom_cnn, lenet5, resnet, simple_cnn"),
        ("lenet5", {"dropout_rate": 0.3}, "model 'lenet5' does not accept dropout_rate"),
        ("simple_cnn", {"dropout_rate": 1.5}, "dropout_rate must be in [0, 1), got 1.5"),
        ("resnet", {"blocks_per_group": 0}, "blocks_per_group and base_width must be >= 1"),
    ],
)
def test_bad_model_requests_are_refused_clearly(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        create_model(name, **kwargs)
    assert message in str(error.value)


def test_register_model_refuses_a_duplicate_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5", "again")(torch.nn.Identity)
