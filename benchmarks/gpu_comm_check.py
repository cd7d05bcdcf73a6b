"""Collectives and DDP on device tensors, checked against NumPy and against one process.

    python benchmarks/gpu_comm_check.py --backend nccl                  # a world of one
    NCCL_MULTI_RANK_GPU_ENABLE=1 mpiexec -n 2 python benchmarks/gpu_comm_check.py --backend nccl
    DISTGRAPH_MPI_CUDA_AWARE=0 mpiexec -n 2 python benchmarks/gpu_comm_check.py --backend mpi
    mpiexec -n 2 python benchmarks/gpu_comm_check.py --backend mpi --dry   # CPU tensors

Every rank checks its own results and prints ``OK rank=<r> checks=<n>``; rank 0
writes the JSON result.  Any wrong value raises, and the launcher ends the job
with a non-zero status.
"""
from __future__ import annotations

import time

import numpy as np

from gpu_common import device_for, parser, write_json

import distgraph as dg  # noqa: E402
import distgraph.nn as nn  # noqa: E402
import distgraph.nn.functional as F  # noqa: E402
from distgraph import comm  # noqa: E402
from distgraph.comm import ReduceOp  # noqa: E402
from distgraph.comm.base import BITWISE_OPS  # noqa: E402
from distgraph.comm.single import reduce_arrays  # noqa: E402

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64]


class Checks:
    def __init__(self, rank):
        self.rank, self.count = rank, 0

    def eq(self, what, got, want, rtol=1e-5):
        got = got.cpu().numpy() if isinstance(got, dg.Tensor) else np.asarray(got)
        want = np.asarray(want)
        exact = want.dtype.kind in "iub"
        ok = got.shape == want.shape and got.dtype == want.dtype and (
            np.array_equal(got, want) if exact else np.allclose(got, want, rtol=rtol, atol=0))
        if not ok:
            raise AssertionError(f"[rank {self.rank}] {what}: expected {want.dtype}{want.shape}\n"
                                 f"{want}\ngot {got.dtype}{got.shape}\n{got}")
        self.count += 1


def data(q, dtype=np.float32, shape=(3, 4)):
    """Rank ``q``'s input: small integers, exact in float16 (products fit in int32)."""
    return (np.arange(int(np.prod(shape))).reshape(shape) % 3 + q + 1).astype(dtype)


def collectives(c, dev, r, n):
    nccl = comm.get_backend() == "nccl" and dev != "cpu"
    for dtype in DTYPES:
        for op in ReduceOp:
            if op is ReduceOp.AVG and np.dtype(dtype).kind != "f":
                continue
            if op in BITWISE_OPS and (np.dtype(dtype).kind == "f" or nccl):   # (NCCL has none, as torch's)
                continue
            t = dg.tensor(data(r, dtype), device=dev)
            comm.all_reduce(t, op=op)
            want = reduce_arrays([data(q, dtype) for q in range(n)], op).astype(dtype)
            c.eq(f"all_reduce {np.dtype(dtype).name} {op.name}", t, want, rtol=2e-3)
    t = dg.tensor(data(r), device=dev)
    work = comm.all_reduce(t, async_op=True)
    work.wait()  # NCCL: orders the current stream; reading the tensor below syncs it
    c.eq("all_reduce async", t, sum(data(q) for q in range(n)))
    t = dg.tensor(data(r), device=dev)
    comm.broadcast(t, src=n - 1)
    c.eq("broadcast", t, data(n - 1))
    outs = [dg.zeros(3, 4, device=dev) for _ in range(n)]
    comm.all_gather(outs, dg.tensor(data(r), device=dev))
    for q in range(n):
        c.eq(f"all_gather[{q}]", outs[q], data(q))
    out = dg.zeros(3, 4, device=dev)
    full = np.concatenate([data(r + k) for k in range(n)])
    comm.reduce_scatter_tensor(out, dg.tensor(full, device=dev))
    c.eq("reduce_scatter_tensor", out, sum(data(q + r) for q in range(n)))
    x = dg.tensor(np.arange(2 * n, dtype=np.float32) + 100 * r, device=dev)
    out = dg.zeros(2 * n, device=dev)
    comm.all_to_all_single(out, x)
    c.eq("all_to_all_single", out, np.concatenate(
        [(np.arange(2 * n, dtype=np.float32) + 100 * q)[2 * r:2 * r + 2] for q in range(n)]))
    glist = [dg.zeros(3, 4, device=dev) for _ in range(n)] if r == 0 else None
    comm.gather(dg.tensor(data(r), device=dev), glist, dst=0)
    if r == 0:
        for q in range(n):
            c.eq(f"gather[{q}]", glist[q], data(q))
    big = dg.ones(1 << 20, device=dev)  # 4 MiB: more than one NCCL chunk
    comm.all_reduce(big)
    c.eq("all_reduce 4 MiB", big, np.full(1 << 20, n, np.float32))
    comm.barrier()


