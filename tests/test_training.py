"""The training layer: the shared LightningModule, components built from config, callbacks, old checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mnist_cnn import MNISTClassifier, MNISTDataModule, plot_training_history
from mnist_cnn.config import compose_config, validate
from mnist_cnn.errors import CheckpointError, ConfigError
from mnist_cnn.resources import CONF_DIR
from mnist_cnn.training.callbacks import ExponentialMovingAverage, warmed_up_decay
from mnist_cnn.training.run import build_module
from mnist_cnn.weights.manifest import read_manifest, verified_checkpoint

SCHEDULERS = sorted(path.stem for path in (CONF_DIR / "scheduler").glob("*.yaml"))


def _trainer(tmp_path: Path, **kwargs: object) -> L.Trainer:
    settings = {"accelerator": "cpu", "max_epochs": 1, "logger": False, "enable_checkpointing": False}
    return L.Trainer(**{**settings, "enable_progress_bar": False, "default_root_dir": tmp_path, **kwargs})


def _fit(fake_root: Path, tmp_path: Path, **module_kwargs: object) -> tuple[MNISTClassifier, L.Trainer]:
    model = MNISTClassifier("lenet5", **module_kwargs)
    trainer = _trainer(tmp_path, limit_train_batches=4, limit_val_batches=1)
    trainer.fit(model, datamodule=MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16))
    return model, trainer


def test_hyperparameters_are_plain_data() -> None:
    model = MNISTClassifier("resnet", model_kwargs={"blocks_per_group": 1})
    plain = (str, int, float, bool, type(None), list, tuple, dict)
    assert all(isinstance(value, plain) for value in model.hparams.values())
    assert model.hparams.model_kwargs == {"blocks_per_group": 1}


def test_checkpoint_reloads_with_no_arguments_under_weights_only(fake_root: Path, tmp_path: Path) -> None:
    sgd = {"_target_": "torch.optim.SGD", "lr": 0.05, "momentum": 0.9}
    model, trainer = _fit(fake_root, tmp_path, optimizer=sgd)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    torch.load(path, weights_only=True)  # raises if anything in it needs unpickling code
    for restored in (MNISTClassifier.load_from_checkpoint(path), MNISTClassifier.load(path)):
        assert restored.hparams.optimizer == sgd
        images = torch.randn(5, 1, 28, 28)
        model.eval(), restored.eval()
        assert torch.equal(model(images), restored(images))
        assert restored.history == model.history  # the training curves travel with the checkpoint


def test_fit_logs_epoch_metrics_for_each_stage_and_keeps_a_history(fake_root: Path, tmp_path: Path) -> None:
    model, trainer = _fit(fake_root, tmp_path)
    logged = trainer.callback_metrics
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "val_top3_acc"} <= set(logged)
    assert "train_top3_acc" not in logged  # top-3 costs time per step and is judged on val and test only
    assert 0.0 <= float(logged["val_acc"]) <= float(logged["val_top3_acc"]) <= 1.0
    history = model.history
    assert history["epoch"] == [0] and history["val_acc"] == [pytest.approx(float(logged["val_acc"]))]
    assert set(history) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_top3_acc"}
    (tested,) = trainer.test(model, datamodule=MNISTDataModule(root=str(fake_root), val_size=100), verbose=False)
    assert set(tested) == {"test_loss", "test_acc", "test_top3_acc"} and "test_acc" not in model.history
    figure = plot_training_history(model.history)
    assert [line.get_label() for line in figure.axes[1].lines] == ["train", "validation"]


def test_epoch_metrics_are_micro_averaged_means_over_images_and_show_nan() -> None:
    model = MNISTClassifier("lenet5").eval()
    images, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        logits = model(images)
    model.test_step((images[:3], labels[:3]), 0)
    model.test_step((images[3:], labels[3:]), 1)  # a short last batch weighs as one image, not as one batch
    metrics = model.epoch_metrics("test")
    torch.testing.assert_close(metrics["test_loss"], torch.nn.functional.cross_entropy(logits, labels))
    right = (logits.argmax(dim=1) == labels).float().mean()  # micro: the fraction of images right
    in_top3 = (logits.topk(3).indices == labels[:, None]).any(dim=1).float().mean()
    torch.testing.assert_close((metrics["test_acc"], metrics["test_top3_acc"]), (right, in_top3))
    assert model.epoch_metrics("test") == {}  # computed once, then started anew
    model.test_step((torch.full((2, 1, 28, 28), float("nan")), labels[:2]), 2)
    assert model.epoch_metrics("test")["test_loss"].isnan()  # not dropped from the mean


def test_label_smoothing_softens_the_training_loss_only() -> None:
    model = MNISTClassifier("lenet5", label_smoothing=0.2).eval()
    with torch.no_grad():  # confident logits: on near-uniform ones both losses are log(10), smoothed or not
        model.model.classifier[-1].bias.copy_(torch.linspace(0, 6, 10))
    images, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    logits = model(images)
    smoothed = model.training_step((images, labels), 0)
    torch.testing.assert_close(smoothed, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2))
    model.validation_step((images, labels), 0)  # judged on the plain loss, comparable across recipes
    val_loss = model.epoch_metrics("val")["val_loss"]
    torch.testing.assert_close(val_loss, torch.nn.functional.cross_entropy(logits, labels))
    assert not torch.isclose(smoothed, val_loss)


def test_predict_takes_pixels_in_every_form_like_keras_and_forward_says_what_it_takes() -> None:
    model = MNISTClassifier("lenet5").eval()
    rng = np.random.default_rng(0)  # ink on a third of the pixels, the rest black: MNIST-formatted digits
    pixels = np.where(rng.random((6, 28, 28)) < 0.3, rng.integers(1, 256, (6, 28, 28)), 0).astype(np.uint8)
    probabilities = model.predict(pixels)
    assert isinstance(probabilities, np.ndarray) and probabilities.shape == (6, 10)
    np.testing.assert_allclose(model.predict(pixels[..., None] / 255.0), probabilities, atol=1e-5)
    with torch.no_grad():
        expected = model((torch.from_numpy(pixels).unsqueeze(1).float() / 255 - 0.1307) / 0.3081).softmax(dim=1)
    np.testing.assert_allclose(probabilities, expected.numpy(), atol=1e-5)
    for wrong in (pixels, torch.from_numpy(pixels).unsqueeze(1)):
        with pytest.raises(TypeError, match="forward takes normalised float tensors .* call model.predict"):
            model(wrong)
    assert model.predict_step(torch.randn(3, 1, 28, 28), 0).sum(dim=1).allclose(torch.ones(3))


@pytest.mark.parametrize("option", sorted(path.stem for path in (CONF_DIR / "optimizer").glob("*.yaml")))
def test_each_optimizer_file_builds_its_class_with_its_settings(option: str) -> None:
    node = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "optimizer" / f"{option}.yaml"))
    optimizer = MNISTClassifier("lenet5", optimizer=node).configure_optimizers()
    assert f"torch.optim.{type(optimizer).__name__}" == node.pop("_target_")
    assert {name: optimizer.param_groups[0][name] for name in node} == node


def _learning_rates(scheduler: str, fake_root: Path, tmp_path: Path, epochs: int, batches: int) -> list[float]:
    """The learning rate of every optimizer step of a ``scheduler=<option>`` run with Adam at 1.0."""
    seen: list[float] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    cfg = validate(compose_config(f"scheduler={scheduler}", "optimizer.lr=1.0", "optimizer.weight_decay=0"))
    trainer = _trainer(
        tmp_path, max_epochs=epochs, limit_train_batches=batches, limit_val_batches=1, callbacks=[Record()]
    )
    trainer.fit(build_module(cfg), datamodule=MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16))
    return seen


@pytest.mark.parametrize(
    ("scheduler", "per_epoch"),
    [
        ("constant", [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        ("step", [1.0] * 5 + [0.5]),  # x0.5 every 5 epochs
        ("exponential", [0.5 ** (epoch / 5) for epoch in range(6)]),  # x0.5 per 5 epochs, smoothly
        ("cosine", [(1 + math.cos(math.pi * epoch / 6)) / 2 for epoch in range(6)]),  # to 0 over the run's 6 epochs
    ],
)
def test_each_epoch_scheduler_follows_its_formula(
    scheduler: str, per_epoch: list[float], fake_root: Path, tmp_path: Path
) -> None:
    assert _learning_rates(scheduler, fake_root, tmp_path, epochs=6, batches=1) == pytest.approx(per_epoch)


def test_onecycle_warms_up_for_30_percent_of_the_run_then_anneals_to_almost_zero(
    fake_root: Path, tmp_path: Path
) -> None:
    seen = _learning_rates("onecycle", fake_root, tmp_path, epochs=2, batches=5)  # 10 steps: a per-step schedule
    assert len(seen) == 10 and seen[0] == pytest.approx(1 / 25) and seen[:3] == sorted(seen[:3])
    assert max(seen) == pytest.approx(1.0) and seen[2:] == sorted(seen[2:], reverse=True)


def test_plateau_halves_the_learning_rate_when_validation_loss_stalls(fake_root: Path, tmp_path: Path) -> None:
    cfg = validate(
        compose_config("scheduler=plateau", "optimizer.lr=1e-12", "scheduler.patience=0", "+scheduler.eps=0")
    )
    trainer = _trainer(tmp_path, max_epochs=3, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(build_module(cfg), datamodule=MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16))
    (config,) = trainer.lr_scheduler_configs
    assert config.monitor == "val_loss" and type(config.scheduler).__name__ == "ReduceLROnPlateau"
    assert trainer.optimizers[0].param_groups[0]["lr"] < 1e-12  # the loss cannot improve at this rate


def test_a_scheduler_over_an_endless_run_is_refused(fake_root: Path, tmp_path: Path) -> None:
    onecycle = {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "interval": "step"}
    trainer = _trainer(tmp_path, max_epochs=-1)
    datamodule = MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16)
    with pytest.raises(ValueError, match="OneCycleLR needs a run of known length: set max_epochs or max_steps"):
        trainer.fit(MNISTClassifier("lenet5", scheduler=onecycle), datamodule=datamodule)


@pytest.mark.parametrize(
    ("component", "node"),
    [
        ("optimizer", {"_target_": "os.system", "_args_": ["echo pwned"]}),
        ("scheduler", {"_target_": "torch.optim.lr_scheduler.StepLR", "step_size": {"_target_": "os.system"}}),
        ("optimizer", {"_target_": "torch.optimizers.Adam"}),  # a look-alike outside torch.optim
    ],
)
def test_only_torch_optim_and_this_package_can_be_named_in_the_hyperparameters(component: str, node: dict) -> None:
    with pytest.raises(ConfigError, match=f"{component}._target_=.* is not allowed: the {component} may only name"):
        MNISTClassifier("lenet5", **{component: node})


def test_a_checkpoint_naming_another_class_is_refused_before_it_is_built(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    checkpoint = torch.load(verified_checkpoint("lenet5"), weights_only=True)
    checkpoint["hyper_parameters"]["optimizer"] = {"_target_": "os.system", "_args_": [f"touch {marker}"]}
    crafted = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    with pytest.raises(CheckpointError, match="optimizer._target_='os.system' is not allowed"):
        MNISTClassifier.load(crafted)
    with pytest.raises(ConfigError, match="optimizer._target_='os.system' is not allowed"):
        MNISTClassifier.load_from_checkpoint(crafted)
    assert not marker.exists()


def test_checkpoints_of_mnist_cnn_0_1_load_with_their_optimizer_and_schedule() -> None:
    model = MNISTClassifier.from_pretrained("lenet5")  # the shipped files name them the old way
    assert torch.load(verified_checkpoint("lenet5"), weights_only=True)["hyper_parameters"]["optimizer"] == "adam"
    assert model.hparams.optimizer == {"_target_": "torch.optim.Adam", "lr": 0.002, "weight_decay": 0.0001}
    assert model.hparams.scheduler == {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR"}
    assert read_manifest()["lenet5"].command.startswith("python -m mnist_cnn.train experiment=lenet5_best")


@pytest.mark.parametrize("optimizer", ["Adam", "SGD"])
def test_cpu_training_steps_with_a_fused_optimizer_that_matches_the_plain_one(optimizer: str) -> None:
    torch.manual_seed(0)
    node = {"_target_": f"torch.optim.{optimizer}", "lr": 0.01}
    module = MNISTClassifier("lenet5", optimizer=node)
    fused = module.configure_optimizers()
    assert fused.defaults["fused"] is True
    reference_model = MNISTClassifier("lenet5", optimizer=node)
    reference_model.load_state_dict(module.state_dict())
    reference = getattr(torch.optim, optimizer)(reference_model.parameters(), lr=0.01)
    initial = [parameter.detach().clone() for parameter in module.parameters()]
    images, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for model, step in ((module, fused), (reference_model, reference)):
        for _ in range(3):
            step.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            step.step()
    for trained, expected in zip(module.parameters(), reference_model.parameters(), strict=True):
        torch.testing.assert_close(trained, expected, rtol=1e-4, atol=1e-6)
    assert not all(torch.equal(before, after) for before, after in zip(initial, module.parameters(), strict=True))


def _weights(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([parameter.detach().flatten().clone() for parameter in module.parameters()])


class _RawWeights(L.Callback):
    """The weights when training starts and the raw (not averaged) weights when it ends."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.initial = _weights(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.final = _weights(pl_module)  # runs before the EMA callback swaps the average in


