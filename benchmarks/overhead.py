"""The framework's own cost per training step: this project's path against a plain loop, on a model so small
(one linear layer) that the arithmetic is near zero and the difference is what the framework adds.

- plain: the in-memory uint8 training tensors, a random order drawn per epoch, each batch indexed, converted,
  normalised, then forward, cross-entropy, backward and a fused Adam step; nothing else.
- trainer: Lightning's own loop alone: the same model in a minimal LightningModule (cross-entropy, fused Adam)
  fed by ``MNISTDataModule`` (no augmentation), under a Trainer with no callbacks, logger or checkpoints.
- project: ``MNISTDataModule`` (no augmentation) + ``MNISTClassifier`` under the Trainer that
  ``python -m mnist_cnn.train`` builds (its callbacks, CSV logger and checkpoints), on the same data and model.

Each measures the mean time of ``STEPS - WARMUP_STEPS`` steps after ``WARMUP_STEPS`` untimed ones (over as many
epochs as that takes), in its own fresh process; the report gives the median of ``--repeats`` processes of each,
alternating.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import alternating_medians
from mnist_cnn.config import compose_config, validate
from mnist_cnn.data.files import read_train_split
from mnist_cnn.data.pixels import normalize
from mnist_cnn.models import model_names, register_model

BATCH_SIZE = 256
STEPS, WARMUP_STEPS = 200, 20
TINY = "bench_linear"


class Linear(nn.Module):
    """One linear layer: a model whose step costs almost nothing, for timing the framework."""

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10) -> None:
        super().__init__()
        self.layer = nn.Linear(input_shape[0] * input_shape[1] * input_shape[2], num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layer(images.flatten(1))


def plain_step_ms(root: str | None) -> float:
    """Milliseconds per step of the plain loop."""
    (images, labels), _ = read_train_split(root)
    torch.manual_seed(0)
    model = Linear()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    epochs = math.ceil(STEPS / math.ceil(len(labels) / BATCH_SIZE))
    order = [index for _ in range(epochs) for index in torch.randperm(len(labels)).split(BATCH_SIZE)]
    for step, index in enumerate(order[:STEPS]):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        loss = F.cross_entropy(model(normalize(images[index])), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) * 1000 / (STEPS - WARMUP_STEPS)


def step_clock(profile: bool = False) -> Any:
    """A Lightning callback timing the training steps after the first ``WARMUP_STEPS`` up to ``STEPS``; with
    ``profile``, under cProfile. Its ``seconds`` is their time, its ``profiler`` the cProfile."""
    import lightning as L  # only in the Lightning paths' processes: the plain loop's never loads it

    class StepClock(L.Callback):
        def __init__(self) -> None:
            self.steps = 0

        def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
            if self.steps == WARMUP_STEPS:
                self.start = time.perf_counter()
                if profile:
                    self.profiler = cProfile.Profile()
                    self.profiler.enable()
            elif self.steps == STEPS:
                self.seconds = time.perf_counter() - self.start
                if profile:
                    self.profiler.disable()
            self.steps += 1

    return StepClock()


def trainer_step_ms(root: str | None) -> float:
    """Milliseconds per step of Lightning's own loop: a minimal LightningModule, no callbacks, logger or metrics."""
    import lightning as L

    from mnist_cnn.data.datamodule import MNISTDataModule

    class Minimal(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = Linear()

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
            images, labels = batch
            return F.cross_entropy(self.model(images), labels)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)

    clock = step_clock()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=STEPS + 1, limit_val_batches=0, logger=False, callbacks=[clock],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    torch.manual_seed(0)
    data = MNISTDataModule(**({"root": root} if root else {}), augment=None, batch_size=BATCH_SIZE)
    trainer.fit(Minimal(), datamodule=data)
    return clock.seconds * 1000 / (STEPS - WARMUP_STEPS)


def project_step_ms(root: str | None, profile: bool = False) -> float:
    """Milliseconds per step of this project's path; with ``profile``, print where the steps' time goes."""
    from mnist_cnn.training.callbacks import GracefulInterrupt
    from mnist_cnn.training.run import build_datamodule, build_module, build_trainer

    overrides = ["model=lenet5", "optimizer=adam", "data.augment=null", f"data.batch_size={BATCH_SIZE}", "test=false"]
    # max_steps ends the run, after as many epochs as it takes; max_epochs only has to be larger than that
    overrides += ["trainer.max_epochs=1000", f"trainer.max_steps={STEPS + 1}", "trainer.limit_val_batches=1"]
    overrides += [
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "~callbacks.early_stopping",
    ]
    cfg = validate(compose_config(*overrides, *([f"data.root={root}"] if root else [])))
    if TINY not in model_names():  # registered only in the bench's own process, never on import
        register_model(TINY, Linear.__doc__)(Linear)
    cfg.model = {"name": TINY}
    clock = step_clock(profile)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(cfg, Path(run_dir), Path(run_dir), GracefulInterrupt(Path(run_dir) / "last.ckpt"))
        trainer.callbacks.insert(0, clock)
        torch.manual_seed(0)
        trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    if profile:
        report = io.StringIO()
        pstats.Stats(clock.profiler, stream=report).sort_stats("tottime").print_stats(25)
        print(report.getvalue())
    return clock.seconds * 1000 / (STEPS - WARMUP_STEPS)


PATHS = {"plain": plain_step_ms, "trainer": trainer_step_ms, "project": project_step_ms}
LABELS = {"plain": "plain loop", "trainer": "Trainer alone", "project": "mnist_cnn (Trainer)"}


def one(path: str, args: argparse.Namespace) -> dict[str, float]:
    """What one fresh process measures for ``--one overhead <path>``."""
    return {"step_ms": PATHS[path](args.root)}


def table(args: argparse.Namespace) -> dict[str, float]:
    """The per-step time of every path, median of ``args.repeats`` alternating fresh processes each, and their
    ratios to the plain loop."""
    root = ["--root", args.root] if args.root else []
    workers = {path: ["--one", "overhead", path, *root] for path in PATHS}
    results = alternating_medians(workers, args.repeats, "step_ms")
    medians = {path: result["step_ms"] for path, result in results.items()}
    plain = medians["plain"]
    print(f"per-step time, batch {BATCH_SIZE}, {torch.get_num_threads()} CPU threads, median of {args.repeats}")
    for path, ms in medians.items():
        runs = results[path]["step_ms_runs"]
        print(
            f"{LABELS[path]:<20} {ms:.3f} ms (runs {runs[0]:.3f}-{runs[-1]:.3f}); {ms - plain:.3f} ms over the plain "
            f"loop, ratio {ms / plain:.2f}"
        )
    return {
        **{f"{path}_ms": ms for path, ms in medians.items()},
        **{f"{path}_runs": results[path]["step_ms_runs"] for path in medians},
        **{f"{path}_ratio": ms / plain for path, ms in medians.items() if path != "plain"},
    }
