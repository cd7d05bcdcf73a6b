"""The examples run as written in the README and check their own results."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mpi_util import LAUNCHER_VARS, run_mpi  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_python(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=str(ROOT))


def test_quickstart():
    p = run_python(ROOT / "examples" / "quickstart.py")
    assert p.returncode == 0 and "loss" in p.stdout, p.stdout + p.stderr


def test_train_digits_one_process_reaches_97_percent():
    p = run_python(ROOT / "examples" / "train_digits.py")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "summary: mlp" in p.stdout and "cnn" in p.stdout


@pytest.mark.mpiexec
def test_train_digits_on_two_ranks_with_ddp_reaches_97_percent():
    proc, _ = run_mpi(2, ROOT / "examples" / "train_digits.py", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "on 2 rank(s)" in proc.stdout and "summary:" in proc.stdout
