"""The process settings the commands apply before importing torch (mnist_cnn.runtime), in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_python(code: str, *args: str, **env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"} | env
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


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
