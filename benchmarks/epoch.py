"""One training epoch through up to five pipelines, side by side, each in its own fresh process:

(a) torchvision ``MNIST`` + ``DataLoader`` + ``ToTensor``/``Normalize``, plain loop (the usual tutorial path)
(b) a plain PyTorch loop over the whole dataset held as one in-memory tensor
(c) this project's path: ``MNISTDataModule`` + ``MNISTClassifier`` under ``lightning.Trainer``, configured as
    ``python -m mnist_cnn.train`` composes it with ``trainer=cpu``, or ``trainer=gpu`` (bf16, data on the GPU,
    ``batch_scale``) with ``--accelerator gpu``, where (a) and (b) run in float32 on the GPU too
(d) the original stack: the same architecture in Keras 3, ``model.fit`` on TensorFlow (``benchmarks.keras``;
    the ``keras`` extra), CPU only
(e) (c) with augmentation on, as training runs by default: (e)/(c) is what augmentation costs

(a) to (d) train without augmentation, with Adam at 1e-3, on the same images.

plus inference throughput of ``MNISTClassifier`` (eval mode, as ``predict`` and ``Evaluator`` run it) at batch 1
and batch 1024. On the GPU each timed epoch follows an untimed warm-up (``WARMUP_BATCHES`` batches for (a) and
(b), one epoch for (c)): the first CUDA calls load kernels and choose cuDNN algorithms, a one-off cost.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from benchmarks.common import Stopwatch, alternating_medians, plain_epoch
from mnist_cnn.config import TrainConfig, compose_config, validate
from mnist_cnn.data.files import ensure_mnist, read_splits
from mnist_cnn.data.pixels import MEAN, STD, normalize
from mnist_cnn.inference.classify import classify
from mnist_cnn.models import build_model

PIPELINES = {
    "a": "torchvision DataLoader",
    "b": "plain loop, in-memory tensors",
    "c": "mnist_cnn (Lightning)",
    "d": "Keras 3 + TensorFlow",
    "e": "mnist_cnn, augmentation on",
}
RATIOS = {"c/b": "", "a/c": "", "c/d": "", "e/c": " (the cost of augmentation)"}
INFERENCE = "inference"
WARMUP_BATCHES = 10  # on the GPU, untimed steps before (a) and (b) start the clock


def project_config(
    model_name: str, accelerator: str, batch_size: int, root: str | None, augment: bool, compile_mode: str | None = None
) -> TrainConfig:
    """What ``python -m mnist_cnn.train model=<model> trainer=<accelerator> compile=<compile_mode>`` runs
    (``trainer=gpu``: bf16, data on the GPU, fused optimizer, ``batch_scale``), with the bench's Adam at 1e-3 and
    batch size like (a) and (b), and with the default augmentation, or without it (``data.augment=null``)."""
    overrides = [f"model={model_name}", f"trainer={accelerator}", "optimizer=adam", "optimizer.lr=0.001"]
    overrides += [f"compile={compile_mode}"] if compile_mode else []
    overrides += [f"data.batch_size={batch_size}", *([] if augment else ["data.augment=null"])]
    overrides += [f"data.root={root}"] if root else []
    return validate(compose_config(*overrides))


def project_epoch(
    model_name: str,
    accelerator: str,
    batch_size: int,
    root: str | None,
    images: int,
    augment: bool,
    callbacks: Sequence[Any] = (),
    compile_mode: str | None = None,
) -> dict[str, float]:
    """(c), or (e) with ``augment``: one epoch of this project's DataModule and LightningModule under
    ``lightning.Trainer``, with ``callbacks`` besides the bench's timer and the default callback that keeps freed
    host memory for the next step (the checkpoints, early stopping and learning-rate log are left out). On the GPU or
    with ``compile_mode`` the second epoch is timed: the first pays CUDA's start-up or the compilation."""
    import lightning as L  # only in (c)'s processes: (a) and (b) never load it

    from mnist_cnn.training.host_memory import KeepFreedMemory
    from mnist_cnn.training.run import build_datamodule, build_module

    class EpochTimer(L.Callback):  # keeps the last epoch's time
        def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.stopwatch = Stopwatch(module.device)

        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.times = self.stopwatch.read()

    cfg = project_config(model_name, accelerator, batch_size, root, augment, compile_mode)
    datamodule = build_datamodule(cfg)
    scaled_batch = datamodule.hparams.batch_size
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator=cfg.trainer["accelerator"], devices=1, precision=cfg.trainer["precision"],
        max_epochs=2 if accelerator == "gpu" or compile_mode else 1,
        limit_train_batches=math.ceil(images / scaled_batch), limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer, KeepFreedMemory(), *callbacks],
    )  # fmt: skip
    trainer.fit(build_module(cfg), datamodule=datamodule)
    seen = min(trainer.num_training_batches * scaled_batch, len(datamodule.datasets["train"]))
    return {**timer.times, "images": seen, "batch_size": scaled_batch}


