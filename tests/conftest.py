"""Shared fixtures: small generated idx datasets, one tiny trained run, the real dataset when present."""

from __future__ import annotations

import functools
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from helpers.cli import run_command
from PIL import Image, ImageDraw, ImageFont

from mnist_cnn.data.files import FILES
from mnist_cnn.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
FAKE_TRAIN_IMAGES = 600  # in ``fake_root``


def write_fake_mnist(root: Path, num_train: int = FAKE_TRAIN_IMAGES, num_test: int = 200, seed: int = 0) -> Path:
    """Write a tiny MNIST in torchvision's layout: each digit is a bright square at its own position, on a black
    field with grey speckles."""
    generator = torch.Generator().manual_seed(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("test", num_test)):
        labels = torch.arange(count) % 10
        speckle = torch.randint(0, 60, (count, 28, 28), generator=generator, dtype=torch.uint8)
        images = speckle * (torch.rand(count, 28, 28, generator=generator) < 0.3)  # a black field, as MNIST's
        for index, label in enumerate(labels.tolist()):
            row, col = 4 + 6 * (label // 4), 4 + 6 * (label % 4)
            images[index, row : row + 5, col : col + 5] = 255
        images_name, labels_name = FILES[split]
        write_idx(raw / images_name, images)
        write_idx(raw / labels_name, labels)
    return root


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding a 600/200-image MNIST; use ``data.val_size=100`` with it."""
    return write_fake_mnist(tmp_path_factory.mktemp("fake_mnist"))


@pytest.fixture(scope="session")
def trained_run(fake_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run dir of a tiny ``python -m mnist_cnn.train model=lenet5`` on ``fake_root`` (one epoch of 3 steps,
    validated, not tested), as training leaves it: best.ckpt, last.ckpt, result.json, the report. Shared by every
    test that needs a trained run: copy it before changing anything in it."""
    cwd = tmp_path_factory.mktemp("trained")
    tiny = ("model=lenet5", "trainer.max_epochs=1", "trainer.limit_train_batches=3", "data.val_size=100", "test=false")
    result = run_command("mnist_cnn.train", *tiny, cwd=cwd, data_root=fake_root)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (cwd / "checkpoints" / "lenet5").iterdir()
    return run_dir


def find_real_root() -> Path | None:
    """The real MNIST root ($MNIST_DATA_DIR or ../shared/data beside the repo), or None when absent."""
    for candidate in (os.environ.get("MNIST_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and all(
            (Path(candidate) / "MNIST" / "raw" / name).is_file() for pair in FILES.values() for name in pair
        ):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real MNIST root; skips when absent."""
    root = find_real_root()
    if root is None:
        pytest.skip("real MNIST files not found: set MNIST_DATA_DIR to a folder holding MNIST/raw/")
    return root


class Digit(NamedTuple):
    pixels: np.ndarray  # (28, 28) uint8, MNIST-formatted
    png: bytes  # the digit drawn black on 280×280 white paper, as on the serve page's canvas
    label: int


@pytest.fixture(scope="session")
def confident_digits() -> list[Digit]:
    """Digits that the most accurate shipped model classifies right, with probability > 0.99, from their PNG: real
    test digits when the real MNIST files are present, else the ten digits written in Pillow's default font."""
    from benchmarks.drawing import paper_png
    from mnist_cnn.data.files import read_test_split
    from mnist_cnn.inference.predict import predict_images
    from mnist_cnn.preprocess.images import to_mnist
    from mnist_cnn.weights.checkpoints import load_network
    from mnist_cnn.weights.manifest import most_accurate
    from mnist_cnn.weights.resolve import resolve_checkpoint

    root = find_real_root()
    if root is not None:
        images, labels = read_test_split(root)
        candidates = list(zip(images[:60, 0].numpy(), labels[:60].tolist()))
    else:
        font = ImageFont.load_default(size=150)
        candidates = []
        for label in range(10):
            page = Image.new("L", (200, 200), 255)
            ImageDraw.Draw(page).text((100, 100), str(label), fill=0, font=font, anchor="mm")
            candidates.append((to_mnist(page), label))
    pngs = [paper_png(pixels) for pixels, _ in candidates]
    predictions = predict_images(load_network(resolve_checkpoint(most_accurate())), pngs)
    return [
        Digit(pixels, png, label)
        for (pixels, label), png, answer, probability in zip(
            candidates, pngs, predictions.labels, predictions.probabilities.max(axis=1)
        )
        if answer == label and probability > 0.99
    ]


@functools.cache  # compressing 900 MB of pixels takes seconds: once per process
def decompression_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid grayscale PNG of ``width`` × ``height`` black pixels that compresses to under 1 MB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor, row = zlib.compressobj(9), b"\x00" * (width + 1)  # each row: filter byte 0, then the pixels
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
