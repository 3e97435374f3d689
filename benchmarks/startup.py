"""Start-up and file prediction, timed from the shell: interpreter start and imports included."""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

from benchmarks.common import wall_seconds
from benchmarks.drawing import draw_on_paper


def startup(root: str | None, repeats: int) -> dict[str, float]:
    """Seconds, shell to shell, for ``train --help``; a one-batch LeNet-5 run (one validation batch, no test): an
    upper bound of the time to the first training step; ``evaluate ckpt_path=lenet5`` (the 10k test digits and the
    report); and ``predict`` of one PNG file."""
    from mnist_cnn.data.files import read_test_split

    with tempfile.TemporaryDirectory() as work:
        data = [f"data.root={root}"] if root else []
        one_batch = ["model=lenet5", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "test=false"]
        # the runs go to runs/, not ./lenet5/, which would shadow the shipped model's name in ckpt_path=lenet5
        one_batch += ["trainer.limit_val_batches=1", f"checkpoint_root={work}/runs", *data]
        train = [sys.executable, "-m", "mnist_cnn.train"]
        images, _ = read_test_split(root)
        draw_on_paper(images[0, 0].numpy(), (300, 200), 100, (40, 50)).save(Path(work) / "digit.png")
        return {
            "help_s": wall_seconds([*train, "--help"], work, repeats),
            "one_batch_run_s": wall_seconds([*train, *one_batch], work, repeats),
            "evaluate_s": wall_seconds(
                [sys.executable, "-m", "mnist_cnn.evaluate", "ckpt_path=lenet5", *data], work, repeats
            ),
            "predict_one_file_s": wall_seconds(
                [sys.executable, "-m", "mnist_cnn.predict", "inputs=digit.png"], work, repeats
            ),
        }


def predict_files(count: int, root: str | None, repeats: int) -> dict[str, float]:
    """Seconds for ``python -m mnist_cnn.predict`` on ``count`` PNGs of test digits drawn on 300×200 paper."""
    from mnist_cnn.data.files import read_test_split

    images, labels = read_test_split(root)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "digits"
        folder.mkdir()
        for index in range(count):
            page = draw_on_paper(images[index % len(images), 0].numpy(), (300, 200), 100, (40 + index % 150, 50))
            page.save(folder / f"{index:05d}_{labels[index % len(labels)]}.png")
        predict = [sys.executable, "-m", "mnist_cnn.predict", "ckpt_path=simple_cnn"]
        command = [*predict, f"inputs={folder}", "output=p.csv"]
        seconds = wall_seconds(command, work, repeats)
        rows = list(csv.DictReader((Path(work) / "p.csv").read_text().splitlines()))
    correct = sum(row["digit"] == Path(row["file"]).stem.split("_")[1] for row in rows)
    return {"files": count, "seconds": seconds, "files_per_s": count / seconds, "accuracy": correct / count}
