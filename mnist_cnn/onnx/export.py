"""Writing a network, or the one a checkpoint holds, as an ONNX file (torch's dynamo exporter, which needs the export
extra's onnxscript)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mnist_cnn.data.pixels import SIZE
from mnist_cnn.onnx import INPUT_NAME, OPSET, OUTPUT_NAME
from mnist_cnn.weights.checkpoints import network_from, read_checkpoint


def export_onnx(network: nn.Module, path: Path, opset: int = OPSET) -> Path:
    """Export ``network`` to ``path`` with a dynamic batch dimension; returns the path written."""
    example = torch.zeros(2, 1, SIZE, SIZE)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        network.eval(),
        (example,),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        opset_version=opset,
        verbose=False,
    )
    program.save(str(path))
    return path


def export_checkpoint(checkpoint: Path, output: Path | None = None, opset: int = OPSET) -> Path:
    """Export the network saved in ``checkpoint`` to ``output`` (default ``<model>.onnx`` in the current directory,
    named after the model the checkpoint holds); returns the path written."""
    saved = read_checkpoint(checkpoint)
    default = Path(f"{saved['hyper_parameters']['model_name']}.onnx")
    return export_onnx(network_from(saved, checkpoint), output or default, opset)
