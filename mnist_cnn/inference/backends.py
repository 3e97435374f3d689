"""What runs the network behind a server: PyTorch, or the network exported to ONNX and run by onnxruntime.

Both take MNIST-formatted pixels, uint8 (N, 28, 28), and return softmax probabilities, float32 (N, 10).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnist_cnn.data.pixels import prepared
from mnist_cnn.onnx import INPUT_NAME
from mnist_cnn.onnx.export import export_onnx

Classifier = Callable[[np.ndarray], np.ndarray]


def torch_classifier(network: nn.Module, threads: int) -> Classifier:
    """``network`` run by PyTorch in channels-last layout (faster convolutions on CPUs, see MNISTClassifier) on
    ``threads`` threads (PyTorch's setting for the whole process), in eval mode for good: the forward pass alone,
    without ``classify``'s mode switching and batch splitting on every call, which cost as much again for an image."""
    torch.set_num_threads(threads)
    network = network.eval().to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def probabilities(pixels: np.ndarray) -> np.ndarray:
        return network(prepared(torch.from_numpy(pixels).unsqueeze(1))).float().softmax(dim=1).numpy()

    return probabilities


def onnx_classifier(network: nn.Module, threads: int) -> Classifier:
    """``network`` exported to ONNX (in a temporary file, gone once loaded) and run by onnxruntime on the CPU on
    ``threads`` threads."""
    import onnxruntime  # the export extra: only for this backend

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(network, Path(folder) / "model.onnx")
        runtime = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def probabilities(pixels: np.ndarray) -> np.ndarray:
        inputs = prepared(torch.from_numpy(pixels).unsqueeze(1)).numpy()
        (logits,) = runtime.run(None, {INPUT_NAME: inputs})
        return torch.from_numpy(logits).softmax(dim=1).numpy()

    return probabilities


def load_classifier(network: nn.Module, backend: str, threads: int = 1) -> Classifier:
    """The classifier of ``backend`` (one of ``mnist_cnn.inference.BACKENDS``), warmed up: its first answer costs no more than the next."""
    build = torch_classifier if backend == "torch" else onnx_classifier
    classifier = build(network, threads)
    classifier(np.zeros((1, 28, 28), dtype=np.uint8))
    return classifier
