"""Failures never hang: timed waits, stall reports, timeouts, and what a waiting rank learns of the others.

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

Stall reports need to know what the *other* ranks are doing: they ask each
member of the group through the side channel of :mod:`distgraph.comm.daemon`
(its per-group sequence numbers, recent collectives and main thread's stack).
The same channel brings exit notices (:mod:`distgraph.comm.exits`): a rank
that waits in a collective an exited rank never called ends the job at once,
naming it and its exit code (an early ``sys.exit(0)`` is a failure while others
still wait on it).  A wait that lasts ``PEEK_SECONDS`` asks the group's ranks
what they wait in, so that ranks stuck in *different* collectives end the job
with that diagnosis instead of waiting for the timeout.

The rest of the failure handling: :mod:`distgraph.comm.daemon` (async progress,
the state server), :mod:`distgraph.comm.exits` (the abort hook on an uncaught
exception, exit notices, the bounded start-up).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time

from distgraph_launch.env import discover

__all__ = ["timeout_from_env", "stall_from_env", "init_timeout_from_env", "wait", "fail_job"]

DEFAULT_TIMEOUT = 1800.0
DEFAULT_STALL = 60.0
DEFAULT_INIT_TIMEOUT = 300.0
QUERY_SECONDS = 2.0  # a rank that does not answer a state query within this is dead or stuck
SPIN_SECONDS = 1e-3
PEEK_SECONDS = 3.0  # a wait this long asks the other ranks what they wait in (then at growing gaps)
PEEK_MAX_RANKS = int(os.environ.get("DISTGRAPH_PEEK_MAX_RANKS", "64"))  # ...in groups of at most this many


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
        # Every waiting rank asks every member: at 3, 9, 21, 45... s, and only in groups small enough
        # for that chatter not to matter (the stall report covers the others).
        peek_at, peek_gap = start + PEEK_SECONDS, 2 * PEEK_SECONDS
        if pg.size > PEEK_MAX_RANKS:
            peek_at = float("inf")
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
                        peek_at, peek_gap = time.monotonic() + peek_gap, 2 * peek_gap
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
    calls = disagreement(work, states)
    if calls is not None:  # they wait in different collectives: none of them will ever complete
        _fail_disagreement(work, calls, f"STALL: {work.desc} on group {pg.ranks} has waited {elapsed:.1f} s")
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
        _fail_disagreement(work, calls, f"TIMEOUT: {desc} on group {pg.ranks} did not complete within {limit:g} s")
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
    if calls is not None:
        _fail_disagreement(work, calls, f"COLLECTIVE MISMATCH: {work.desc} on group {pg.ranks} cannot complete")


def _fail_disagreement(work, calls, headline):
    """End the job: the ranks wait in different collectives (``calls``: rank -> what it called)."""
    pg = work.pg
    bad, lines = _disagreement_lines(work, calls)
    fail_job(pg, f"{pg.tag()} {headline}: the ranks called different collectives.\n" + "\n".join(lines) + "\n"
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
