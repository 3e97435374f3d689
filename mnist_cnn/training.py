"""Fit, checkpoint and test one configured run: the library behind ``python -m mnist_cnn.train``."""

from __future__ import annotations

import json
import platform
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf

from mnist_cnn.callbacks import ExponentialMovingAverage, GracefulInterrupt, RandomState
from mnist_cnn.checkpoint_io import AtomicCheckpointIO
from mnist_cnn.checkpoints import check_resumable
from mnist_cnn.config import ConfigError, TrainConfig
from mnist_cnn.data import MNISTDataModule
from mnist_cnn.distributed import best_score, is_launching_process, share_run_dir, shared_run_dir
from mnist_cnn.evaluation.callback import EvaluationReport
from mnist_cnn.module import MNISTClassifier, NonFiniteLossError

LAST = "last.ckpt"
RESULT = "result.json"

# A run dir holds config.yaml and logs beside the checkpoints by design.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


class TrainingStopped(Exception):
    """Training ended before its planned end; ``exit_code`` is the status the command exits with."""

    def __init__(self, message: str, exit_code: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.exit_code, self.checkpoint = exit_code, checkpoint


@dataclass
class TrainResult:
    """What a run produced: its directory, checkpoints and final metrics."""

    run_dir: Path
    best_checkpoint: Path | None
    metrics: dict[str, float]
    epochs: int
    fit_seconds: float

    def summary(self) -> str:
        rows = [(name, f"{value:.4f}") for name, value in sorted(self.metrics.items())]
        rows += [
            ("epochs", str(self.epochs)),
            ("fit time", f"{self.fit_seconds:.1f} s"),
            ("best checkpoint", str(self.best_checkpoint or f"none: no validation, the final epoch is {LAST}")),
            ("run dir", str(self.run_dir)),
        ]
        if (self.run_dir / "evaluation").is_dir():
            rows.append(("evaluation report", str(self.run_dir / "evaluation")))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def save(self, seed: int | None) -> None:
        """Write ``result.json`` to the run dir: metrics, epochs, fit time, seed, command line and machine."""
        record = {
            "metrics": self.metrics,
            "epochs": self.epochs,
            "fit_seconds": round(self.fit_seconds, 1),
            "seed": seed,
            "command": command_line(),
            "machine": machine_description(),
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
        }
        (self.run_dir / RESULT).write_text(json.dumps(record, indent=2) + "\n")


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


def new_run_dir(model_root: Path) -> Path:
    """Create ``<model_root>/<timestamp>[_N]`` atomically, so concurrent runs never share a directory."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for attempt in range(1, 1000):
        run_dir = model_root / (stamp if attempt == 1 else f"{stamp}_{attempt}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {model_root}")


def resolve_resume(ckpt_path: str | None, model_root: Path) -> Path | None:
    """The checkpoint to resume from: a file, or ``"last"`` for the newest ``last.ckpt`` of this model."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        candidates = sorted(model_root.glob(f"*/{LAST}"), key=lambda path: path.stat().st_mtime)
        if not candidates:
            raise ConfigError(
                f"ckpt_path=last: no {model_root}/*/{LAST} to resume from; train once first or pass ckpt_path=<file>"
            )
        return candidates[-1]
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r}: no such file")
    return path


def build_module(cfg: TrainConfig) -> MNISTClassifier:
    """The LightningModule for ``cfg``; bad architecture options become a ``ConfigError``."""
    try:
        return MNISTClassifier(
            model_name=cfg.model.name,
            model_kwargs=cfg.model.kwargs(),
            optimizer=cfg.optimizer.name,
            lr=cfg.optimizer.lr * cfg.batch_scale,  # the linear scaling rule, with the batch below
            weight_decay=cfg.optimizer.weight_decay,
            momentum=cfg.optimizer.momentum,
            scheduler=cfg.scheduler.name,
            decay_epochs=cfg.scheduler.decay_epochs,
            decay_rate=cfg.scheduler.decay_rate,
            label_smoothing=cfg.label_smoothing,
        )
    except ValueError as error:
        raise ConfigError(f"invalid options for model {cfg.model.name}: {error}") from None


def build_datamodule(cfg: TrainConfig) -> MNISTDataModule:
    """The data for ``cfg``, its training batch scaled by ``batch_scale`` like the learning rate."""
    return MNISTDataModule(**{**asdict(cfg.data), "batch_size": cfg.data.batch_size * cfg.batch_scale})


