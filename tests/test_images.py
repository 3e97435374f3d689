"""MNIST preprocessing of a user's images: polarity, crop, 20×20 fit, centre of mass, file reading."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageDraw

from benchmarks.corruptions import photograph
from mnist_cnn.inference.predict import predict_images
from mnist_cnn.preprocess.images import ImageError, image_files, open_grayscale, to_mnist
from mnist_cnn.preprocess.ink import otsu_threshold
from mnist_cnn.weights.checkpoints import load_network
from mnist_cnn.weights.manifest import most_accurate
from mnist_cnn.weights.resolve import resolve_checkpoint


def _centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(pixels.shape)
    mass = pixels.sum()
    return (rows * pixels).sum() / mass, (cols * pixels).sum() / mass


def _ink_box(pixels: np.ndarray, level: int = 128) -> tuple[int, int]:
    rows, cols = np.nonzero(pixels > level)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def _encoded(image: Image.Image, kind: str = "PNG", **options: object) -> bytes:
    """``image`` as the bytes of a ``kind`` file."""
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def _bar_on_paper(
    size: tuple[int, int] = (300, 200), box: tuple[int, int, int, int] = (30, 40, 70, 140)
) -> Image.Image:
    """Black ink (a 40×100 bar) on white paper, off centre."""
    image = Image.new("L", size, 255)
    image.paste(0, box)
    return image


def test_dark_ink_on_paper_becomes_white_on_black_fitted_and_centred() -> None:
    pixels = to_mnist(_bar_on_paper())
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    assert pixels[0, 0] == 0 and pixels.max() == 255  # inverted: the paper is black, the ink white
    height, width = _ink_box(pixels)
    assert height == 20 and width == 8  # the longer side fills the 20-pixel box; the 2:5 aspect ratio is kept
    row, col = _centre_of_mass(pixels.astype(float))
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


def test_light_ink_on_dark_background_is_not_inverted() -> None:
    dark = Image.eval(_bar_on_paper(), lambda value: 255 - value)
    np.testing.assert_array_equal(to_mnist(dark), to_mnist(_bar_on_paper()))


def test_transparent_background_counts_as_paper() -> None:
    ink = np.zeros((120, 120, 4), dtype=np.uint8)
    ink[30:90, 50:70, 3] = 255  # opaque black bar on a fully transparent (black, alpha 0) field
    expected = np.zeros((120, 120), dtype=np.uint8) + 255
    expected[30:90, 50:70] = 0
    np.testing.assert_array_equal(to_mnist(Image.fromarray(ink, "RGBA")), to_mnist(Image.fromarray(expected)))


def test_arrays_of_any_kind_match_the_pil_image() -> None:
    paper = _bar_on_paper()
    expected = to_mnist(paper)
    gray = np.asarray(paper)
    np.testing.assert_array_equal(to_mnist(gray), expected)
    np.testing.assert_array_equal(to_mnist(gray / 255.0), expected)
    np.testing.assert_array_equal(to_mnist(np.stack([gray] * 3, axis=-1)), expected)


def test_a_28x28_array_is_taken_as_mnist_formatted() -> None:
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[2:6, 2:6] = 200  # off centre: preprocessing would move it
    np.testing.assert_array_equal(to_mnist(digit), digit)
    np.testing.assert_array_equal(to_mnist(digit / 255.0), digit)  # float pixels in 0-1: the same image


def test_a_28x28_image_file_is_taken_as_mnist_formatted_in_either_polarity() -> None:
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[2:6, 2:6] = 200  # off centre: preprocessing would move it
    np.testing.assert_array_equal(to_mnist(_encoded(Image.fromarray(digit))), digit)
    np.testing.assert_array_equal(to_mnist(_encoded(Image.fromarray(255 - digit))), 255 - digit)  # the model inverts it
    np.testing.assert_array_equal(to_mnist(Image.fromarray(digit).convert("RGB")), digit)
    jpeg = _encoded(Image.fromarray(digit), "JPEG", quality=95)
    np.testing.assert_array_equal(to_mnist(jpeg), np.asarray(Image.open(io.BytesIO(jpeg))))  # decoded, not refitted


@pytest.mark.parametrize(
    "image",
    [Image.new("L", (28, 28), 0), Image.new("L", (28, 28), 255), Image.new("RGBA", (28, 28), (255, 255, 255, 0))],
    ids=["black", "white", "transparent"],
)
def test_a_blank_28x28_image_is_refused_as_holding_no_digit(image: Image.Image) -> None:
    with pytest.raises(ValueError, match="^the image holds no digit: it is blank or has no contrast$"):
        to_mnist(_encoded(image))


def test_an_image_narrower_than_a_digit_is_refused_saying_its_size() -> None:
    with pytest.raises(ImageError, match="^the image is 7 × 40 pixels: a digit needs at least 8 pixels a side$"):
        to_mnist(Image.new("L", (7, 40), 255))
    with pytest.raises(ImageError, match="^the image is 40 × 7 pixels: a digit needs at least 8 pixels a side$"):
        to_mnist(np.full((7, 40), 255, dtype=np.uint8))
    with pytest.raises(ImageError) as error:
        to_mnist(_encoded(Image.new("L", (16, 4000), 255)))
    assert str(error.value) == (
        "the image is 16 × 4,000 pixels: a digit needs at least 8 pixels a side once its long side is reduced to 1,024"
    )
    assert to_mnist(_bar_on_paper((8, 60), (2, 10, 6, 50))).max() == 255  # 8 pixels a side are enough


def test_a_blank_image_is_refused() -> None:
    with pytest.raises(ValueError, match="no digit"):
        to_mnist(Image.new("L", (50, 50), 255))


def test_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "digit.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image file"):
        to_mnist(broken)


def test_inputs_expand_files_folders_and_globs(tmp_path: Path) -> None:
    for name in ("a.png", "b.JPG", "notes.txt", "deeper/c.bmp"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in image_files(str(tmp_path))] == ["a.png", "b.JPG", "c.bmp"]
    assert [path.name for path in image_files(str(tmp_path / "*.png"))] == ["a.png"]
    assert image_files(str(tmp_path / "notes.txt")) == [tmp_path / "notes.txt"]  # named explicitly: tried
    assert image_files(str(tmp_path / "missing*.png")) == []


def _seven(size: tuple[int, int] = (320, 240), corner: tuple[int, int] = (120, 60)) -> np.ndarray:
    """Ink coverage (float, 1 = ink) of a hand-drawn-looking "7", 12-pixel strokes, 110 pixels tall."""
    page = Image.new("L", size, 0)
    x, y = corner
    ImageDraw.Draw(page).line([(x, y), (x + 70, y + 5), (x + 30, y + 110)], fill=255, width=12, joint="curve")
    return np.asarray(page, dtype=np.float32) / 255


@pytest.mark.parametrize(
    "conditions",
    [
        {"paper": 170.0, "pen": 70.0},
        {"paper": 170.0, "pen": 70.0, "light": 40.0},
        {"paper": 170.0, "pen": 70.0, "noise": 15.0},
        {"paper": 170.0, "pen": 70.0, "light": 30.0, "noise": 12.0, "blur": 1.0, "jpeg": 40},
        {"paper": 100.0, "pen": 30.0},  # dim light: the paper itself is darker than mid-grey
    ],
    ids=["grey paper", "uneven light", "noise", "phone photo", "dark paper"],
)
def test_a_photographed_digit_comes_out_as_its_clean_scan(conditions: dict) -> None:
    """Paper, shading and sensor noise are not ink: the digit fills the box as the clean scan's does."""
    clean = to_mnist(photograph(_seven(), np.random.default_rng(0)))
    photo = to_mnist(photograph(_seven(), np.random.default_rng(1), **conditions))
    assert _ink_box(photo) == _ink_box(clean) == (20, 13)
    assert photo[:4].max() == 0 and photo[:, :4].max() == 0  # the field around the digit is black
    assert np.abs(photo.astype(int) - clean).mean() < 8  # of 255


