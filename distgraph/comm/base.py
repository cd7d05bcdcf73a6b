"""The interface every backend implements: ``ReduceOp``, ``Work`` and ``ProcessGroup``.

A backend's process group works on raw arrays (NumPy or CuPy), never on
Tensors: the public functions in :mod:`distgraph.comm.collectives` unwrap
tensors, check arguments, and hand the group contiguous arrays.  Every
collective method issues the operation and returns a :class:`Work`; the caller
decides whether to wait (``async_op=False``) or to hand the work to the user.
"""
from __future__ import annotations

import collections
import enum
import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from distgraph.comm.watchdog import wait as _wait
from distgraph.futures import Future

__all__ = ["CommError", "ReduceOp", "OpDesc", "Work", "CompletedWork", "ProcessGroup"]


class CommError(RuntimeError):
    """A collective was used wrongly, or the ranks disagreed about what to call."""


class ReduceOp(enum.Enum):
    """Reduction applied by ``all_reduce``, ``reduce`` and ``reduce_scatter``.

    ``AVG`` is ``SUM`` followed by a division by the group size (floating
    dtypes only, as with PyTorch's NCCL backend).  On ``bool`` tensors ``SUM``
    and ``MAX`` are logical or, ``PRODUCT`` and ``MIN`` logical and.
    ``BAND``, ``BOR`` and ``BXOR`` are bitwise (logical on ``bool``), for integer
    and bool tensors, on MPI and the single process (NCCL has none, as in PyTorch).
    """

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"

    def __repr__(self):
        return f"ReduceOp.{self.name}"


BITWISE_OPS = (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR)  # integer and bool tensors only

# Codes used in debug fingerprints: small integers every rank agrees on.
OP_CODES = {name: i for i, name in enumerate((
    "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter",
    "reduce_scatter_tensor", "reduce", "gather", "scatter", "all_to_all_single", "barrier",
    "broadcast_object_list", "all_gather_object", "new_group", "all_to_all", "gather_object",
    "scatter_object_list"), start=1)}
_OP_NAMES = {v: k for k, v in OP_CODES.items()}
_DTYPES = [np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int32, np.int64,
                                 np.bool_, np.int8, np.uint8, np.int16)]
_REDUCE_CODES = {op: i for i, op in enumerate(ReduceOp, start=1)}
_DTYPE_CODES = {d: i for i, d in enumerate(_DTYPES)}
FP_DIMS = 8
FP_LEN = 6 + FP_DIMS
CHECK_EVERY = 64  # the periodic check's largest window (DISTGRAPH_CHECK_EVERY; 0 turns it off)
HISTORY = 16  # collectives each group remembers for stall reports


def check_every_from_env() -> int:
    """``DISTGRAPH_CHECK_EVERY``: the periodic check's window (default 64; 0 turns it off)."""
    raw = os.environ.get("DISTGRAPH_CHECK_EVERY", "")
    if raw == "":
        return CHECK_EVERY
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"DISTGRAPH_CHECK_EVERY: expected a whole number of collectives >= 0 (0 turns "
                         f"the check off), got {raw!r}")
    return value


@dataclass(slots=True)
class OpDesc:
    """One collective call, as the stall report and the debug check describe it."""

    name: str
    seq: int
    shape: tuple = ()
    dtype: object = None
    root: int = -1
    op: ReduceOp | None = None
    started: float = field(default_factory=time.monotonic)

    def fingerprint(self) -> np.ndarray:
        """Fixed-size int64 vector (op, seq, dtype, reduce op, root, shape) for comparing ranks."""
        fp = np.full(FP_LEN, -1, dtype=np.int64)
        row = self.fingerprint_row()
        fp[:len(row)] = row
        return fp

    def key(self) -> tuple:
        """The fingerprint as a tuple of ints: its ``hash`` is the same in every process
        (integers hash alike everywhere; strings, None and enums do not)."""
        return (self.seq, OP_CODES[self.name],
                _DTYPE_CODES.get(self.dtype, -2) if self.dtype is not None else -1,
                _REDUCE_CODES.get(self.op, 0), self.root, self.shape)

    def fingerprint_row(self) -> list:
        """The leading entries of :meth:`fingerprint` (the rest is -1)."""
        return [self.seq, OP_CODES[self.name],
                _DTYPES.index(np.dtype(self.dtype)) if self.dtype is not None else -1,
                _REDUCE_CODES.get(self.op, 0), self.root, len(self.shape), *self.shape[:FP_DIMS]]

    @staticmethod
    def describe_fingerprint(fp) -> str:
        """Human-readable text of a fingerprint (the inverse of :meth:`fingerprint`)."""
        fp = [int(v) for v in fp]
        name = _OP_NAMES.get(fp[1], f"op#{fp[1]}")
        parts = [f"{name} #{fp[0]}"]
        ndim = fp[5]
        if fp[2] >= 0:
            shape = tuple(fp[6:6 + min(ndim, FP_DIMS)])
            parts.append(f"shape={shape}{'...' if ndim > FP_DIMS else ''} dtype={_DTYPES[fp[2]]}")
        if fp[3] > 0:
            parts.append(f"op={list(ReduceOp)[fp[3] - 1].name}")
        if fp[4] >= 0:
            parts.append(f"root={fp[4]}")
        return " ".join(parts)

    def __str__(self):
        return self.describe_fingerprint(self.fingerprint())


