"""NCCL collectives on GPU tensors against NumPy (needs CuPy, NCCL and one GPU per rank).

    mpiexec -n 2 python tests/comm/mpi_nccl.py
"""
import numpy as np

import distgraph as dg
from distgraph import comm
from distgraph.comm import ReduceOp
from distgraph.comm.base import BITWISE_OPS
from distgraph.comm.single import reduce_arrays


def main():
    comm.init_process_group("nccl")
    r, n = comm.get_rank(), comm.get_world_size()
    assert comm.get_backend() == "nccl"
    dev = f"cuda:{dg.backend.cupy().cuda.runtime.getDevice()}"

    def data(q, dtype=np.float32):
        return (np.arange(12).reshape(3, 4) % 3 + q + 1).astype(dtype)

    def host(t):
        return t.array.get()

    for op in (op for op in ReduceOp if op not in BITWISE_OPS):   # (NCCL has no bitwise reductions)
        t = dg.tensor(data(r), device=dev)
        comm.all_reduce(t, op=op)
        np.testing.assert_allclose(host(t), reduce_arrays([data(q) for q in range(n)], op), rtol=1e-5)
    t = dg.tensor(data(r), device=dev)
    work = comm.all_reduce(t, async_op=True)
    work.wait()  # orders the current stream; the .get() below syncs it
    np.testing.assert_allclose(host(t), sum(data(q) for q in range(n)))
    t = dg.tensor(data(r), device=dev)
    comm.broadcast(t, src=n - 1)
    np.testing.assert_array_equal(host(t), data(n - 1))
    outs = [dg.zeros(3, 4, device=dev) for _ in range(n)]
    comm.all_gather(outs, dg.tensor(data(r), device=dev))
    for q in range(n):
        np.testing.assert_array_equal(host(outs[q]), data(q))
    out = dg.zeros(3, 4, device=dev)
    full = np.stack([data(r + k) for k in range(n)])
    comm.reduce_scatter_tensor(out, dg.tensor(full.reshape(3 * n, 4), device=dev))
    np.testing.assert_allclose(host(out), sum(np.stack([data(q + k) for k in range(n)]) for q in range(n))[r])
    x = dg.tensor(np.arange(2 * n, dtype=np.float32) + 100 * r, device=dev)
    out = dg.zeros(2 * n, device=dev)
    comm.all_to_all_single(out, x)
    np.testing.assert_array_equal(host(out), np.concatenate(
        [(np.arange(2 * n, dtype=np.float32) + 100 * q)[2 * r:2 * r + 2] for q in range(n)]))
    glist = [dg.zeros(3, 4, device=dev) for _ in range(n)] if r == 0 else None
    comm.gather(dg.tensor(data(r), device=dev), glist, dst=0)
    if r == 0:
        for q in range(n):
            np.testing.assert_array_equal(host(glist[q]), data(q))
    comm.barrier()
    comm.destroy_process_group()
    print(f"OK rank={r}", flush=True)


if __name__ == "__main__":
    main()
