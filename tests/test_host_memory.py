"""Fitting reuses the host memory its steps free (glibc), instead of faulting in fresh pages every step."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_cnn.config import compose_config, validate
from mnist_cnn.training.callbacks import GracefulInterrupt
from mnist_cnn.training.host_memory import KeepFreedMemory
from mnist_cnn.training.run import build_trainer

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator only"
)

# A fresh process (the allocator's settings last for the process): simple_cnn fits 12 steps of batch 128, page
# faults counted over steps 4-11; then 200 MB are allocated, touched and freed, and handed back.
FIT = """
import json, resource, sys
import lightning as L, torch
from torch.utils.data import DataLoader, TensorDataset
from mnist_cnn import MNISTClassifier
from mnist_cnn.training.host_memory import KeepFreedMemory, release_freed_memory

def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def resident_mb() -> float:
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20

class FaultsPerStep(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, index):
        if index == 4:
            self.start = faults()
    def on_train_batch_end(self, trainer, module, outputs, batch, index):
        if index == 11:
            self.per_step = (faults() - self.start) / 8

probe = FaultsPerStep()
callbacks = [probe, KeepFreedMemory()] if sys.argv[1] == "keep" else [probe]
data = TensorDataset(torch.randn(12 * 128, 1, 28, 28), torch.randint(0, 10, (12 * 128,)))
trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
trainer.fit(MNISTClassifier("simple_cnn"), DataLoader(data, batch_size=128))
torch.ones(50 * 2**20).sum().item()  # 200 MB touched, then freed
freed = resident_mb()
release_freed_memory()
print(json.dumps({"faults_per_step": probe.per_step, "released_mb": freed - resident_mb()}))
"""


def _fit(mode: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", FIT, mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_fitting_keeps_freed_memory_so_steps_stop_faulting_in_pages_and_hands_it_back_after() -> None:
    kept, default = _fit("keep"), _fit("default")
    # simple_cnn's first layer alone is 11 MB (2,800 pages) a step, forward and backward
    assert default["faults_per_step"] > 1000, default
    assert kept["faults_per_step"] < 50, kept
    assert kept["released_mb"] > 150, kept  # the freed 200 MB stayed in the heap until handed back


def test_the_trainer_of_python_m_mnist_cnn_train_keeps_freed_memory(tmp_path: Path) -> None:
    trainer = build_trainer(validate(compose_config()), tmp_path, tmp_path, GracefulInterrupt(tmp_path / "last.ckpt"))
    assert any(isinstance(callback, KeepFreedMemory) for callback in trainer.callbacks)
