"""``python -m mnist_cnn.evaluate ckpt_path=lenet5``: score a model on the 10k test set and write a report.

``ckpt_path`` takes a shipped model name, a ``.ckpt`` file or a training run directory (its best checkpoint).
The report goes to a new ``evaluations/<timestamp>[_N]/``: metrics.json, per_class.csv, the confusion matrices,
the most confident mistakes and, when the checkpoint carries it, the training history.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mnist_cnn.cli import hydra_command
from mnist_cnn.config import EvaluateConfig, validate
from mnist_cnn.errors import UserError
from mnist_cnn.training.run_dir import register_resolvers, remove_new_dir
from mnist_cnn.weights.resolve import resolve_checkpoint


@hydra_command("evaluate")
def main(cfg: DictConfig) -> float:
    """Hydra task: returns the test accuracy."""
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        config: EvaluateConfig = validate(cfg)
        checkpoint = resolve_checkpoint(config.ckpt_path)
        from mnist_cnn.data.files import read_test_split  # torch: only once the options are known good
        from mnist_cnn.evaluation.evaluator import Evaluator
        from mnist_cnn.evaluation.report import format_summary, write_report
        from mnist_cnn.weights.checkpoints import network_from, read_checkpoint, training_history

        saved = read_checkpoint(checkpoint)
        network = network_from(saved, checkpoint)
        test_split = read_test_split(config.data.root, config.data.download)
    except UserError:
        remove_new_dir(out_dir, parents=1)
        raise
    evaluator = Evaluator(network, test_split, batch_size=config.data.eval_batch_size)
    written = write_report(evaluator, out_dir, history=training_history(saved))
    metrics = evaluator.evaluate()
    print(format_summary(metrics, evaluator.per_class_scores()))
    print(f"\nreport written to {out_dir}: {', '.join(path.name for path in written)}")
    return metrics["accuracy"]


register_resolvers()

if __name__ == "__main__":
    main()
