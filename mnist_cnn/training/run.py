"""Fit, checkpoint and test one configured run: the library behind ``python -m mnist_cnn.train``."""

from __future__ import annotations

import inspect
import json
import logging
import platform
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnist_cnn.config import TrainConfig
from mnist_cnn.data.datamodule import MNISTDataModule
from mnist_cnn.errors import EXIT_DIVERGED, CheckpointError, ConfigError, TrainingStopped
from mnist_cnn.evaluation.callback import EvaluationReport
from mnist_cnn.training.callbacks import GracefulInterrupt, RandomState
from mnist_cnn.training.checkpoint_io import AtomicCheckpointIO
from mnist_cnn.training.components import build, check_arguments
from mnist_cnn.training.module import MNISTClassifier, NonFiniteLossError
from mnist_cnn.training.run_dir import RESULT
from mnist_cnn.weights.checkpoints import check_same_architecture, is_resumable, read_checkpoint
from mnist_cnn.weights.resolve import LAST, resolve_checkpoint

# Arguments naming where a component writes: left out, they are the run dir; relative, they lie inside it.
RUN_DIR_ARGUMENTS = ("dirpath", "save_dir")


@dataclass
class TrainResult:
    """What a run produced: its directory, checkpoints and final metrics."""

    run_dir: Path
    best_checkpoint: Path | None
    metrics: dict[str, float]
    epochs: int
    fit_seconds: float
    report_dir: Path | None = None
    warm_up_seconds: float = 0.0  # on a GPU, before the fit: CUDA's start-up and compiling the network
    steps: int | None = None  # optimizer steps trained, every segment of the run counted

    def summary(self) -> str:
        rows = [(name, f"{value:.4f}") for name, value in sorted(self.metrics.items())]
        rows += [
            ("epochs", str(self.epochs)),
            ("fit time", f"{self.fit_seconds:.2f} s"),
            *([("warm-up time", f"{self.warm_up_seconds:.1f} s")] if self.warm_up_seconds else []),
            ("best checkpoint", str(self.best_checkpoint or f"none: no validation, the final epoch is {LAST}")),
            ("run dir", str(self.run_dir)),
        ]
        if self.report_dir is not None:
            rows.append(("evaluation report", str(self.report_dir)))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def save(self, path: Path, seed: int | None) -> None:
        """Write ``result.json``: metrics, epochs and steps, fit time, seed, command line and machine."""
        record = {
            "metrics": self.metrics,
            "epochs": self.epochs,
            "steps": self.steps,
            "fit_seconds": round(self.fit_seconds, 2),
            "warm_up_seconds": round(self.warm_up_seconds, 2),
            "seed": seed,
            "command": command_line(),
            "machine": machine_description(),
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
        }
        path.write_text(json.dumps(record, indent=2) + "\n")


def command_line() -> str:
    """The training command as typed: ``python -m mnist_cnn.train`` and its Hydra overrides."""
    from hydra.core.hydra_config import HydraConfig

    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else sys.argv[1:]
    return " ".join(["python -m mnist_cnn.train", *overrides])


def machine_description() -> str:
    """The accelerator or CPU a run used, e.g. ``NVIDIA H100 80GB HBM3`` or ``AMD EPYC, 2 threads``."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    threads = torch.get_num_threads()
    return f"{cpu}, {threads} CPU thread{'s' if threads > 1 else ''}"


def build_module(cfg: TrainConfig) -> MNISTClassifier:
    """The LightningModule for ``cfg``, its learning rate scaled by ``batch_scale`` like the batch, its network
    compiled if ``cfg.compile`` names a mode."""
    options = {key: value for key, value in cfg.model.items() if key != "name"}
    optimizer = dict(cfg.optimizer)
    if "lr" in optimizer:
        optimizer["lr"] = optimizer["lr"] * cfg.batch_scale  # the linear scaling rule, with the batch below
    try:
        module = MNISTClassifier(
            model_name=cfg.model["name"],
            model_kwargs=options,
            optimizer=optimizer,
            scheduler=cfg.scheduler,
            label_smoothing=cfg.label_smoothing,
        )
    except (ValueError, TypeError) as error:
        raise ConfigError(f"invalid options for model {cfg.model['name']}: {error}") from None
    if cfg.compile is not None:  # in place: the state dict, and so every checkpoint, keeps the network's own keys
        module.model.compile(mode=cfg.compile)
    return module


def build_datamodule(cfg: TrainConfig) -> MNISTDataModule:
    """The data for ``cfg``, its training batch scaled by ``batch_scale`` like the learning rate."""
    return MNISTDataModule(**{**vars(cfg.data), "batch_size": cfg.data.batch_size * cfg.batch_scale})


def _components(nodes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The named component nodes of a group (``callbacks``, ``logger``), those set to null left out."""
    return {name: node for name, node in nodes.items() if node is not None}


