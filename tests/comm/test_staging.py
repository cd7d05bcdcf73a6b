"""The MPI backend's handling of device arrays, driven on a CPU with a fake CUDA array.

``tests/fake_cuda.FakeCudaArray`` is host memory exposing ``__cuda_array_interface__``
(as in mpi4py's own tests).  This file is both the pytest module and the program it runs:

    mpiexec -n 2 python tests/comm/test_staging.py      # each rank prints OK rank=<r>
    python tests/comm/test_staging.py                   # a world of one

The program runs every collective of :class:`MPIProcessGroup` on fake device arrays
twice, through real MPI processes:

* ``staged`` (what ``DISTGRAPH_MPI_CUDA_AWARE=0`` selects): each device array is
  copied into a pinned host buffer after a stream synchronisation, MPI works on the
  host copies, and only the arrays the collective writes are copied back;
* ``direct`` (a CUDA-aware MPI): the fake itself goes to mpi4py, which reads pointer,
  shape and dtype through ``__cuda_array_interface__`` -- no host copies.

Results are checked against NumPy, and the copies, synchronisations and pinned
allocations are counted per call.  What this does NOT prove: anything about real
device memory, CUDA streams, pinned memory, a CUDA-aware MPI reading a device
pointer, or CuPy's method signatures (see tests/fake_cuda.py and docs/gpu.md).
"""
import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent))


# ------------------------------------------------------------------ program
def _checks(pg, fake, mode):
    """Every collective on fake device arrays; returns {name: counts} for this rank."""
    from fake_cuda import fake_array

    from distgraph.comm.base import BITWISE_OPS, ReduceOp
    from distgraph.comm.single import reduce_arrays

    r, n = pg.rank, pg.size
    counts = {}
    # begin() below describes each call by the first array the backend gets, which is the output
    # on gather's root and the input elsewhere: not what collectives.py does, so no periodic check.
    pg.check_every = 0

    def data(q, dtype=np.float32, shape=(3, 4)):
        return (np.arange(int(np.prod(shape))).reshape(shape) % 3 + q + 1).astype(dtype)

    def run(name, fn, *args):
        before = fake.counts()
        if not name.startswith(("send", "recv")):  # point-to-point calls are not collectives
            pg.begin(name.split("/")[0], args[0].host() if hasattr(args[0], "host") else None)
        work = fn(*args)
        work.wait()
        after = fake.counts()
        counts[name] = {k: after[k] - before[k] for k in after}

    def eq(name, got, want):
        got = got.host() if hasattr(got, "host") else got
        if got.dtype != want.dtype or not np.allclose(got, want, rtol=1e-3):
            raise AssertionError(f"[rank {r}] {mode} {name}: expected\n{want}\ngot\n{got}")

    for op in (op for op in ReduceOp if op not in BITWISE_OPS):   # (float data)
        x = fake_array(data(r), fake)
        run(f"all_reduce/{op.name}", pg.all_reduce, x, op)
        eq(f"all_reduce {op.name}", x, reduce_arrays([data(q) for q in range(n)], op))
    for dtype in (np.float16, np.float64, np.int32, np.int64):
        x = fake_array(data(r, dtype), fake)
        run(f"all_reduce/SUM/{np.dtype(dtype).name}", pg.all_reduce, x, ReduceOp.SUM)
        eq(f"all_reduce {np.dtype(dtype).name}", x, sum(data(q, dtype) for q in range(n)))
    x = fake_array(data(r), fake)
    run("broadcast", pg.broadcast, x, n - 1)
    eq("broadcast", x, data(n - 1))
    out, x = fake_array(np.zeros((n, 3, 4), np.float32), fake), fake_array(data(r), fake)
    run("all_gather", pg.all_gather, out, x)
    eq("all_gather", out, np.stack([data(q) for q in range(n)]))
    eq("all_gather input untouched", x, data(r))
    full = np.concatenate([data(r + k) for k in range(n)])
    out, x = fake_array(np.zeros((3, 4), np.float32), fake), fake_array(full, fake)
    run("reduce_scatter", pg.reduce_scatter, out, x, ReduceOp.SUM)
    eq("reduce_scatter", out, sum(data(q + r) for q in range(n)))
    eq("reduce_scatter input untouched", x, full)
    x = fake_array(data(r), fake)
    run("reduce", pg.reduce, x, 0, ReduceOp.SUM)
    eq("reduce", x, sum(data(q) for q in range(n)) if r == 0 else data(r))
    x = fake_array(data(r), fake)
    out = fake_array(np.zeros((n, 3, 4), np.float32), fake) if r == 0 else None
    run("gather", pg.gather, out, x, 0) if r == 0 else run("gather", lambda o, i, root:
                                                          pg.gather(None, i, root), x, x, 0)
    if r == 0:
        eq("gather", out, np.stack([data(q) for q in range(n)]))
    out = fake_array(np.zeros((3, 4), np.float32), fake)
    src = fake_array(np.stack([data(10 * q) for q in range(n)]), fake) if r == 0 else None
    run("scatter", pg.scatter, out, src, 0)
    eq("scatter", out, data(10 * r))
    counts_ = [2] * n
    x = fake_array(np.arange(2 * n, dtype=np.float32) + 100 * r, fake)
    out = fake_array(np.zeros(2 * n, np.float32), fake)
    run("all_to_all", pg.all_to_all, out, x, counts_, counts_)
    eq("all_to_all", out, np.concatenate(
        [(np.arange(2 * n, dtype=np.float32) + 100 * q)[2 * r:2 * r + 2] for q in range(n)]))
    if n > 1:  # a ring: even ranks send first, odd ranks receive first (blocking waits)
        nxt, prv = (r + 1) % n, (r - 1) % n
        send_x = fake_array(data(r), fake)
        recv_x = fake_array(np.zeros((3, 4), np.float32), fake)
        steps = [("send", pg.send, send_x, nxt), ("recv", pg.recv, recv_x, prv)]
        for name, fn, arr, peer in (steps if r % 2 == 0 else steps[::-1]):
            run(name, fn, arr, peer, 7)
        eq("recv", recv_x, data(prv))
    return counts