def ddp(c, dev, r, n):
    """DDP on this rank's shard against one process on the whole batch, float64 and float32."""
    from distgraph.nn.parallel import DistributedDataParallel as DDP
    B = 4
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((B * n, 6)), rng.integers(0, 3, B * n)

    def model(dtype):
        dg.manual_seed(0)  # the same initial weights on every rank
        return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).to(dev, dtype)

    def train(m, xs, ys, dtype, wrap=False):
        net = DDP(m) if wrap else m
        opt = dg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        for _ in range(5):
            opt.zero_grad()
            loss = F.cross_entropy(net(dg.tensor(xs, dtype=dtype, device=dev)),
                                   dg.tensor(ys, device=dev))
            loss.backward()
            opt.step()
        return [p.detach().cpu().numpy() for p in m.parameters()]

    for dtype, tol in ((dg.float64, 1e-10), (dg.float32, 1e-5)):
        want = train(model(dtype), x, y, dtype)
        got = train(model(dtype), x[r * B:(r + 1) * B], y[r * B:(r + 1) * B], dtype, wrap=True)
        for i, (a, b) in enumerate(zip(got, want)):
            err = float(np.abs(a - b).max())
            if not err <= tol:
                raise AssertionError(f"[rank {r}] DDP {dg.backend.dtype_name(dtype)} parameter {i} "
                                     f"differs from one process by {err} (tolerance {tol})")
            c.count += 1


def main():
    ap = parser(__doc__)
    ap.add_argument("--backend", choices=("nccl", "mpi"), required=True)
    ap.add_argument("--world", type=int, help="the world size the launcher is expected to give")
    args = ap.parse_args()
    t0 = time.perf_counter()
    comm.init_process_group(args.backend)
    r, n = comm.get_rank(), comm.get_world_size()
    if args.world is not None and n != args.world:
        raise SystemExit(f"[rank {r}/{n}] expected a world of {args.world}, got {n}: is mpiexec "
                         "from the MPI that mpi4py was built against? (see docs/gpu.md)")
    dev = device_for(args)
    if dev == "cuda":
        if args.backend == "mpi":  # nccl binds the GPU itself, before MPI_Init
            dg.cuda.set_device(comm.get_local_rank() % dg.cuda.device_count())
        dev = f"cuda:{dg.cuda.current_device()}"
    c = Checks(r)
    collectives(c, dev, r, n)
    ddp(c, dev, r, n)
    from distgraph.comm.group import default_group
    pg = default_group()
    result = {"backend": comm.get_backend(), "world_size": n, "device": dev,
              "checks_rank0": c.count, "seconds": None,
              "mpi_path": ("direct (CUDA-aware)" if pg._cuda_aware else "staged through host")
              if getattr(pg, "_cuda_aware", None) is not None else "not used for device arrays"}
    comm.barrier()
    comm.destroy_process_group()
    result["seconds"] = time.perf_counter() - t0
    print(f"OK rank={r} checks={c.count}", flush=True)
    if r == 0:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
