"""The NCCL process group: GPU collectives through CuPy's binding (``cupy.cuda.nccl``).

Status: written against CuPy's documented ``NcclCommunicator`` API but never
run -- the machine this was developed on has no GPU.  Its tests are reported
as skipped there.

How it works:

* The GPU is bound from the local rank *before MPI_Init and before any other
  CUDA call* (:func:`bind_device`); otherwise every rank opens a context on
  GPU 0 and NCCL sees the same device twice.
* Rank 0 of the group creates the unique id; it is broadcast over the group's
  MPI communicator, which also serves stall reports and the debug check.
* The communicator is created in ``init_process_group`` and warmed up with a
  one-element all-reduce, so that NCCL's lazy connection setup does not land
  in the first training step.
* Each collective runs on the group's own non-blocking stream, ordered after
  the caller's current stream with an event (so it sees the producer's
  kernels); ``Work.wait()`` makes the caller's *current* stream wait on the
  collective's event -- no host synchronisation, as in PyTorch.  Arrays stay
  referenced by the work until the event completes, so CuPy's pool cannot hand
  their memory to another kernel while NCCL still uses it.
* Every work is watched by the comm daemon: it polls the event and
  ``check_async_error()``; at the timeout it calls the communicator's
  ``abort()`` and then ``MPI_Abort`` (see :mod:`distgraph.comm.watchdog`).
"""
from __future__ import annotations

import pickle
import sys
import time

from distgraph import backend
from distgraph.comm import daemon
from distgraph.comm.base import (BITWISE_OPS, CommError, ProcessGroup, ReduceOp, Work, average_in_place,
                                 check_every_from_env)
from distgraph.comm.mpi import start_exchange

__all__ = ["available", "bind_device", "nccl_version", "NCCLProcessGroup", "NCCLWork"]


def _nccl():
    """``cupy.cuda.nccl`` when CuPy, a GPU and NCCL are all present, else None."""
    if backend.cupy() is None:
        return None
    try:
        from cupy.cuda import nccl  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return nccl if getattr(nccl, "available", True) else None


def available() -> bool:
    return _nccl() is not None


def bind_device(index: int) -> int:
    """Make GPU ``index % device_count`` current for this process and return its id."""
    cp = backend.cupy()
    if cp is None or _nccl() is None:
        raise CommError("backend 'nccl' needs CuPy, a CUDA GPU and NCCL: install distgraph[cuda12] "
                        "or distgraph[cuda13] on a GPU machine, or use backend='mpi'")
    count = cp.cuda.runtime.getDeviceCount()
    device = int(index) % count
    cp.cuda.Device(device).use()
    return device


_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
           "int32": "NCCL_INT32", "int64": "NCCL_INT64", "uint8": "NCCL_UINT8",
           "int8": "NCCL_INT8", "bool": "NCCL_UINT8"}


def _dtype(nccl, x):
    name = _DTYPES.get(str(x.dtype))
    if name is None:
        raise CommError(f"nccl: unsupported dtype {x.dtype}; expected one of {sorted(_DTYPES)}")
    return getattr(nccl, name)


def _redop(nccl, op, x):
    if op in BITWISE_OPS:
        raise CommError(f"nccl: NCCL has no bitwise reduction (ReduceOp.{op.name}), as in PyTorch; reduce a "
                        "host copy of the tensor over the MPI group (tensor.cpu(): the group routes host "
                        "arrays to MPI)")
    if str(x.dtype) == "bool":  # bytes 0/1: or is max, and is min
        return nccl.NCCL_MAX if op in (ReduceOp.SUM, ReduceOp.MAX) else nccl.NCCL_MIN
    if op is ReduceOp.AVG:
        return nccl.NCCL_AVG if _native_avg(nccl, x) else nccl.NCCL_SUM
    return {ReduceOp.SUM: nccl.NCCL_SUM, ReduceOp.PRODUCT: nccl.NCCL_PROD,
            ReduceOp.MIN: nccl.NCCL_MIN, ReduceOp.MAX: nccl.NCCL_MAX}[op]


def _native_avg(nccl, x) -> bool:
    """Whether NCCL averages ``x`` itself (``ncclAvg``: NCCL 2.10+, CuPy's ``NCCL_AVG``; floating
    dtypes only -- NCCL's integer average truncates).  Otherwise ``AVG`` is ``SUM`` followed
    by a division on the NCCL stream, one more pass over the buffer."""
    return (x.dtype.kind == "f" and hasattr(nccl, "NCCL_AVG")
            and nccl_version(nccl) >= (2, 10, 0))


def nccl_version(nccl) -> tuple:
    """The loaded NCCL's ``(major, minor, patch)`` from ``get_version()``'s code
    (``major*10000 + minor*100 + patch`` since 2.9, ``major*1000 + minor*100 + patch`` before)."""
    code = int(nccl.get_version())
    if code >= 10000:
        return code // 10000, code % 10000 // 100, code % 100
    return code // 1000, code % 1000 // 100, code % 100