# How many device arrays each call hands to MPI, how many of them it reads (only those are
# copied to the host: a pure output is not), and how many it writes (copied back).
def expected_counts(name, rank, size):
    """(arrays given, arrays read, arrays written) for ``name`` on ``rank`` (roots: see _checks)."""
    base = name.split("/")[0]
    root = rank == 0
    table = {"all_reduce": (1, 1, 1), "broadcast": (1, 1 if rank == size - 1 else 0, 1), "all_gather": (2, 1, 1),
             "reduce_scatter": (2, 1, 1), "all_to_all": (2, 1, 1), "send": (1, 1, 0), "recv": (1, 0, 1),
             "reduce": (1, 1, 1) if root else (1, 1, 0),
             "gather": (2, 1, 1) if root else (1, 1, 0),
             "scatter": (2, 1, 1) if root else (1, 0, 1)}
    return table[base]


def program():
    import fake_cuda

    fake = fake_cuda.install()
    from distgraph.comm import mpi
    from distgraph.comm.mpi import MPIProcessGroup

    pg = MPIProcessGroup.world(timeout=60)
    report = {"rank": pg.rank, "size": pg.size, "detected_cuda_aware": mpi.cuda_aware(),
              "env": os.environ.get("DISTGRAPH_MPI_CUDA_AWARE"), "modes": {}}
    for mode in ("staged", "direct"):
        pg._cuda_aware = mode == "direct"  # what cuda_aware() decided, cached per group
        report["modes"][mode] = _checks(pg, fake, mode)
    # Rank 0 writes every rank's report to a file (ranks' stdout lines can interleave).
    reports = pg.all_gather_bytes(json.dumps(report).encode())
    target = os.environ.get("DG_STAGING_REPORT")
    if pg.rank == 0:
        text = "\n".join(b.decode() for b in reports)
        if target:
            Path(target).write_text(text)
        else:
            print(text, flush=True)
    pg.shutdown()
    print(f"OK rank={pg.rank}", flush=True)


# -------------------------------------------------------------------- tests


def _check_counts(res):
    size = res["size"]
    for mode, counts in res["modes"].items():
        for name, c in counts.items():
            given, read, written = expected_counts(name, res["rank"], size)
            # one stream synchronisation per device array, before MPI may read it
            assert c["syncs"] == given, (mode, name, c)
            if mode == "staged":
                assert (c["pinned"], c["downloads"], c["uploads"]) == (given, read, written), \
                    (mode, name, c)
            else:
                assert (c["pinned"], c["downloads"], c["uploads"]) == (0, 0, 0), (mode, name, c)


