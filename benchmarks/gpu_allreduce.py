"""All-reduce bus bandwidth of ``dg.comm.all_reduce`` (nccl backend) beside CuPy's NCCL called directly.

    NCCL_MULTI_RANK_GPU_ENABLE=1 mpiexec -n 2 python benchmarks/gpu_allreduce.py [--json F]
    mpiexec -n 2 python benchmarks/gpu_allreduce.py --dry     # CPU: mpi backend beside mpi4py

Both columns use the same communicator and the same float32 buffer, in alternating
trials; "direct" calls ``NcclCommunicator.allReduce`` on the current stream (the
dry run: mpi4py's ``Allreduce(IN_PLACE)``).  nccl-tests' definitions:
``algbw = bytes / time``, ``busbw = algbw * 2 (n - 1) / n``; each time is the
slowest rank's.  Aim (issue 7): distgraph at least 0.95x the direct bandwidth.
"""
from __future__ import annotations

import time

import numpy as np

from gpu_common import device_for, parser, write_json

import distgraph as dg  # noqa: E402
from distgraph import comm  # noqa: E402
from distgraph.comm import ReduceOp  # noqa: E402
from distgraph.comm.group import default_group  # noqa: E402


def slowest(seconds):
    t = dg.tensor(np.array([seconds]))  # a host tensor: goes through MPI
    comm.all_reduce(t, op=ReduceOp.MAX)
    return float(t.numpy()[0])


def main():
    ap = parser(__doc__)
    ap.add_argument("--sizes", default=None, help="bytes, e.g. 1M,16M,64M,256M")
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    dev = device_for(args)
    comm.init_process_group("mpi" if args.dry else "nccl")
    r, n = comm.get_rank(), comm.get_world_size()
    pg = default_group()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = args.sizes or ("4K,64K,1M" if args.dry else "64K,1M,16M,64M,256M")
    sizes = [int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s) for s in text.split(",")]
    if dev == "cuda":
        dev = f"cuda:{dg.cuda.current_device()}"
        cp = dg.backend.cupy()
        nccl, gpu = pg.gpu.nccl, pg.gpu
    factor = 2 * (n - 1) / n
    rows = []
    deadline = time.monotonic() + args.time_cap * 3
    for nbytes in sizes:
        t = dg.ones(nbytes // 4, device=dev)
        x = t.array
        if dev == "cpu":
            mpi_comm = pg.comm  # the group's own communicator
            from mpi4py import MPI as _MPI

            def direct():
                mpi_comm.Allreduce(_MPI.IN_PLACE, x, _MPI.SUM)
        else:
            def direct():
                gpu.comm.allReduce(x.data.ptr, x.data.ptr, x.size, nccl.NCCL_FLOAT32,
                                   nccl.NCCL_SUM, cp.cuda.get_current_stream().ptr)
        cases = {"distgraph": lambda: comm.all_reduce(t), "direct": direct}
        iters = max(3, min(200, int(2e9 / nbytes))) if dev != "cpu" else max(3, min(50, int(5e7 / nbytes)))
        for fn in cases.values():
            fn()  # warm-up
        dg.cuda.synchronize() if dev != "cpu" else None
        times = {k: [] for k in cases}
        for _ in range(args.trials):
            for name, fn in cases.items():
                comm.barrier()
                t0 = time.perf_counter()
                for _ in range(iters):
                    fn()
                if dev != "cpu":
                    dg.cuda.synchronize()
                times[name].append(slowest((time.perf_counter() - t0) / iters))
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        t.array[...] = 1
        comm.all_reduce(t)
        got = float(t.cpu().numpy()[0])
        if got != n:
            raise AssertionError(f"[rank {r}] all_reduce of ones gave {got}, expected {n}")
        rows.append({"bytes": nbytes, "iters": iters,
                     **{f"{k}_us": v * 1e6 for k, v in med.items()},
                     **{f"{k}_busbw_GBps": nbytes / v / 1e9 * factor for k, v in med.items()},
                     **{f"{k}_algbw_GBps": nbytes / v / 1e9 for k, v in med.items()},
                     "ratio_bw": med["direct"] / med["distgraph"]})
        if r == 0:
            print(f"{nbytes >> 10:>9} KiB  distgraph {med['distgraph'] * 1e6:10.1f} us  direct "
                  f"{med['direct'] * 1e6:10.1f} us  bw ratio {med['direct'] / med['distgraph']:.3f}",
                  flush=True)
        if slowest(time.monotonic()) > deadline:  # the same decision on every rank
            break
    comm.destroy_process_group()
    if r == 0:
        write_json(args.json, {"world_size": n, "device": dev, "backend": "mpi" if args.dry
                               else "nccl", "rows": rows, "aim_bw_ratio": 0.95,
                               "meets_aim_largest": rows[-1]["ratio_bw"] >= 0.95 if rows else None})


if __name__ == "__main__":
    main()
