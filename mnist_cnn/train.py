"""``python -m mnist_cnn.train model=lenet5``: train, keep the best checkpoint, test it, print a summary."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from mnist_cnn.config import ConfigError, validate
from mnist_cnn.idx import MNISTDataError


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra task: returns the best validation accuracy, the metric sweeps optimise."""
    from mnist_cnn.training import train  # imported here so --help does not load Lightning

    logging.getLogger("lightning").handlers.clear()  # Hydra's handlers print its messages already

    try:
        result = train(validate(cfg))
    except (ConfigError, MNISTDataError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(result.summary())
    return result.metrics.get("best_val_acc")


if __name__ == "__main__":
    main()
