"""Every collective and reduce op against NumPy, on rank-dependent data.

Run under any world size; each rank checks its own results and the program
prints ``OK rank=<r> checks=<count>``:

    mpiexec -n 2 python tests/comm/mpi_collectives.py
    python tests/comm/mpi_collectives.py          # a world of one (single backend)

``tests/comm/test_collectives.py`` runs it with 2 and 4 ranks and imports
``run_checks`` to run the same body in-process on the single backend.
"""
import sys
import time
import warnings

import numpy as np

import distgraph as dg
from distgraph import comm
from distgraph.comm import CommError, ReduceOp
from distgraph.comm.base import BITWISE_OPS
from distgraph.comm.single import reduce_arrays

DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.bool_]
OPS = list(ReduceOp)


def data(r, dtype, shape=(3, 4)):
    """Rank ``r``'s input: small integers (exact in float16, products fit in int32)."""
    base = np.arange(int(np.prod(shape))).reshape(shape) % 3 + r + 1
    if dtype == np.bool_:
        return (base + r) % 2 == 0
    return base.astype(dtype)


class Checker:
    def __init__(self, rank):
        self.rank, self.count = rank, 0

    def eq(self, name, got, want):
        got = got.array if isinstance(got, dg.Tensor) else np.asarray(got)
        want = np.asarray(want)
        ok = got.shape == want.shape and got.dtype == want.dtype and (
            np.array_equal(got, want) if want.dtype.kind in "biu"
            else np.allclose(got, want, rtol=2e-3))
        if not ok:
            raise AssertionError(f"[rank {self.rank}] {name}: expected {want.dtype}{want.shape}\n"
                                 f"{want}\ngot {got.dtype}{got.shape}\n{got}")
        self.count += 1

    def raises(self, name, exc, fn):
        try:
            fn()
        except exc as e:
            if "[rank" not in str(e):
                raise AssertionError(f"{name}: error lacks the [rank r/N] prefix: {e}") from e
            self.count += 1
            return
        raise AssertionError(f"[rank {self.rank}] {name}: expected {exc.__name__}, nothing raised")


