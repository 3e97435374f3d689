"""The data's options as typed objects, each with its default and its range, written once: the config schema
takes them (``Loading``'s as ``data.<setting>``; ``data.augment``, ``data.degrade``, ``data.corrupt`` nested),
``MNISTDataModule`` takes them and so do the functions that apply them (``mnist_cnn.data.augment``,
``mnist_cnn.data.corrupt``). A value out of range is refused when the object is made (``mnist_cnn.rules``).

Not frozen: OmegaConf makes a frozen dataclass a read-only config node, which command-line overrides could not
change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from mnist_cnn.rules import FRACTION, NON_NEGATIVE, POSITIVE, PROBABILITY, allowed, between, check_fields, number


class Checked:
    """Refuses, when made, a value that its field's rule does not allow."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class Loading(Checked):
    """Where MNIST's files are, and how its images are split and batched."""

    # Optional[str] rather than "str | None": OmegaConf 2.3 understands only the former.
    root: Optional[str] = None  # None: $MNIST_DATA_DIR, else ./data; the files in <root>/MNIST/raw/
    download: bool = True  # through torchvision, when the files are missing
    batch_size: int = allowed(64, POSITIVE)  # training batches
    eval_batch_size: int = allowed(256, POSITIVE)  # validation and test batches; 1024 scored half as fast on a CPU
    val_size: int = allowed(
        5000, number(lambda value: value >= 0, "a number >= 0 (0 trains on all 60,000 images, without validation)")
    )  # held out of the 60,000 training images
    split_seed: int = 42  # fixes which images are held out, whatever the run's seed
    on_device: bool = True  # the whole dataset on the GPU when training on one


@dataclass
class Augmentation(Checked):
    """Per-image random distortion of the training digits: rotation, shift and zoom, then, if ``elastic_alpha`` > 0,
    an elastic warp (Simard et al. 2003)."""

    rotation_degrees: float = allowed(10.0, between(0, 180, "a number of degrees in [0, 180]"))
    shift_fraction: float = allowed(0.1, FRACTION)  # of the image's side
    zoom_fraction: float = allowed(0.1, FRACTION)  # in or out
    elastic_alpha: float = allowed(0.0, NON_NEGATIVE)  # warp strength in pixels (Simard et al.: 34); 0: off
    elastic_sigma: float = allowed(4.0, POSITIVE)  # smoothness of the warp: Gaussian std in pixels


@dataclass
class Degradation(Checked):
    """Training digits made to look photographed or scanned: a ``probability`` share of them gets each degradation at
    its own random strength up to the bound given; a bound at its default (28 for ``min_resolution``) is off."""

    probability: float = allowed(0.0, PROBABILITY)  # share of the training images degraded
    stroke_width: float = allowed(0.0, between(0, 1, "a number of pixels in [0, 1]"))  # thicker or thinner by up to
    min_resolution: int = allowed(28, between(4, 28, "a whole number of pixels in [4, 28]"))  # scanned at this to 28
    blur_sigma: float = allowed(0.0, NON_NEGATIVE)  # Gaussian blur, std in pixels
    contrast: float = allowed(0.0, FRACTION)  # the range squeezed by up to this share and lifted off black
    noise_std: float = allowed(0.0, NON_NEGATIVE)  # Gaussian noise, std as a share of full ink
    impulse_fraction: float = allowed(0.0, FRACTION)  # salt and pepper on up to this share of the pixels


@dataclass
class Corruption(Checked):
    """Training digits damaged (``mnist_cnn.data.corrupt``: noise, blur, blots, lines, inverted bands, outlines only,
    lighting, strong affine): a ``probability`` share of them, each by one kind at a random strength."""

    probability: float = allowed(0.0, PROBABILITY)  # share of the training images corrupted
