"""Failure scenarios: each must end the job with a clear message, never hang.

    mpiexec -n 4 python tests/comm/mpi_failures.py stall      # rank 1 never arrives
    mpiexec -n 2 python tests/comm/mpi_failures.py mismatch   # DISTGRAPH_DEBUG=1 catches it
    mpiexec -n 2 python tests/comm/mpi_failures.py die        # rank 1 is killed mid-job
    mpiexec -n 2 python tests/comm/mpi_failures.py exception  # rank 1 raises
    mpiexec -n 2 python tests/comm/mpi_failures.py exit 3     # rank 1 calls sys.exit(3) early
    mpiexec -n 2 python tests/comm/mpi_failures.py end        # rank 1's script ends early
    mpiexec -n 2 python tests/comm/mpi_failures.py dtype      # float32 against int32, same bytes
    mpiexec -n 2 python tests/comm/mpi_failures.py shape      # (8,) against (2, 4)
    mpiexec -n 2 python tests/comm/mpi_failures.py preinit    # rank 1 exits before init_process_group
    mpiexec -n 2 python tests/comm/mpi_failures.py monitored  # rank 1 is late for a monitored_barrier

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


def main(scenario, *args):
    timeout = float(os.environ.get("TEST_TIMEOUT", "5"))
    if scenario == "preinit" and os.environ.get("PMI_RANK") == "1":
        sys.exit(1)  # before MPI_Init: rank 0 waits there for it
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
    elif scenario == "exit":
        if r == 1:
            sys.exit(int(args[0]))
        comm.all_reduce(t)
    elif scenario == "end":
        if r == 1:
            return  # the script ends here on rank 1, while rank 0 goes on
        comm.all_reduce(t)
    elif scenario in ("dtype", "shape"):
        # The same number of bytes: MPI reduces them without complaint, into garbage.
        bad = (np.ones(8, dtype=np.int32) if scenario == "dtype" else np.ones((2, 4), dtype=np.float32))
        comm.all_reduce(dg.tensor(bad) if r == 1 else t)
        try:
            for i in range(40):
                comm.all_reduce(t)
        except comm.CommError as e:
            print(f"CAUGHT rank={r} i={i}: {e}", flush=True)
    elif scenario == "preinit":
        comm.all_reduce(t)
    elif scenario == "monitored":   # its own 2 s timeout, not the group's
        if r == 1:
            stuck_in_python(120)
        else:
            import datetime
            comm.monitored_barrier(timeout=datetime.timedelta(seconds=2))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    comm.destroy_process_group()
    print(f"DONE rank={r}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