class Work:
    """Handle returned by a collective called with ``async_op=True``.

    ``wait()`` blocks until the operation is complete on this rank (for NCCL:
    until the caller's current CUDA stream is ordered after it) and raises on
    failure; ``is_completed()`` never blocks.  Completion callbacks (the
    division of ``AVG``, copying out of staging buffers) run exactly once,
    before ``wait()`` returns or ``is_completed()`` first returns True.
    """

    def __init__(self, desc: OpDesc | None = None, pg=None):
        self.desc = desc
        self.pg = pg
        self._lock = threading.Lock()  # one thread at a time may drive the transport
        self._done = False
        self._then = []
        self._result = None
        self.in_daemon = False  # watched by the progress daemon

    # -- to override
    def _test(self) -> bool:
        """Advance the transport; True once the data movement is complete."""
        return True

    # -- public
    def then(self, fn):
        """Register ``fn()`` to run once when the transport completes (internal helper)."""
        if self._done:
            fn()
        else:
            self._then.append(fn)
        return self

    def is_completed(self) -> bool:
        if self._done:
            return True
        if not self._lock.acquire(blocking=False):
            return False  # another thread is driving it right now
        try:
            return self._progress()
        finally:
            self._lock.release()

    def daemon_poll(self) -> bool:
        """Called by the progress daemon; True once the daemon may forget this work."""
        return self.is_completed()

    def _progress(self) -> bool:
        """Test and finish; the caller holds ``self._lock``."""
        if not self._done and self._test():
            self._complete()
        return self._done

    def _complete(self):
        """Run the completion callbacks once; the caller holds ``self._lock``."""
        for fn in self._then:
            fn()
        self._then = []
        self._done = True

    def wait(self, timeout=None) -> bool:
        """Block until the operation completes on this rank.

        Args:
            timeout: seconds; ``None`` uses the process group's timeout.  When
                it passes, the job is aborted with a report (a collective that
                never completes cannot be cancelled safely in MPI or NCCL).

        Returns:
            True, as PyTorch's ``Work.wait()`` does.
        """
        if not self._done:
            _wait(self, timeout)
        return True

    def is_success(self) -> bool:
        return self._done

    def result(self):
        """The tensors the operation wrote (PyTorch's ``Work.result()``)."""
        self.wait()
        return self._result

    def get_future(self):
        """A :class:`distgraph.futures.Future` completed with the list of tensors the operation wrote
        (PyTorch's ``Work.get_future()``: what DDP communication hooks return)."""
        return Future._of_work(self)

    def __repr__(self):
        state = "completed" if self._done else "pending"
        return f"<Work {self.desc} {state}>"




def average_in_place(x, size):
    """The division that turns a ``SUM`` into ``ReduceOp.AVG`` (NumPy or CuPy ``x``, in place)."""
    if isinstance(x, np.ndarray):
        np.divide(x, size, out=x, casting="unsafe")
    else:
        x /= size


