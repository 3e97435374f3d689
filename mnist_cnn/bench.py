"""``python -m mnist_cnn.bench``: one training epoch through three pipelines, side by side, on this machine.

(a) torchvision ``MNIST`` + ``DataLoader`` + ``ToTensor``/``Normalize``, plain loop (the usual tutorial path)
(b) a plain PyTorch loop over the whole dataset held as one in-memory tensor (no augmentation)
(c) this project's path: ``MNISTDataModule`` + ``MNISTClassifier`` under ``lightning.Trainer`` (augmentation on),
    configured as ``python -m mnist_cnn.train`` composes it with ``trainer=cpu``, or ``trainer=gpu`` (bf16, data
    on the GPU, ``batch_scale``) with ``--accelerator gpu``, where (a) and (b) run in float32 on the GPU too

plus inference throughput of ``MNISTClassifier`` (eval mode, as ``predict`` and ``Evaluator`` run it) at batch 1
and batch 1024. ``--startup`` times ``python -m mnist_cnn.train --help`` and a one-batch training run from
the shell; ``--predict-files N`` times ``python -m mnist_cnn.predict`` on N rendered test digits.

On the GPU each timed epoch follows an untimed warm-up (``WARMUP_BATCHES`` batches for (a) and (b), one epoch
for (c)): the first CUDA calls load kernels and choose cuDNN algorithms, a one-off cost that is not an epoch's.

Each (model, pipeline) runs in its own process so peak memory is its own. Report ratios, not seconds:
the seconds depend on the machine, the ratios measured in one run do much less.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from mnist_cnn.config import TrainConfig

PIPELINES = {
    "a": "torchvision DataLoader",
    "b": "plain loop, in-memory tensors",
    "c": "mnist_cnn (Lightning)",
}
INFERENCE = "inference"
WARMUP_BATCHES = 10  # on the GPU, untimed steps before (a) and (b) start the clock


def _plain_epoch(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> int:
    count = 0
    for images, labels in batches:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        count += len(labels)
    return count


def _finished(device: torch.device) -> float:
    """``perf_counter`` once the device's queued work is done (GPU kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _project_config(model_name: str, accelerator: str, batch_size: int, root: str | None) -> TrainConfig:
    """What ``python -m mnist_cnn.train model=<model> trainer=<accelerator>`` runs (``trainer=gpu``: bf16, data on
    the GPU, fused optimizer, ``batch_scale``), with the bench's Adam at 1e-3 and batch size like (a) and (b)."""
    from mnist_cnn.config import compose_config, validate

    overrides = [f"model={model_name}", f"trainer={accelerator}", "optimizer=adam", "optimizer.lr=0.001"]
    overrides += [f"data.batch_size={batch_size}", *([f"data.root={root}"] if root else [])]
    return validate(compose_config(*overrides))


def _project_epoch(
    model_name: str, accelerator: str, batch_size: int, root: str | None, images: int
) -> dict[str, float]:
    """(c): one epoch of this project's DataModule and LightningModule under ``lightning.Trainer``."""
    import lightning as L

    from mnist_cnn.training.run import build_datamodule, build_module

    class EpochTimer(L.Callback):  # on the GPU: keeps the second (warm) epoch's time
        def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.start = _finished(module.device)

        def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            self.seconds = _finished(module.device) - self.start

    cfg = _project_config(model_name, accelerator, batch_size, root)
    datamodule = build_datamodule(cfg)
    scaled_batch = datamodule.hparams.batch_size
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator=cfg.trainer["accelerator"], devices=1, precision=cfg.trainer["precision"],
        max_epochs=2 if accelerator == "gpu" else 1,
        limit_train_batches=math.ceil(images / scaled_batch), limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )  # fmt: skip
    trainer.fit(build_module(cfg), datamodule=datamodule)
    seen = min(trainer.num_training_batches * scaled_batch, len(datamodule.datasets["train"]))
    return {"seconds": timer.seconds, "images": seen, "batch_size": scaled_batch}


