"""The shipped weights in checkpoints/pretrained/: their figures re-measured, checksums enforced, publishing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO
from helpers.cli import run_command

from mnist_cnn import (
    Evaluator,
    MNISTClassifier,
    MNISTDataModule,
    count_parameters,
    get_model_info,
    list_models,
    load_pretrained_model,
    read_splits,
    read_test_split,
)
from mnist_cnn.errors import CheckpointError, MNISTDataError
from mnist_cnn.inference.classify import UNCERTAIN_BELOW, choose_uncertain_below
from mnist_cnn.pretrained import publish, validation_figures
from mnist_cnn.resources import PRETRAINED_DIR
from mnist_cnn.training.run import TrainResult
from mnist_cnn.weights.manifest import KEPT_KEYS, file_sha256, read_manifest, verified_checkpoint

SHIPPED = read_manifest()


def test_every_architecture_is_shipped_with_its_recipe() -> None:
    assert sorted(SHIPPED) == list_models()
    repo = PRETRAINED_DIR.parents[1]
    for name, info in SHIPPED.items():
        assert f"experiment={name}_best" in info.command
        assert (repo / "conf" / "experiment" / f"{name}_best.yaml").is_file()


def test_readme_table_shows_the_manifest_figures() -> None:
    readme = (REPO / "README.md").read_text().splitlines()
    header = readme.index("| model | parameters | test accuracy | test loss | fit time (epochs) | command |")
    rows = {line.split("`")[1]: line for line in readme[header + 2 : header + 2 + len(SHIPPED)]}
    assert sorted(rows) == sorted(SHIPPED)
    for name, info in SHIPPED.items():
        cells = [cell.strip() for cell in rows[name].strip("|").split("|")]
        assert cells[1:5] == [
            f"{info.num_parameters:,}",
            f"**{info.test_acc * 100:.2f} %**",
            f"{info.test_loss:.4f}",
            f"{info.fit_seconds / 60:.1f} min ({info.epochs})",
        ], name
        assert f"experiment={name}_best" in cells[5]


@pytest.mark.slow  # the whole test and validation sets through each shipped model
@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_score_their_manifest_figures(name: str, real_root: Path) -> None:
    model = load_pretrained_model(name)
    metrics = Evaluator(model, MNISTDataModule(root=str(real_root), download=False)).evaluate()
    info = SHIPPED[name]
    assert abs(metrics["accuracy"] - info.test_acc) <= 0.0001  # within 0.01 percentage points
    assert metrics["loss"] == pytest.approx(info.test_loss, abs=1e-4)
    assert count_parameters(model) == info.num_parameters
    assert dict(model.hparams.model_kwargs or {}) == info.model_kwargs
    val_acc, uncertain_below = validation_figures(model, read_splits(real_root, download=False).val)
    assert uncertain_below == info.uncertain_below == model.uncertain_below  # the rule, on validation digits
    assert info.val_acc is None or abs(val_acc - info.val_acc) <= 0.0001  # None: trained on all 60k images


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_files_hold_weights_and_hparams_only(name: str) -> None:
    path = verified_checkpoint(name)
    assert set(torch.load(path, weights_only=True)) == set(KEPT_KEYS)
    model = MNISTClassifier.load_from_checkpoint(path, weights_only=True)  # Lightning's own loader takes it too
    assert model.hparams.model_name == name


def test_from_pretrained_and_model_info_report_the_shipped_model() -> None:
    model = MNISTClassifier.from_pretrained("lenet5")
    assert model.hparams.model_name == "lenet5" and not model.training
    assert get_model_info("lenet5").pretrained == SHIPPED["lenet5"]


def test_a_changed_file_is_refused_never_loaded(tmp_path: Path) -> None:
    shutil.copy(PRETRAINED_DIR / "manifest.json", tmp_path)
    tampered = tmp_path / "lenet5.ckpt"
    data = bytearray((PRETRAINED_DIR / "lenet5.ckpt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights
    tampered.write_bytes(data)
    with pytest.raises(CheckpointError, match="does not match its manifest"):
        verified_checkpoint("lenet5", tmp_path)
    tampered.unlink()
    with pytest.raises(CheckpointError, match="is missing"):
        verified_checkpoint("lenet5", tmp_path)
    with pytest.raises(CheckpointError, match="no pretrained weights for 'nope'"):
        load_pretrained_model("nope")


def test_a_path_must_hold_the_named_model() -> None:
    with pytest.raises(CheckpointError, match="holds a lenet5 model, not resnet"):
        load_pretrained_model("resnet", PRETRAINED_DIR / "lenet5.ckpt")


def _scale_weights(checkpoint: Path, factor: float) -> None:
    """Multiply every weight in ``checkpoint`` by ``factor``: the weights another epoch or run would leave."""
    saved = torch.load(checkpoint, weights_only=True)
    saved["state_dict"] = {name: value * factor for name, value in saved["state_dict"].items()}
    torch.save(saved, checkpoint)


def _finished_run(run_dir: Path, trained_run: Path) -> Path:
    """A copy of the shared trained run at ``run_dir``, its result.json naming the copy's best.ckpt as training there
    would have, and its last.ckpt holding other weights than its best.ckpt, as a later epoch leaves them."""
    shutil.copytree(trained_run, run_dir)
    record = json.loads((run_dir / "result.json").read_text())
    record["best_checkpoint"] = str(run_dir / "best.ckpt")
    (run_dir / "result.json").write_text(json.dumps(record))
    _scale_weights(run_dir / "last.ckpt", 0.5)
    return run_dir


def test_publish_ships_the_best_checkpoint_and_measures_it(
    trained_run: Path, fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _finished_run(tmp_path / "run", trained_run)
    monkeypatch.setenv("MNIST_DATA_DIR", str(fake_root))

    info = publish(run_dir, directory=tmp_path)
    shipped = tmp_path / "lenet5.ckpt"
    assert set(torch.load(shipped, weights_only=True)) == set(KEPT_KEYS)  # no optimizer or loop state
    assert info.sha256 == file_sha256(shipped) and info.seed == 42 and info.epochs == 1
    assert info.source_checkpoint == "best.ckpt"
    model = load_pretrained_model("lenet5", shipped)
    assert info.test_acc == Evaluator(model, read_test_split(fake_root)).evaluate()["accuracy"]
    val = read_splits(fake_root, val_size=100).val
    assert info.val_acc == Evaluator(model, val).evaluate()["accuracy"]
    probabilities = Evaluator(model, val).probabilities.numpy()
    right = probabilities.argmax(axis=1) == val[1].numpy()
    assert info.uncertain_below == choose_uncertain_below(probabilities.max(axis=1)[right])
    assert json.loads((tmp_path / "manifest.json").read_text())["lenet5"]["sha256"] == info.sha256
    assert verified_checkpoint("lenet5", tmp_path) == shipped


def test_publish_finds_the_checkpoint_of_a_run_dir_copied_from_another_machine(
    trained_run: Path, fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained = _finished_run(tmp_path / "on-the-gpu-box", trained_run)
    copied = trained.rename(tmp_path / "copied-here")  # result.json still names the old absolute path
    monkeypatch.setenv("MNIST_DATA_DIR", str(fake_root))

    info = publish(copied, directory=tmp_path)
    assert info.sha256 == file_sha256(tmp_path / "lenet5.ckpt")
    assert torch.equal(
        torch.load(tmp_path / "lenet5.ckpt", weights_only=True)["state_dict"]["model.features.0.weight"],
        torch.load(copied / "best.ckpt", weights_only=True)["state_dict"]["model.features.0.weight"],
    )


def test_publish_can_ship_the_final_epoch_instead(
    trained_run: Path, fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _finished_run(tmp_path / "run", trained_run)
    monkeypatch.setenv("MNIST_DATA_DIR", str(fake_root))

    info = publish(run_dir, directory=tmp_path, which="last")
    shipped = torch.load(tmp_path / "lenet5.ckpt", weights_only=True)["state_dict"]
    for name, weights in torch.load(run_dir / "last.ckpt", weights_only=True)["state_dict"].items():
        assert torch.equal(shipped[name], weights), name
    model = load_pretrained_model("lenet5", tmp_path / "lenet5.ckpt")
    assert info.source_checkpoint == "last.ckpt"
    assert info.val_acc == Evaluator(model, read_splits(fake_root, val_size=100).val).evaluate()["accuracy"]


def test_a_run_without_validation_publishes_only_its_final_epoch(
    fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(MNISTClassifier("lenet5"), datamodule=MNISTDataModule(root=str(fake_root), val_size=0))
    trainer.save_checkpoint(run_dir / "last.ckpt")
    TrainResult(run_dir, None, {}, 1, 3.0).save(run_dir / "result.json", seed=7)  # as a data.val_size=0 run leaves it
    monkeypatch.setenv("MNIST_DATA_DIR", str(fake_root))

    with pytest.raises(
        CheckpointError, match="trained without validation .* publish its final epoch with --checkpoint last"
    ):
        publish(run_dir, directory=tmp_path)
    assert not (tmp_path / "lenet5.ckpt").exists()
    info = publish(run_dir, directory=tmp_path, which="last")
    model = load_pretrained_model("lenet5", tmp_path / "lenet5.ckpt")
    assert info.test_acc == Evaluator(model, read_test_split(fake_root)).evaluate()["accuracy"]
    assert info.val_acc is None and read_manifest(tmp_path)["lenet5"].val_acc is None
    assert info.uncertain_below is None  # nothing held out to choose it on: the default applies
    assert load_pretrained_model("lenet5", tmp_path / "lenet5.ckpt").uncertain_below == UNCERTAIN_BELOW


def test_a_publish_that_cannot_measure_leaves_the_shipped_file_and_manifest(
    trained_run: Path, fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped_dir = tmp_path / "shipped"
    shipped_dir.mkdir()
    monkeypatch.setenv("MNIST_DATA_DIR", str(fake_root))
    publish(_finished_run(tmp_path / "first", trained_run), directory=shipped_dir)
    before = {path.name: path.read_bytes() for path in shipped_dir.iterdir()}
    second = _finished_run(tmp_path / "second", trained_run)
    _scale_weights(second / "best.ckpt", 0.25)  # other weights than the shipped ones
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "no-data"))

    with pytest.raises(MNISTDataError, match="MNIST files not found"):
        publish(second, directory=shipped_dir)
    assert {path.name: path.read_bytes() for path in shipped_dir.iterdir()} == before  # nothing staged is left
    assert verified_checkpoint("lenet5", shipped_dir) == shipped_dir / "lenet5.ckpt"


def test_command_line_lists_the_manifest_and_refuses_a_non_run(tmp_path: Path) -> None:
    manifest_before = (PRETRAINED_DIR / "manifest.json").read_text()
    listed = run_command("mnist_cnn.pretrained", "list", cwd=tmp_path)
    assert listed.returncode == 0 and all(f"experiment={name}_best" in listed.stdout for name in SHIPPED)
    refused = run_command("mnist_cnn.pretrained", "publish", str(tmp_path), cwd=tmp_path)
    message = f"error: {tmp_path} holds no result.json, nor do its resume_<k>/ folders: pass the run dir of a finished"
    assert refused.returncode == 2 and message in refused.stderr
    (tmp_path / "result.json").write_text(json.dumps({"best_checkpoint": str(tmp_path / "best.ckpt")}))
    no_last = run_command("mnist_cnn.pretrained", "publish", str(tmp_path), "--checkpoint", "last", cwd=tmp_path)
    assert no_last.returncode == 2
    assert f"error: {tmp_path}/last.ckpt not found: the run dir holds no last checkpoint" in no_last.stderr
    assert manifest_before == (PRETRAINED_DIR / "manifest.json").read_text()


def test_publish_refuses_a_checkpoint_saved_by_a_resume_that_did_not_finish(
    trained_run: Path, fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _finished_run(tmp_path / "run", trained_run)
    steps = json.loads((run_dir / "result.json").read_text())["steps"]
    saved = torch.load(run_dir / "last.ckpt", weights_only=True)
    assert saved["global_step"] == steps  # the final step of the finished run
    saved["global_step"] = steps + 1  # a step further, saved by a resume interrupted before it wrote its result
    torch.save(saved, run_dir / "last.ckpt")
    (run_dir / "resume_1").mkdir()
    monkeypatch.setenv("MNIST_DATA_DIR", str(fake_root))
    shipped = tmp_path / "shipped"
    shipped.mkdir()

    with pytest.raises(CheckpointError) as error:
        publish(run_dir, directory=shipped, which="last")
    assert str(error.value) == (
        f"{run_dir / 'last.ckpt'} was saved after step {steps + 1}, later than the {steps} steps that "
        f"{run_dir / 'result.json'} describes: a resume that did not finish saved it; resume the run "
        f"(ckpt_path={run_dir}) and let it finish, then publish"
    )
    assert list(shipped.iterdir()) == []  # nothing shipped, no manifest written
    assert publish(run_dir, directory=shipped).source_checkpoint == "best.ckpt"  # the best epoch is one it counts


def test_publish_takes_the_result_of_the_latest_segment_that_finished(
    trained_run: Path, fake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = _finished_run(tmp_path / "run", trained_run)
    (run_dir / "resume_1").mkdir()  # the first segment was interrupted, a resume finished ...
    (run_dir / "result.json").rename(run_dir / "resume_1" / "result.json")
    (run_dir / "resume_2").mkdir()  # ... and a later resume was interrupted before writing anything
    (run_dir / "resume_old").mkdir()  # a folder a user made
    monkeypatch.setenv("MNIST_DATA_DIR", str(fake_root))

    info = publish(run_dir, directory=tmp_path)
    assert info.seed == 42 and info.source_checkpoint == "best.ckpt"