def _compare_windows(pg, tables):
    """``tables``: ``(size, rows, FP_LEN)``; raise naming the first collective the ranks disagree on."""
    if (tables == tables[0]).all():
        return
    rows = np.nonzero((tables != tables[0]).any(axis=(0, 2)))[0]
    j = int(rows[0])
    calls = [OpDesc.describe_fingerprint(t[j]) if t[j, 1] > 0 else "nothing" for t in tables]
    seq = next(int(t[j, 0]) for t in tables if t[j, 1] > 0)
    lines = "\n".join(f"  rank {pg.ranks[r]}: {c}" for r, c in enumerate(calls))
    bad = [pg.ranks[r] for r in range(pg.size) if calls[r] != calls[0]]
    raise CommError(
        f"{pg.tag()} collective mismatch: ranks {bad} called something different from rank {pg.ranks[0]} "
        f"at collective #{seq} of group {pg.ranks}, so its result (and what followed) is wrong:\n{lines}\n"
        "Every rank must call the same collectives, in the same order, with the same shapes and dtypes; "
        "look for a branch on the rank or data-dependent shapes. (Found by the periodic check, which "
        "compares collectives a few calls after they ran; DISTGRAPH_DEBUG=1 compares each one before it "
        "runs.)")


class CompletedWork(Work):
    """A work that finished when it was issued (the single backend, empty groups)."""

    def __init__(self, desc=None, pg=None):
        super().__init__(desc, pg)
        self._done = True


class _Count(int):
    """A group's ``rank``/``size``: an int that can also be called, as PyTorch's ``ProcessGroup.size()``
    and ``.rank()`` are (hooks written for torch call ``group.size()``)."""

    def __call__(self) -> int:
        return int(self)


