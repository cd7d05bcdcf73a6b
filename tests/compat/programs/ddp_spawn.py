# The DDP tutorial's mp.spawn script (pytorch tutorials ddp_tutorial.rst "basic use case", reduced):
# MASTER_ADDR/MASTER_PORT, init_process_group("gloo", rank=rank, world_size=world_size) in each spawned
# process, a ToyModel under DDP, a checkpoint saved by rank 0 and loaded by every rank after a barrier.
# Run: python ddp_spawn.py CHECKPOINT_PATH
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.optim as optim
from torch.nn.parallel import DistributedDataParallel as DDP


def setup(rank, world_size):
    os.environ['MASTER_ADDR'] = 'localhost'
    os.environ['MASTER_PORT'] = os.environ.get('TEST_MASTER_PORT', '29533')
    dist.init_process_group("gloo", rank=rank, world_size=world_size)


def cleanup():
    dist.destroy_process_group()


class ToyModel(nn.Module):
    def __init__(self):
        super(ToyModel, self).__init__()
        self.net1 = nn.Linear(10, 10)
        self.relu = nn.ReLU()
        self.net2 = nn.Linear(10, 5)

    def forward(self, x):
        return self.net2(self.relu(self.net1(x)))


def demo_checkpoint(rank, world_size, path):
    setup(rank, world_size)
    torch.manual_seed(rank)          # different initial weights: DDP broadcasts rank 0's
    model = ToyModel()
    ddp_model = DDP(model)
    if rank == 0:
        torch.save(ddp_model.state_dict(), path)
    dist.barrier()
    ddp_model.load_state_dict(torch.load(path, map_location={'cuda:0': 'cpu'}, weights_only=True))
    loss_fn = nn.MSELoss()
    optimizer = optim.SGD(ddp_model.parameters(), lr=0.05)
    torch.manual_seed(100 + rank)
    x, target = torch.randn(20, 10), torch.randn(20, 5)
    first = None
    for step in range(30):
        optimizer.zero_grad()
        loss = loss_fn(ddp_model(x), target)
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
    flat = torch.cat([p.detach().reshape(-1) for p in ddp_model.parameters()])
    total = flat.clone()
    dist.all_reduce(total)
    agree = torch.allclose(total / world_size, flat, atol=1e-6)
    if rank == 0:
        print(json.dumps({"first_loss": first, "last_loss": loss.item(), "ranks_agree": agree,
                          "world_size": world_size}), flush=True)
    cleanup()


def run_demo(demo_fn, world_size, path):
    mp.spawn(demo_fn, args=(world_size, path), nprocs=world_size, join=True)


if __name__ == "__main__":
    run_demo(demo_checkpoint, 2, sys.argv[1] if len(sys.argv) > 1 else "model.checkpoint")
