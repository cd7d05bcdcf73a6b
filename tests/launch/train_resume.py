"""Resumable DDP training, for the ``--max-restarts`` test: a run killed mid-way and restarted
must end with the same parameters, bit for bit, as a run that was never interrupted.

    distgraph-run -n 2 --max-restarts 1 tests/launch/train_resume.py OUT_DIR --die-at 10

Saves a checkpoint (model, optimizer, RNG states) every 4 steps to OUT_DIR/ckpt and resumes from
the newest one; rank 0 writes the final parameters to OUT_DIR/params.npy.  With ``--die-at S``,
rank 1 kills itself with SIGKILL after step S on the first attempt (``DISTGRAPH_RESTART_COUNT=0``).
"""
import argparse
import os
import signal

import numpy as np

import distgraph as dg
from distgraph import comm, nn, optim
from distgraph.nn.parallel import DistributedDataParallel as DDP
from distgraph.utils.training import CheckpointManager

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--die-at", type=int, default=None)
p.add_argument("--steps", type=int, default=16)
p.add_argument("--every", type=int, default=4)
args = p.parse_args()

comm.init_process_group()
rank = comm.get_rank()
attempt = int(os.environ["DISTGRAPH_RESTART_COUNT"])
assert os.environ["TORCHELASTIC_RESTART_COUNT"] == str(attempt), os.environ["TORCHELASTIC_RESTART_COUNT"]
dg.manual_seed(0)
# Dropout draws from the generator: the restored RNG state is part of what is checked.
model = DDP(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1)).double())
opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
ckpt = CheckpointManager(os.path.join(args.out, "ckpt"), keep=2)
state = ckpt.restore(model=model, optimizer=opt)
start = state["step"] if state else 0
print(f"attempt {attempt} starts at step {start}", flush=True)
for step in range(start, args.steps):
    data = np.random.RandomState(1000 * step + rank)  # each rank its own shard, the same on every attempt
    x, y = dg.from_numpy(data.randn(8, 4)), dg.from_numpy(data.randn(8, 1))
    loss = ((model(x) - y) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if (step + 1) % args.every == 0:
        ckpt.save(step + 1, model=model, optimizer=opt)
    if attempt == 0 and rank == 1 and step + 1 == args.die_at:
        os.kill(os.getpid(), signal.SIGKILL)
if rank == 0:
    np.save(os.path.join(args.out, "params.npy"),
            np.concatenate([q.detach().numpy().ravel() for q in model.parameters()]))
comm.destroy_process_group()
