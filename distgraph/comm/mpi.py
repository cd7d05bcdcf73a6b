"""The MPI process group: mpi4py over whatever MPI it was built with.

NumPy arrays go to MPI as they are (``MPI_IN_PLACE`` where the result
overwrites the input): no copies, no pickling.  Every operation is issued as a
non-blocking collective (``Iallreduce``, ``Ibcast``, ...) and waited by polling
``Test()`` against a deadline (see :mod:`distgraph.comm.watchdog`), which costs
nothing measurable against the blocking call (``benchmarks/allreduce.py``) and
lets a hung collective end in a report instead of a silent hang.

CuPy arrays go straight to MPI when the library is CUDA-aware (detected with
``MPIX_Query_cuda_support``, overridden by ``DISTGRAPH_MPI_CUDA_AWARE=0|1``);
otherwise they are staged through pinned host buffers.
"""
from __future__ import annotations

import ctypes
import os
import re
import threading

import numpy as np

from distgraph import backend
from distgraph.comm import daemon
from distgraph.comm.base import (FP_LEN, CommError, ProcessGroup, ReduceOp, Work, average_in_place,
                                 check_every_from_env)

__all__ = ["MPIProcessGroup", "MPIWork", "mpi_module", "cuda_aware"]

_MPI = None


def mpi_module():
    """Import mpi4py (which initialises MPI) on first use, with a clear error if it is missing."""
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI  # noqa: PLC0415 - MPI_Init happens here, never at import
        except ImportError as e:
            raise CommError(
                "backend 'mpi' needs mpi4py: `pip install distgraph[mpi]` (mpi4py and the mpich "
                f"wheel), or build mpi4py against your cluster's MPI ({e})") from e
        _MPI = MPI
    return _MPI


def cuda_aware() -> bool:
    """Whether MPI accepts CUDA device pointers (``MPIX_Query_cuda_support``)."""
    forced = os.environ.get("DISTGRAPH_MPI_CUDA_AWARE")
    if forced in ("0", "1"):
        return forced == "1"
    mpi_module()
    try:
        with open("/proc/self/maps") as f:
            libs = sorted(set(re.findall(r"(/\S*libmpi\S*\.so\S*)", f.read())))
    except OSError:
        return False
    for lib in libs:
        try:
            fn = ctypes.CDLL(lib).MPIX_Query_cuda_support
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_int
        return bool(fn())
    return False


_OPS = {}


def _mpi_op(op: ReduceOp, dtype):
    if not _OPS:
        MPI = _MPI
        _OPS.update({ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
                     ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX, ReduceOp.BAND: MPI.BAND,
                     ReduceOp.BOR: MPI.BOR, ReduceOp.BXOR: MPI.BXOR})
    if dtype == np.bool_:
        return {ReduceOp.BXOR: _MPI.LXOR}.get(op) or \
            (_MPI.LOR if op in (ReduceOp.SUM, ReduceOp.MAX, ReduceOp.BOR) else _MPI.LAND)
    return _OPS[op]


# Pinned staging buffers whose copy back to the device may still be running, each with an
# event recorded after its copy.  ``x.set(host)`` from pinned memory is asynchronous, and
# CuPy's pinned pool would hand a freed buffer to the next staging while the GPU still
# reads it: a buffer is dropped only once its event is done.
_uploading: list = []
_uploading_lock = threading.Lock()


def _upload(cp, x, host):
    """Copy a staged result back to ``x`` (on the current stream) and keep ``host`` alive
    until that copy has completed."""
    x.set(host)
    event = cp.cuda.get_current_stream().record()
    with _uploading_lock:
        _uploading.append((event, host))


def _release_uploaded():
    with _uploading_lock:
        _uploading[:] = [(e, h) for e, h in _uploading if not e.done]


class MPIWork(Work):
    """A pending MPI request (or a few), tested by the waiter or the progress daemon."""

    def __init__(self, desc, pg, requests):
        super().__init__(desc, pg)
        self._reqs = requests
        self.status = None  # an MPI.Status to fill (a receive from any source reads its sender)

    def _test(self):
        reqs = self._reqs
        if len(reqs) == 1:
            return reqs[0].Test(self.status)
        return _MPI.Request.Testall(reqs)


def start_exchange(pg, comm, table):
    """All-gather the int64 array ``table`` on ``comm`` (a group's periodic-check side channel) without
    waiting: a Work of ``pg`` whose ``_result`` is every rank's table."""
    out = np.empty((pg.size,) + table.shape, dtype=np.int64)
    work = MPIWork(pg.last, pg, [comm.Iallgather(table, out)])
    work._result, work._send = out, table  # the buffers live as long as the request
    return work