def test_dust_away_from_the_digit_is_not_part_of_it() -> None:
    ink = _seven()
    clean = to_mnist(photograph(ink, np.random.default_rng(0)))
    for row, col in [(10, 10), (200, 300), (30, 290)]:
        ink[row : row + 3, col : col + 3] = 1.0  # specks far smaller than the digit
    np.testing.assert_array_equal(to_mnist(photograph(ink, np.random.default_rng(0))), clean)


def test_strokes_keep_their_grey_levels() -> None:
    page = np.full((120, 160), 255, dtype=np.uint8)
    page[20:100, 40:60] = 0  # black ink
    page[20:100, 100:120] = 128  # a pencil half as dark
    pixels = to_mnist(page)
    black, pencil = pixels[pixels > 0].max(), np.median(pixels[:, 14:][pixels[:, 14:] > 0])
    assert black == 255 and 110 < pencil < 145


NOISE = {
    "page": np.clip(np.random.default_rng(0).normal(170, 15, (240, 320)), 0, 255).astype(np.uint8),
    # a long strip: the paper's fit samples one row of it, which leaves some of its terms undetermined
    "strip": np.random.default_rng(0).integers(0, 256, (16, 1024)).astype(np.uint8),
}


@pytest.mark.parametrize("kind", NOISE)
def test_a_page_of_noise_alone_is_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="the image holds no digit: it is blank or has no contrast"):
        to_mnist(_encoded(Image.fromarray(NOISE[kind])))


