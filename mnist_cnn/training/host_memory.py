"""Keep freed host memory for the next training step instead of handing it back to the system.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves large blocks (above an adaptive
threshold) with fresh ``mmap`` pages and returns them, or trims its heap, as soon as they are freed; a training
step frees its activations and gradients and allocates them again, so every step faults in and zeroes new pages:
4,000–5,000 page faults a step for simple_cnn at batch 128 (its first layer's output is 11 MB), 20,000 for
custom_cnn, which then spends 40 % of its step in the kernel. Raising glibc's mmap and trim thresholds keeps the
freed blocks in the heap, where the next step finds them.

jemalloc and tcmalloc, which PyTorch's CPU tuning guide suggests, do the same but must be preloaded before the
interpreter starts (``LD_PRELOAD``) and installed from outside Python; ``mallopt`` is glibc's own switch, so it is
called here through ``ctypes``.
"""

from __future__ import annotations

import ctypes
import platform

import lightning as L

# mallopt's parameters (glibc's malloc.h) and the values set; mallopt takes a C int, so each must fit in 31 bits
# (ctypes would silently wrap a larger one, 2**62 to 0: trim always).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap and stay there once freed
MMAP_THRESHOLD_DOCUMENTED_MAX = 32 << 20  # mallopt(3)'s limit on 64-bit, for a glibc that refuses more
TRIM_THRESHOLD = 2**31 - 1  # shrink the heap only when 2 GiB at its top are free
# Both thresholds' default (mallopt(3)), set back once fitting is over. glibc cannot report the values in force, and
# once set the mmap threshold no longer adapts to the blocks freed, as it did from its default before.
DEFAULT_THRESHOLD = 128 * 1024


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (Linux), else ``None`` (macOS, Windows, musl)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse, until ``release_freed_memory``; ``False`` where the C library is not
    glibc and nothing was changed."""
    libc = _glibc()
    if libc is None:
        return False
    kept = any(libc.mallopt(M_MMAP_THRESHOLD, value) for value in (MMAP_THRESHOLD, MMAP_THRESHOLD_DOCUMENTED_MAX))
    return bool(kept and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> None:
    """Set glibc's thresholds back to their defaults and hand the heap's free blocks back to the system
    (``malloc_trim``), once training is over."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)
        libc.malloc_trim(0)


class KeepFreedMemory(L.Callback):
    """While fitting, freed host memory is kept for the next step (``keep_freed_memory``); when fitting ends or
    fails, glibc's thresholds are set back and what is free is handed back (``release_freed_memory``). Switched on
    by ``callbacks=default`` (``conf/callbacks/default.yaml``: ``keep_freed_memory``)."""

    def __init__(self) -> None:
        self.kept = False  # whether this fit changed glibc's thresholds

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.kept = keep_freed_memory()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._release()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._release()

    def _release(self) -> None:
        if self.kept:
            release_freed_memory()
            self.kept = False
