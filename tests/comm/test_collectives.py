"""Every collective with real processes: ``mpiexec -n 2`` and ``-n 4`` (oversubscribed here)."""
import re

import pytest

from _mpirun import run_mpi

# Not marked `mpi`: pytest-mpi treats that marker as "skip unless --with-mpi", and
# these tests start their own mpiexec, so they must run under a plain `pytest`.


@pytest.mark.parametrize("n, env", [(2, {"DISTGRAPH_DEBUG": "1"}), (4, {})], ids=["n2-debug", "n4"])
def test_collectives_match_numpy(n, env):
    proc, _ = run_mpi(n, "mpi_collectives.py", "--progress", env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    ok = sorted(int(r) for r, c in re.findall(r"OK rank=(\d+) checks=(\d+)", out) if int(c) > 60)
    assert ok == list(range(n)), out
    # async all_reduce finished while the caller slept (the progress daemon)
    assert len(re.findall(r"PROGRESS rank=\d+", out)) == n, out