def test_ema_decay_warms_up_to_its_cap() -> None:
    decays = [warmed_up_decay(0.99, updates) for updates in (0, 1, 10, 100, 10_000)]
    assert decays == pytest.approx([1 / 10, 2 / 11, 11 / 20, 101 / 110, 0.99])


def test_the_ema_follows_the_weights_from_the_first_steps(fake_root: Path, tmp_path: Path) -> None:
    model, raw = MNISTClassifier("custom_cnn"), _RawWeights()
    trainer = _trainer(tmp_path, max_steps=20, limit_val_batches=0, callbacks=[raw, ExponentialMovingAverage(0.999)])
    trainer.fit(model, datamodule=MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16))
    average = _weights(model)  # the callback leaves the average in the model
    assert not torch.equal(average, raw.final)
    # Without the warm-up, 20 steps at 0.999 would leave 98 % of the initial weights in the average.
    assert torch.linalg.norm(average - raw.final) < 0.2 * torch.linalg.norm(average - raw.initial)
    norms = [module for module in model.modules() if hasattr(module, "num_batches_tracked")]
    assert {norm.num_batches_tracked.item() for norm in norms} == {20}  # step counters are copied, not averaged


@pytest.mark.slow  # compiling takes tens of seconds on a CPU
def test_a_compiled_network_trains_and_saves_the_keys_of_the_eager_one(fake_root: Path, tmp_path: Path) -> None:
    cfg = validate(compose_config("model=lenet5", "compile=default", f"data.root={fake_root}", "data.val_size=100"))
    model = build_module(cfg)
    trainer = _trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(model, datamodule=MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16))
    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    restored = MNISTClassifier.load(path).eval()
    assert list(restored.state_dict()) == list(MNISTClassifier("lenet5").state_dict())
    images = torch.randn(4, 1, 28, 28)
    assert torch.allclose(restored(images), model.eval()(images), atol=1e-5)
