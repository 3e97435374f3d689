"""The robustness benchmark: its conditions do what they say, it runs end to end, and the shipped models read
photo-like renderings of real test digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli import run_command
from PIL import Image, ImageDraw

from benchmarks import corruptions
from benchmarks.robustness import chosen_thresholds, mnist_c_table, render_condition, score_mnist_c
from mnist_cnn.data.files import read_test_split
from mnist_cnn.inference.classify import choose_uncertain_below, classify
from mnist_cnn.weights.checkpoints import load_network
from mnist_cnn.weights.manifest import read_manifest
from mnist_cnn.weights.resolve import resolve_checkpoint


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    """A 28×28 uint8 "7", white on black, 3-pixel strokes, in MNIST's 20×20 box."""
    field = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(field).line([(6, 5), (21, 6), (12, 24)], fill=255, width=3)
    return np.asarray(field)


def _ink_box(pixels: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(pixels)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.mark.parametrize("name", [*corruptions.PHOTOS, *corruptions.MNIST_C])
def test_every_condition_is_fixed_by_its_seed(name: str, digit: np.ndarray) -> None:
    condition = corruptions.PHOTOS.get(name) or corruptions.MNIST_C[name]
    first, again = condition(digit, np.random.default_rng(0)), condition(digit, np.random.default_rng(0))
    np.testing.assert_array_equal(first, again)
    if name in corruptions.PHOTOS:
        assert first.dtype == np.uint8 and first.ndim == 2 and np.median(first) > first.min() + 50  # ink on paper
    else:
        assert first.shape == (28, 28) and 0 <= first.min() and first.max() <= 1
        assert not np.allclose(first, digit / 255)


def test_photos_have_the_paper_light_and_noise_they_name(digit: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    grey = corruptions.grey_paper(digit, rng)
    assert 120 <= np.median(grey) <= 200
    lit = corruptions.uneven_light(digit, rng).astype(float)
    sides = [lit[:, :20].mean(), lit[:, -20:].mean(), lit[:20].mean(), lit[-20:].mean()]
    assert max(sides) - min(sides) > 30  # brighter on one side than the other
    noisy = corruptions.noise(15.0)(digit, rng).astype(float)
    assert 13 < noisy[:20, :20].std() < 17  # the corner is paper: what varies there is the noise
    assert corruptions.low_resolution(digit, rng).shape == (240, 320)  # a 40×30 scan, enlarged 8 times


def test_mnist_c_corruptions_do_what_the_paper_describes(digit: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    pixels = digit / 255
    assert corruptions.brightness(digit, rng).min() >= 0.49
    striped = corruptions.stripe(digit, rng)
    np.testing.assert_allclose(striped[:, :7], 1 - pixels[:, :7])
    np.testing.assert_allclose(striped[:, 7:21], pixels[:, 7:21])
    height, width = _ink_box(digit)
    small_height, small_width = _ink_box(corruptions.scale(digit, rng) > 0.1)
    assert abs(small_height - 0.7 * height) <= 2 and abs(small_width - 0.7 * width) <= 2
    assert corruptions.shot_noise(digit, rng)[digit == 0].max() == 0  # no light, no photons
    salted = corruptions.impulse_noise(digit, rng)
    assert 0.05 < (salted != pixels).mean() < 0.17 and set(np.unique(salted[salted != pixels])) <= {0.0, 1.0}
    edges = corruptions.canny_edges(digit, rng)
    assert set(np.unique(edges)) == {0.0, 1.0} and edges[pixels == 0].sum() > edges[pixels == 1].sum()


def test_the_threshold_chosen_is_the_highest_that_flags_at_most_the_allowed_share_of_right_answers() -> None:
    right = np.array([0.905, 0.955, *[0.999] * 98])  # probabilities of a model's right answers
    assert choose_uncertain_below(right, allowed=0.01) == 0.95  # 0.96 would flag two of 100
    assert choose_uncertain_below(right, allowed=0.02) == 0.99  # 1.0 is never a threshold
    assert choose_uncertain_below(np.full(10, 0.3), allowed=0.01) == 0.5  # nothing allowed: the lowest


def test_on_validation_digits_the_bench_shows_the_threshold_each_model_would_get() -> None:
    models = {
        name: {
            "confidence": [np.array([0.3, 0.6, 0.95, 0.99])],
            "right": [np.array([False, False, True, False])],
            "unaltered_confidence": np.array([*[0.955] * (flagged + 1), *[0.999] * (199 - flagged)]),
            "unaltered_right": np.ones(200, dtype=bool),
        }
        for name, flagged in (("sure", 0), ("unsure", 10))
    }
    lines = chosen_thresholds({"models": models})
    # "sure": 0.99 flags one right answer of 200 (<= 1.5 %); "unsure" has 11 at 0.955: 0.95 flags none
    assert lines[2:] == ["| sure | 0.99 | 0.50% | 66.7% |", "| unsure | 0.95 | 0.00% | 66.7% |"]


@pytest.mark.slow  # renders the conditions in a pool of processes
def test_bench_robustness_scores_every_shipped_model_and_draws_the_sheet(fake_root: Path, tmp_path: Path) -> None:
    out, sheet = tmp_path / "robustness.json", tmp_path / "sheet.png"
    args = ("--robustness", "--count", "3", "--root", str(fake_root), "--json", str(out), "--sheet", str(sheet))
    result = run_command("benchmarks", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    assert set(results["models"]) == set(read_manifest()) and results["count"] == 3
    names = {f"{group}/{name}" for name, group in results["conditions"]}
    assert len(names) == len(corruptions.PHOTOS) + len(corruptions.MNIST_C)
    for model in results["models"].values():
        assert set(model["accuracy"]) == names and all(0 <= value <= 1 for value in model["accuracy"].values())
        assert set(model["group_mean"]) == {"photo-like", "other photos", "MNIST-C"}
    assert "| condition | custom_cnn |" in result.stdout and "*mean, MNIST-C*" in result.stdout
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.height > image.width  # a row per condition


@pytest.mark.slow  # every photo-like condition rendered and read
@pytest.mark.real_data
def test_the_best_shipped_model_reads_photo_like_test_digits(real_root: Path) -> None:
    """40 test digits under each photo-like condition, through the preprocessing: >= 97 % right."""
    images, labels = read_test_split(real_root, download=False)
    digits, labels = images[:40, 0].numpy(), labels[:40].numpy()
    best = max(read_manifest().items(), key=lambda item: item[1].test_acc)[0]
    model = load_network(resolve_checkpoint(best))
    right = []
    for name in corruptions.PHOTO_LIKE:
        (condition,) = render_condition(("photo", name), digits, seed=0)
        predictions = classify(model, torch.from_numpy(condition.pixels).unsqueeze(1))
        right.append((predictions.labels == labels) & ~condition.refused)
    accuracy = np.concatenate(right).mean()
    assert accuracy >= 0.97, f"{best}: {accuracy:.1%} of photo-like renderings right"


def test_mnist_c_file_is_scored_per_corruption_with_the_mean_over_the_corruptions_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(20, dtype=np.uint8) % 10
    clean = np.where(rng.random((20, 28, 28)) < 0.2, 255, 0).astype(np.uint8)
    path = tmp_path / "mnist_c.npz"
    np.savez(path, labels=labels, identity=clean, stripe=clean, canny_edges=np.zeros_like(clean))
    results = score_mnist_c(path, ["lenet5"])
    accuracy = results["models"]["lenet5"]["accuracy"]
    assert list(accuracy) == ["identity", "stripe", "canny_edges"] and results["count"] == 20
    assert accuracy["stripe"] == accuracy["identity"]  # the same arrays score the same
    assert results["models"]["lenet5"]["mean"] == pytest.approx((accuracy["stripe"] + accuracy["canny_edges"]) / 2)
    table = mnist_c_table(results).splitlines()
    assert table[0] == "| MNIST-C | lenet5 |" and table[2].startswith("| clean (not in the mean) |")
    assert table[-1].startswith("| *mean over the corruptions* |") and "| canny edges |" in table[4]
