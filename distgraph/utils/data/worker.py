"""Worker processes for ``DataLoader(num_workers > 0)``.

Protocol (kept deliberately small):

- each worker has its own task queue; the loader sends ``(task_id, indices)``
  (a map-style batch to fetch) or ``(task_id, None)`` (the next batch of an
  iterable dataset), and ``None`` to stop;
- every worker answers on one shared result queue with ``(task_id, data, error)``,
  where ``error`` is a formatted traceback (the exception can't always be pickled)
  and ``data`` is ``_EXHAUSTED`` when an iterable dataset's copy has run out;
- the loader hands tasks out round-robin, keeps at most ``prefetch_factor``
  outstanding per worker, and yields results in task order, so batches come
  out in the same order as with ``num_workers=0``.

The loader polls the result queue with a timeout and checks that every worker
is still alive, so a worker killed by the OS raises an error instead of hanging.
A worker that is alive but stuck (``timeout=0``, PyTorch's default, waits
forever) is reported: after ``DISTGRAPH_DATALOADER_STALL_SECONDS`` (default 60) of
waiting for one batch, one warning names the batch and the workers that have
produced nothing for that long, and it is repeated at doubling intervals
(60 s, 120 s, 240 s, ...) while the wait goes on. ``0`` turns it off.
"""
from __future__ import annotations

import itertools
import math
import os
import queue
import random
import time
import traceback
from dataclasses import dataclass

import numpy as np

from distgraph.utils.logging import get_logger

__all__ = ["WorkerInfo", "get_worker_info", "STALL_ENV"]

STALL_ENV = "DISTGRAPH_DATALOADER_STALL_SECONDS"
_STALL_DEFAULT_S = 60.0
_EXHAUSTED = "__distgraph_worker_exhausted__"
_POLL_S = 0.5
_worker_info = None
_log = get_logger(__name__)


def _stall_seconds():
    """Seconds of waiting for one batch before the loader warns (``0``: never), from ``STALL_ENV``."""
    raw = os.environ.get(STALL_ENV, "").strip()
    if not raw:
        return _STALL_DEFAULT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{STALL_ENV}: expected a number of seconds >= 0 (0 turns the stall warning off), "
                         f"got {raw!r}")
    return value


@dataclass(frozen=True)
class WorkerInfo:
    """What ``get_worker_info()`` returns inside a worker."""

    id: int
    num_workers: int
    seed: int
    dataset: object


def get_worker_info():
    """The current worker's ``WorkerInfo`` inside a DataLoader worker process, else ``None``."""
    return _worker_info


def _seed_everything(seed):
    import distgraph as dg
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    dg.manual_seed(seed % 2 ** 63)


def _worker_loop(fetch, dataset, tasks, results, worker_id, num_workers, seed, init_fn):
    """Body of one worker process (``fetch(indices_or_iterator)`` builds one batch)."""
    global _worker_info
    _seed_everything(seed)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    try:
        if init_fn is not None:
            init_fn(worker_id)
    except Exception:  # report it on the first task, where the loader is waiting
        failed = f"in worker_init_fn of DataLoader worker {worker_id}:\n{traceback.format_exc()}"
    else:
        failed = None
    iterator = None
    while True:
        try:
            task = tasks.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() == 1:  # the loader's process died: don't linger as an orphan
                return
            continue
        if task is None:
            return
        task_id, indices = task
        if failed is not None:
            results.put((task_id, None, failed))
            continue
        try:
            if indices is None:
                if iterator is None:
                    iterator = iter(dataset)
                data = fetch(iterator)
            else:
                data = fetch(indices)
            results.put((task_id, data, None))
        except StopIteration:
            results.put((task_id, _EXHAUSTED, None))
        except Exception:
            results.put((task_id, None, f"in DataLoader worker {worker_id}:\n{traceback.format_exc()}"))


def _seconds(t):
    return f"{t:.0f} s" if t >= 10 else f"{t:.1f} s"


def _brief(indices, n=8):
    items = list(indices) if isinstance(indices, (list, tuple, range)) else [indices]
    return "[" + ", ".join(map(str, items[:n])) + (", ...]" if len(items) > n else "]")


