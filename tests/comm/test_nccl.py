"""NCCL backend on GPU tensors: runs where CuPy, NCCL and a GPU exist, skipped elsewhere."""
import re

import pytest

import distgraph as dg
from _mpirun import run_mpi

pytestmark = pytest.mark.gpu


def test_nccl_collectives_match_numpy():
    if not dg.cuda.is_available():
        pytest.skip("needs CuPy and a CUDA GPU (the NCCL backend has never run on this machine)")
    from distgraph.comm import nccl
    if not nccl.available():
        pytest.skip("needs NCCL through cupy.cuda.nccl: install distgraph[cuda12] or [cuda13]")
    n = min(2, dg.cuda.device_count())  # NCCL needs one GPU per rank
    proc, _ = run_mpi(n, "mpi_nccl.py", timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert sorted(re.findall(r"OK rank=(\d)", out)) == [str(r) for r in range(n)], out
