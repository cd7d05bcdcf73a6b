"""Per-rank wrapper that ``distgraph-run`` puts in front of the user's program.

    python -m distgraph_launch.rank [--gpus K] [--allow-shared-gpu] -- prog args...

It reads its rank from the launcher's environment, exports torchrun's ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE`` and ``LOCAL_WORLD_SIZE`` from it, binds a GPU
(``CUDA_VISIBLE_DEVICES = local_rank % gpus``) when asked, and runs the
program with the wrapper's own stdout/stderr (no pipe in between: when MPI
aborts the job it kills the wrappers at once, and nothing written may be lost
on the way).  If the program dies, one machine-readable line (``FAIL_MARK`` +
JSON: rank, host, exit code or signal, time) goes to stderr for the launcher;
a Python exception reports itself through the same mark from the comm layer's
excepthook (``DISTGRAPH_FAIL_MARK``), traceback included.

The wrapper also watches ``distgraph-run`` (``DISTGRAPH_LAUNCHER``: its host,
pid and start time): when the launcher is gone -- killed by SIGKILL, say --
the program gets SIGTERM, then SIGKILL 3 s later, so no rank outlives the
launcher that started it.  (On another host than the launcher's, MPI's own
teardown, when ``mpiexec`` dies, does this.)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from .procs import LAUNCHER_VAR, launcher_alive

FAIL_MARK = "@@distgraph-rank-failed "
EXIT_MARK = "@@distgraph-rank-exited "  # the program ended with status 0 (evidence if the job then fails)
WATCH_INTERVAL = 0.5  # seconds between looks at the launcher
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv=None):
    p = argparse.ArgumentParser(prog="distgraph.launch.rank")
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument("--allow-shared-gpu", action="store_true")
    p.add_argument("program", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    prog = a.program[1:] if a.program[:1] == ["--"] else a.program
    from .env import discover
    info = discover()
    env = dict(os.environ)
    if a.gpus:
        if info.local_world_size > a.gpus and not a.allow_shared_gpu:
            sys.stderr.write(f"[rank {info.rank}] {info.local_world_size} ranks on host {socket.gethostname()} "
                             f"but only {a.gpus} GPUs; start fewer ranks per host or pass --allow-shared-gpu\n")
            return 2
        env["CUDA_VISIBLE_DEVICES"] = str(info.local_rank % a.gpus)
    env["DISTGRAPH_FAIL_MARK"] = FAIL_MARK
    # torchrun's RANK/LOCAL_RANK/WORLD_SIZE/LOCAL_WORLD_SIZE, for scripts that read them before
    # (or without) importing distgraph.
    from .env import export_torch_env
    export_torch_env(env)
    # One BLAS/OpenMP thread pool per core, shared by the ranks on this host, unless the user chose:
    # N ranks each starting as many threads as there are cores run dozens of times slower.
    if not any(v in env for v in _THREAD_VARS):
        per_rank = str(max(1, (os.cpu_count() or 1) // max(1, info.local_world_size)))
        env.update({v: per_rank for v in _THREAD_VARS})
    # Unbuffered Python writes a line's text and its newline separately, and the
    # MPI's rank tagging is per write: keep Python's whole-line writes (stderr is
    # line-buffered; use print(..., flush=True) for live stdout, as under mpirun).
    env.pop("PYTHONUNBUFFERED", None)
    # close_fds=False: the MPI launcher hands each rank inherited descriptors (e.g. PMI_FD).
    child = subprocess.Popen(prog, env=env, close_fds=False)

    def forward(sig, frame):
        child.send_signal(sig)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    orphaned = threading.Event()
    if env.get(LAUNCHER_VAR):
        threading.Thread(target=_watch_launcher, args=(env[LAUNCHER_VAR], child, orphaned), daemon=True).start()
    code = child.wait()
    if orphaned.is_set():
        return code if code >= 0 else 128 - code  # nobody is left to read a report
    report = {"rank": info.rank, "host": socket.gethostname(), "time": time.time(), "tail": []}
    if code < 0:
        report["signal"] = signal.Signals(-code).name
    else:
        report["code"] = code
    # Status 0 is reported too: if the job then fails (MPI kills the others when one rank leaves
    # before they are done), the launcher names the rank that left first.
    sys.stderr.write((FAIL_MARK if code != 0 else EXIT_MARK) + json.dumps(report) + "\n")
    sys.stderr.flush()
    return code if code >= 0 else 128 - code


def _watch_launcher(identity, child, orphaned):
    """Stop the program once ``distgraph-run`` is gone (its pid dead or reused)."""
    if launcher_alive(identity) is None:
        return  # another host than the launcher's: MPI's teardown takes care of it
    while child.poll() is None:
        if not launcher_alive(identity):
            orphaned.set()
            for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0)):
                if child.poll() is not None:
                    return
                child.send_signal(sig)
                try:
                    child.wait(timeout=wait or None)
                except subprocess.TimeoutExpired:
                    pass
            return
        time.sleep(WATCH_INTERVAL)


if __name__ == "__main__":
    sys.exit(main())
