"""Predicting a user's own image files: ``python -m mnist_cnn.predict`` and ``predict_images``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import decompression_bomb
from helpers.cli import run_command
from helpers.imports import refusing_imports
from PIL import Image, ImageFilter

from benchmarks.drawing import draw_on_paper
from mnist_cnn import Evaluator, MNISTClassifier, Predictions, read_splits
from mnist_cnn.inference.classify import UNCERTAIN_BELOW
from mnist_cnn.preprocess import MAX_PIXELS
from mnist_cnn.weights.checkpoints import load_network
from mnist_cnn.weights.manifest import read_manifest
from mnist_cnn.weights.resolve import resolve_checkpoint

# (canvas size, digit height, top-left corner, stroke filter, file format)
STYLES = [
    ((100, 100), 70, (15, 12), None, "png"),
    ((300, 200), 120, (20, 60), None, "jpg"),  # off centre on a wide page
    ((300, 200), 90, (190, 10), ImageFilter.MaxFilter(7), "png"),  # thick strokes, top right
    ((64, 80), 40, (10, 30), ImageFilter.MinFilter(3), "bmp"),  # thin strokes, small image
]


@pytest.fixture(scope="module")
def shipped() -> set[str]:
    return set(read_manifest())


@pytest.mark.real_data
def test_pretrained_simple_cnn_reads_rendered_test_digits(real_root: Path, shipped: set[str], tmp_path: Path) -> None:
    """200 test digits as black-on-white files of several sizes, positions, strokes and formats: >= 95 % right."""
    if "simple_cnn" not in shipped:
        pytest.fail("checkpoints/pretrained/simple_cnn.ckpt is not shipped")
    _, _, (images, labels) = read_splits(real_root, download=False)
    for index in range(200):
        canvas, height, corner, stroke, suffix = STYLES[index % len(STYLES)]
        page = draw_on_paper(images[index, 0].numpy(), canvas, height, corner, stroke)
        page.save(tmp_path / f"{index:03d}_{labels[index]}.{suffix}")
    result = run_command(
        "mnist_cnn.predict", "ckpt_path=simple_cnn", f"inputs={tmp_path}", "output=predictions.json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((tmp_path / "predictions.json").read_text())
    assert len(rows) == 200
    right = [row for row in rows if row["digit"] == int(Path(row["file"]).stem.split("_")[1])]
    wrong = [row for row in rows if row not in right]
    assert len(right) >= 190, f"{len(right)} of 200 right"
    threshold = read_manifest()["simple_cnn"].uncertain_below  # the shipped model's own
    assert all(row["uncertain"] == (row["probability"] < threshold) for row in rows)
    assert sum(row["uncertain"] for row in wrong) >= len(wrong) / 2  # most mistakes are flagged
    assert sum(row["uncertain"] for row in right) <= 0.05 * len(right)  # few right answers on clean pages are


def test_predicting_never_imports_lightning(tmp_path: Path) -> None:
    draw_on_paper(np.eye(28, dtype=np.uint8) * 255, (60, 60), 40, (10, 10), None).save(tmp_path / "one.png")
    with refusing_imports("lightning") as asked:
        result = run_command("mnist_cnn.predict", "ckpt_path=lenet5", "inputs=one.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert asked == [] and "one.png" in result.stdout


def test_unreadable_and_missing_inputs_fail_alone(shipped: set[str], tmp_path: Path) -> None:
    digits = tmp_path / "digits"
    digits.mkdir()
    draw_on_paper(np.eye(28, dtype=np.uint8) * 255, (60, 60), 40, (10, 10), None).save(digits / "one.png")
    (digits / "broken.png").write_bytes(b"not an image")
    result = run_command(
        "mnist_cnn.predict",
        "ckpt_path=lenet5",
        f"inputs=[{digits},{tmp_path}/missing*.png]",
        "output=out.csv",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {digits / 'broken.png'}: not a readable image file: PNG, JPEG and BMP are read (UnidentifiedImageError)",
        f"error: {tmp_path}/missing*.png: no such file or folder, and no file matches it as a glob",
    ]
    assert f"{digits / 'one.png'}  " in result.stdout and "Traceback" not in result.stderr
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "file,digit,probability,uncertain,top_k,error" and len(lines) == 4
    good = lines[2].split(",")  # sorted: broken.png, one.png
    assert good[0].endswith("one.png") and good[1].isdigit() and 0 < float(good[2]) <= 1 and len(good[4].split()) == 3
    assert good[3] == str(float(good[2]) < read_manifest()["lenet5"].uncertain_below).lower()
    assert lines[1].split(",")[3] == ""  # an unreadable file has no answer to doubt


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("output=predictions.txt", "output=predictions.txt is not allowed: use a .csv or .json file name"),
        ("ckpt_path=nope", "ckpt_path=nope: no such file or directory, nor a shipped model name"),
        ("top_k=11", "top_k=11 is not allowed"),
    ],
)
def test_bad_options_stop_before_reading_anything(override: str, message: str, tmp_path: Path) -> None:
    result = run_command("mnist_cnn.predict", f"inputs={tmp_path}", override, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder, no file


def test_28x28_files_in_either_polarity_get_the_answers_of_their_arrays(fake_root: Path, tmp_path: Path) -> None:
    model = MNISTClassifier.from_pretrained("lenet5")
    _, _, (images, _) = read_splits(fake_root, val_size=100, download=False)
    stack = images[:20, 0].numpy()
    files = []
    for index, digit in enumerate(stack):
        for polarity, pixels in (("light", digit), ("dark", 255 - digit)):
            files.append(tmp_path / f"{index:02d}_{polarity}.png")
            Image.fromarray(pixels).save(files[-1])
    from_files = model.predict_images(files)
    expected = model.predict_images(stack).labels.tolist()
    assert from_files.labels[0::2].tolist() == expected and from_files.labels[1::2].tolist() == expected


def test_predict_images_takes_paths_pil_images_and_arrays(fake_root: Path, tmp_path: Path) -> None:
    model = MNISTClassifier.from_pretrained("lenet5")
    _, _, (images, labels) = read_splits(fake_root, val_size=100, download=False)
    stack = images[:40, 0].numpy()
    # (N, 28, 28) uint8 is MNIST-formatted already: the same answers as scoring the tensors directly
    predictions = model.predict_images(stack)
    expected = Evaluator(model, (images[:40], labels[:40])).probabilities
    np.testing.assert_allclose(predictions.probabilities, expected.numpy(), atol=1e-6)
    assert predictions.labels.tolist() == expected.argmax(dim=1).tolist()

    page = draw_on_paper(stack[0], (90, 90), 60, (12, 20), None)
    page.save(tmp_path / "digit.png")
    mixed = model.predict_images([tmp_path / "digit.png", page, np.asarray(page)])
    assert mixed.probabilities.shape == (3, 10)
    np.testing.assert_allclose(mixed.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert len(set(mixed.labels.tolist())) == 1  # one page, three ways in: one answer
    digits, probabilities = mixed.top_k(3)
    assert digits[:, 0].tolist() == mixed.labels.tolist() and (probabilities[:, :-1] >= probabilities[:, 1:]).all()
    np.testing.assert_array_equal(mixed.confidence, probabilities[:, 0])


@pytest.mark.parametrize("threshold", [UNCERTAIN_BELOW, 0.97])
def test_an_answer_below_the_threshold_is_flagged_uncertain(threshold: float) -> None:
    sure, torn = np.eye(10)[3], np.array([0.0, 0.5, 0.45, 0, 0, 0, 0, 0, 0.05, 0])
    at, under = np.full(10, (1 - threshold) / 9), np.full(10, (1 - threshold + 0.01) / 9)
    at[7], under[7] = threshold, threshold - 0.01
    predictions = Predictions(np.array([3, 1, 7, 7]), np.stack([sure, torn, at, under]), threshold)
    np.testing.assert_allclose(predictions.confidence, [1.0, 0.5, threshold, threshold - 0.01])
    assert predictions.uncertain.tolist() == [False, True, False, True]
    labels, probabilities = predictions  # still the two arrays it always was
    assert labels is predictions.labels and probabilities is predictions.probabilities
    assert predictions[0] is predictions.labels and predictions[-1] is predictions.probabilities


def test_shipped_models_flag_below_their_own_threshold_and_other_checkpoints_below_the_default(
    fake_root: Path, tmp_path: Path
) -> None:
    shipped = MNISTClassifier.from_pretrained("lenet5")
    threshold = read_manifest()["lenet5"].uncertain_below
    assert threshold is not None and threshold != UNCERTAIN_BELOW and shipped.uncertain_below == threshold
    _, _, (images, _) = read_splits(fake_root, val_size=100, download=False)
    assert shipped.predict_images(images[:5, 0].numpy()).uncertain_below == threshold
    assert load_network(resolve_checkpoint("lenet5")).uncertain_below == threshold  # the CLI's and server's path
    copy = tmp_path / "lenet5_copy.ckpt"  # the same weights, but not the shipped file
    copy.write_bytes(resolve_checkpoint("lenet5").read_bytes())
    assert MNISTClassifier.load(copy).predict_images(images[:5, 0].numpy()).uncertain_below == UNCERTAIN_BELOW
    assert not hasattr(load_network(copy), "uncertain_below")


def test_a_decompression_bomb_is_refused_from_its_header_and_the_other_images_still_classified(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(decompression_bomb())  # 30,000 x 30,000 pixels in under 1 MB
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    draw_on_paper(np.eye(28, dtype=np.uint8) * 255, (60, 60), 40, (10, 10), None).save(tmp_path / "good.png")
    result = run_command("mnist_cnn.predict", "ckpt_path=lenet5", f"inputs={tmp_path}", "output=out.csv", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'bomb.png'}: the image claims 900,000,000 pixels, more than the {MAX_PIXELS:,} allowed "
        "(max_pixels)"
    ]
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[2].startswith(f"{tmp_path / 'good.png'},") and rows[2].split(",")[1].isdigit()
    small = run_command("mnist_cnn.predict", "ckpt_path=lenet5", f"inputs={tmp_path / 'good.png'}", "max_pixels=100",
                    cwd=tmp_path)  # fmt: skip
    assert small.returncode == 1 and "is 60 × 60 pixels, more than the 100 allowed (max_pixels)" in small.stderr
