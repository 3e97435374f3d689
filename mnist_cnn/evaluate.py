"""``python -m mnist_cnn.evaluate ckpt_path=<file>``: score a checkpoint on the 10k test set and write a report."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mnist_cnn.config import EvaluateConfig, validate
from mnist_cnn.errors import MNISTDataError


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    """Hydra task: returns the test accuracy."""
    from hydra.core.hydra_config import HydraConfig

    from mnist_cnn.checkpoints import load_classifier  # imported here so --help does not load Lightning
    from mnist_cnn.data import MNISTDataModule
    from mnist_cnn.evaluation import Evaluator, format_summary, write_report

    logging.getLogger("lightning").handlers.clear()  # Hydra's handlers print its messages already
    try:
        config: EvaluateConfig = validate(cfg)
        ckpt_path = Path(config.ckpt_path).expanduser()
        model = load_classifier(ckpt_path)
        data = MNISTDataModule(**asdict(config.data))
        data.prepare_data()
        data.setup("test")
    except (ValueError, MNISTDataError) as error:  # ConfigError, CheckpointError, or a val_size the data lacks
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
