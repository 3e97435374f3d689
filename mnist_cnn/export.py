"""``python -m mnist_cnn.export ckpt_path=<file or pretrained name>``: write the model as ONNX for serving.

The exported graph maps normalised images ``(N, 1, 28, 28)`` float32 (see ``mnist_cnn.pixels``) to logits
``(N, 10)``; N is dynamic. Needs the ``export`` extra: ``pip install -e ".[export]"``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from mnist_cnn.config import ExportConfig, validate
from mnist_cnn.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from torch import nn

INPUT_NAME, OUTPUT_NAME = "images", "logits"


def export_onnx(network: nn.Module, path: Path, opset: int) -> Path:
    """Export ``network`` to ``path`` with a dynamic batch dimension; returns the path written."""
    import torch

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


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    try:
        config: ExportConfig = validate(cfg)
        if config.output is not None and Path(config.output).suffix != ".onnx":
            raise ConfigError(f"output={config.output} is not allowed: use a file name ending in .onnx")
        try:
            import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
        except ImportError:
            raise ConfigError('format=onnx needs the export extra: pip install -e ".[export]"') from None
        from mnist_cnn.checkpoints import load_network
        from mnist_cnn.pretrained import resolve_checkpoint

        checkpoint = resolve_checkpoint(config.ckpt_path)
        network = load_network(checkpoint)
    except (ConfigError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    output = Path(config.output or f"{checkpoint.stem}.onnx")
    export_onnx(network, output, config.opset)
    print(
        f"wrote {output} ({output.stat().st_size / 1e6:.2f} MB): input {INPUT_NAME!r} (N, 1, 28, 28) float32 "
        f"normalised, output {OUTPUT_NAME!r} (N, 10) logits"
    )


if __name__ == "__main__":
    main()