class ProcessGroup(ABC):
    """A set of ranks that run collectives together.

    ``rank`` and ``size`` are this process's place within the group; ``ranks``
    lists the group's members by their global (world) rank, in group order.
    Every method is collective over the group: every member must call it, in
    the same order, with matching shapes and dtypes.
    """

    backend = "abstract"

    def __init__(self, rank: int, size: int, ranks, timeout: float, world_size: int | None = None):
        self.rank = _Count(rank)
        self.size = _Count(size)
        self.ranks = list(ranks)
        self.timeout = timeout
        self.world_size = world_size if world_size is not None else size
        self.seq = 0
        self.last: OpDesc | None = None  # the collective issued most recently
        self.debug = False
        self.gid = "world"  # names the group identically on every rank (stall reports)
        self.gpu = None  # the NCCL sibling that GPU tensors use, if any
        self.waiting = None  # the OpDesc a thread is waiting on right now
        self.local_rank, self.local_world_size = 0, 1
        self.history = collections.deque(maxlen=HISTORY)  # recent OpDescs, for stall reports
        # The periodic check (see begin()): the collectives since the last exchange, and the
        # exchange in flight (a Work whose result is every rank's window).
        self.check_every = 0  # backends with a side channel set check_every_from_env()
        self._window = []
        self._check = None

    def tag(self) -> str:
        """The ``[rank r/N]`` prefix of every error raised in distributed code."""
        return f"[rank {self.ranks[self.rank]}/{self.world_size}]"

    def begin(self, name, array=None, root=-1, op=None) -> OpDesc:
        """Record the next collective and check that every rank agrees on it.

        With ``debug`` every collective is compared across ranks before it runs.
        Otherwise the periodic check compares them a little later, off the critical
        path: a digest of a window's collectives is exchanged on a side
        communicator without waiting, and the exchange is looked at when the next
        window is sent (only when the digests differ do the ranks exchange the
        collectives themselves, to say which one differs).  Windows end at
        collectives #1, 2, 4, 8, ... and then every ``check_every``: a schedule
        every rank agrees on, so a mismatch raises :class:`CommError` on every rank
        at the same collective, and one in the first steps of a job soon.
        """
        if name not in OP_CODES:  # every rank must be able to describe every collective
            raise ValueError(f"{self.tag()} begin: unknown collective {name!r}; add it to comm.base.OP_CODES")
        self.seq += 1
        desc = OpDesc(name, self.seq, tuple(array.shape) if array is not None else (),
                      array.dtype if array is not None else None, root, op)
        self.last = desc
        self.history.append(desc)
        if self.size > 1:
            if self.debug:
                self.check_consistency(desc)
            elif self.check_every:
                self._window.append(desc)
                seq = self.seq
                if seq >= self.check_every and seq % self.check_every == 0 or \
                        seq < self.check_every and seq & (seq - 1) == 0:
                    self._send_window()
        return desc

    # -- the periodic check
    def start_check_exchange(self, table) -> Work | None:
        """All-gather the int64 array ``table`` (the same shape on every rank) on a side channel,
        without waiting; None where the group has none (no periodic check then)."""
        return None

    def _send_window(self):
        """Exchange a digest of the collectives since the last exchange (three int64s a rank)."""
        self.finish_check()
        window, self._window = self._window, []
        digest = hash(tuple(d.key() for d in window))
        work = self.start_check_exchange(np.array([window[0].seq, len(window), digest], dtype=np.int64))
        if work is not None:
            work.window = window
        self._check = work

    def finish_check(self, partial=False):
        """Wait for the exchange in flight (if any) and raise :class:`CommError` on a mismatch.

        ``partial``: also exchange the collectives not yet sent (``destroy_process_group``)."""
        work, self._check = self._check, None
        if work is not None:
            work.wait()
            digests = work._result
            if not (digests == digests[0]).all():
                # Every rank sees the same digests, so every rank asks for the details here.
                rows = max(self.check_every, len(work.window))
                table = np.full((rows, FP_LEN), -1, dtype=np.int64)
                for i, d in enumerate(work.window[:rows]):
                    row = d.fingerprint_row()
                    table[i, :len(row)] = row
                details = self.start_check_exchange(table)
                details.wait()
                _compare_windows(self, details._result)
        if partial and self._window and self.check_every and not self.debug:
            self._send_window()
            self.finish_check()

    def check_consistency(self, desc: OpDesc):
        """Compare ``desc`` across ranks; raise :class:`CommError` on every rank on mismatch."""
        mine = desc.fingerprint()
        table = self.all_gather_fingerprints(mine)
        bad = [r for r in range(self.size) if not np.array_equal(table[r], table[0])]
        if bad:
            lines = "\n".join(f"  rank {self.ranks[r]}: {OpDesc.describe_fingerprint(table[r])}"
                              for r in range(self.size))
            raise CommError(
                f"{self.tag()} collective mismatch (DISTGRAPH_DEBUG): ranks "
                f"{[self.ranks[r] for r in bad]} called something different from rank "
                f"{self.ranks[0]}:\n{lines}\nEvery rank must call the same collectives, in the same "
                "order, with the same shapes and dtypes; look for a branch on the rank.")

    # -- collectives on contiguous arrays; each returns a Work
    @abstractmethod
    def all_gather_fingerprints(self, fp: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def all_reduce(self, x, op: ReduceOp) -> Work: ...

    @abstractmethod
    def broadcast(self, x, root: int) -> Work: ...

    @abstractmethod
    def all_gather(self, out, x) -> Work:
        """``out`` has ``size * x.size`` elements; rank ``r``'s ``x`` lands in block ``r``."""

    @abstractmethod
    def reduce_scatter(self, out, x, op: ReduceOp) -> Work:
        """``x`` has ``size * out.size`` elements; block ``r`` of the reduction lands on rank ``r``."""

    @abstractmethod
    def reduce(self, x, root: int, op: ReduceOp) -> Work: ...

    @abstractmethod
    def gather(self, out, x, root: int) -> Work: ...

    @abstractmethod
    def scatter(self, out, x, root: int) -> Work: ...

    @abstractmethod
    def all_to_all(self, out, x, out_counts, in_counts) -> Work: ...

    @abstractmethod
    def send(self, x, dst: int, tag: int) -> Work: ...

    @abstractmethod
    def recv(self, x, src: int, tag: int) -> Work: ...

    @abstractmethod
    def barrier(self) -> Work: ...

    @abstractmethod
    def broadcast_bytes(self, data: bytes | None, root: int) -> bytes: ...

    @abstractmethod
    def all_gather_bytes(self, data: bytes) -> list: ...

    @abstractmethod
    def new_group(self, ranks) -> ProcessGroup | None:
        """Collective over this group: the sub-group of ``ranks`` (group ranks), or None if not a member."""

    def abort(self, code=1):
        """Tear the job down with exit status ``code``, without waiting for anyone (used at a timeout)."""

    def shutdown(self):
        """Release communicators (``destroy_process_group``)."""