def _build_in_run_dir(node: dict[str, Any], key: str, run_dir: Path) -> Any:
    """Build a callback or logger, its ``RUN_DIR_ARGUMENTS`` resolved against ``run_dir``."""
    accepted = inspect.signature(check_arguments(node, key)).parameters
    where = {name: run_dir / (node.get(name) or "") for name in RUN_DIR_ARGUMENTS if name in accepted}
    return build({name: value for name, value in node.items() if name not in where}, key, **where)


def check_components(cfg: TrainConfig) -> None:
    """Refuse unknown arguments, missing GPUs and callbacks with nothing to watch before anything is built."""
    trainer = {key: value for key, value in cfg.trainer.items() if key != "_target_"}
    check_arguments(cfg.trainer, "trainer", ("callbacks", "logger", "plugins", "default_root_dir"))
    if trainer.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={trainer['accelerator']} needs a CUDA GPU and PyTorch sees none here: "
            "train on the CPU with trainer=cpu (the default), or run where a GPU is available"
        )
    for group in ("callbacks", "logger"):
        for name, node in _components(getattr(cfg, group)).items():
            check_arguments(node, f"{group}.{name}")
    check_arguments(cfg.optimizer, "optimizer", ("params",))
    if cfg.data.val_size == 0:
        watching = [f"callbacks.{name}" for name, node in _components(cfg.callbacks).items()
                    if str(node.get("monitor") or "").startswith("val_")]  # fmt: skip
        watching += ["scheduler"] if str((cfg.scheduler or {}).get("monitor") or "").startswith("val_") else []
        if watching:
            raise ConfigError(
                f"data.val_size=0 leaves nothing to validate on, so {', '.join(watching)} "
                f"{'has' if len(watching) == 1 else 'have'} nothing to watch: add "
                f"{' '.join(f'{key}=null' for key in watching)} (the run then keeps its final epoch)"
            )


def build_trainer(cfg: TrainConfig, run_dir: Path, report_dir: Path, interrupt: GracefulInterrupt) -> L.Trainer:
    """The Trainer for ``cfg``; with ``data.val_size=0`` it never validates and keeps only ``last.ckpt``."""
    callbacks = [
        _build_in_run_dir(node, f"callbacks.{name}", run_dir) for name, node in _components(cfg.callbacks).items()
    ]
    loggers = [_build_in_run_dir(node, f"logger.{name}", run_dir) for name, node in _components(cfg.logger).items()]
    # Lightning's own ``save_last=True`` (2.6) rewrites last.ckpt only in epochs that also save a best
    # checkpoint, so after the last improvement it would go stale; an unmonitored top-1 checkpoint named
    # "last" is rewritten after every validation (or training epoch) instead: the resume point and final weights.
    latest = ModelCheckpoint(dirpath=run_dir, filename=LAST.removesuffix(".ckpt"), enable_version_counter=False)
    callbacks += [latest, EvaluationReport(report_dir / "evaluation"), interrupt, RandomState()]
    arguments = dict(cfg.trainer)
    if arguments.get("enable_progress_bar") is None:  # a bar only where someone watches it
        arguments["enable_progress_bar"] = sys.stderr.isatty()
    if cfg.data.val_size == 0:
        arguments.update(limit_val_batches=0, num_sanity_val_steps=0)
    return build(
        arguments, "trainer", callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()],
        default_root_dir=run_dir,
    )  # fmt: skip


def _resume_point(cfg: TrainConfig, runs: Path, module: MNISTClassifier) -> Path | None:
    """The checkpoint ``ckpt_path`` resumes, checked to hold a run's state for this architecture."""
    if cfg.ckpt_path is None:
        return None
    if cfg.weights is not None:
        raise ConfigError(
            "ckpt_path and weights were both given: ckpt_path resumes a run where it stopped, weights starts a "
            "new run from a model's weights; give one of them"
        )
    path = resolve_checkpoint(cfg.ckpt_path, prefer=LAST, runs=runs)
    if not is_resumable(read_checkpoint(path)):
        raise CheckpointError(
            f"ckpt_path={cfg.ckpt_path} ({path}) holds weights only, no optimizer or training state to resume: "
            f"to start a new run from these weights (fine-tuning), use weights={cfg.ckpt_path} instead"
        )
    check_same_architecture(path, dict(module.hparams), "ckpt_path")
    return path