def build_logger(cfg: TrainConfig, run_dir: Path) -> Logger:
    if cfg.logger.name == "tensorboard":
        return TensorBoardLogger(save_dir=run_dir, name="tensorboard")
    return CSVLogger(save_dir=run_dir, name="csv")  # a new version_N per (re)start: nothing is overwritten


def build_trainer(cfg: TrainConfig, run_dir: Path, interrupt: GracefulInterrupt) -> L.Trainer:
    """The Trainer for ``cfg``; with ``data.val_size=0`` it never validates and keeps only ``last.ckpt``."""
    validates = cfg.data.val_size > 0
    # Lightning's own ``save_last=True`` (2.6) rewrites last.ckpt only in epochs that also save a best
    # checkpoint, so after the last improvement it would go stale; an unmonitored top-1 checkpoint named
    # "last" is rewritten after every validation (or training epoch) instead: the resume point and final weights.
    latest = ModelCheckpoint(dirpath=run_dir, filename=LAST.removesuffix(".ckpt"), enable_version_counter=False)
    history = run_dir if cfg.logger.name == "csv" else None
    report = EvaluationReport(run_dir / "evaluation", history=history)
    callbacks: list[L.Callback] = [
        latest,
        LearningRateMonitor(logging_interval="epoch"),
        report,
        interrupt,
        RandomState(),
    ]
    if validates:  # first, so that it is ``trainer.checkpoint_callback``
        callbacks.insert(0, ModelCheckpoint(dirpath=run_dir, **asdict(cfg.callbacks.checkpoint)))
    early_stopping = asdict(cfg.callbacks.early_stopping)
    if early_stopping.pop("enabled"):
        callbacks.append(EarlyStopping(**early_stopping))
    if cfg.callbacks.ema.enabled:
        callbacks.append(ExponentialMovingAverage(decay=cfg.callbacks.ema.decay))
    no_validation = {} if validates else {"limit_val_batches": 0, "num_sanity_val_steps": 0}
    return L.Trainer(
        **{**asdict(cfg.trainer), **no_validation},
        default_root_dir=run_dir,
        logger=build_logger(cfg, run_dir),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )


def train(cfg: TrainConfig) -> TrainResult:
    """Fit ``cfg``'s model, keep the best and last checkpoints, and test the best one (the last without
    validation)."""
    if cfg.seed is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    model_root = Path(cfg.checkpoint_root) / cfg.model.name
    resume = resolve_resume(cfg.ckpt_path, model_root)
    module = build_module(cfg)
    if resume is not None:
        check_resumable(resume, dict(module.hparams))
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")  # reads and checks every file before anything is created

    if resume is not None and resume.resolve().parent.parent == model_root.resolve():
        run_dir = resume.parent.resolve()  # continue the run in its own directory
    elif not is_launching_process():  # a DDP process of rank > 0: rank 0 made the run dir
        run_dir = shared_run_dir(model_root.resolve())
    else:
        run_dir = new_run_dir(model_root.resolve())
        share_run_dir(run_dir)
        OmegaConf.save(OmegaConf.structured(cfg), run_dir / "config.yaml")

    interrupt = GracefulInterrupt(run_dir / LAST)
    trainer = build_trainer(cfg, run_dir, interrupt)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    except SIGTERMException:  # Lightning's own handling would exit with status 0
        name = interrupt.signal_name or "SIGTERM"
        message = f"interrupted by {name}; saved a resumable checkpoint: {run_dir / LAST}"
        raise TrainingStopped(message, 128 + getattr(signal, name), run_dir / LAST) from None
    except NonFiniteLossError as error:
        last = run_dir / LAST if (run_dir / LAST).is_file() else None
        raise TrainingStopped(f"{error}; last good checkpoint: {last or 'none yet'}", 3, last) from None
    fit_seconds = time.perf_counter() - start

    checkpoint = trainer.checkpoint_callback
    monitored = checkpoint is not None and checkpoint.monitor is not None and checkpoint.best_model_path
    best = Path(checkpoint.best_model_path) if monitored else None
    metrics = {f"best_{checkpoint.monitor}": best_score(checkpoint, best)} if best else {}
    if cfg.test:
        tested = best or run_dir / LAST  # without validation there is no best epoch: test the final one
        ckpt_path = str(tested) if tested.is_file() else None
        (test_metrics,) = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics.update(test_metrics)
    result = TrainResult(run_dir, best, metrics, trainer.current_epoch, fit_seconds)
    if trainer.is_global_zero:
        result.save(cfg.seed)
    return result