def test_otsu_splits_two_levels_between_them() -> None:
    paper, ink = np.random.default_rng(0).normal(10, 2, 900), np.random.default_rng(1).normal(90, 5, 100)
    threshold = otsu_threshold(np.concatenate([paper, ink]))
    assert paper.max() <= threshold < ink.min()


def test_only_png_jpeg_and_bmp_files_are_read_and_none_starts_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 1 600000000 {pop} for showpage\n"
    assert Image.open(io.BytesIO(eps)).format == "EPS"  # Pillow itself would open it, and render it with Ghostscript
    started = []
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs")  # as where Ghostscript is installed
    monkeypatch.setattr(subprocess, "Popen", lambda *args, **kwargs: started.append(args))
    page = Image.new("L", (28, 28), 255)
    for name, kind in (("digit.eps", None), ("digit.gif", "GIF"), ("digit.tiff", "TIFF"), ("digit.webp", "WEBP")):
        if kind is None:
            (tmp_path / name).write_bytes(eps)
        else:
            page.save(tmp_path / name, kind)
        with pytest.raises(ImageError, match="not a readable image file: PNG, JPEG and BMP are read"):
            to_mnist(tmp_path / name)
    assert started == []


@pytest.mark.parametrize(
    ("kind", "size", "read"), [("JPEG", (4000, 3000), (1024, 768)), ("PNG", (3000, 2000), (1024, 683))]
)
def test_a_large_image_is_reduced_while_it_is_decoded(kind: str, size: tuple[int, int], read: tuple[int, int]) -> None:
    page = Image.new("L", size, 255)
    ImageDraw.Draw(page).line([(size[0] // 3, size[1] // 4), (size[0] // 2, 3 * size[1] // 4)], fill=0, width=80)
    file = _encoded(page, kind)
    assert open_grayscale(file).size == read
    assert _ink_box(to_mnist(file))[0] == 20  # the stroke, fitted to the box


def test_a_clean_drawing_reads_as_the_same_digit_as_through_the_paper_fit(confident_digits: list) -> None:
    """A clean image (flat paper: a drawing) is read on a reduced copy without a paper fit; the same image with one
    border pixel off the paper's level goes through the full fit at full size: both are the same digit."""
    network = load_network(resolve_checkpoint(most_accurate()))
    clean, fitted = [], []
    for digit in confident_digits:
        page = np.asarray(Image.open(io.BytesIO(digit.png)).convert("L")).copy()
        clean.append(to_mnist(page))
        page[0, 0] -= 1  # the border no longer one level
        fitted.append(to_mnist(page))
    labels = [digit.label for digit in confident_digits]
    assert predict_images(network, np.stack(clean)).labels.tolist() == labels
    assert predict_images(network, np.stack(fitted)).labels.tolist() == labels
    assert np.abs(np.stack(clean).astype(int) - np.stack(fitted)).mean() < 8  # of 255, as a photo of it


def test_a_16_bit_grey_png_is_read_as_the_same_picture_in_8_bits(confident_digits: list) -> None:
    """A scanner's 16-bit grey PNG (every level times 257) gives the grey levels, and the digit, of its 8-bit copy."""
    page = np.asarray(Image.open(io.BytesIO(confident_digits[0].png)).convert("L"))
    sixteen_bit = _encoded(Image.fromarray(page.astype(np.uint16) * 257))
    assert Image.open(io.BytesIO(sixteen_bit)).mode == "I;16"
    np.testing.assert_array_equal(np.asarray(open_grayscale(sixteen_bit)), page)
    np.testing.assert_array_equal(to_mnist(sixteen_bit), to_mnist(_encoded(Image.fromarray(page))))
