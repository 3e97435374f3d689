"""``python -m mnist_cnn.export ckpt_path=simple_cnn``: write a model as ONNX for serving.

The exported graph maps normalised images ``(N, 1, 28, 28)`` float32 (see ``mnist_cnn.data.pixels``) to logits
``(N, 10)``; N is dynamic. It is written to ``output`` (default ``<model>.onnx`` in the current directory).
Needs the ``export`` extra: ``pip install "mnist_cnn[export]"``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mnist_cnn.cli import hydra_command
from mnist_cnn.config import ExportConfig, validate
from mnist_cnn.errors import ConfigError, missing_extra
from mnist_cnn.onnx import INPUT_NAME, OUTPUT_NAME
from mnist_cnn.weights.resolve import resolve_checkpoint


@hydra_command("export")
def main(cfg: DictConfig) -> None:
    config: ExportConfig = validate(cfg)
    if config.output is not None and Path(config.output).suffix != ".onnx":
        raise ConfigError(f"output={config.output} is not allowed: use a file name ending in .onnx")
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as error:
        raise missing_extra("format=onnx", error) from None
    from mnist_cnn.onnx.export import export_checkpoint  # torch: only once there is work

    output = Path(config.output) if config.output is not None else None
    output = export_checkpoint(resolve_checkpoint(config.ckpt_path), output, config.opset)
    print(
        f"wrote {output} ({output.stat().st_size / 1e6:.2f} MB): input {INPUT_NAME!r} (N, 1, 28, 28) float32 "
        f"normalised, output {OUTPUT_NAME!r} (N, 10) logits"
    )


if __name__ == "__main__":
    main()
