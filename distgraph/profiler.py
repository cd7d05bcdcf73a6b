"""A per-rank timeline of training, written as Chrome-trace JSON (chrome://tracing, Perfetto).

Turn it on with ``DISTGRAPH_TIMELINE=path.json`` or ``dg.profiler.enable(path)``;
``DistributedDataParallel`` then records forward, backward and each bucket's
all-reduce (launch to completion); wrap anything else in ``with
dg.profiler.span("optimizer.step"):``.  ``dg.profiler.write()`` (called at
exit) gathers every rank's events and rank 0 writes one merged file, one
process row per rank, so overlap of communication with backward is visible.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time

_lock = threading.Lock()
_events: list = []
_path = os.environ.get("DISTGRAPH_TIMELINE") or None


def enabled() -> bool:
    return _path is not None


def enable(path: str):
    """Start recording; ``write()`` will put the merged trace at ``path``."""
    global _path
    _path = str(path)


def disable():
    global _path
    _path = None


def now_us() -> float:
    """Microseconds on the wall clock, so that the ranks of one machine (and of NTP-synchronised
    hosts) share a time axis in the merged trace."""
    return time.time_ns() / 1000


def record(name: str, cat: str, start_us: float, end_us: float, **args):
    """Add one complete span (times from ``now_us()``)."""
    if _path is None:
        return
    with _lock:
        _events.append({"name": name, "cat": cat, "ph": "X", "ts": start_us, "dur": max(end_us - start_us, 0.0),
                        "tid": cat, "args": args})


@contextlib.contextmanager
def span(name: str, cat: str = "user", **args):
    """Record the time spent in the ``with`` block."""
    if _path is None:
        yield
        return
    start = now_us()
    try:
        yield
    finally:
        record(name, cat, start, now_us(), **args)


_written = 0  # how many of _events the last write() covered


def events() -> list:
    """This rank's events so far (a copy)."""
    with _lock:
        return list(_events)


def overlap_fraction(evts=None) -> float:
    """Share of all-reduce time that lies inside backward spans (1.0: fully hidden)."""
    evts = events() if evts is None else evts
    back = [(e["ts"], e["ts"] + e["dur"]) for e in evts if e["cat"] == "backward"]
    comm = [(e["ts"], e["ts"] + e["dur"]) for e in evts if e["cat"] == "allreduce"]
    total = sum(b - a for a, b in comm)
    if not total:
        return 0.0
    hidden = sum(max(0.0, min(b, d) - max(a, c)) for a, b in comm for c, d in back)
    return min(hidden / total, 1.0)


def write(path: str | None = None):
    """Gather every rank's events and write the merged trace on rank 0 (every rank must call
    this when a process group is up; ``atexit`` does it for you)."""
    global _written
    path = path or _path
    if path is None:
        return None
    mine = events()
    _written = len(mine)
    rank, merged = 0, [mine]
    try:
        from distgraph import comm
        if comm.is_initialized() and comm.get_world_size() > 1:
            rank = comm.get_rank()
            merged = [None] * comm.get_world_size()
            comm.all_gather_object(merged, mine)
    except ImportError:
        pass
    if rank != 0:
        return None
    trace = []
    for r, evs in enumerate(merged):
        trace.append({"name": "process_name", "ph": "M", "pid": r, "args": {"name": f"rank {r}"}})
        for e in evs:
            trace.append({**e, "pid": r})
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({"traceEvents": trace, "displayTimeUnit": "ms"}, f)
    os.replace(tmp, path)
    return path


def _at_exit():
    # Only if something was recorded after the last explicit write(): at exit the process group
    # may be gone, and a per-rank rewrite would replace the merged trace.
    if _path is not None and len(events()) > _written:
        try:
            write()
        except Exception:  # noqa: BLE001 - never turn a finished run into a failure at exit
            pass


atexit.register(_at_exit)
