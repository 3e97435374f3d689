"""What the commands say to the mistakes a newcomer makes first: one ``error:`` line that names the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import run_command, run_process


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("max_epochs=1", "error: max_epochs is not a setting: did you mean trainer.max_epochs?"),
        ("lr=0.1", "error: lr is not a setting: did you mean optimizer.lr?"),
        ("max_epoch=1", "error: max_epoch is not a setting: did you mean trainer.max_epochs?"),
        ("monitor=val_loss", ("error: monitor is not a setting: did you mean callbacks.checkpoint.monitor or "
                              "callbacks.early_stopping.monitor?")),
    ],
)  # fmt: skip
def test_a_setting_given_without_its_group_is_pointed_to_its_group(override: str, message: str, tmp_path: Path) -> None:
    finished = run_command("mnist_cnn.train", override, cwd=tmp_path)
    assert (finished.returncode, finished.stderr) == (2, f"{message}\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.degrade_prob=0.5", "data.degrade.probability"),
        ("data.rotation_degrees=5", "data.augment.rotation_degrees"),
    ],
)
def test_a_data_option_of_the_former_flat_keys_is_pointed_to_its_key_now(
    override: str, key: str, tmp_path: Path
) -> None:
    finished = run_command("mnist_cnn.train", override, cwd=tmp_path)
    former = override.partition("=")[0]
    assert (finished.returncode, finished.stderr) == (2, f"error: {former} is now {key}: give {key}=... instead\n")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.augment=false", "data.augment=false is now data.augment=null"),
        (
            "data.augment=true",
            "data.augment=true is now the default: leave data.augment out, or set data.augment.<setting>=...",
        ),
    ],
)
def test_the_former_augmentation_switch_is_pointed_to_what_says_the_same_now(
    override: str, message: str, tmp_path: Path
) -> None:
    finished = run_command("mnist_cnn.train", override, cwd=tmp_path)
    assert (finished.returncode, finished.stderr) == (2, f"error: {message}\n")


def test_evaluate_says_the_checkpoint_names_the_model_when_given_model(tmp_path: Path) -> None:
    finished = run_command("mnist_cnn.evaluate", "ckpt_path=lenet5", "model=simple_cnn", cwd=tmp_path)
    assert finished.returncode == 2 and "+model" not in finished.stderr
    assert finished.stderr == (
        "error: model=simple_cnn is not a setting of this command: the model is the one ckpt_path names, "
        "whose checkpoint holds its architecture\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_predict_says_a_folder_holds_no_images_and_a_missing_path_is_missing(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no digits here")
    finished = run_command("mnist_cnn.predict", "inputs=[empty,missing]", cwd=tmp_path)
    assert finished.returncode == 1
    assert finished.stderr.splitlines() == [
        "error: empty: the folder holds no image files (.png, .jpg, .jpeg, .bmp), nor do its subfolders",
        "error: missing: no such file or folder, and no file matches it as a glob",
    ]


@pytest.mark.slow
def test_the_model_summary_is_printed_once(fake_root: Path, tmp_path: Path) -> None:
    """A real process: which handlers Lightning's loggers get depends on what the process configured first."""
    summary = "+callbacks.summary={_target_:lightning.pytorch.callbacks.ModelSummary}"  # logged, not printed by rich
    result = run_process(
        "mnist_cnn.train", "model=lenet5", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "data.val_size=100", "test=false", summary, cwd=tmp_path, data_root=fake_root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Trainable params") == 1 and "Trainable params" not in result.stderr
    assert "INFO:" not in result.stderr
    (log,) = tmp_path.glob("checkpoints/lenet5/*/train.log")
    assert log.read_text().count("Trainable params") == 1


def test_a_command_freezes_the_collectors_objects_before_the_interpreter_ends() -> None:
    """The freeze spares the final garbage collections a walk over every imported object; a probe registered
    before the command layer is imported runs after its exit handlers (atexit runs them last-in, first-out)."""
    probe = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen objects at exit:', gc.get_freeze_count() > 0))\n"
        "import mnist_cnn.cli\n"
    )
    finished = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert finished.stdout == "frozen objects at exit: True\n"
