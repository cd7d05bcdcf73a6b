"""All-reduce bandwidth of ``dg.comm.all_reduce`` beside raw mpi4py (and gloo when torch is there).

    mpiexec -n 2 python benchmarks/allreduce.py [--sizes 4K,1M,64M] [--trials 5]

For each float32 size from 4 KiB to 64 MiB it times, on the same buffer and in
alternating trials: ``dg.comm.all_reduce`` (MPI backend), raw
``mpi4py`` ``Comm.Allreduce(IN_PLACE)``, ``dg.comm.all_reduce`` with the periodic
collective check turned off (``check off``; the ``check %`` column is what the
check, on by default, costs), and ``torch.distributed`` with gloo when torch is
importable.  Reported with nccl-tests' definitions:
``algbw = bytes / time``, ``busbw = algbw * 2 (n - 1) / n``.  NumPy's memcpy
bandwidth on the largest size is printed as the physical yardstick.  Each
time is the median over trials of the mean over iterations, the slowest rank's.
The program checks its own results (the sum of ranks) and exits non-zero when
they are wrong.
"""
import argparse
import os
import platform
import statistics
import sys
import threading
import time

import numpy as np

import distgraph as dg
from distgraph import comm


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def fmt_size(b):
    return f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"


def machine_info(mpi):
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    lines = [f"machine: {platform.node()} {platform.machine()} {cpu}",
             f"cores: os.cpu_count()={os.cpu_count()} usable={len(os.sched_getaffinity(0))}",
             f"python {platform.python_version()}, numpy {np.__version__}, "
             f"MPI: {mpi.Get_library_version().splitlines()[0].strip()}, "
             f"thread level {mpi.Query_thread()} (3 = MULTIPLE)",
             f"threads in this process: {threading.active_count()} "
             "(main + distgraph-comm daemon); "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"]
    return "\n".join(lines)


def timed(fn, iters, world, MPI):
    """Mean seconds per call of the slowest rank."""
    world.Barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    dt = np.array([(time.perf_counter() - t0) / iters])
    world.Allreduce(MPI.IN_PLACE, dt, op=MPI.MAX)
    return float(dt[0])


def gloo_runner(rank, size):
    try:
        import torch
        import torch.distributed as tdist
    except ImportError:
        return None, "torch not importable: gloo column skipped"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    tdist.init_process_group("gloo", rank=rank, world_size=size)

    def make(arr):
        t = torch.from_numpy(arr)  # shares memory with the NumPy buffer
        return lambda: tdist.all_reduce(t)
    return make, f"torch {torch.__version__} gloo"


def check_bookkeeping_us(check_every, calls=64000):
    """Microseconds the periodic check adds to one collective on the caller's thread: ``begin()`` of a
    2-rank group with the check on against off (its exchanges answered at once), best of 7.  The
    ``check %`` column measures the same end to end, within the noise of shared cores."""
    from distgraph.comm.base import CompletedWork, ReduceOp
    from distgraph.comm.single import SingleProcessGroup

    class TwoRanks(SingleProcessGroup):
        def start_check_exchange(self, table):
            work = CompletedWork()
            work._result = np.stack([table, table])
            return work
    x = np.zeros(16384, np.float32)
    per_call = {}
    for every in (0, check_every):
        pg = TwoRanks(60.0)
        pg.size, pg.check_every = 2, every
        best = float("inf")
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(calls):
                pg.begin("all_reduce", x, op=ReduceOp.SUM)
            best = min(best, (time.perf_counter() - t0) / calls)
        per_call[every] = best * 1e6
    return per_call[check_every] - per_call[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="4K,16K,64K,256K,1M,4M,16M,64M")
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    comm.init_process_group("mpi")
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    rank, n = comm.get_rank(), comm.get_world_size()
    pg = comm.group.default_group()
    check_every = pg.check_every
    gloo, gloo_note = gloo_runner(rank, n)
    if rank == 0:
        print(machine_info(MPI))
        print(f"ranks: {n}; gloo: {gloo_note}")
        print("note: other work may share these cores; compare columns of one run, not runs")
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    factor = 2 * (n - 1) / n
    rows = []
    for nbytes in sizes:
        buf = np.ones(nbytes // 4, dtype=np.float32)
        t = dg.from_numpy(buf)
        iters = max(5, min(1000, int(5e7 / nbytes)))
        cases = {"distgraph": lambda: comm.all_reduce(t),
                 "check off": lambda: comm.all_reduce(t),
                 "mpi4py": lambda: world.Allreduce(MPI.IN_PLACE, buf, MPI.SUM)}
        if gloo is not None:
            cases["gloo"] = gloo(buf)
        for fn in cases.values():  # warm-up (and connection set-up)
            fn()
        times = {k: [] for k in cases}
        ours = [k for k in cases if k != "gloo"]
        for trial in range(args.trials):
            # A shuffled order (the same on every rank), gloo last: the case that runs right after
            # gloo (whose threads stay busy a while) is measurably slower.
            order = [ours[i] for i in np.random.default_rng(trial).permutation(len(ours))]
            for name in order + (["gloo"] if "gloo" in cases else []):
                fn = cases[name]
                buf[...] = 1.0
                pg.check_every = 0 if name == "check off" else check_every  # the same on every rank
                times[name].append(timed(fn, iters, world, MPI))
        pg.check_every = check_every
        buf[...] = 1.0
        comm.all_reduce(t)
        if not np.all(buf == n):
            print(f"[rank {rank}] WRONG RESULT at {fmt_size(nbytes)}: {buf[:4]}", file=sys.stderr)
            world.Abort(1)
        rows.append((nbytes, {k: statistics.median(v) for k, v in times.items()}))
    memcpy = 0.0
    if rank == 0:  # the other ranks wait in the barrier below
        src = np.ones(sizes[-1] // 4, dtype=np.float32)
        dst = np.empty_like(src)
        np.copyto(dst, src)
        t0 = time.perf_counter()
        reps = 10
        for _ in range(reps):
            np.copyto(dst, src)
        memcpy = src.nbytes * reps / (time.perf_counter() - t0)
    world.Barrier()
    if rank == 0:
        names = list(rows[0][1])
        head = f"{'size':>8} " + " ".join(f"{k + ' us':>14} {'algbw GB/s':>10} {'busbw GB/s':>10}"
                                           for k in names)
        print(head + f" {'dg/mpi4py bw':>12} {'added us':>9} {'check %':>8}")
        for nbytes, tm in rows:
            cols = " ".join(f"{tm[k] * 1e6:14.1f} {nbytes / tm[k] / 1e9:10.2f} "
                            f"{nbytes / tm[k] / 1e9 * factor:10.2f}" for k in names)
            ratio = tm["mpi4py"] / tm["distgraph"]
            added = (tm["distgraph"] - tm["mpi4py"]) * 1e6
            check = (tm["distgraph"] / tm["check off"] - 1) * 100
            print(f"{fmt_size(nbytes):>8} {cols} {ratio:12.3f} {added:9.1f} {check:8.1f}")
        print(f"periodic check: window {check_every} collectives (DISTGRAPH_CHECK_EVERY); its bookkeeping "
              f"on the caller's thread: {check_bookkeeping_us(check_every or 64):.2f} us per collective")
        print(f"numpy memcpy ({fmt_size(sizes[-1])}, rank 0 alone): "
              f"{memcpy / 1e9:.2f} GB/s")
    comm.destroy_process_group()


if __name__ == "__main__":
    main()