def _run_one(
    model_name: str, pipeline: str, accelerator: str, batch_size: int, root: str | None, images: int
) -> dict[str, float]:
    """Time one epoch over ``images`` training images (55k: all of them); returns seconds, images, batch size."""
    from mnist_cnn.data.files import ensure_mnist, read_splits
    from mnist_cnn.data.pixels import MEAN, STD, normalize
    from mnist_cnn.models import create_model

    torch.manual_seed(0)
    if pipeline == "c":
        return _project_epoch(model_name, accelerator, batch_size, root, images)

    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    model = create_model(model_name).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    warmup = WARMUP_BATCHES if device.type == "cuda" else 0
    if pipeline == "b":
        train_images, labels = read_splits(root).train
        train_images, labels = normalize(train_images).to(device), labels.to(device)
        _plain_epoch(model, optimizer, [(train_images[:batch_size], labels[:batch_size])] * warmup)
        start = _finished(device)
        order = torch.randperm(len(labels), device=device)[:images]
        batches = ((train_images[i], labels[i]) for i in order.split(batch_size))
        count = _plain_epoch(model, optimizer, batches)
        return {"seconds": _finished(device) - start, "images": count, "batch_size": batch_size}

    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    folder = ensure_mnist(root)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    dataset = datasets.MNIST(str(folder.parent.parent), train=True, transform=transform)
    train_indices = torch.randperm(len(dataset))[: min(images, 55_000)]
    loader = DataLoader(Subset(dataset, train_indices.tolist()), batch_size=batch_size, shuffle=True)
    if warmup:
        images_0, labels_0 = next(iter(loader))
        _plain_epoch(model, optimizer, [(images_0.to(device), labels_0.to(device))] * warmup)
    start = _finished(device)
    count = _plain_epoch(model, optimizer, ((x.to(device), y.to(device)) for x, y in loader))
    return {"seconds": _finished(device) - start, "images": count, "batch_size": batch_size}


def _run_inference(model_name: str, accelerator: str, images: int) -> dict[str, float]:
    """Images per second classifying uint8 images (normalisation included) at batch 1 and 1024; the pixels
    start on the CPU and the probabilities end there, as when predicting files."""
    from mnist_cnn.inference.classify import classify
    from mnist_cnn.training.module import MNISTClassifier

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


