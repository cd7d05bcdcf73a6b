"""Ranks pass different bucket_cap_mb: DDP must refuse at construction, on every rank.

Run: mpiexec -n 2 python ddp_layout.py
"""
import distgraph.nn as nn
from distgraph import comm
from distgraph.nn.parallel import DistributedDataParallel as DDP

comm.init_process_group(timeout=20)
rank = comm.get_rank()
m = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 2))
try:
    DDP(m, bucket_cap_mb=25 if rank == 0 else 0.01)
except RuntimeError as e:
    print(f"REFUSED rank={rank}: {e}", flush=True)
comm.barrier()  # still in step: the check raised on both ranks at the same point
print(f"AFTER rank={rank}", flush=True)
