"""NCCL backend: its choices against a fake ``cupy.cuda.nccl`` (CPU), and GPU tensors
through real NCCL where CuPy, NCCL and a GPU exist (marked ``gpu``, skipped elsewhere)."""
import re
from types import SimpleNamespace

import numpy as np
import pytest

import distgraph as dg
from _mpirun import run_mpi
from distgraph.comm import nccl as dg_nccl
from distgraph.comm.base import ReduceOp


def fake_nccl(code, avg=True):
    consts = dict(NCCL_SUM=0, NCCL_PROD=1, NCCL_MAX=2, NCCL_MIN=3)
    if avg:
        consts["NCCL_AVG"] = 4  # CuPy's binding exports it (cupy_backends/cuda/libs/nccl.pxd)
    return SimpleNamespace(get_version=lambda: code, **consts)


@pytest.mark.parametrize("code, version", [(22803, (2, 28, 3)), (23000, (2, 30, 0)),
                                           (21003, (2, 10, 3)), (2708, (2, 7, 8))])
def test_nccl_version_codes(code, version):
    assert dg_nccl.nccl_version(fake_nccl(code)) == version


@pytest.mark.parametrize("code, avg, dtype, native", [
    (22803, True, np.float32, True),    # NCCL 2.28: ncclAvg
    (22803, True, np.float16, True),
    (22803, True, np.int32, False),     # NCCL's integer average truncates: SUM + divide
    (20903, True, np.float32, False),   # NCCL 2.9: no ncclAvg
    (22803, False, np.float32, False),  # a CuPy without NCCL_AVG
])
def test_avg_uses_nccl_avg_when_nccl_has_it(code, avg, dtype, native):
    n = fake_nccl(code, avg)
    x = np.arange(4, dtype=dtype)
    assert dg_nccl._redop(n, ReduceOp.AVG, x) == (4 if native else n.NCCL_SUM)
    after = dg_nccl._divide_after(n, ReduceOp.AVG, x, x, 2)
    if native:
        assert after is None  # no second pass over the buffer
    else:
        assert callable(after)  # SUM, then the division on the NCCL stream
        if x.dtype.kind == "f":
            after()
            np.testing.assert_array_equal(x, np.arange(4, dtype=dtype) / 2)
    assert dg_nccl._redop(n, ReduceOp.SUM, x) == n.NCCL_SUM
    assert dg_nccl._divide_after(n, ReduceOp.SUM, x, x, 2) is None


@pytest.mark.gpu
@pytest.mark.parametrize("op", [ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR])
def test_bitwise_reductions_are_refused_by_nccl_saying_what_to_do(op):
    from distgraph.comm.base import CommError
    with pytest.raises(CommError, match=rf"NCCL has no bitwise reduction \(ReduceOp.{op.name}\).*MPI group"):
        dg_nccl._redop(fake_nccl(22803, True), op, np.arange(4, dtype=np.int32))


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


@pytest.mark.mpiexec
@pytest.mark.parametrize("case", ["same", "dtype"])
def test_nccl_group_has_the_periodic_check_on_its_own_side_channel(case):
    """Real MPI ranks, fake NCCL calls: the NCCL group's collectives are compared as the MPI group's are."""
    proc, _ = run_mpi(2, "mpi_nccl_check.py", case, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    if case == "same":
        assert sorted(re.findall(r"OK rank=(\d) seq=70", out)) == ["0", "1"], out
    else:   # both ranks raise at the same collective (#2, when #1's digests are looked at), naming both
        assert sorted(re.findall(r"MISMATCH rank=(\d) seq=2: ", out)) == ["0", "1"], out
        assert out.count("rank 0: all_reduce #1 shape=(8,) dtype=float32") == 2, out
        assert out.count("rank 1: all_reduce #1 shape=(8,) dtype=int32") == 2, out
