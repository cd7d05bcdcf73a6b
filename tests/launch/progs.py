"""Programs the launcher tests start: `python progs.py MODE`."""
import os
import signal
import sys
import time

import distgraph as dg
from distgraph import comm

mode = sys.argv[1]
comm.init_process_group(timeout=float(os.environ.get("PROG_TIMEOUT", "60")))
rank, world = comm.get_rank(), comm.get_world_size()
if mode == "sum":
    t = dg.ones(2) * (rank + 1)
    comm.all_reduce(t)
    print(f"sum={t.tolist()} world={world} local={comm.get_local_rank()} FOO={os.environ.get('FOO')}", flush=True)
elif mode in ("raise", "kill", "exit3", "exit0", "osexit0", "hang", "sleep"):
    for step in range(10_000):
        t = dg.ones(2)
        if not (mode == "hang" and rank == 1 and step == 3):
            comm.all_reduce(t)
        else:
            time.sleep(3600)          # never joins the collective: the others must time out
        if step == 3 and rank == 1:
            if mode == "raise":
                raise ValueError("planned failure at step 3")
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "exit3":
                sys.exit(3)
            if mode == "osexit0":
                os._exit(0)  # no Python exit hook runs: only the wrapper sees it
            if mode == "exit0":
                sys.exit(0)  # a clean exit, but early: rank 0 still waits in the next all_reduce
        if mode == "sleep":
            time.sleep(0.05)
elif mode == "threads":
    print(f"threads={os.environ.get('OMP_NUM_THREADS')},{os.environ.get('OPENBLAS_NUM_THREADS')}", flush=True)
comm.destroy_process_group()
