"""``python -m mnist_cnn.evaluate ckpt_path=<file>``: score a checkpoint on the 10k test set and write a report."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from mnist_cnn.config import EvaluateConfig
from mnist_cnn.idx import MNISTDataError


class CheckpointError(ValueError):
    """The checkpoint file is missing or cannot be rebuilt into an ``MNISTClassifier``."""


def load_classifier(path: Path):  # -> MNISTClassifier; annotated lazily so --help does not import Lightning
    """The ``MNISTClassifier`` saved in ``path``, on the CPU, or a ``CheckpointError`` saying what is wrong."""
    if not path.is_file():
        raise CheckpointError(f"ckpt_path={path}: no such file")
    import torch

    from mnist_cnn.module import MNISTClassifier

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler trips over other files with anything from KeyError to IndexError
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint, or holds objects that weights-only loading refuses "
            f"(torch.load raised {type(error).__name__})"
        ) from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "hyper_parameters"} <= checkpoint.keys():
        raise CheckpointError(f"{path} is not an MNISTClassifier checkpoint: it has no state_dict and hyper_parameters")
    try:
        return MNISTClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except (ValueError, RuntimeError) as error:  # unknown architecture or options; weights of another shape
        raise CheckpointError(f"cannot rebuild the model saved in {path}: {str(error).splitlines()[0]}") from None


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    """Hydra task: returns the test accuracy."""
    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn.data import MNISTDataModule  # imported here so --help does not load Lightning
    from mnist_cnn.evaluation import Evaluator, format_summary, write_report

    logging.getLogger("lightning").handlers.clear()  # Hydra's handlers print its messages already
    config: EvaluateConfig = OmegaConf.to_object(cfg)
    ckpt_path = Path(config.ckpt_path).expanduser()
    try:
        model = load_classifier(ckpt_path)
        data = MNISTDataModule(**asdict(config.data))
        data.prepare_data()
        data.setup("test")
    except (ValueError, MNISTDataError) as error:  # CheckpointError, or data options such as val_size
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

    evaluator = Evaluator(model, data, batch_size=config.data.eval_batch_size)
    run_logs = ckpt_path.parent  # a training run dir holds csv/version_*/metrics.csv beside its checkpoints
    history = run_logs if any(run_logs.glob("csv/version_*/metrics.csv")) else None
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    written = write_report(evaluator, out_dir, history=history)
    metrics = evaluator.evaluate()
    print(format_summary(metrics, evaluator.evaluate_per_class()))
    print(f"\nreport written to {out_dir}: {', '.join(path.name for path in written)}")
    return metrics["accuracy"]


if __name__ == "__main__":
    main()
