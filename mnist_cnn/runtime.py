"""Process-wide settings for PyTorch on the CPU, applied by the commands before they import torch.

Both act on how the process runs, not on what it computes:

- OpenMP threads sleep as soon as a parallel region ends (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning for
  it to start again. Every PyTorch operator is a parallel region that waits for all its threads: on a machine
  whose cores other processes share, a spinning thread holds a core that the thread it waits for needs, and a
  training step took 4-5 times as long. OpenMP reads the setting when torch loads it, so it has to come first;
  a value already in the environment is kept.
- glibc's ``malloc`` keeps freed memory for the next allocation of that size instead of returning each large
  block to the kernel (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``). PyTorch allocates every activation and
  gradient afresh at every step; given back and taken again, each page of them faults in zeroed memory anew
  (9,000 page faults and a quarter of the CPU time of a simple_cnn step on a CPU). TensorFlow keeps its own pool.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, from glibc's malloc.h
LARGE_BLOCKS_FROM_HEAP = 1 << 30  # blocks up to 1 GiB come from the reusable heap, not from mmap
NEVER_TRIM = (1 << 31) - 1  # the most freed memory a heap keeps before it is given back


def tune_cpu_process() -> None:
    """Apply both settings to this process (the first one only if torch is not loaded yet: later it is too late;
    processes started from here inherit it)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()


def keep_freed_memory() -> bool:
    """Ask glibc's ``malloc`` to keep freed memory for reuse; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # another C library (musl)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE_BLOCKS_FROM_HEAP)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
