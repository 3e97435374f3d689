"""Training corruptions (mnist_cnn/data/corrupt.py) and the standardisation of pixels that predict applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnist_cnn.data.corrupt import CORRUPTIONS, KINDS, random_corruption
from mnist_cnn.data.options import Corruption
from mnist_cnn.data.pixels import ink_is_dark, median_above_black, standardize


@pytest.fixture
def digits() -> torch.Tensor:
    """Sixteen white strokes on black: a vertical bar and a ring, at a few positions, in [0, 1]."""
    torch.manual_seed(0)
    images = torch.zeros(16, 1, 28, 28)
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    for index in range(16):
        centre = 10.0 + index % 8
        ring = ((rows - 14) ** 2 + (cols - centre) ** 2).sqrt()
        images[index, 0] = ((ring - 6).abs() < 1.5).float() if index % 2 else ((cols - centre).abs() < 1.5).float()
        images[index, 0, :4] = 0  # the top rows stay black, as MNIST's do
    return images


def test_no_corruption_leaves_the_batch_itself(digits: torch.Tensor) -> None:
    assert random_corruption(digits, Corruption(0.0)) is digits
    assert random_corruption(digits, Corruption(0.01)) is digits  # round(0.01 * 16) = 0 images


def test_the_batch_s_last_share_is_corrupted_and_the_rest_left_alone(digits: torch.Tensor) -> None:
    out = random_corruption(digits, Corruption(0.5))
    changed = (out != digits).flatten(1).any(dim=1)
    assert changed[8:].all() and not changed[:8].any()
    assert out.min() >= 0 and out.max() <= 1 and out.shape == digits.shape


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_every_digit_and_stays_in_range(kind: str, digits: torch.Tensor) -> None:
    out = CORRUPTIONS[kind](digits).clamp(0, 1)
    assert out.shape == digits.shape and out.dtype == digits.dtype
    assert (out != digits).flatten(1).any(dim=1).all(), kind


def test_lines_only_add_ink_and_inversion_turns_a_region_over(digits: torch.Tensor) -> None:
    assert (CORRUPTIONS["lines"](digits) >= digits).all()
    inverted = CORRUPTIONS["inversion"](digits)
    turned = torch.isclose(inverted, 1 - digits) & (digits != 0.5)
    assert (turned | (inverted == digits)).all() and turned.flatten(1).any(dim=1).all()


def test_edges_leave_a_binary_outline_within_a_pixel_of_the_strokes(digits: torch.Tensor) -> None:
    outline = CORRUPTIONS["edges"](digits)
    assert set(outline.unique().tolist()) <= {0.0, 1.0}
    near = torch.nn.functional.max_pool2d(digits, 3, stride=1, padding=1) > 0
    assert not (outline.bool() & ~near).any()


def test_mnist_style_digits_pass_standardisation_unchanged(digits: torch.Tensor) -> None:
    assert torch.equal(standardize(digits), digits)
    uint8 = (digits * 255).to(torch.uint8)
    assert torch.equal(standardize(uint8), uint8.float() / 255)


@pytest.mark.parametrize("shape", [(200, 1, 28, 28), (200, 1, 14, 28), (200, 7, 7), (200, 5)])
def test_counting_finds_the_images_whose_median_pixel_is_above_black(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    share_of_ink = torch.rand(shape[0]).view(-1, *[1] * (len(shape) - 1))  # about half the images mostly ink
    images = torch.rand(shape) * (torch.rand(shape) < share_of_ink)
    expected = images.flatten(1).median(dim=1).values > 0
    assert expected.any() and not expected.all()
    assert torch.equal(median_above_black(images), expected)


def test_a_batch_of_every_kind_is_standardised_image_by_image(digits: torch.Tensor) -> None:
    paper, lifted = 0.8 - 0.6 * digits, 0.3 + 0.7 * digits
    mixed = torch.cat([digits[:4], paper[4:8], lifted[8:12], digits[12:]])
    alone = torch.cat([standardize(image[None]) for image in mixed])
    assert torch.equal(standardize(mixed), alone)
    assert torch.equal(standardize(mixed)[:4], digits[:4])


def test_dark_ink_on_light_paper_is_turned_into_light_ink_on_black(digits: torch.Tensor) -> None:
    paper = 0.8 - 0.6 * digits  # dark grey ink on light grey paper
    assert ink_is_dark(paper).all()
    np.testing.assert_allclose(standardize(paper).numpy(), digits.numpy(), atol=1e-5)


def test_bright_bands_at_two_sides_do_not_turn_a_digit_over(digits: torch.Tensor) -> None:
    striped = digits.clone()
    striped[..., :7], striped[..., 21:] = 1 - striped[..., :7], 1 - striped[..., 21:]
    assert not ink_is_dark(striped).any()
    assert torch.equal(standardize(striped), striped)  # nothing to lift: the middle is black


def test_a_lifted_background_is_brought_down_to_black(digits: torch.Tensor) -> None:
    brightened = (digits + 0.4).clamp(max=1)
    assert not ink_is_dark(brightened).any()
    np.testing.assert_allclose(standardize(brightened).numpy(), digits.numpy(), atol=1e-5)


@pytest.mark.real_data
def test_shipped_model_reads_dark_on_white_test_arrays_and_mnist_s_own_as_before(real_root) -> None:
    from mnist_cnn import Evaluator, MNISTClassifier, normalize, read_test_split

    images, labels = read_test_split(real_root, download=False)
    pixels, labels = images[:2000, 0].numpy(), labels[:2000].numpy()
    model = MNISTClassifier.from_pretrained("simple_cnn")
    with torch.inference_mode():
        as_before = model(normalize(torch.from_numpy(pixels).unsqueeze(1))).argmax(dim=1).numpy()
    assert np.array_equal(model.predict(pixels).argmax(axis=1), as_before)  # MNIST's arrays: the same answers
    dark_on_white = 255 - pixels
    assert (model.predict(dark_on_white).argmax(axis=1) == labels).mean() >= 0.99
    assert (model.predict_images(dark_on_white / 255.0).labels == labels).mean() >= 0.99
    assert Evaluator(model, (dark_on_white, labels)).evaluate()["accuracy"] >= 0.99
