"""``python -m mnist_cnn.predict inputs=<files, folders or globs>``: classify a user's own digit images.

Prints one row per image (file, digit, probability, whether that is too low to trust, top-k) and writes them to
``output`` (.csv or .json) when asked; nothing else is written. An unreadable image gets one ``error:`` line, the
others are still classified, and the command exits 1; bad options or checkpoints exit 2 before anything is read.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from mnist_cnn.cli import hydra_command
from mnist_cnn.config import PredictConfig, validate
from mnist_cnn.errors import EXIT_SOME_FAILED, ConfigError
from mnist_cnn.weights.resolve import resolve_checkpoint

OUTPUT_SUFFIXES = (".csv", ".json")


@dataclass
class Row:
    """One image's outcome: its prediction, or why it could not be read."""

    file: str
    digit: int | None = None
    probability: float | None = None
    uncertain: bool | None = None  # the probability is below the model's uncertain_below
    top_k: list[tuple[int, float]] = field(default_factory=list)
    error: str | None = None

    def table_line(self, width: int) -> str:
        if self.error:
            return f"{self.file:<{width}}  error: {self.error}"
        ranked = "  ".join(f"{digit}:{probability:.3f}" for digit, probability in self.top_k)
        flag = "yes" if self.uncertain else "no"
        return f"{self.file:<{width}}  {self.digit:>5}  {self.probability:>11.4f}  {flag:>9}  {ranked}"


def format_table(rows: list[Row], top_k: int) -> str:
    width = max(len("file"), *(len(row.file) for row in rows))
    header = f"{'file':<{width}}  digit  probability  uncertain  top-{top_k}"
    return "\n".join([header, *(row.table_line(width) for row in rows)])


def serialise(rows: list[Row], suffix: str) -> str:
    if suffix == ".json":
        return json.dumps([asdict(row) for row in rows], indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "digit", "probability", "uncertain", "top_k", "error"])
    for row in rows:
        ranked = " ".join(f"{digit}:{probability:.4f}" for digit, probability in row.top_k)
        flag = None if row.uncertain is None else str(row.uncertain).lower()
        writer.writerow([row.file, row.digit, row.probability, flag, ranked, row.error])
    return buffer.getvalue()


def predict_files(config: PredictConfig) -> list[Row]:
    """Classify every image the inputs name; inputs that match nothing and unreadable files become error rows."""
    import numpy as np  # torch and PIL: only once there is work to do
    import torch

    from mnist_cnn.inference.classify import classify
    from mnist_cnn.preprocess.images import IMAGE_SUFFIXES, image_files, to_mnist
    from mnist_cnn.weights.checkpoints import load_network

    model = load_network(resolve_checkpoint(config.ckpt_path))
    patterns = [config.inputs] if isinstance(config.inputs, str) else list(config.inputs)
    rows, pixels = [], []
    for pattern in patterns:
        files = image_files(str(pattern))
        if not files and Path(str(pattern)).expanduser().is_dir():
            suffixes = ", ".join(IMAGE_SUFFIXES)
            rows.append(Row(str(pattern), error=f"the folder holds no image files ({suffixes}), nor do its subfolders"))
        elif not files:
            rows.append(Row(str(pattern), error="no such file or folder, and no file matches it as a glob"))
        for path in files:
            try:
                pixels.append(to_mnist(path, config.max_pixels))
            except ValueError as error:
                rows.append(Row(str(path), error=str(error)))
            else:
                rows.append(Row(str(path)))
    if pixels:
        predictions = classify(model, torch.from_numpy(np.stack(pixels)).unsqueeze(1), config.batch_size)
        digits, probabilities = predictions.top_k(config.top_k)
        readable = (row for row in rows if row.error is None)
        ranked = zip(readable, digits.tolist(), probabilities.tolist(), predictions.uncertain.tolist())
        for row, ranked_digits, ranked_probabilities, uncertain in ranked:
            row.top_k = [(digit, round(p, 6)) for digit, p in zip(ranked_digits, ranked_probabilities)]
            row.digit, row.probability = row.top_k[0]
            row.uncertain = uncertain
    return rows


@hydra_command("predict")
def main(cfg: DictConfig) -> None:
    config: PredictConfig = validate(cfg)
    if config.output is not None and Path(config.output).suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"output={config.output} is not allowed: use a .csv or .json file name")
    rows = predict_files(config)
    print(format_table(rows, config.top_k))
    if config.output is not None:
        output = Path(config.output)
        output.write_text(serialise(rows, output.suffix))
        print(f"\nwrote {len(rows)} rows to {output}")
    failed = [row for row in rows if row.error]
    for row in failed:
        print(f"error: {row.file}: {row.error}", file=sys.stderr)
    if failed:
        sys.exit(EXIT_SOME_FAILED)


if __name__ == "__main__":
    main()
