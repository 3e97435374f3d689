"""Process-wide settings for PyTorch on the CPU, applied by the commands before they import torch.

OpenMP threads sleep as soon as a parallel region ends (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning for it
to start again. Every PyTorch operator is a parallel region that waits for all its threads: on a machine whose
cores other processes share, a spinning thread holds a core that the thread it waits for needs, and a training
step took 4-5 times as long. OpenMP reads the setting when torch loads it, so it has to come first; a value
already in the environment is kept. It changes how the process waits, not what it computes.
"""

from __future__ import annotations

import os
import sys


def tune_cpu_process() -> None:
    """Let OpenMP threads sleep when idle, unless torch is loaded already (then it is too late; processes started
    from here inherit the setting) or the environment says otherwise."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
