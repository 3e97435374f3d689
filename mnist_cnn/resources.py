"""Where the package finds what it ships beside its code: the Hydra configs and the pretrained weights.

A checkout (and an editable install of it) has them at the repository's top level, ``conf/`` and
``checkpoints/pretrained/``; a built wheel carries the same folders inside the package. One lookup
serves all three, so the commands work from any directory.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def shipped(relative: str) -> Path:
    """``relative`` inside the installed package if it is there, else beside the package in its checkout."""
    inside = PACKAGE_DIR / relative
    return inside if inside.is_dir() else PACKAGE_DIR.parent / relative


CONF_DIR = shipped("conf")
PRETRAINED_DIR = shipped("checkpoints/pretrained")