def _divide_after(nccl, op, x, out, size):
    """The division that finishes ``AVG`` when NCCL cannot average ``x`` itself, else None."""
    if op is not ReduceOp.AVG or _native_avg(nccl, x):
        return None
    return lambda: average_in_place(out, size)


class NCCLWork(Work):
    """A collective enqueued on the NCCL stream; ``wait()`` orders the caller's stream after it."""

    def __init__(self, desc, pg, event, arrays):
        super().__init__(desc, pg)
        self.event = event
        self._arrays = arrays  # keeps the buffers alive until the GPU is done with them
        self._ordered = False

    def _run_then(self):
        for fn in self._then:
            fn()  # stream-ordered copies on the caller's current stream
        self._then = []
        self._ordered = True

    def wait(self, timeout=None):
        """Make the caller's current stream wait for the collective (no host sync)."""
        with self._lock:
            if not self._ordered:
                backend.cupy().cuda.get_current_stream().wait_event(self.event)
                self._run_then()
        return True

    def is_completed(self):
        if not self.event.done:
            return False
        with self._lock:
            if not self._ordered:
                self._run_then()
            self._done = True
        return True

    def daemon_poll(self):
        """The daemon only watches the event (callbacks belong to the caller's stream)."""
        try:
            self.pg.comm.check_async_error()
        except Exception as e:  # noqa: BLE001 - any NCCL error is fatal for the job
            sys.stderr.write(f"{self.pg.tag()} NCCL error during {self.desc}: {e}; aborting\n")
            sys.stderr.flush()
            self.pg.abort()
        if self.event.done:
            self._arrays = None
            return True
        return False


