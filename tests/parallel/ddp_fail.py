"""Rank 1 raises in the middle of backward; the job must end (non-zero), not hang.

Run: mpiexec -n 2 python ddp_fail.py
"""
import distgraph as dg
import distgraph.nn as nn
from distgraph import comm
from distgraph.nn.parallel import DistributedDataParallel as DDP

comm.init_process_group(timeout=20)
rank = comm.get_rank()
m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
net = DDP(m, bucket_cap_mb=1e-6)


def boom(t):
    if rank == 1:
        raise ValueError("rank 1 fails mid-backward on purpose")


m[0].weight.register_post_accumulate_grad_hook(boom)
for step in range(3):
    net(dg.randn(3, 4)).sum().backward()
print(f"rank {rank} finished, which it should not", flush=True)
