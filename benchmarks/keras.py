"""Pipeline (d), the original stack: the four architectures written in Keras 3 and trained with ``model.fit`` on
TensorFlow, on the same in-memory arrays and settings as this project's pipeline (c).

Each Keras model has the layers of its ``mnist_cnn.models`` namesake, in Keras' channels-last layout, and the
same number of trainable parameters (tests/test_bench.py checks them against ``count_parameters``). Needs the
``keras`` extra: ``pip install "mnist_cnn[keras]"``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import numpy as np
import torch

from benchmarks.common import Stopwatch
from mnist_cnn.data.files import read_train_split
from mnist_cnn.data.pixels import normalize
from mnist_cnn.errors import missing_extra

FEATURE = "the bench's pipeline (d), Keras on TensorFlow"
# Keras' layers take TensorFlow's defaults; these give them PyTorch's, as in mnist_cnn.models.
BATCH_NORM = {"momentum": 0.9, "epsilon": 1e-5}


def require_keras() -> None:
    """Raise ``MissingExtraError`` naming the install command unless Keras and TensorFlow are installed."""
    for module in ("tensorflow", "keras"):
        if importlib.util.find_spec(module) is None:
            raise missing_extra(FEATURE, ModuleNotFoundError(f"No module named {module!r}", name=module))


def import_keras(threads: int) -> Any:
    """The ``keras`` module on the TensorFlow backend, with ``threads`` intra-op threads (one inter-op thread:
    the steps of one small model run in sequence)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banners on stderr
    os.environ["KERAS_BACKEND"] = "tensorflow"
    try:
        import keras
        import tensorflow as tf
    except ImportError as error:
        raise missing_extra(FEATURE, error) from None
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return keras


def build(name: str, keras: Any) -> Any:
    """The Keras model of architecture ``name`` (28×28×1 inputs, 10 logits)."""
    layers = keras.layers
    inputs = keras.Input((28, 28, 1))
    if name == "lenet5":
        x = layers.Conv2D(6, 5, padding="same", activation="tanh")(inputs)
        x = layers.AveragePooling2D(2)(x)
        x = layers.Conv2D(16, 5, activation="tanh")(x)
        x = layers.AveragePooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(120, activation="tanh")(x)
        x = layers.Dense(84, activation="tanh")(x)
    elif name == "simple_cnn":
        x = layers.Conv2D(32, 3, activation="relu")(inputs)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(64, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
        x = layers.Dropout(0.5)(x)
    elif name == "custom_cnn":
        x = inputs
        for widths in ((32, 32), (64, 64), (128,)):
            for width in widths:
                x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
                x = layers.BatchNormalization(**BATCH_NORM)(x)
                x = layers.LeakyReLU(0.1)(x)
            x = layers.MaxPooling2D(2)(x)
            x = layers.Dropout(0.4)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(128)(x)
        x = layers.LeakyReLU(0.1)(x)
        x = layers.BatchNormalization(**BATCH_NORM)(x)
        x = layers.Dropout(0.4)(x)
    elif name == "resnet":
        x = _conv_bn(inputs, 42, 3, 1, layers)
        x = layers.ReLU()(x)
        for group, width in enumerate((42, 84, 168)):
            for block in range(2):
                x = _basic_block(x, width, 2 if group > 0 and block == 0 else 1, layers)
        x = layers.GlobalAveragePooling2D()(x)
    else:
        raise ValueError(f"pipeline (d) has no Keras model named {name!r}")
    return keras.Model(inputs, layers.Dense(10)(x), name=name)


def _conv_bn(x: Any, width: int, size: int, stride: int, layers: Any) -> Any:
    x = layers.Conv2D(width, size, strides=stride, padding="same", use_bias=False)(x)
    return layers.BatchNormalization(**BATCH_NORM)(x)


def _basic_block(x: Any, width: int, stride: int, layers: Any) -> Any:
    """``mnist_cnn.models.resnet.BasicBlock``: two 3×3 conv-BN layers and an identity or 1×1 projection."""
    body = layers.ReLU()(_conv_bn(x, width, 3, stride, layers))
    body = _conv_bn(body, width, 3, 1, layers)
    shortcut = x if stride == 1 and x.shape[-1] == width else _conv_bn(x, width, 1, stride, layers)
    return layers.ReLU()(layers.Add()([body, shortcut]))


def trainable_parameters(model: Any) -> int:
    """Number of trainable parameters (batch norm's moving statistics are not)."""
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def training_arrays(root: str | None, images: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``images`` of the 55,000 training images, normalised float32 (N, 28, 28, 1) as Keras takes them,
    and their labels."""
    (train_images, labels), _ = read_train_split(root)
    return normalize(train_images[:images]).permute(0, 2, 3, 1).contiguous().numpy(), labels[:images].numpy()


def compiled_model(name: str, threads: int) -> Any:
    """Keras model ``name`` compiled as the bench trains: Adam at 1e-3, cross-entropy on logits, accuracy."""
    keras = import_keras(threads)
    keras.utils.set_random_seed(0)
    model = build(name, keras)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def keras_epoch(model_name: str, batch_size: int, root: str | None, images: int, threads: int) -> dict[str, float]:
    """(d): one epoch of ``model.fit`` over ``images`` training images held as one array, shuffled, after an
    untimed ``fit`` on one batch of each size the epoch has: the first call of each traces the training step
    into a TensorFlow graph, a one-off cost."""
    model = compiled_model(model_name, threads)
    x, y = training_arrays(root, images)
    warmup = batch_size + len(y) % batch_size  # a full batch, then the epoch's last, smaller one if it has one
    model.fit(x[:warmup], y[:warmup], batch_size=batch_size, epochs=1, verbose=0)
    stopwatch = Stopwatch(torch.device("cpu"))
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
    return {**stopwatch.read(), "images": len(y), "batch_size": batch_size}