def _start_from_weights(cfg: TrainConfig, module: MNISTClassifier) -> None:
    """Load the weights ``weights=`` names into ``module``; the optimizer and schedule start fresh."""
    path = resolve_checkpoint(cfg.weights, key="weights")
    check_same_architecture(path, dict(module.hparams), "weights")
    module.load_state_dict(read_checkpoint(path)["state_dict"])


def warm_up(trainer: L.Trainer, module: MNISTClassifier, datamodule: MNISTDataModule, compiled: bool = False) -> float:
    """On one GPU, train a throwaway copy of ``module`` (no schedule) in ``trainer``'s precision and return the
    seconds it took, leaving the random state as it was: CUDA's one-off start-up (its context, libraries, and
    kernels loaded on their first use) is then done before fitting starts, so the fit time measures training
    alone. One step, or for a ``compiled`` network an epoch and a validation with that very network (its weights put
    back after), so that every batch shape the fit meets is compiled before it starts."""
    device = trainer.strategy.root_device
    if device.type != "cuda" or trainer.world_size > 1:
        return 0.0
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device]):
        throwaway = MNISTClassifier(**{**module.hparams, "scheduler": None})
        if compiled:
            weights = {name: value.clone() for name, value in module.model.state_dict().items()}
            throwaway.model = module.model
        L.Trainer(
            accelerator="gpu", devices=1, precision=trainer.precision, max_epochs=1, max_steps=-1 if compiled else 1,
            limit_val_batches=1.0 if compiled else 0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        ).fit(throwaway, datamodule=datamodule)  # fmt: skip
        if compiled:
            module.model.load_state_dict(weights)
            module.model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def log_through_root() -> None:
    """Leave Lightning's messages (the model summary among them) to the root logger's handlers, the command's
    console and log file: the console handler ``import lightning`` gives its own logger would print each one a
    second time, on stderr."""
    lightning_logger = logging.getLogger("lightning")
    for handler in list(lightning_logger.handlers):
        lightning_logger.removeHandler(handler)


def train(cfg: TrainConfig, run_dir: Path, segment: Path) -> TrainResult:
    """Fit ``cfg``'s model in ``run_dir``, keep its best and last checkpoints, and test the best one (the last
    without validation); this segment's result and report go to ``segment``. Everything is checked and every
    data file read before the first step, so that a bad input fails before any training."""
    log_through_root()
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    check_components(cfg)
    module = build_module(cfg)
    resume = _resume_point(cfg, run_dir.parent, module)
    if cfg.weights is not None:
        _start_from_weights(cfg, module)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if cfg.test:
        datamodule.setup("test")
    interrupt = GracefulInterrupt(run_dir / LAST)
    trainer = build_trainer(cfg, run_dir, segment, interrupt)
    warm_up_seconds = warm_up(trainer, module, datamodule, compiled=cfg.compile is not None)

    start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # a run dir holds the log and Hydra's files beside the checkpoints by design
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SIGTERMException:  # Lightning's own handling would exit with status 0
        name = interrupt.signal_name or "SIGTERM"
        message = f"interrupted by {name}; saved a resumable checkpoint: {run_dir / LAST}"
        raise TrainingStopped(message, 128 + getattr(signal, name), run_dir / LAST) from None
    except NonFiniteLossError as error:
        last = run_dir / LAST if (run_dir / LAST).is_file() else None
        raise TrainingStopped(f"{error}; last good checkpoint: {last or 'none yet'}", EXIT_DIVERGED, last) from None
    fit_seconds = time.perf_counter() - start

    checkpoint = trainer.checkpoint_callback
    monitored = checkpoint is not None and checkpoint.monitor is not None and checkpoint.best_model_path
    best = Path(checkpoint.best_model_path) if monitored else None
    metrics = {f"best_{checkpoint.monitor}": best_score(checkpoint, best)} if best else {}
    report = None
    if cfg.test:
        tested = best or run_dir / LAST  # without validation there is no best epoch: test the final one
        ckpt_path = str(tested) if tested.is_file() else None
        (test_metrics,) = trainer.test(
            module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True, verbose=False
        )
        metrics.update(test_metrics)
        report = segment / "evaluation"
    result = TrainResult(
        run_dir, best, metrics, trainer.current_epoch, fit_seconds, report, warm_up_seconds, steps=trainer.global_step
    )
    if trainer.is_global_zero:
        result.save(segment / RESULT, cfg.seed)
    return result


def best_score(checkpoint: ModelCheckpoint, path: Path) -> float:
    """The monitored score of the best checkpoint at ``path``; ``ddp_spawn`` does not send it back from its
    processes (Lightning restores only the path), so then it is read from the checkpoint file."""
    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    state = read_checkpoint(path)["callbacks"][checkpoint.state_key]
    return float(state["best_model_score"])
