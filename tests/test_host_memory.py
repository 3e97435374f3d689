"""While fitting, glibc keeps the host memory a step frees for the next step; once fitting ends, what is free is
handed back. Checked through the calls made to the C library, not through a machine's page faults or memory."""

from __future__ import annotations

import platform
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from mnist_cnn import MNISTClassifier
from mnist_cnn.config import compose_config, validate
from mnist_cnn.training import host_memory
from mnist_cnn.training.callbacks import GracefulInterrupt
from mnist_cnn.training.host_memory import KeepFreedMemory, keep_freed_memory, release_freed_memory
from mnist_cnn.training.run import build_trainer

# glibc's malloc.h: mallopt(M_MMAP_THRESHOLD = -3, ...) and mallopt(M_TRIM_THRESHOLD = -1, ...)
RAISE_MMAP_THRESHOLD = ("mallopt", -3, 2**30)  # blocks under 1 GiB come from the heap
RAISE_MMAP_THRESHOLD_TO_MAX = ("mallopt", -3, 32 * 2**20)  # mallopt(3)'s documented maximum on 64-bit
RAISE_TRIM_THRESHOLD = ("mallopt", -1, 2**31 - 1)  # the heap shrinks only when 2 GiB at its top are free
DEFAULT_MMAP_THRESHOLD = ("mallopt", -3, 128 * 1024)  # mallopt(3)'s default of both
DEFAULT_TRIM_THRESHOLD = ("mallopt", -1, 128 * 1024)
TRIM = ("malloc_trim", 0)
RELEASE = [DEFAULT_MMAP_THRESHOLD, DEFAULT_TRIM_THRESHOLD, TRIM]


class RecordingLibc:
    """glibc's ``mallopt`` and ``malloc_trim``, recording each call; ``mallopt`` refuses (returns 0) the calls in
    ``refused`` and accepts (returns 1) the others, as glibc does."""

    def __init__(self, refused: tuple[tuple[str, int, int], ...] = ()) -> None:
        self.calls: list[tuple[str, int, int] | tuple[str, int]] = []
        self.refused = refused

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append(("mallopt", parameter, value))
        return int(("mallopt", parameter, value) not in self.refused)

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


class CallsAtFirstStep(L.Callback):
    """What had been asked of the C library when the first training step started."""

    def __init__(self, libc: RecordingLibc) -> None:
        self.libc, self.seen = libc, None

    def on_train_batch_start(self, *args: object) -> None:
        if self.seen is None:
            self.seen = list(self.libc.calls)


@pytest.fixture()
def libc(monkeypatch: pytest.MonkeyPatch) -> RecordingLibc:
    """The C library ``host_memory`` talks to, replaced by one that records the calls."""
    recording = RecordingLibc()
    monkeypatch.setattr(host_memory, "_glibc", lambda: recording)
    return recording


def _fit(*callbacks: L.Callback) -> None:
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[KeepFreedMemory(), *callbacks],
    )  # fmt: skip
    data = TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    trainer.fit(MNISTClassifier("lenet5"), DataLoader(data, batch_size=32))


def test_fitting_raises_the_thresholds_before_the_first_step_and_sets_them_back_at_the_end(
    libc: RecordingLibc,
) -> None:
    probe = CallsAtFirstStep(libc)
    _fit(probe)
    assert probe.seen == [RAISE_MMAP_THRESHOLD, RAISE_TRIM_THRESHOLD]
    assert libc.calls == [RAISE_MMAP_THRESHOLD, RAISE_TRIM_THRESHOLD, *RELEASE]


class FailsAtFirstStep(L.Callback):
    def on_train_batch_start(self, *args: object) -> None:
        raise RuntimeError("the first step failed")


def test_a_fit_that_fails_sets_the_thresholds_back_too(libc: RecordingLibc) -> None:
    with pytest.raises(RuntimeError, match="the first step failed"):
        _fit(FailsAtFirstStep())
    assert libc.calls == [RAISE_MMAP_THRESHOLD, RAISE_TRIM_THRESHOLD, *RELEASE]


def test_a_fit_that_changed_nothing_sets_nothing_back(libc: RecordingLibc) -> None:
    libc.refused = (RAISE_MMAP_THRESHOLD, RAISE_MMAP_THRESHOLD_TO_MAX)
    _fit()
    assert libc.calls == [RAISE_MMAP_THRESHOLD, RAISE_MMAP_THRESHOLD_TO_MAX]


def test_a_glibc_that_refuses_1_gib_gets_the_documented_maximum(libc: RecordingLibc) -> None:
    libc.refused = (RAISE_MMAP_THRESHOLD,)
    assert keep_freed_memory() is True
    assert libc.calls == [RAISE_MMAP_THRESHOLD, RAISE_MMAP_THRESHOLD_TO_MAX, RAISE_TRIM_THRESHOLD]


def test_a_glibc_that_refuses_both_is_left_as_it_was(libc: RecordingLibc) -> None:
    libc.refused = (RAISE_MMAP_THRESHOLD, RAISE_MMAP_THRESHOLD_TO_MAX)
    assert keep_freed_memory() is False
    assert libc.calls == [RAISE_MMAP_THRESHOLD, RAISE_MMAP_THRESHOLD_TO_MAX]  # the trim threshold is not touched


def test_without_glibc_nothing_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))  # musl, or macOS and Windows
    monkeypatch.setattr(host_memory.ctypes, "CDLL", lambda *args: pytest.fail("a C library was loaded"))
    assert keep_freed_memory() is False
    release_freed_memory()


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="this machine's C library is not glibc"
)
def test_this_machines_glibc_takes_the_thresholds() -> None:
    try:
        assert keep_freed_memory() is True
    finally:
        release_freed_memory()


def test_the_trainer_of_python_m_mnist_cnn_train_keeps_freed_memory(tmp_path: Path) -> None:
    trainer = build_trainer(validate(compose_config()), tmp_path, tmp_path, GracefulInterrupt(tmp_path / "last.ckpt"))
    assert any(isinstance(callback, KeepFreedMemory) for callback in trainer.callbacks)