def _run(n, tmp_path, env=None):
    from _mpirun import run_mpi
    report = tmp_path / f"staging-{n}.jsonl"
    proc, _ = run_mpi(n, Path(__file__), env={**(env or {}), "DG_STAGING_REPORT": str(report)},
                      timeout=90)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert sorted(re.findall(r"OK rank=(\d)", out)) == [str(r) for r in range(n)], out
    return {d["rank"]: d for d in map(json.loads, report.read_text().splitlines())}


def test_staged_and_direct_paths_on_two_ranks(tmp_path):
    results = _run(2, tmp_path)
    assert sorted(results) == [0, 1]
    for res in results.values():
        assert set(res["modes"]) == {"staged", "direct"}
        assert len(res["modes"]["staged"]) == 18  # every collective, send and recv included
        _check_counts(res)


def test_staged_and_direct_paths_in_a_world_of_one(tmp_path):
    res = _run(1, tmp_path)[0]
    assert res["size"] == 1
    _check_counts(res)


def test_cuda_awareness_override_and_detection(tmp_path):
    res = _run(1, tmp_path, env={"DISTGRAPH_MPI_CUDA_AWARE": "1"})[0]
    assert res["detected_cuda_aware"] is True and res["env"] == "1"
    res = _run(1, tmp_path, env={"DISTGRAPH_MPI_CUDA_AWARE": "0"})[0]
    assert res["detected_cuda_aware"] is False
    res = _run(1, tmp_path, env={"DISTGRAPH_MPI_CUDA_AWARE": ""})[0]
    assert isinstance(res["detected_cuda_aware"], bool)  # MPIX_Query_cuda_support, or False


def test_collectives_dispatch_device_arrays_to_the_gpu_group():
    """``collectives._pick``: NCCL for arrays that are not NumPy, when the group has NCCL."""
    from fake_cuda import fake_array

    from distgraph.comm.collectives import _pick
    gpu = object()
    with_nccl, without = SimpleNamespace(gpu=gpu), SimpleNamespace(gpu=None)
    dev, host = fake_array(np.zeros(3, np.float32)), np.zeros(3, np.float32)
    assert _pick(with_nccl, dev) is gpu
    assert _pick(with_nccl, host) is with_nccl
    assert _pick(without, dev) is without  # MPI then stages or hands off (tests above)


def test_pinned_staging_buffer_lives_until_its_copy_back_completes(monkeypatch):
    """``x.set(host)`` from pinned memory is asynchronous: the staging buffer must outlive the
    work (CuPy's pinned pool would reuse it at once) until an event after the copy is done."""
    import gc
    import weakref

    import fake_cuda

    from distgraph.comm import mpi
    fake = fake_cuda.install(monkeypatch.setattr, monkeypatch.setitem)
    fake.events_complete = False  # copies stay "in flight" until deviceSynchronize()
    monkeypatch.setattr(mpi, "_uploading", [])
    pg = mpi.MPIProcessGroup.__new__(mpi.MPIProcessGroup)
    pg._cuda_aware = False
    x = fake_cuda.fake_array(np.arange(4.0), fake)
    then = []
    host = pg._buf(x, writeback=True, then=then)
    host[...] = 7.0  # what MPI wrote
    ref = weakref.ref(host)
    for fn in then:
        fn()  # the work completes: the copy back is issued ...
    del host, then, fn
    gc.collect()
    assert fake.uploads == 1 and np.array_equal(x.host(), np.full(4, 7.0))
    assert ref() is not None  # ... and the pinned buffer is still referenced
    mpi._release_uploaded()
    assert ref() is not None and len(mpi._uploading) == 1  # its event is not done yet
    fake.cuda.runtime.deviceSynchronize()  # the copy has completed
    mpi._release_uploaded()
    gc.collect()
    assert ref() is None and mpi._uploading == []


def test_fake_array_refuses_implicit_numpy_conversion():
    from fake_cuda import fake_array
    x = fake_array(np.arange(3.0))
    try:
        np.asarray(x)
    except TypeError as e:
        assert "use .get()" in str(e)
    else:
        raise AssertionError("np.asarray(FakeCudaArray) must fail, as it does for cupy.ndarray")
    assert x.__cuda_array_interface__["data"][0] == x.data.ptr


if __name__ == "__main__":
    program()