class NCCLProcessGroup(ProcessGroup):
    """GPU collectives over NCCL for the ranks of ``mpi_pg`` (which bootstraps it)."""

    backend = "nccl"

    def __init__(self, mpi_pg, device):
        super().__init__(mpi_pg.rank, mpi_pg.size, mpi_pg.ranks, mpi_pg.timeout,
                         mpi_pg.world_size)
        nccl, cp = _nccl(), backend.cupy()
        self.nccl, self.cp, self.mpi, self.device = nccl, cp, mpi_pg, device
        self.gid = mpi_pg.gid + ":nccl"
        self.local_rank, self.local_world_size = mpi_pg.local_rank, mpi_pg.local_world_size
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = pickle.loads(mpi_pg.broadcast_bytes(pickle.dumps(uid) if self.rank == 0 else None, 0))
        with cp.cuda.Device(device):
            self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)
            self.stream = cp.cuda.Stream(non_blocking=True)
            # Warm-up: NCCL connects peers lazily on the first collective.
            warm = cp.zeros(1, dtype=cp.float32)
            self.comm.allReduce(warm.data.ptr, warm.data.ptr, 1, nccl.NCCL_FLOAT32,
                                nccl.NCCL_SUM, self.stream.ptr)
            self._host_wait(self.stream.record(), "NCCL warm-up all_reduce")
        if mpi_pg.state_server is not None:
            mpi_pg.state_server.groups.append(self)
        # The periodic check (ProcessGroup.begin): digests of the collectives are host integers,
        # exchanged over MPI on this group's own duplicate, so that they cannot interleave with
        # the MPI group's exchanges (collective to create, as this group).
        self.check_comm = mpi_pg.comm.Dup() if self.size > 1 else None
        self.check_every = check_every_from_env() if self.size > 1 else 0

    def start_check_exchange(self, table):
        return start_exchange(self, self.check_comm, table)

    def _host_wait(self, event, what):
        deadline = time.monotonic() + self.timeout
        while not event.done:
            if time.monotonic() > deadline:
                sys.stderr.write(f"{self.tag()} TIMEOUT: {what} did not complete within "
                                 f"{self.timeout:g} s; aborting the job\n")
                sys.stderr.flush()
                self.abort()
            time.sleep(1e-4)

    def _launch(self, arrays, fn, after=None):
        """Run ``fn(stream_ptr)`` on the NCCL stream, ordered after the caller's stream."""
        cp = self.cp
        for x in arrays:
            if x is not None and x.device.id != self.device:
                raise CommError(f"{self.tag()} {self.last.name}: expected a tensor on cuda:"
                                f"{self.device} (this rank's GPU), got cuda:{x.device.id}")
        caller = cp.cuda.get_current_stream()
        self.stream.wait_event(caller.record())  # NCCL must see the producer's kernels
        with cp.cuda.Device(self.device):
            fn(self.stream.ptr)
            if after is not None:
                with self.stream:
                    after()
            event = self.stream.record()
        work = NCCLWork(self.last, self, event, arrays)
        daemon.daemon().add(work)
        return work

    def _flat(self, x):
        return x.view(self.cp.uint8) if str(x.dtype) == "bool" else x

    # ----------------------------------------------------------- collectives
    def all_gather_fingerprints(self, fp):
        return self.mpi.all_gather_fingerprints(fp)

    def all_reduce(self, x, op):
        nccl, b = self.nccl, self._flat(x)
        after = _divide_after(nccl, op, x, x, self.size)
        return self._launch([x], lambda s: self.comm.allReduce(
            b.data.ptr, b.data.ptr, b.size, _dtype(nccl, b), _redop(nccl, op, x), s), after)

    def broadcast(self, x, root):
        nccl, b = self.nccl, self._flat(x)
        return self._launch([x], lambda s: self.comm.broadcast(
            b.data.ptr, b.data.ptr, b.size, _dtype(nccl, b), root, s))

    def all_gather(self, out, x):
        nccl, b, o = self.nccl, self._flat(x), self._flat(out)
        return self._launch([out, x], lambda s: self.comm.allGather(
            b.data.ptr, o.data.ptr, b.size, _dtype(nccl, b), s))

    def reduce_scatter(self, out, x, op):
        nccl, b, o = self.nccl, self._flat(x), self._flat(out)
        after = _divide_after(nccl, op, x, out, self.size)
        return self._launch([out, x], lambda s: self.comm.reduceScatter(
            b.data.ptr, o.data.ptr, o.size, _dtype(nccl, b), _redop(nccl, op, x), s), after)

    def reduce(self, x, root, op):
        nccl, b = self.nccl, self._flat(x)
        after = _divide_after(nccl, op, x, x, self.size) if self.rank == root else None
        return self._launch([x], lambda s: self.comm.reduce(
            b.data.ptr, b.data.ptr, b.size, _dtype(nccl, b), _redop(nccl, op, x), root, s), after)

    def _grouped(self, pairs, s):
        """Post ``(kind, array, peer)`` sends/receives as one NCCL group (no ordering deadlock)."""
        nccl = self.nccl
        nccl.groupStart()
        try:
            for kind, a, peer in pairs:
                if a.size:
                    call = self.comm.send if kind == "send" else self.comm.recv
                    call(a.data.ptr, a.size, _dtype(nccl, a), peer, s)
        finally:
            nccl.groupEnd()

    def gather(self, out, x, root):
        b = self._flat(x).reshape(-1)
        if self.rank != root:
            return self._launch([x], lambda s: self._grouped([("send", b, root)], s))
        o = self._flat(out).reshape(self.size, -1)
        pairs = [("recv", o[r], r) for r in range(self.size) if r != root]
        return self._launch([out, x], lambda s: self._grouped(pairs, s),
                            after=lambda: o[root].__setitem__(Ellipsis, b))

    def scatter(self, out, x, root):
        o = self._flat(out).reshape(-1)
        if self.rank != root:
            return self._launch([out], lambda s: self._grouped([("recv", o, root)], s))
        b = self._flat(x).reshape(self.size, -1)
        pairs = [("send", b[r], r) for r in range(self.size) if r != root]
        return self._launch([out, x], lambda s: self._grouped(pairs, s),
                            after=lambda: o.__setitem__(Ellipsis, b[root]))

    def all_to_all(self, out, x, out_counts, in_counts):
        b, o = self._flat(x).reshape(-1), self._flat(out).reshape(-1)
        ind = [sum(in_counts[:r]) for r in range(self.size)]
        outd = [sum(out_counts[:r]) for r in range(self.size)]
        pairs = []
        for r in range(self.size):
            if r != self.rank:
                pairs.append(("send", b[ind[r]:ind[r] + in_counts[r]], r))
                pairs.append(("recv", o[outd[r]:outd[r] + out_counts[r]], r))
        me = self.rank

        def local():
            o[outd[me]:outd[me] + out_counts[me]] = b[ind[me]:ind[me] + in_counts[me]]
        return self._launch([out, x], lambda s: self._grouped(pairs, s), after=local)

    def send(self, x, dst, tag):
        b = self._flat(x).reshape(-1)  # NCCL has no tags: order alone matches messages
        return self._launch([x], lambda s: self._grouped([("send", b, dst)], s))

    def recv(self, x, src, tag):
        b = self._flat(x).reshape(-1)
        return self._launch([x], lambda s: self._grouped([("recv", b, src)], s))

    # Host-side operations go through the group's MPI communicator.
    def barrier(self):
        return self.mpi.barrier()

    def broadcast_bytes(self, data, root):
        return self.mpi.broadcast_bytes(data, root)

    def all_gather_bytes(self, data):
        return self.mpi.all_gather_bytes(data)

    def new_group(self, ranks):
        raise CommError("nccl: sub-groups are made from the MPI sub-group (see subgroup())")

    def subgroup(self, mpi_sub):
        """The NCCL group of the MPI sub-group ``mpi_sub`` (collective over its members)."""
        pg = NCCLProcessGroup(mpi_sub, self.device)
        pg.debug = self.debug
        return pg

    def query_states(self):
        return self.mpi.query_states()

    def abort(self, code=1):
        try:
            self.comm.abort()  # frees NCCL's kernels so the process can exit
        finally:
            self.mpi.abort(code)

    def shutdown(self):
        server = self.mpi.state_server
        if server is not None and self in server.groups:
            server.groups.remove(self)
        self.stream.synchronize()
        self.comm.destroy()
        if self.check_comm is not None:
            self.check_comm.Free()
            self.check_comm = None
