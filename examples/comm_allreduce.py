"""Average a gradient-like tensor across ranks with dg.comm, synchronously and asynchronously.

Run it as a world of one or under MPI; it checks its own result:

    python examples/comm_allreduce.py
    mpiexec -n 2 python examples/comm_allreduce.py
"""
import numpy as np

import distgraph as dg
from distgraph import comm

comm.init_process_group()  # "auto": MPI under mpiexec/srun, the single backend otherwise
rank, world = comm.get_rank(), comm.get_world_size()

grad = dg.full((4,), float(rank))
comm.all_reduce(grad, op=comm.ReduceOp.AVG)  # every rank must call this, in the same order
expected = np.full(4, (world - 1) / 2, dtype=np.float32)
np.testing.assert_allclose(grad.array, expected)

# Overlap: start the reduction, compute something else, then wait.
buckets = [dg.full((1000,), float(rank + i)) for i in range(3)]
works = [comm.all_reduce(b, async_op=True) for b in buckets]
other = (dg.ones(256, 256) @ dg.ones(256, 256)).sum()  # runs while the reductions progress
for i, (b, w) in enumerate(zip(buckets, works)):
    w.wait()
    np.testing.assert_allclose(b.array, sum(r + i for r in range(world)))

names = [None] * world
comm.all_gather_object(names, f"rank-{rank}")
if rank == 0:
    print(f"{world} rank(s), backend {comm.get_backend()}: averaged {grad.array}, gathered {names}")
comm.destroy_process_group()
