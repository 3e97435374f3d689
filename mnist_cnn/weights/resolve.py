"""One resolver for what ``ckpt_path`` and ``weights`` name, the same in every command (no torch needed)."""

from __future__ import annotations

from pathlib import Path

from mnist_cnn.errors import CheckpointError
from mnist_cnn.weights.manifest import read_manifest, verified_checkpoint

BEST, LAST = "best.ckpt", "last.ckpt"  # what a training run dir holds: best validation epoch, final epoch
FORMS = "a .ckpt file, a training run directory or a shipped model name"


def resolve_checkpoint(spec: str, key: str = "ckpt_path", prefer: str = BEST, runs: Path | None = None) -> Path:
    """The checkpoint file ``spec`` names: a ``.ckpt`` file; a run directory (its ``prefer`` file, else the other
    one); a shipped model name (sha256 verified); or, when ``runs`` is given, ``last``: the newest
    ``runs/*/last.ckpt``. ``key`` names the option in messages."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in (prefer, LAST if prefer == BEST else BEST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{key}={spec}: the directory holds no {BEST} or {LAST}; pass a run directory")
    if spec == "last" and runs is not None:
        candidates = sorted(runs.glob(f"*/{LAST}"), key=lambda found: found.stat().st_mtime)
        if not candidates:
            raise CheckpointError(
                f"{key}=last: no {runs}/*/{LAST} to resume from; train once first or pass {key}=<file>"
            )
        return candidates[-1]
    manifest = read_manifest()
    if spec in manifest:
        return verified_checkpoint(spec)
    shipped = ", ".join(sorted(manifest)) or "none"
    forms = FORMS + (", or last" if runs is not None else "")
    raise CheckpointError(
        f"{key}={spec}: no such file or directory, nor a shipped model name (shipped: {shipped}); use {forms}"
    )