class MPIProcessGroup(ProcessGroup):
    """A process group over an MPI communicator (a duplicate: user MPI traffic cannot collide)."""

    backend = "mpi"

    def __init__(self, comm, ranks, timeout, world_size, gid, state_server=None):
        super().__init__(comm.Get_rank(), comm.Get_size(), ranks, timeout, world_size)
        self.comm = comm
        self.gid = gid
        self.state_server = state_server
        self._cuda_aware = None
        self._children = 0
        # The periodic check's side channel (collective to create, as the group itself).
        self.check_comm = comm.Dup() if self.size > 1 else None
        self.check_every = check_every_from_env() if self.size > 1 else 0

    @classmethod
    def world(cls, timeout):
        """The group of every rank, built on a duplicate of ``COMM_WORLD`` (collective)."""
        MPI = mpi_module()
        world = MPI.COMM_WORLD
        comm = world.Dup()
        server = None
        if MPI.Query_thread() >= MPI.THREAD_MULTIPLE and world.Get_size() > 1:
            server = daemon.StateServer(world.Dup(), [])
        pg = cls(comm, range(world.Get_size()), timeout, world.Get_size(), "world", server)
        local = world.Split_type(MPI.COMM_TYPE_SHARED, key=world.Get_rank())
        pg.local_rank, pg.local_world_size = local.Get_rank(), local.Get_size()
        local.Free()
        if server is not None:
            server.groups.append(pg)
        return pg

    # --------------------------------------------------------------- helpers
    def _work(self, requests, then=None):
        work = MPIWork(self.last, self, requests)
        if then is not None:
            work.then(then)
        return work

    def _buf(self, x, writeback=False, then=None, read=True):
        """A buffer MPI can read: ``x`` itself, or (CuPy without CUDA-aware MPI) a host copy
        (only allocated, not filled, when MPI does not read it: a pure output).

        Returns ``(buffer, callbacks)``; the callbacks copy a staged result back.
        """
        if x is None or isinstance(x, np.ndarray):
            return x
        cp = backend.cupy()
        # MPI reads the buffer outside CUDA's stream order: finish pending kernels first.
        cp.cuda.get_current_stream().synchronize()
        if self._cuda_aware is None:
            self._cuda_aware = cuda_aware()
        if self._cuda_aware:
            return x
        import cupyx  # noqa: PLC0415 - only reached with CuPy arrays
        _release_uploaded()
        host = cupyx.empty_pinned(x.shape, x.dtype)
        if read:
            x.get(out=host)  # blocking: the copy is complete before MPI reads ``host``
        if writeback:
            then.append(lambda: _upload(cp, x, host))
        return host

    def _issue(self, fn, arrays, writeback, reads=None):
        """Call ``fn(*buffers)`` -> request(s), staging device arrays that MPI cannot read.

        ``writeback``: indices of the arrays MPI writes; ``reads``: those it reads
        (default all) -- a pure output is never copied to the host."""
        if all(a is None or type(a) is np.ndarray for a in arrays):  # the fast path
            return MPIWork(self.last, self, [fn(*arrays)])
        then = []
        bufs = [self._buf(a, i in writeback, then, reads is None or i in reads) for i, a in enumerate(arrays)]
        req = fn(*bufs)
        reqs = req if isinstance(req, list) else [req]

        def finish():
            for fn_ in then:
                fn_()
        return self._work(reqs, finish if then else None)

    def _avg(self, work, x, op):
        if op is ReduceOp.AVG:
            work.then(lambda: average_in_place(x, self.size))
        return work

    def _wait_now(self, requests):
        work = MPIWork(self.last, self, requests)
        work.wait()

    # ----------------------------------------------------------- collectives
    def all_gather_fingerprints(self, fp):
        out = np.empty((self.size, FP_LEN), dtype=np.int64)
        self._wait_now([self.comm.Iallgather(fp, out)])
        return out

    def start_check_exchange(self, table):
        return start_exchange(self, self.check_comm, table)

    def all_reduce(self, x, op):
        MPI = _MPI
        comm, mop = self.comm, _mpi_op(op, x.dtype)
        work = self._issue(lambda b: comm.Iallreduce(MPI.IN_PLACE, b, mop), [x], {0})
        return self._avg(work, x, op)

    def broadcast(self, x, root):
        comm = self.comm
        return self._issue(lambda b: comm.Ibcast(b, root), [x], {0}, {0} if self.rank == root else set())

    def all_gather(self, out, x):
        comm = self.comm
        return self._issue(lambda o, i: comm.Iallgather(i, o), [out, x], {0}, {1})

    def reduce_scatter(self, out, x, op):
        comm, mop = self.comm, _mpi_op(op, x.dtype)
        work = self._issue(lambda o, i: comm.Ireduce_scatter_block(i, o, mop), [out, x], {0}, {1})
        return self._avg(work, out, op)

    def reduce(self, x, root, op):
        MPI = _MPI
        comm, mop = self.comm, _mpi_op(op, x.dtype)
        if self.rank == root:
            work = self._issue(lambda b: comm.Ireduce(MPI.IN_PLACE, b, mop, root), [x], {0})
            return self._avg(work, x, op)
        return self._issue(lambda b: comm.Ireduce(b, None, mop, root), [x], set())

    def gather(self, out, x, root):
        comm = self.comm
        if self.rank == root:
            return self._issue(lambda o, i: comm.Igather(i, o, root), [out, x], {0}, {1})
        return self._issue(lambda i: comm.Igather(i, None, root), [x], set())

    def scatter(self, out, x, root):
        comm = self.comm
        if self.rank == root:
            return self._issue(lambda o, i: comm.Iscatter(i, o, root), [out, x], {0}, {1})
        return self._issue(lambda o: comm.Iscatter(None, o, root), [out], {0}, set())

    def all_to_all(self, out, x, out_counts, in_counts):
        comm = self.comm
        out_displs = np.concatenate([[0], np.cumsum(out_counts)[:-1]]).astype(np.int64)
        in_displs = np.concatenate([[0], np.cumsum(in_counts)[:-1]]).astype(np.int64)
        return self._issue(
            lambda o, i: comm.Ialltoallv([i, (list(in_counts), list(in_displs))],
                                         [o, (list(out_counts), list(out_displs))]),
            [out, x], {0}, {1})

    def send(self, x, dst, tag):
        comm = self.comm
        return self._issue(lambda b: comm.Isend(b, dst, tag), [x], set())

    def recv(self, x, src, tag):
        """Receive from group rank ``src``, or from any rank when ``src`` is None: then
        ``work.source_rank()`` (after completion) is the sender's world rank."""
        comm = self.comm
        peer = _MPI.ANY_SOURCE if src is None else src
        work = self._issue(lambda b: comm.Irecv(b, peer, tag), [x], {0}, set())
        if src is None:
            work.status = _MPI.Status()
            work.source_rank = lambda: self.ranks[work.status.Get_source()]
        return work

    def barrier(self):
        return self._work([self.comm.Ibarrier()])

    def broadcast_bytes(self, data, root):
        n = np.array([len(data) if self.rank == root else 0], dtype=np.int64)
        self._wait_now([self.comm.Ibcast(n, root)])
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root else \
            np.empty(int(n[0]), dtype=np.uint8)
        self._wait_now([self.comm.Ibcast(buf, root)])
        return buf.tobytes()

    def all_gather_bytes(self, data):
        n = np.array([len(data)], dtype=np.int64)
        sizes = np.empty(self.size, dtype=np.int64)
        self._wait_now([self.comm.Iallgather(n, sizes)])
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        mine = np.frombuffer(data, dtype=np.uint8)
        self._wait_now([self.comm.Iallgatherv(mine, [out, (list(sizes), list(displs))])])
        return [out[d:d + s].tobytes() for d, s in zip(displs, sizes)]

    # ------------------------------------------------------------ management
    def new_group(self, ranks):
        MPI = _MPI
        self._children += 1
        mine = self.ranks[self.rank]
        member = mine in ranks
        sub = self.comm.Split(0 if member else MPI.UNDEFINED, ranks.index(mine) if member else 0)
        if not member:
            return None
        pg = MPIProcessGroup(sub, ranks, self.timeout, self.world_size,
                             f"{self.gid}/{self._children}", self.state_server)
        pg.debug = self.debug
        if self.state_server is not None:
            self.state_server.groups.append(pg)
        return pg

    def query_states(self):
        """Every member's state (see :class:`daemon.StateServer`), keyed by world rank."""
        if self.state_server is None:
            return {self.ranks[self.rank]: _local_state(self)}
        return self.state_server.query(self.ranks)

    def abort(self, code=1):
        _MPI.COMM_WORLD.Abort(code)

    def shutdown(self):
        server = self.state_server
        if server is not None and self in server.groups:
            server.groups.remove(self)
        self.comm.Free()
        if self.check_comm is not None:
            self.check_comm.Free()
            self.check_comm = None
        if server is not None and self.gid == "world":
            server.comm.Free()  # the side channel goes with the world group


def _local_state(pg):
    waiting = getattr(pg, "waiting", None)
    return {"groups": {pg.gid: {"seq": pg.seq, "last": str(pg.last) if pg.last else None,
                                "waiting": str(waiting) if waiting else None}}, "stack": ""}
