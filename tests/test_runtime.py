"""The process settings the commands apply before importing torch (mnist_cnn.runtime), in fresh processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAULTS = """
import json, resource, sys
from mnist_cnn.runtime import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
import torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(128, 32, 26, 26)  # 11 MB, the size of a simple_cnn activation
before = faults()
for _ in range(20):
    x = torch.ones(128, 32, 26, 26)  # the previous block is freed as this one is made
print(json.dumps({"kept": kept, "faults": faults() - before}))
"""


def run_python(code: str, *args: str, **env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"} | env
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_kept_memory_serves_the_next_step_without_page_faults() -> None:
    default, kept = (json.loads(run_python(FAULTS, mode)) for mode in ("default", "keep"))
    assert kept["kept"] is True
    assert default["faults"] > 20 * 1000  # each new 11 MB block faults in (most of) its 2,700 pages
    assert kept["faults"] < 100


def test_openmp_threads_sleep_when_idle_unless_the_environment_says_otherwise() -> None:
    code = "from mnist_cnn.runtime import tune_cpu_process; tune_cpu_process(); import os; "
    code += "print(os.environ.get('OMP_WAIT_POLICY'))"
    assert run_python(code) == "PASSIVE"
    assert run_python(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    too_late = "import torch; " + code  # OpenMP has read its settings: setting them now would only mislead
    assert run_python(too_late) == "None"


def test_a_command_tunes_its_process_before_torch_loads(tmp_path: Path) -> None:
    code = (
        "import sys; from mnist_cnn import cli; seen = {}\n"
        "def task(cfg):\n"
        "    import os; seen['torch'] = 'torch' in sys.modules; seen['policy'] = os.environ.get('OMP_WAIT_POLICY')\n"
        f"sys.argv = ['x', 'hydra.run.dir={tmp_path}']; cli.hydra_command('evaluate')(task)(); print(seen)"
    )
    assert run_python(code) == "{'torch': False, 'policy': 'PASSIVE'}"
