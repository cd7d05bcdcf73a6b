"""Per-rank wrapper that ``distgraph-run`` puts in front of the user's program.

    python -m distgraph.launch.rank [--prefix] [--quiet] [--gpus K] [--allow-shared-gpu] -- prog args...

It reads its rank from the launcher's environment, binds a GPU
(``CUDA_VISIBLE_DEVICES = local_rank % gpus``) when asked, runs the program,
prefixes every output line with ``[rank R]``, and, if the program fails,
prints one machine-readable line (``FAIL_MARK`` + JSON: rank, host, exit code
or signal, time, stderr tail) that the launcher reads through ``mpiexec``'s
forwarded stderr, on any host.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

FAIL_MARK = "@@distgraph-rank-failed "
TAIL_LINES = 40


def _pump(src, dst, prefix, keep=None, show=True):
    for raw in iter(src.readline, b""):
        line = raw.decode(errors="replace")
        if keep is not None:
            keep.append(line.rstrip("\n"))
        if show:
            dst.write(prefix + line if prefix else line)
            dst.flush()
    src.close()


def main(argv=None):
    p = argparse.ArgumentParser(prog="distgraph.launch.rank")
    p.add_argument("--prefix", action="store_true")
    p.add_argument("--quiet", action="store_true", help="hide stdout of ranks other than 0")
    p.add_argument("--gpus", type=int, default=0)
    p.add_argument("--allow-shared-gpu", action="store_true")
    p.add_argument("program", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    prog = a.program[1:] if a.program[:1] == ["--"] else a.program
    from distgraph.comm.env import discover
    info = discover()
    env = dict(os.environ)
    if a.gpus:
        if info.local_world_size > a.gpus and not a.allow_shared_gpu:
            sys.stderr.write(f"[rank {info.rank}] {info.local_world_size} ranks on host {socket.gethostname()} "
                             f"but only {a.gpus} GPUs; start fewer ranks per host or pass --allow-shared-gpu\n")
            return 2
        env["CUDA_VISIBLE_DEVICES"] = str(info.local_rank % a.gpus)
    env["DISTGRAPH_FAIL_MARK"] = FAIL_MARK  # comm's excepthook reports through it before MPI_Abort
    prefix = f"[rank {info.rank}] " if a.prefix else ""
    # close_fds=False: the MPI launcher hands each rank inherited descriptors (e.g. PMI_FD).
    child = subprocess.Popen(prog, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, close_fds=False)

    def forward(sig, frame):
        child.send_signal(sig)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    tail = collections.deque(maxlen=TAIL_LINES)
    threads = [threading.Thread(target=_pump, args=(child.stdout, sys.stdout, prefix, None,
                                                    not (a.quiet and info.rank != 0)), daemon=True),
               threading.Thread(target=_pump, args=(child.stderr, sys.stderr, prefix, tail, True), daemon=True)]
    for t in threads:
        t.start()
    code = child.wait()
    for t in threads:
        t.join(timeout=5)
    if code != 0:
        report = {"rank": info.rank, "host": socket.gethostname(), "time": time.time(), "tail": list(tail)}
        if code < 0:
            report["signal"] = signal.Signals(-code).name
        else:
            report["code"] = code
        sys.stderr.write(FAIL_MARK + json.dumps(report) + "\n")
        sys.stderr.flush()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
