"""ZeroRedundancyOptimizer with real ranks (1, 2 and 3): equal to the unsharded optimizer, torch's
partition, consolidated state dicts that resume exactly, param groups and schedulers, Join."""
import re
import sys
from pathlib import Path

import pytest

from _mpirun import run_mpi

HERE = Path(__file__).resolve().parent
CHECKS = ["equal", "partition", "state_dict", "groups", "join", "errors"]


@pytest.mark.mpiexec
@pytest.mark.parametrize("n", [1, 2, 3])
def test_zero_checks_on_real_ranks(n):
    proc, secs = run_mpi(n, "zero_prog.py", timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for name in CHECKS:
        ranks = sorted(int(r) for r in re.findall(rf"OK {name} rank (\d+)", out))
        assert ranks == list(range(n)), f"check {name}: ranks {ranks} reported OK\n{out[-3000:]}"
    assert "Warning" not in out, out[-3000:]
    assert secs < 120, secs
