"""Hydra multirun: each job records its outcome in the sweep dir; a Hydra callback tabulates the sweep.

Each job trains in its own run dir (``<checkpoint_root>/<model>/<timestamp>``) and records itself in
``<sweep dir>/jobs/<job>.json``: as unfinished when it starts, with its result when it ends. A job that fails
(bad value, data error, non-finite metrics, any exception) is recorded as failed and returns None (Optuna then
marks the trial failed), so the launcher and sweeper go on with the other jobs; ``SweepSummary`` then writes
``summary.csv`` and ``summary.md`` to the sweep dir, naming each job's run dir, prints the table, and exits 1
when a job failed.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from mnist_cnn.errors import EXIT_SOME_FAILED, ConfigError, TrainingStopped, UserError

log = logging.getLogger(__name__)

JOBS = "jobs"  # <sweep dir>/jobs/<job number>.json
SUMMARY = "summary"  # summary.csv and summary.md in the sweep dir
UNFINISHED = "the job was killed or never finished"


@dataclass
class JobRecord:
    """One row of the sweep summary."""

    job: int
    overrides: str
    status: str  # "ok" or "failed"
    best_val_acc: Optional[float] = None
    test_acc: Optional[float] = None
    epochs: Optional[int] = None
    wall_s: Optional[float] = None
    run_dir: Optional[str] = None
    error: Optional[str] = None


def is_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m`` or ``hydra.mode=MULTIRUN``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def spawn_ddp(cfg: DictConfig) -> DictConfig:
    """``trainer.strategy=ddp`` re-runs the command line in each process, i.e. the whole sweep: use ``ddp_spawn``,
    unless a cluster (SLURM, torchrun) started the processes, so that Lightning starts none."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if cfg.trainer.strategy == "ddp" and not (SLURMEnvironment.detect() or TorchElasticEnvironment.detect()):
        log.info("multirun: trainer.strategy=ddp becomes ddp_spawn (ddp would relaunch the whole sweep)")
        with open_dict(cfg):
            cfg.trainer.strategy = "ddp_spawn"
    return cfg


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _record_path(hydra_cfg: DictConfig) -> Path:
    return Path(hydra_cfg.sweep.dir) / JOBS / f"{hydra_cfg.job.num}.json"


def _write(record: JobRecord, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(record), indent=2))


def run_job(cfg: DictConfig, fit: Callable[[DictConfig], Any]) -> float | None:
    """Run one sweep job with ``fit(cfg) -> TrainResult``; record it; return ``cfg.optimized_metric`` or None."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only  # here: Hydra's callback loads no Lightning

    hydra_cfg = HydraConfig.get()
    overrides = " ".join(hydra_cfg.overrides.task)
    run_dir = Path(hydra_cfg.runtime.output_dir)
    record = JobRecord(hydra_cfg.job.num, overrides, "failed", run_dir=str(run_dir), error=UNFINISHED)
    if rank_zero_only.rank == 0:
        _write(record, _record_path(hydra_cfg))
    start = time.perf_counter()
    value = None
    try:
        result = fit(spawn_ddp(cfg))
        record.epochs = result.epochs
        bad = {name: metric for name, metric in result.metrics.items() if not math.isfinite(metric)}
        if bad:
            raise FloatingPointError(f"non-finite metrics {bad}: the training diverged")
        if cfg.optimized_metric not in result.metrics:
            raise ConfigError(f"optimized_metric={cfg.optimized_metric} was not measured (it needs test=true)")
        value = result.metrics[cfg.optimized_metric]
        log.info(result.summary())
        record.status, record.error = "ok", None
        record.best_val_acc, record.test_acc = (
            _rounded(result.metrics.get(name)) for name in ("best_val_acc", "test_acc")
        )
    except (UserError, TrainingStopped, FloatingPointError) as error:
        record.error = f"{type(error).__name__}: {error}"
        log.error(f"job {record.job} failed: {error}")
    except Exception as error:  # a job's crash must not end the sweep; its traceback goes to its log
        record.error = f"{type(error).__name__}: {error}"
        log.exception(f"job {record.job} failed")
    record.wall_s = round(time.perf_counter() - start, 1)
    if not run_dir.is_dir():  # the job failed before training and removed its directory
        record.run_dir = None
    if rank_zero_only.rank == 0:
        _write(record, _record_path(hydra_cfg))
    return value


def read_records(sweep_dir: Path) -> list[JobRecord]:
    """Every job's record; a job that was killed or timed out keeps its unfinished record and counts as failed."""
    return [JobRecord(**json.loads(path.read_text())) for path in sorted((sweep_dir / JOBS).glob("*.json"))]


def ranked(records: list[JobRecord], metric: str) -> list[JobRecord]:
    """Successful jobs best first (highest ``metric``), then failed jobs in job order."""
    return sorted(records, key=lambda r: (r.status != "ok", -(getattr(r, metric) or 0.0), r.job))


def markdown(records: list[JobRecord]) -> str:
    names = [field.name for field in fields(JobRecord)]
    cells = [
        ["" if getattr(r, name) is None else str(getattr(r, name)).replace("|", "\\|") for name in names]
        for r in records
    ]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells]) + "\n"


def write_summary(records: list[JobRecord], sweep_dir: Path) -> tuple[Path, Path]:
    """``summary.csv`` and ``summary.md`` in ``sweep_dir``."""
    csv_path, md_path = sweep_dir / f"{SUMMARY}.csv", sweep_dir / f"{SUMMARY}.md"
    with csv_path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[field.name for field in fields(JobRecord)])
        writer.writeheader()
        writer.writerows(asdict(record) for record in records)
    md_path.write_text(markdown(records))
    return csv_path, md_path


class SweepSummary(Callback):
    """Registered in ``conf/train.yaml`` under ``hydra.callbacks``; acts only at the end of a multirun."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = ranked(read_records(sweep_dir), config.optimized_metric)
        if not records:
            return
        csv_path, md_path = write_summary(records, sweep_dir)
        print(f"\n{md_path.read_text()}\nsweep summary: {csv_path} and {md_path}")
        failed = sum(record.status != "ok" for record in records)
        if failed:
            print(
                f"error: {failed} of {len(records)} jobs failed (see the error column of {csv_path})", file=sys.stderr
            )
            sys.exit(EXIT_SOME_FAILED)
