"""The architectures and their registry, and the catalog that tells what is available for each."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers.imports import refusing_imports

from mnist_cnn import MNISTClassifier, create_model, get_model_info, list_models, read_test_split
from mnist_cnn.data.pixels import normalize
from mnist_cnn.models import count_parameters, model_names, register_model
from mnist_cnn.models.layers import AvgPool2d, Flatten
from mnist_cnn.weights.checkpoints import load_network, read_checkpoint
from mnist_cnn.weights.manifest import read_manifest, verified_checkpoint

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


def test_simple_cnn_width_sets_both_convolutions() -> None:
    narrow = create_model("simple_cnn", base_width=24)
    convolutions = [m for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convolutions] == [24, 48]
    assert narrow(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(narrow) < EXPECTED_PARAMETERS["simple_cnn"]


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
        ("simple_cnn", {"base_width": 0}, "base_width must be >= 1, got 0"),
        ("resnet", {"blocks_per_group": 0}, "blocks_per_group and base_width must be >= 1"),
    ],
)
def test_bad_model_requests_are_refused_clearly(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        create_model(name, **kwargs)
    assert message in str(error.value)


def test_a_pretrained_model_is_built_without_importing_lightning() -> None:
    with refusing_imports("lightning", "torchmetrics") as asked:
        import mnist_cnn

        network = mnist_cnn.create_model("lenet5", pretrained=True)
    assert asked == []
    assert type(network).__name__ == "LeNet5" and not network.training


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_a_pretrained_model_is_the_shipped_network_in_eval_mode_with_its_threshold(name: str) -> None:
    network = create_model(name, pretrained=True)
    assert type(network).__module__ == f"mnist_cnn.models.{name}" and not network.training
    assert network.uncertain_below == read_manifest()[name].uncertain_below
    shipped = MNISTClassifier.from_pretrained(name)  # the notebook's LightningModule: the same weights
    images = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(network(images), shipped(images), atol=1e-5, rtol=0)


def test_a_pretrained_model_takes_only_the_shipped_models_options() -> None:
    assert create_model("custom_cnn", pretrained=True, input_shape=(28, 28, 1), dropout_rate=0.3).training is False
    with pytest.raises(ValueError) as error:
        create_model("lenet5", pretrained=True, num_classes=5)
    assert str(error.value) == (
        "the shipped lenet5 weights fit another model than the one asked for: num_classes=5 (shipped: 10); "
        "leave these out, or build a new model with pretrained=False"
    )


def test_register_model_refuses_a_duplicate_name() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5", "again")(torch.nn.Identity)


def textbook(model: nn.Module) -> nn.Module:
    """A copy of ``model`` built from PyTorch's own layers in the order the architectures are described in
    (activation, then max-pooling): what the fast formulations must equal."""
    reference = copy.deepcopy(model)
    for sequence in [module for module in reference.modules() if isinstance(module, nn.Sequential)]:
        layers = [nn.Flatten() if isinstance(layer, Flatten) else layer for layer in sequence]
        layers = [nn.AvgPool2d(2) if isinstance(layer, AvgPool2d) else layer for layer in layers]
        for index in range(len(layers) - 1):
            if isinstance(layers[index], nn.MaxPool2d) and isinstance(layers[index + 1], (nn.ReLU, nn.LeakyReLU)):
                layers[index], layers[index + 1] = layers[index + 1], layers[index]
        for index, layer in enumerate(layers):
            sequence[index] = layer
    return reference


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_models_train_like_their_textbook_formulation(name: str) -> None:
    """Same logits and same gradients, in channels-last as MNISTClassifier runs them (where dropout draws its
    masks in memory order), with the same dropout masks."""
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last)
    reference = textbook(model)
    assert any(type(a) is not type(b) for a, b in zip(model.modules(), reference.modules()))  # it is another net
    images, labels = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    outputs = {}
    for key, network in (("fast", model), ("textbook", reference)):
        torch.manual_seed(1)  # the same dropout masks
        logits = network(images)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        outputs[key] = (logits, {n: p.grad for n, p in network.named_parameters()})
    torch.testing.assert_close(outputs["fast"][0], outputs["textbook"][0], atol=1e-5, rtol=1e-5)
    assert outputs["fast"][1].keys() == outputs["textbook"][1].keys()
    for parameter, grad in outputs["fast"][1].items():
        torch.testing.assert_close(grad, outputs["textbook"][1][parameter], atol=1e-5, rtol=1e-4, msg=parameter)


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_shipped_weights_load_and_give_the_textbook_logits_on_real_digits(name: str, real_root: Path) -> None:
    path = verified_checkpoint(name)
    saved = {key.removeprefix("model.") for key in read_checkpoint(path)["state_dict"]}
    network = load_network(path).to(memory_format=torch.channels_last)  # strict loading: every key matches
    assert set(network.state_dict()) == saved
    images, labels = read_test_split(real_root, download=False)
    images = normalize(images[:2000])
    with torch.no_grad():
        logits, expected = network(images), textbook(network)(images)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert (logits.argmax(1) == labels[:2000]).float().mean() > 0.98


def test_flatten_sends_the_gradient_back_in_the_layout_of_its_input() -> None:
    features = torch.randn(4, 8, 5, 5).to(memory_format=torch.channels_last).requires_grad_()
    flat = Flatten()(features)
    assert torch.equal(flat, features.flatten(1))
    flat.backward(torch.arange(flat.numel(), dtype=torch.float32).view_as(flat))
    assert features.grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(features.grad, torch.arange(flat.numel(), dtype=torch.float32).view(4, 8, 5, 5))


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("size", [(10, 10), (28, 28), (7, 9)])
def test_avg_pool_matches_pytorch_and_keeps_the_layout(layout: torch.memory_format, size: tuple[int, int]) -> None:
    images = torch.randn(3, 6, *size).to(memory_format=layout).requires_grad_()
    pooled, expected = AvgPool2d(2)(images), nn.AvgPool2d(2)(images)
    torch.testing.assert_close(pooled, expected, atol=1e-6, rtol=0)
    assert pooled.is_contiguous(memory_format=layout)
    (grad,) = torch.autograd.grad(pooled, images, torch.ones_like(pooled))
    (expected_grad,) = torch.autograd.grad(expected, images, torch.ones_like(expected))
    assert torch.equal(grad, expected_grad) and grad.is_contiguous(memory_format=layout)
