from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from mnist_cnn import MNISTClassifier, MNISTDataModule
from mnist_cnn.optim import OPTIMIZERS, build_optimizer, build_scheduler


def _fit(fake_root: Path, tmp_path: Path, **module_kwargs: object) -> tuple[MNISTClassifier, L.Trainer]:
    model = MNISTClassifier("lenet5", **module_kwargs)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=4, limit_val_batches=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, datamodule=MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16))
    return model, trainer


def test_hyperparameters_are_plain_data() -> None:
    model = MNISTClassifier("resnet", model_kwargs={"blocks_per_group": 1})
    plain = (str, int, float, bool, type(None), list, tuple, dict)
    assert all(isinstance(value, plain) for value in model.hparams.values())
    assert model.hparams.model_kwargs == {"blocks_per_group": 1}


def test_checkpoint_reloads_with_no_arguments_under_weights_only(fake_root: Path, tmp_path: Path) -> None:
    model, trainer = _fit(fake_root, tmp_path, model_kwargs={}, optimizer="sgd", lr=0.05)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    torch.load(path, weights_only=True)  # raises if anything in it needs unpickling code
    restored = MNISTClassifier.load_from_checkpoint(path)
    assert restored.hparams.optimizer == "sgd" and restored.hparams.lr == 0.05
    images = torch.randn(5, 1, 28, 28)
    model.eval(), restored.eval()
    assert torch.equal(model(images), restored(images))


def test_fit_logs_epoch_metrics_for_each_stage(fake_root: Path, tmp_path: Path) -> None:
    model, trainer = _fit(fake_root, tmp_path)
    logged = trainer.callback_metrics
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "val_top3_acc"} <= set(logged)
    assert "train_top3_acc" not in logged  # top-3 costs time per step and is judged on val and test only
    assert 0.0 <= float(logged["val_acc"]) <= float(logged["val_top3_acc"]) <= 1.0
    (tested,) = trainer.test(model, datamodule=MNISTDataModule(root=str(fake_root), val_size=100), verbose=False)
    assert set(tested) == {"test_loss", "test_acc", "test_top3_acc"}


def test_accuracy_is_micro_averaged() -> None:
    model = MNISTClassifier("lenet5")
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 0, 1]), 10).float()
    model.accuracies["test_acc"].update(logits, torch.tensor([0, 0, 0, 2]))
    assert model.accuracies["test_acc"].compute()["test_acc"] == pytest.approx(0.75)  # macro would give 0.5


def test_loss_is_the_mean_over_images_and_shows_nan() -> None:
    model = MNISTClassifier("lenet5").eval()
    images, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    model.test_step((images[:3], labels[:3]), 0)
    model.test_step((images[3:], labels[3:]), 1)  # a short last batch weighs as one image, not as one batch
    expected = torch.nn.functional.cross_entropy(model(images), labels)
    torch.testing.assert_close(model.losses["test_loss"].compute(), expected)
    model.test_step((torch.full((2, 1, 28, 28), float("nan")), labels[:2]), 2)
    assert model.losses["test_loss"].compute().isnan()  # not dropped from the mean with a warning


def test_label_smoothing_softens_the_training_loss_only() -> None:
    model = MNISTClassifier("lenet5", label_smoothing=0.2).eval()
    images, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    logits = model(images)
    smoothed = model.training_step((images, labels), 0)
    torch.testing.assert_close(smoothed, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2))
    model.validation_step((images, labels), 0)  # judged on the plain loss, comparable across recipes
    torch.testing.assert_close(model.losses["val_loss"].compute(), torch.nn.functional.cross_entropy(logits, labels))
    assert not torch.isclose(smoothed, model.losses["val_loss"].compute())


def test_predict_step_returns_probabilities() -> None:
    probabilities = MNISTClassifier("lenet5").predict_step(torch.randn(3, 1, 28, 28), 0)
    assert probabilities.shape == (3, 10) and torch.allclose(probabilities.sum(dim=1), torch.ones(3))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizers_apply_lr_decay_and_momentum(name: str) -> None:
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], name, lr=0.1, weight_decay=0.01, momentum=0.8)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 0.01
    assert group.get("momentum", 0.8) == 0.8


@pytest.mark.parametrize(
    ("name", "lr_after_epochs"),
    [
        ("constant", [1.0, 1.0, 1.0, 1.0, 1.0]),
        ("step", [1.0, 1.0, 0.5, 0.5, 0.25]),
        ("exponential", [1.0, 0.5**0.5, 0.5, 0.5**1.5, 0.25]),
        ("cosine", [1.0, 0.75, 0.25, 0.0, 0.25]),
    ],
)
def test_schedules_follow_their_formula(name: str, lr_after_epochs: list[float]) -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(
        optimizer, name, decay_epochs=2, decay_rate=0.5, max_epochs=3 if name == "cosine" else 10
    )
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            optimizer.step()
            scheduler.step()
    assert seen == pytest.approx(lr_after_epochs)


def test_onecycle_warms_up_for_30_percent_of_the_steps_then_anneals_to_almost_zero() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, "onecycle", decay_epochs=1, decay_rate=1.0, max_epochs=1, total_steps=10)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(1 / 25) and seen[:3] == sorted(seen[:3])
    assert max(seen) == pytest.approx(1.0) and seen[2:] == sorted(seen[2:], reverse=True)
    assert seen[-1] == pytest.approx(1 / 25 / 1e4)


def test_fit_steps_a_per_step_schedule_after_every_batch(fake_root: Path, tmp_path: Path) -> None:
    _, trainer = _fit(fake_root, tmp_path, scheduler="onecycle", lr=0.01)
    (config,) = trainer.lr_scheduler_configs
    assert config.scheduler.total_steps == trainer.global_step == 4  # the schedule spans the run's 4 batches
    assert config.interval == "step" and config.scheduler.last_epoch == 4  # stepped after each of them


def test_onecycle_refuses_a_run_of_unknown_length(fake_root: Path, tmp_path: Path) -> None:
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=-1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    datamodule = MNISTDataModule(root=str(fake_root), val_size=100, batch_size=16)
    with pytest.raises(ValueError, match="'onecycle' needs a run of known length: set max_epochs or max_steps"):
        trainer.fit(MNISTClassifier("lenet5", scheduler="onecycle"), datamodule=datamodule)


def test_unknown_optimizer_and_schedule_are_refused() -> None:
    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'; choose one of adam, sgd, rmsprop"):
        build_optimizer(params, "adamw", 0.1, 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown scheduler 'linear'"):
        build_scheduler(torch.optim.SGD(params, lr=0.1), "linear", 1, 0.5, 3)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_cpu_training_steps_with_a_fused_optimizer_that_matches_the_plain_one(optimizer: str) -> None:
    torch.manual_seed(0)
    module = MNISTClassifier("lenet5", optimizer=optimizer, scheduler="constant", lr=0.01)
    fused = module.configure_optimizers()
    assert fused.defaults["fused"] is True
    reference_model = MNISTClassifier("lenet5", optimizer=optimizer, scheduler="constant")
    reference_model.load_state_dict(module.state_dict())
    reference = build_optimizer(reference_model.parameters(), optimizer, 0.01, 1e-4, 0.9)
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
