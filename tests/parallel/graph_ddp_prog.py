"""Capture and replay of a DDP training step: `mpiexec -n 2 python tests/parallel/graph_ddp_prog.py`.

Every rank trains two DDP-wrapped twins of one MLP (float64) on its shard of the same batches:
one eagerly, one through ``dg.compile`` (2 captures, then replays). After every step the losses,
the averaged gradients and the parameters must agree at 1e-10, and the reducer's timeline
(gradient-ready / bucket launch events, in order) must be the same in replay as in eager: the
bucket all-reduces are launched during the replayed backward, in eager's order. Prints
'graph_ddp ok' on success.

``--compiled-model``: the twin is ``DDP(dg.compile(model))`` trained by the eager step (PyTorch's
``model = torch.compile(model)`` habit): the forward replays as a region whose backward runs outside
(distgraph/graph/region.py); the same checks hold, and the model must have replayed.

``--compiled-ddp``: the twin is ``dg.compile(DDP(model))`` (the order torch's DDP docs show), with a
BatchNorm layer whose buffers DDP broadcasts each forward (a recorded call the region replays).

``--cuda-graphs``: the compiled twin uses ``mode="reduce-overhead"`` with the stand-in graph backend of
tests/graph_standin.py (fused runs launched as "graphs" between the bucket hooks); it must launch some.
"""
import os
import sys

import numpy as np

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph import comm
from distgraph.nn.parallel import DistributedDataParallel as DDP

comm.init_process_group()
RANK, WORLD = comm.get_rank(), comm.get_world_size()
TOL = 1e-10
GRAPHS = "--cuda-graphs" in sys.argv
MODEL = "--compiled-model" in sys.argv
OF_DDP = "--compiled-ddp" in sys.argv    # dg.compile(DDP(model)), torch's documented order
STEPS = 9 if GRAPHS else 6
if GRAPHS:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import graph_standin
    graph_standin.install()


def model():
    dg.manual_seed(7 + RANK)   # different init per rank: DDP broadcasts rank 0's
    if OF_DDP:
        return nn.Sequential(nn.Linear(6, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(),
                             nn.Linear(32, 3)).double()
    return nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)).double()


def main():
    inner = dg.compile(model()) if MODEL else model()
    eager, comp = DDP(model(), bucket_cap_mb=0.004), DDP(inner, bucket_cap_mb=0.004)  # several buckets
    ddp = comp
    if OF_DDP:
        comp = inner = dg.compile(comp)
    assert len(eager.reducer.buckets) > 1, eager.reducer.layout
    MODEL_ONLY = MODEL or OF_DDP
    opts = [dg.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (eager, comp)]

    def body(m, opt):
        def step(x, y):
            opt.zero_grad()
            loss = F.mse_loss(m(x), y)
            loss.backward()
            opt.step()
            return loss
        return step
    eager_step = body(eager, opts[0])
    comp_step = body(comp, opts[1]) if MODEL_ONLY else \
        dg.compile(body(comp, opts[1]), fullgraph=True, mode="reduce-overhead" if GRAPHS else None)
    rng = np.random.default_rng(0)
    for i in range(STEPS):
        x, y = rng.standard_normal((4 * WORLD, 6)), rng.standard_normal((4 * WORLD, 3))
        x = dg.tensor(x[RANK * 4:(RANK + 1) * 4], dtype=dg.float64)
        y = dg.tensor(y[RANK * 4:(RANK + 1) * 4], dtype=dg.float64)
        le, lc = eager_step(x, y), comp_step(x, y)
        errs = [abs(float(le.item()) - float(lc.item()))]
        for b, c in zip(comp.buffers(), eager.buffers()):
            errs.append(float(np.max(np.abs(b.array - c.array))))
        for p, q in zip(comp.parameters(), eager.parameters()):
            errs.append(float(np.max(np.abs(p.grad.array - q.grad.array))))
            errs.append(float(np.max(np.abs(p.array - q.array))))
        if max(errs) > TOL:
            print(f"[rank {RANK}/{WORLD}] step {i}: replayed and eager differ by {max(errs):.3g} (> {TOL})")
            return 1
        if i >= 2 and ddp.reducer.timeline != eager.reducer.timeline:
            print(f"[rank {RANK}/{WORLD}] step {i}: bucket timeline differs:\n replay {ddp.reducer.timeline}\n"
                  f" eager  {eager.reducer.timeline}")
            return 1
    compiled = inner if MODEL_ONLY else comp_step
    if compiled.stats["replays"] != STEPS - 2:
        print(f"[rank {RANK}/{WORLD}] expected {STEPS - 2} replays, got {compiled.stats} {compiled.eager_reasons()}")
        return 1
    segments = [s for t in compiled.tapes() for s in getattr(t, "segments", ())]
    if GRAPHS and not (segments and sum(s.launches for s in segments) > 0):
        print(f"[rank {RANK}/{WORLD}] no graph launched: {[(s.captures, s.launches, s.error) for s in segments]}")
        return 1
    launches = [e for e in ddp.reducer.timeline if e[0] == "launch"]
    readies = [k for k, e in enumerate(ddp.reducer.timeline) if e[0] == "ready"]
    # overlap: the first bucket is launched before the last gradient is ready
    first_launch = ddp.reducer.timeline.index(launches[0])
    if not first_launch < readies[-1]:
        print(f"[rank {RANK}/{WORLD}] no overlap in replay: {ddp.reducer.timeline}")
        return 1
    print(f"[rank {RANK}/{WORLD}] graph_ddp ok ({len(launches)} buckets, {len(segments)} graph segments)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
