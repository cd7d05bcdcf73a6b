"""Failure scenarios: each must end the job with a clear message, never hang.

    mpiexec -n 4 python tests/comm/mpi_failures.py stall      # rank 1 never arrives
    mpiexec -n 2 python tests/comm/mpi_failures.py mismatch   # DISTGRAPH_DEBUG=1 catches it
    mpiexec -n 2 python tests/comm/mpi_failures.py die        # rank 1 is killed mid-job
    mpiexec -n 2 python tests/comm/mpi_failures.py exception  # rank 1 raises

``tests/comm/test_failures.py`` runs them and checks the output and the time taken.
"""
import os
import signal
import sys
import time

import numpy as np

import distgraph as dg
from distgraph import comm


def stuck_in_python(seconds):
    """What a rank that skipped a collective is doing: the stall report shows this frame."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


def main(scenario):
    timeout = float(os.environ.get("TEST_TIMEOUT", "5"))
    comm.init_process_group(timeout=timeout)
    r, n = comm.get_rank(), comm.get_world_size()
    t = dg.tensor(np.ones(8, dtype=np.float32))
    comm.all_reduce(t)  # one good collective first: the failure comes mid-job
    print(f"READY rank={r}", flush=True)

    if scenario == "stall":
        if r == 1:
            stuck_in_python(120)  # skips the all_reduce below
        else:
            comm.all_reduce(t)
    elif scenario == "mismatch":
        try:
            if r == 1:
                comm.broadcast(t, src=0)
            else:
                comm.all_reduce(t)
        except comm.CommError as e:
            print(f"MISMATCH rank={r}: {e}", flush=True)
        comm.barrier()  # nothing was sent: the ranks are still in step
        print(f"CONTINUED rank={r}", flush=True)
    elif scenario == "die":
        if r == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        comm.all_reduce(t)
    elif scenario == "exception":
        if r == 1:
            raise ValueError("boom on purpose")
        comm.all_reduce(t)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    comm.destroy_process_group()
    print(f"DONE rank={r}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