def run_checks():
    r, n = comm.get_rank(), comm.get_world_size()
    c = Checker(r)
    everyone = range(n)

    # all_reduce: every op x dtype, sync and async
    for dtype in DTYPES:
        for op in OPS:
            if op is ReduceOp.AVG and np.dtype(dtype).kind != "f" or op in BITWISE_OPS and np.dtype(dtype).kind == "f":
                continue
            t = dg.tensor(data(r, dtype))
            comm.all_reduce(t, op=op)
            c.eq(f"all_reduce {op} {np.dtype(dtype)}", t, reduce_arrays([data(q, dtype) for q in everyone], op))
    works = [(op, dg.tensor(data(r, np.float64)), ) for op in OPS if op not in BITWISE_OPS]
    works = [(op, t, comm.all_reduce(t, op=op, async_op=True)) for op, t in works]
    for op, t, w in works:
        if w.wait() is not True:
            raise AssertionError("Work.wait() must return True")
        c.eq(f"async all_reduce {op}", t, reduce_arrays([data(q, np.float64) for q in everyone], op))
        c.eq("is_completed after wait", w.is_completed(), True)

    # broadcast from the first and the last rank
    for src in sorted({0, n - 1}):
        t = dg.tensor(data(r, np.int64))
        comm.broadcast(t, src=src)
        c.eq(f"broadcast src={src}", t, data(src, np.int64))

    # all_gather (list and into one tensor, both output layouts)
    outs = [dg.zeros(3, 4) for _ in everyone]
    comm.all_gather(outs, dg.tensor(data(r, np.float32)))
    for q in everyone:
        c.eq(f"all_gather[{q}]", outs[q], data(q, np.float32))
    stacked = np.stack([data(q, np.float32) for q in everyone])
    for shape in ((n, 3, 4), (3 * n, 4)):
        out = dg.zeros(*shape)
        w = comm.all_gather_into_tensor(out, dg.tensor(data(r, np.float32)), async_op=True)
        w.wait()
        c.eq(f"all_gather_into_tensor {shape}", out, stacked.reshape(shape))

    # reduce_scatter (list and tensor)
    for op in (ReduceOp.SUM, ReduceOp.MAX, ReduceOp.AVG):
        full = [np.stack([data(q + k, np.float32) for k in everyone]) for q in everyone]
        want = reduce_arrays(full, op)[r]
        out = dg.zeros(3, 4)
        comm.reduce_scatter(out, [dg.tensor(full[r][k]) for k in everyone], op=op)
        c.eq(f"reduce_scatter {op}", out, want)
        out = dg.zeros(3, 4)
        comm.reduce_scatter_tensor(out, dg.tensor(full[r].reshape(3 * n, 4)), op=op)
        c.eq(f"reduce_scatter_tensor {op}", out, want)

    # reduce to the last rank; the others keep their input
    for op in (ReduceOp.SUM, ReduceOp.MIN, ReduceOp.PRODUCT):
        t = dg.tensor(data(r, np.int32))
        comm.reduce(t, dst=n - 1, op=op)
        want = reduce_arrays([data(q, np.int32) for q in everyone], op) if r == n - 1 else data(r, np.int32)
        c.eq(f"reduce {op}", t, want)

    # gather to 0, scatter from the last rank
    glist = [dg.zeros(3, 4, dtype=dg.int64) for _ in everyone] if r == 0 else None
    comm.gather(dg.tensor(data(r, np.int64)), glist, dst=0)
    if r == 0:
        for q in everyone:
            c.eq(f"gather[{q}]", glist[q], data(q, np.int64))
    t = dg.zeros(3, 4, dtype=dg.int64)
    slist = [dg.tensor(data(10 * k, np.int64)) for k in everyone] if r == n - 1 else None
    comm.scatter(t, slist, src=n - 1)
    c.eq("scatter", t, data(10 * r, np.int64))

    # all_to_all_single: even splits, then rank i sends i+j+1 rows to rank j
    x = dg.tensor(np.arange(2 * n * 3, dtype=np.float32).reshape(2 * n, 3) + 100 * r)
    out = dg.zeros(2 * n, 3)
    comm.all_to_all_single(out, x)
    want = np.concatenate([(np.arange(2 * n * 3, dtype=np.float32).reshape(2 * n, 3) + 100 * q)[2 * r:2 * r + 2]
                           for q in everyone])
    c.eq("all_to_all_single even", out, want)

    def rows(i, j):  # what rank i sends to rank j
        return np.full((i + j + 1, 2), 10 * i + j, dtype=np.float64)
    x = dg.tensor(np.concatenate([rows(r, j) for j in everyone]))
    want = np.concatenate([rows(i, r) for i in everyone])
    out = dg.tensor(np.zeros_like(want))
    comm.all_to_all_single(out, x, [i + r + 1 for i in everyone], [r + j + 1 for j in everyone])
    c.eq("all_to_all_single uneven", out, want)

    # point to point: a ring, blocking and non-blocking
    if n > 1:
        nxt, prv = (r + 1) % n, (r - 1) % n
        got = dg.zeros(3, 4)
        if r % 2 == 0:
            comm.send(dg.tensor(data(r, np.float32)), nxt)
            src = comm.recv(got, prv)
        else:
            src = comm.recv(got, prv)
            comm.send(dg.tensor(data(r, np.float32)), nxt)
        c.eq("recv returns src", src, prv)
        c.eq("send/recv ring", got, data(prv, np.float32))
        got = dg.zeros(3, 4)
        works = [comm.irecv(got, prv, tag=7), comm.isend(dg.tensor(data(r, np.float32)), nxt, tag=7)]
        for w in works:
            w.wait()
        c.eq("isend/irecv ring", got, data(prv, np.float32))
        got = dg.zeros(3, 4)
        works = comm.batch_isend_irecv([comm.P2POp(comm.isend, dg.tensor(data(r, np.float32)), nxt),
                                        comm.P2POp(comm.irecv, got, prv)])
        for w in works:
            w.wait()
        c.eq("batch_isend_irecv ring", got, data(prv, np.float32))
        # receive from any source: rank 0 hears from every other rank, in whatever order
        if r == 0:
            senders = []
            for _ in range(n - 1):
                got = dg.zeros(3, 4)
                s = comm.recv(got, tag=9)
                senders.append(s)
                c.eq(f"recv(src=None) data from {s}", got, data(s, np.float32))
            c.eq("recv(src=None) senders", sorted(senders), list(range(1, n)))
            got = dg.zeros(3, 4)
            w = comm.irecv(got, tag=10)
            w.wait()
            c.eq("irecv(src=None) source_rank", w.source_rank(), n - 1)
            c.eq("irecv(src=None) data", got, data(n - 1, np.float32))
        else:
            comm.send(dg.tensor(data(r, np.float32)), 0, tag=9)
            if r == n - 1:
                comm.send(dg.tensor(data(r, np.float32)), 0, tag=10)

    comm.barrier()
    comm.barrier(async_op=True).wait()

    # sub-groups: the even ranks, with src given as a world rank
    evens = list(range(0, n, 2))
    g = comm.new_group(evens)
    if r in evens:
        t = dg.tensor(data(r, np.float32))
        comm.all_reduce(t, group=g)
        c.eq("sub-group all_reduce", t, reduce_arrays([data(q, np.float32) for q in evens], ReduceOp.SUM))
        t = dg.tensor(data(r, np.float32))
        comm.broadcast(t, src=evens[-1], group=g)
        c.eq("sub-group broadcast", t, data(evens[-1], np.float32))
        c.eq("get_rank(group)", comm.get_rank(g), evens.index(r))
        c.eq("get_world_size(group)", comm.get_world_size(g), len(evens))
        objs = [None] * len(evens)
        comm.all_gather_object(objs, ("even", r), group=g)
        c.eq("sub-group all_gather_object", np.array([o[1] for o in objs]), np.array(evens))
    else:
        c.eq("non-member get_rank", comm.get_rank(g), -1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = comm.all_reduce(dg.zeros(2), group=g)
        c.eq("non-member collective is a no-op with a warning", (res is None, len(caught)), (True, 1))
    comm.destroy_process_group(g)

    # object collectives
    t0 = dg.zeros(2)
    objs = [None] * n
    comm.all_gather_object(objs, {"rank": r, "tag": "x" * r})
    c.eq("all_gather_object", np.array([o["rank"] for o in objs]), np.arange(n))
    lst = [r, "mine"] if r == n - 1 else [None, None]
    comm.broadcast_object_list(lst, src=n - 1)
    c.eq("broadcast_object_list", np.array([lst[0]]), np.array([n - 1]))
    gathered = [None] * n if r == n - 1 else None
    comm.gather_object(("from", r), gathered, dst=n - 1)
    c.eq("gather_object", gathered == ([("from", q) for q in range(n)] if r == n - 1 else None), True)
    out = [None]
    comm.scatter_object_list(out, [{"for": q} for q in range(n)] if r == 0 else None, src=0)
    c.eq("scatter_object_list", out == [{"for": r}], True)
    c.raises("gather_object without a list on dst", CommError,
             lambda: comm.gather_object(1, None, dst=r))
    c.raises("scatter_object_list with a short input list", CommError,
             lambda: comm.scatter_object_list([None], [0] * (n + 1), src=r))
    c.raises("P2POp with an op that is not isend/irecv", ValueError, lambda: comm.P2POp(comm.send, t0, 0))
    c.raises("P2POp with peer and group_peer", ValueError, lambda: comm.P2POp(comm.isend, t0, 0, group_peer=0))
    c.raises("batch_isend_irecv of nothing", ValueError, lambda: comm.batch_isend_irecv([]))
    c.eq("is_available", comm.is_available(), True)

    # all_to_all of lists (shapes differ per pair), objects point to point, bitwise reductions
    ins = [dg.tensor(np.full((q + 1, 2), 10 * r + q, np.float32)) for q in everyone]   # to rank q: q+1 rows
    outs = [dg.zeros(r + 1, 2) for _ in everyone]                                        # from rank q: r+1 rows
    comm.all_to_all(outs, ins)
    c.eq("all_to_all", np.stack([o.numpy() for o in outs]), np.stack([np.full((r + 1, 2), 10 * q + r, np.float32)
                                                                     for q in everyone]))
    outs = [dg.zeros(r + 1, 2) for _ in everyone]
    comm.all_to_all(outs, ins, async_op=True).wait()
    c.eq("async all_to_all", outs[n - 1].numpy(), np.full((r + 1, 2), 10 * (n - 1) + r, np.float32))
    if r == 0:
        for q in range(1, n):
            comm.send_object_list([{"to": q}, "x" * q], dst=q)
    else:
        got = [None, None]
        sender = comm.recv_object_list(got)                      # from any rank
        c.eq("recv_object_list", (sender, got) == (0, [{"to": r}, "x" * r]), True)
    for op, fn in ((ReduceOp.BAND, np.bitwise_and), (ReduceOp.BOR, np.bitwise_or), (ReduceOp.BXOR, np.bitwise_xor)):
        for dtype in (np.int32, np.int64, np.bool_):
            t = dg.tensor(data(r, dtype) * (1 if dtype == np.bool_ else 5))
            comm.all_reduce(t, op=op)
            want = fn.reduce(np.stack([data(q, dtype) * (1 if dtype == np.bool_ else 5) for q in everyone]), axis=0)
            c.eq(f"all_reduce {op} {np.dtype(dtype)}", t, want)
    c.raises("BAND on floats", CommError, lambda: comm.all_reduce(dg.zeros(2), op=ReduceOp.BAND))
    mine, groups = comm.new_subgroups(group_size=1)
    c.eq("new_subgroups", (len(groups), comm.get_process_group_ranks(mine)) == (n, [r]), True)
    if n % 2 == 0:
        mine, groups = comm.new_subgroups(group_size=2)
        c.eq("get_global_rank", comm.get_global_rank(mine, 1), r - r % 2 + 1)
        c.eq("get_group_rank", comm.get_group_rank(mine, r), r % 2)
        c.raises("get_group_rank of a non-member", ValueError, lambda: comm.get_group_rank(mine, (r + 2) % n)) \
            if n > 2 else None
    c.raises("new_subgroups that do not divide the world", ValueError, lambda: comm.new_subgroups(group_size=n + 1))

    # wrong use is a clear error, raised before anything is sent
    t = dg.tensor(data(r, np.float32))
    c.raises("src out of range", CommError, lambda: comm.broadcast(t, src=n))
    c.raises("AVG on ints", CommError, lambda: comm.all_reduce(dg.tensor(data(r, np.int64)), op=ReduceOp.AVG))
    c.raises("non-contiguous", CommError, lambda: comm.all_reduce(dg.zeros(3, 4).T))
    c.raises("wrong list length", CommError, lambda: comm.all_gather([dg.zeros(3, 4)] * (n + 1), t))
    c.raises("mixed dtypes", CommError, lambda: comm.all_gather([dg.zeros(3, 4, dtype=dg.int64)] * n, t))
    c.raises("not a tensor", TypeError, lambda: comm.all_reduce(np.zeros(3)))
    c.raises("op not a ReduceOp", TypeError, lambda: comm.all_reduce(t, op="sum"))
    v = t._version[0]
    comm.all_reduce(t)
    c.eq("version bumped by the in-place write", t._version[0], v + 1)
    return c.count


def check_async_progress():
    """An async all_reduce completes while the caller sleeps without touching MPI."""
    r, n = comm.get_rank(), comm.get_world_size()
    big = dg.tensor(np.full(16 << 20, r + 1, dtype=np.float32))  # 64 MiB
    comm.barrier()
    t0 = time.perf_counter()
    comm.all_reduce(big)
    sync_s = time.perf_counter() - t0
    comm.barrier()
    work = comm.all_reduce(big, async_op=True)
    time.sleep(max(0.5, 20 * sync_s))  # no MPI call from this thread
    done_by_daemon = work._done
    t0 = time.perf_counter()
    work.wait()
    wait_s = time.perf_counter() - t0
    want = n * (n + 1) / 2 * n  # after the sync all_reduce, then the async one
    if not done_by_daemon or big.array[0] != want:
        raise AssertionError(f"[rank {r}] async all_reduce did not progress while the caller slept "
                             f"(done={done_by_daemon}, value={big.array[0]}, want {want})")
    print(f"PROGRESS rank={r} sync_64MiB_ms={sync_s * 1e3:.1f} wait_after_sleep_ms={wait_s * 1e3:.3f}")


if __name__ == "__main__":
    comm.init_process_group()
    rank = comm.get_rank()
    count = run_checks()
    if "--progress" in sys.argv and comm.get_world_size() > 1:
        check_async_progress()
    comm.destroy_process_group()
    print(f"OK rank={rank} checks={count}", flush=True)