class MultiProcessIter:
    """One epoch over a ``DataLoader`` with worker processes."""

    def __init__(self, loader, fetch, iterable, base_seed):
        self._loader = loader
        ctx = loader.multiprocessing_context
        if ctx is None or isinstance(ctx, str):
            import multiprocessing
            ctx = multiprocessing.get_context(ctx)
        n = loader.num_workers
        # read before any worker starts, so a bad value leaves nothing running; with a timeout, a stall
        # becomes an error instead
        self._stall_s = _stall_seconds() if loader.timeout == 0 else 0.0
        self._iterable = iterable
        self._batches = None if iterable else iter(loader._index_sampler)
        self._results = ctx.Queue()
        self._tasks = [ctx.Queue() for _ in range(n)]
        self._workers = []
        for w in range(n):
            p = ctx.Process(target=_worker_loop, daemon=True,
                            args=(fetch, loader.dataset, self._tasks[w], self._results, w, n, base_seed + w,
                                  loader.worker_init_fn))
            p.start()
            self._workers.append(p)
        self._active = list(range(n))  # workers still producing (iterable datasets drop out)
        self._next_worker = itertools.cycle(range(n))
        self._sent = self._received = 0
        self._buffer = {}
        self._owner = {}  # task id -> (worker, indices) of every task sent and not yet answered
        self._heard = [time.monotonic()] * n  # when each worker last answered (or started)
        self._done = False
        for _ in range(loader.prefetch_factor * n):
            if not self._send():
                break

    def _send(self):
        """Hand the next task to the next worker; False when there is nothing left to hand out."""
        if self._done or not self._active:
            return False
        if self._iterable:
            payload = None
        else:
            payload = next(self._batches, None)
            if payload is None:
                self._done = True
                return False
        worker = next(self._next_worker)
        while worker not in self._active:
            worker = next(self._next_worker)
        self._tasks[worker].put((self._sent, payload))
        self._owner[self._sent] = (worker, payload)
        self._sent += 1
        return True

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._received == self._sent:
                self._shutdown()
                raise StopIteration
            data = self._buffer.pop(self._received, None) if self._received in self._buffer else self._get()
            self._received += 1
            self._send()
            if isinstance(data, str) and data == _EXHAUSTED:
                continue
            return data

    def _get(self):
        """Results until the one for task ``self._received`` arrives (others are buffered)."""
        timeout = self._loader.timeout
        start = time.monotonic()
        warn_at = self._stall_s
        while True:
            try:
                task_id, data, error = self._results.get(timeout=_POLL_S)
            except queue.Empty:
                self._check_alive()
                waited = time.monotonic() - start
                if timeout and waited > timeout:
                    self._shutdown()
                    raise RuntimeError(f"DataLoader timed out after {timeout} seconds waiting for a batch "
                                       "from its workers") from None
                if warn_at and waited >= warn_at:
                    self._warn_stalled(waited)
                    warn_at *= 2  # repeat at doubling intervals: a long stall is not a flood of lines
                continue
            worker, _ = self._owner.pop(task_id, (None, None))
            if worker is not None:
                self._heard[worker] = time.monotonic()
            if error is not None:
                self._shutdown()
                raise RuntimeError(f"Caught an exception {error}")
            if isinstance(data, str) and data == _EXHAUSTED:
                if worker in self._active:  # this worker's copy of the iterable dataset has run out
                    self._active.remove(worker)
            if task_id == self._received:
                return data
            self._buffer[task_id] = data

    def _warn_stalled(self, waited):
        now = time.monotonic()
        worker, indices = self._owner.get(self._received, (None, None))
        what = "the next batch of its copy of the IterableDataset" if self._iterable else f"indices {_brief(indices)}"
        busy = sorted({w for w, _ in self._owner.values()}, key=lambda w: (w != worker, w))
        silent = [f"worker {w} (pid {self._workers[w].pid}) for {_seconds(now - self._heard[w])}" for w in busy
                  if now - self._heard[w] >= self._stall_s]
        _log.warning("DataLoader: waited %s for batch %d of this epoch (%s) from worker %s; nothing produced by "
                     "%s. With timeout=0 the loader waits forever: pass DataLoader(timeout=SECONDS) to make a "
                     "stall an error (%s=%g sets when this is logged, 0 turns it off)",
                     _seconds(waited), self._received, what, worker, ", ".join(silent), STALL_ENV, self._stall_s)

    def _check_alive(self):
        dead = [p for p in self._workers if not p.is_alive()]
        if dead:
            info = ", ".join(f"pid {p.pid} exit code {p.exitcode}" for p in dead)
            self._shutdown()
            raise RuntimeError(f"DataLoader worker(s) exited unexpectedly ({info}); a negative exit code is "
                               "the signal that killed it (e.g. -9: out of memory?). Try num_workers=0 to see "
                               "the error in the main process")

    def _shutdown(self):
        if not self._workers:
            return
        for q in self._tasks:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for p in self._workers:
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join(timeout=1)
        for q in [*self._tasks, self._results]:
            q.cancel_join_thread()
            q.close()
        self._workers = []

    def __del__(self):
        try:
            self._shutdown()
        except Exception:
            pass
