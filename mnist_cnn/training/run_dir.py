"""The run directory: Hydra's output directory is the run's, ``<checkpoint_root>/<model>/<timestamp>[_N]``.

Everything a run writes goes there: Hydra's ``.hydra/`` and log, the checkpoints, metrics, ``result.json`` and
the evaluation report. The resolvers registered here let the configs name these directories:

- ``${mnist_cnn.run_dir:<checkpoint_root>,<model>,<ckpt_path>[,<key>]}``: a new directory, created atomically
  so that concurrent runs never share one; or, when ``ckpt_path`` resumes a checkpoint of an earlier run under
  ``<checkpoint_root>/<model>/``, that run's directory. ``key`` tells the jobs of a sweep apart (Hydra copies
  resolved values from a sweep to its jobs, and a resolved value is kept: the directory is made once).
- ``${mnist_cnn.new_dir:<parent>}``: a new directory under ``parent`` (a sweep, an evaluation report).
- ``${mnist_cnn.hydra_subdir:<checkpoint_root>,<model>,<ckpt_path>}``: ``.hydra`` for a new run; none for a
  resumed one, whose segment keeps its config, result and report in ``resume_<k>/`` instead (``segment_dir``),
  so nothing earlier is overwritten.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from omegaconf import OmegaConf

from mnist_cnn.errors import EXIT_INTERRUPTED, CheckpointError
from mnist_cnn.weights.resolve import LAST, resolve_checkpoint

STAMP = "%Y-%m-%d_%H-%M-%S"
CREATED: set[Path] = set()  # the directories this process made, which a command that fails early removes again
RESUME, RESULT = "resume_", "result.json"  # a resume's segment folder is resume_<k>; a finished segment's record
RUNS: list[Path] = []  # of those, the run directories and resume segments, which an interruption may remove


def launch_id() -> str | None:
    """An id every process of one distributed launch shares, when a cluster tool started them all: each then
    runs Hydra itself and must find the same directory. Lightning's own DDP launcher passes the directory on."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}"
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and os.environ.get("SLURM_JOB_ID"):
        return f"slurm-{os.environ['SLURM_JOB_ID']}"
    return None


def new_dir(parent: str | os.PathLike[str], key: str = "") -> Path:
    """Create ``<parent>/<timestamp>[_N]`` (``_N`` when taken) and return it, absolute."""
    parent = Path(parent).resolve()
    shared = launch_id()
    if shared:
        path = parent / (f"{shared}_{key}" if key else shared)
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = time.strftime(STAMP)
    for attempt in range(1, 1000):
        path = parent / (stamp if attempt == 1 else f"{stamp}_{attempt}")
        try:
            path.mkdir(parents=True)
            CREATED.add(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new directory under {parent}")


def model_root(checkpoint_root: str | os.PathLike[str], model_name: str) -> Path:
    """Where the runs of one model live."""
    return (Path(checkpoint_root) / model_name).resolve()


def resumed_run(ckpt_path: str | None, runs: Path) -> Path | None:
    """The directory of the earlier run ``ckpt_path`` resumes, when its checkpoint lies in one under ``runs``."""
    if not ckpt_path:
        return None
    try:
        checkpoint = resolve_checkpoint(ckpt_path, prefer=LAST, runs=runs)
    except CheckpointError:  # reported by the run itself, which then removes the directory it was given
        return None
    run = checkpoint.resolve().parent
    return run if run.parent == runs.resolve() else None


def segment_dir(run_dir: Path, resumed: bool) -> Path:
    """Where this segment of the run writes its config, result and report: the run dir for a new run, a new
    ``resume_<k>/`` inside it for the k-th resume."""
    if not resumed:
        return run_dir
    latest = latest_segment(run_dir)
    segment = run_dir / f"{RESUME}{int(latest.name.removeprefix(RESUME)) + 1 if latest != run_dir else 1}"
    segment.mkdir()
    CREATED.add(segment)
    RUNS.append(segment)
    return segment


def segments(run_dir: Path) -> list[Path]:
    """The folders of the run's segments in order: the run dir, then its ``resume_<k>/`` by k (other folders, such
    as a ``resume_old/`` a user made, are not segments)."""
    resumes = [path for path in run_dir.glob(f"{RESUME}*") if path.name.removeprefix(RESUME).isdigit()]
    return [run_dir, *sorted(resumes, key=lambda path: int(path.name.removeprefix(RESUME)))]


def latest_segment(run_dir: Path) -> Path:
    """The folder of the run's latest segment: its newest ``resume_<k>/``, else the run dir itself."""
    return segments(run_dir)[-1]


def finished_segment(run_dir: Path) -> Path | None:
    """The folder of the run's latest segment that finished (wrote ``result.json``), or None if none did: an
    interrupted first segment and a later resume that finished, or a finished run and a resume interrupted since,
    are both runs that finished."""
    finished = [segment for segment in segments(run_dir) if (segment / RESULT).is_file()]
    return finished[-1] if finished else None


def remove_new_dir(path: Path, parents: int) -> None:
    """If this process made ``path`` (for a command that then failed before doing anything), remove it and up to
    ``parents`` folders above it that it leaves empty (those it was created in)."""
    if path not in CREATED:
        return
    shutil.rmtree(path, ignore_errors=True)
    for parent in list(path.parents)[:parents]:
        try:
            parent.rmdir()
        except OSError:  # not empty: other runs live there
            break


def remove_unsaved_runs() -> None:
    """Remove the run directories (and resume segments) this process made that hold no checkpoint, for a run
    stopped before it saved one, and the folders above them that this leaves empty."""
    for path in RUNS:
        if not any(path.rglob("*.ckpt")):
            remove_new_dir(path, parents=2)


def exit_on_sigint(signum: int, frame: FrameType | None) -> NoReturn:
    """A SIGINT handler for a command that makes run directories: one ``error:`` line, those that hold no
    checkpoint removed, exit status 130. It exits at once (``os._exit``) rather than raising: an exception raised
    in the middle of an import (torch's takes seconds) leaves modules half made, and the libraries importing them
    turn it into other errors, with tracebacks."""
    with contextlib.suppress(RuntimeError):  # a reentrant call, if the signal came while stdout was being written
        sys.stdout.flush()
    os.write(2, b"error: interrupted by SIGINT\n")
    remove_unsaved_runs()
    os._exit(EXIT_INTERRUPTED)


def _run_dir(checkpoint_root: str, model: str, ckpt_path: str | None, key: Any = "") -> str:
    runs = model_root(checkpoint_root, model)
    resumed = resumed_run(ckpt_path, runs)
    if resumed is not None:
        return str(resumed)
    made = new_dir(runs, str(key))
    RUNS.append(made)
    return str(made)


def _hydra_subdir(checkpoint_root: str, model: str, ckpt_path: str | None) -> str | None:
    return None if resumed_run(ckpt_path, model_root(checkpoint_root, model)) else ".hydra"


def register_resolvers() -> None:
    """Make the resolvers above known to OmegaConf (before Hydra composes a config that uses them)."""
    resolvers = {
        "mnist_cnn.run_dir": _run_dir,
        "mnist_cnn.new_dir": lambda parent: str(new_dir(parent)),
        "mnist_cnn.hydra_subdir": _hydra_subdir,
    }
    for name, resolver in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)