def run_pipeline(
    model_name: str,
    pipeline: str,
    accelerator: str,
    batch_size: int,
    root: str | None,
    images: int,
    compile_mode: str | None = None,
) -> dict[str, float]:
    """Time one epoch over ``images`` training images (55k: all of them); returns seconds, images, batch size."""
    torch.manual_seed(0)
    if pipeline in "ce":
        augment = pipeline == "e"
        return project_epoch(model_name, accelerator, batch_size, root, images, augment, compile_mode=compile_mode)
    if pipeline == "d":
        from benchmarks.keras import keras_epoch  # TensorFlow: only in (d)'s processes

        return keras_epoch(model_name, batch_size, root, images, torch.get_num_threads())

    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    model = build_model(model_name).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    warmup = WARMUP_BATCHES if device.type == "cuda" else 0
    if pipeline == "b":
        train_images, labels = read_splits(root).train
        train_images, labels = normalize(train_images).to(device), labels.to(device)
        plain_epoch(model, optimizer, [(train_images[:batch_size], labels[:batch_size])] * warmup)
        stopwatch = Stopwatch(device)
        order = torch.randperm(len(labels), device=device)[:images]
        batches = ((train_images[i], labels[i]) for i in order.split(batch_size))
        count = plain_epoch(model, optimizer, batches)
        return {**stopwatch.read(), "images": count, "batch_size": batch_size}

    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    folder = ensure_mnist(root)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    dataset = datasets.MNIST(str(folder.parent.parent), train=True, transform=transform)
    train_indices = torch.randperm(len(dataset))[: min(images, 55_000)]
    loader = DataLoader(Subset(dataset, train_indices.tolist()), batch_size=batch_size, shuffle=True)
    if warmup:
        images_0, labels_0 = next(iter(loader))
        plain_epoch(model, optimizer, [(images_0.to(device), labels_0.to(device))] * warmup)
    stopwatch = Stopwatch(device)
    count = plain_epoch(model, optimizer, ((x.to(device), y.to(device)) for x, y in loader))
    return {**stopwatch.read(), "images": count, "batch_size": batch_size}


def run_inference(model_name: str, accelerator: str, images: int) -> dict[str, float]:
    """Images per second classifying uint8 images (normalisation included) at batch 1 and 1024; the pixels
    start on the CPU and the probabilities end there, as when predicting files."""
    from mnist_cnn.training.module import MNISTClassifier  # Lightning: only in the processes that use it

    torch.manual_seed(0)
    model = MNISTClassifier(model_name).eval().to("cuda" if accelerator == "gpu" else "cpu")
    rates = {}
    for batch_size, count in ((1, min(images, 1000)), (1024, max(images, 4096))):
        pixels = torch.randint(0, 256, (count, 1, 28, 28), dtype=torch.uint8)
        classify(model, pixels[:batch_size], batch_size)  # warm-up: first-call allocations
        start = time.perf_counter()
        classify(model, pixels, batch_size)
        rates[f"batch_{batch_size}"] = count / (time.perf_counter() - start)
    return rates


def one(model: str, pipeline: str, args: argparse.Namespace) -> dict[str, float]:
    """What one fresh process measures for ``--one MODEL PIPELINE``."""
    if pipeline == INFERENCE:
        return run_inference(model, args.accelerator, args.images)
    return run_pipeline(model, pipeline, args.accelerator, args.batch_size, args.root, args.images, args.compile)


def table(args: argparse.Namespace) -> list[dict]:
    """The epoch table: every model through every pipeline, the ratios, and inference; printed and returned."""
    results = []
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"{args.threads} CPU threads"
    print(f"one training epoch on {device}, median of {args.repeats} fresh processes per pipeline, taking turns")
    header = f"{'model':<11} {'pipeline':<32} {'batch':>6} {'epoch s':>8} {'runs s':>13} {'CPU s':>7} {'images/s':>9}"
    print(f"{header} {'peak MB':>8}")
    for model in args.models.split(","):
        row = {"model": model, "batch_size": args.batch_size, "accelerator": args.accelerator, "device": device}
        workers = {pipeline: worker_arguments(model, pipeline, args) for pipeline in args.pipelines}
        for pipeline, measured in alternating_medians(workers, args.repeats, "seconds").items():
            row[pipeline] = measured
            print(
                f"{model:<11} ({pipeline}) {PIPELINES[pipeline]:<28} {measured['batch_size']:>6} "
                f"{measured['seconds']:>8.2f} {_spread(measured['seconds_runs']):>13} {measured['cpu_seconds']:>7.2f} "
                f"{measured['images'] / measured['seconds']:>9.0f} "
                f"{measured['peak_rss_mb']:>8.0f}"
            )
        for ratio, meaning in RATIOS.items():
            top, bottom = ratio.split("/")
            if top in row and bottom in row:
                row[ratio] = row[top]["seconds"] / row[bottom]["seconds"]
                row[f"{ratio} fastest"] = row[top]["seconds_runs"][0] / row[bottom]["seconds_runs"][0]
                print(
                    f"{model:<11} ratio ({top})/({bottom}) = {row[ratio]:.2f}{meaning}; "
                    f"of the fastest runs {row[f'{ratio} fastest']:.2f}"
                )
        if not args.no_inference:
            workers = {INFERENCE: worker_arguments(model, INFERENCE, args)}
            rates = alternating_medians(workers, args.repeats, "batch_1024")[INFERENCE]
            row[INFERENCE] = {key: rates[key] for key in ("batch_1", "batch_1024")}
            print(
                f"{model:<11} inference images/s: batch 1 {rates['batch_1']:.0f}, batch 1024 {rates['batch_1024']:.0f}"
            )
        results.append(row)
    return results


def _spread(runs: list[float]) -> str:
    """The fastest and slowest run, ``"7.21-10.54"``."""
    return f"{runs[0]:.2f}-{runs[-1]:.2f}"


def worker_arguments(model: str, pipeline: str, args: argparse.Namespace) -> list[str]:
    arguments = ["--one", model, pipeline, "--batch-size", str(args.batch_size), "--images", str(args.images)]
    arguments += ["--accelerator", args.accelerator, "--threads", str(args.threads)]
    arguments += ["--compile", args.compile] if args.compile else []
    return arguments + (["--root", args.root] if args.root else [])
