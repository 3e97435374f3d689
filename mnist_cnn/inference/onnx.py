"""ONNX export: normalised images (N, 1, 28, 28) float32 in, logits (N, 10) out, with a dynamic batch size."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

INPUT_NAME, OUTPUT_NAME = "images", "logits"


def export_onnx(network: nn.Module, path: Path, opset: int) -> Path:
    """Export ``network`` to ``path`` with a dynamic batch dimension; returns the path written."""
    example = torch.zeros(2, 1, 28, 28)
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