def _measure(model: str, pipeline: str, args: argparse.Namespace) -> dict[str, float]:
    """The run with the median epoch time of ``repeats`` fresh processes (shared machines are noisy)."""
    command = [sys.executable, "-m", "mnist_cnn.bench", "--one", model, pipeline, "--batch-size", str(args.batch_size)]
    command += ["--images", str(args.images), "--accelerator", args.accelerator]
    if args.root:
        command += ["--root", args.root]
    runs = []
    for _ in range(args.repeats):
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
    key = "seconds" if pipeline in PIPELINES else "batch_1024"
    return sorted(runs, key=lambda run: run[key])[len(runs) // 2]


def _wall_seconds(command: list[str], cwd: str, repeats: int) -> float:
    """Median wall time of ``repeats`` runs of ``command`` (interpreter start and imports included)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _startup(root: str | None, repeats: int) -> dict[str, float]:
    """Seconds for ``train --help`` and for a one-batch LeNet-5 run (one validation batch, no test), shell to
    shell: an upper bound of the time to the first training step."""
    with tempfile.TemporaryDirectory() as work:
        data = [f"data.root={root}"] if root else []
        one_batch = ["model=lenet5", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "test=false"]
        one_batch += ["trainer.limit_val_batches=1", f"checkpoint_root={work}", *data]
        train = [sys.executable, "-m", "mnist_cnn.train"]
        return {
            "help_s": _wall_seconds([*train, "--help"], work, repeats),
            "one_batch_run_s": _wall_seconds([*train, *one_batch], work, repeats),
        }


def _predict_files(count: int, root: str | None, repeats: int) -> dict[str, float]:
    """Seconds for ``python -m mnist_cnn.predict`` on ``count`` PNGs of test digits drawn on 300×200 paper."""
    from mnist_cnn.data.files import read_test_split
    from mnist_cnn.inference.images import draw_on_paper

    images, labels = read_test_split(root)
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "digits"
        folder.mkdir()
        for index in range(count):
            page = draw_on_paper(images[index % len(images), 0].numpy(), (300, 200), 100, (40 + index % 150, 50))
            page.save(folder / f"{index:05d}_{labels[index % len(labels)]}.png")
        predict = [sys.executable, "-m", "mnist_cnn.predict", "ckpt_path=simple_cnn"]
        command = [*predict, f"inputs={folder}", "output=p.csv"]
        seconds = _wall_seconds(command, work, repeats)
        rows = list(csv.DictReader((Path(work) / "p.csv").read_text().splitlines()))
    correct = sum(row["digit"] == Path(row["file"]).stem.split("_")[1] for row in rows)
    return {"files": count, "seconds": seconds, "files_per_s": count / seconds, "accuracy": correct / count}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lenet5", help="comma-separated model names (default: lenet5)")
    parser.add_argument("--pipelines", default="abc", help="which of a, b, c to run (default: abc)")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu", help="gpu: (c) runs trainer=gpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--root", default=None, help="data root (default: $MNIST_DATA_DIR, else ./data)")
    parser.add_argument("--images", type=int, default=55_000, help="training images per epoch (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is shown")
    parser.add_argument("--no-inference", action="store_true", help="skip the inference throughput")
    parser.add_argument("--startup", action="store_true", help="only time --help and a one-batch training run")
    parser.add_argument("--predict-files", type=int, default=0, metavar="N", help="only time predicting N files")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "PIPELINE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: PyTorch sees no CUDA GPU here; run it on a GPU machine, or drop the option")

    if args.one:
        model, pipeline = args.one
        if pipeline == INFERENCE:
            result = _run_inference(model, args.accelerator, args.images)
        else:
            result = _run_one(model, pipeline, args.accelerator, args.batch_size, args.root, args.images)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.accelerator == "gpu":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print(json.dumps(result))
        return
    if args.startup or args.predict_files:
        if args.startup:
            timed = _startup(args.root, args.repeats)
            print(f"train --help: {timed['help_s']:.2f} s; one-batch training run: {timed['one_batch_run_s']:.2f} s")
        else:
            timed = _predict_files(args.predict_files, args.root, args.repeats)
            print(
                f"predict {timed['files']} PNG files: {timed['seconds']:.2f} s ({timed['files_per_s']:.0f} files/s), "
                f"accuracy {timed['accuracy']:.2%}"
            )
        if args.json:
            Path(args.json).write_text(json.dumps(timed, indent=2))
        return

    results = []
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"{torch.get_num_threads()} CPU threads"
    print(f"one training epoch on {device}, median of {args.repeats}")
    print(f"{'model':<11} {'pipeline':<32} {'batch':>6} {'epoch s':>8} {'images/s':>9} {'peak MB':>8}")
    for model in args.models.split(","):
        row = {"model": model, "batch_size": args.batch_size, "accelerator": args.accelerator, "device": device}
        for pipeline in args.pipelines:
            measured = _measure(model, pipeline, args)
            row[pipeline] = measured
            print(
                f"{model:<11} ({pipeline}) {PIPELINES[pipeline]:<28} {measured['batch_size']:>6} "
                f"{measured['seconds']:>8.2f} {measured['images'] / measured['seconds']:>9.0f} "
                f"{measured['peak_rss_mb']:>8.0f}"
            )
        for top, bottom in (("c", "b"), ("a", "c")):
            if top in row and bottom in row:
                row[f"{top}/{bottom}"] = row[top]["seconds"] / row[bottom]["seconds"]
                print(f"{model:<11} ratio ({top})/({bottom}) = {row[f'{top}/{bottom}']:.2f}")
        if not args.no_inference:
            rates = _measure(model, INFERENCE, args)
            row[INFERENCE] = {key: value for key, value in rates.items() if key.startswith("batch_")}
            print(
                f"{model:<11} inference images/s: batch 1 {rates['batch_1']:.0f}, batch 1024 {rates['batch_1024']:.0f}"
            )
        results.append(row)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
