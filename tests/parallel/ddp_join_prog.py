"""DDP on uneven inputs with ``model.join()``: `mpiexec -n 3 python tests/parallel/ddp_join_prog.py`.

Rank r has LENGTHS[r] batches (one rank none at all).  Each check trains inside the join context
and compares every rank's final parameters with one process that applies the same updates by hand:
at step i, the sum of the gradients of the ranks that still have a batch, divided by the world size
(``divide_by_initial_world_size=True``) or by the number of those ranks (False).
"""
import sys

import numpy as np

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph import comm
from distgraph.distributed.algorithms import Join
from distgraph.distributed.algorithms.ddp_comm_hooks import default_hooks
from distgraph.nn.parallel import DistributedDataParallel as DDP

comm.init_process_group()
RANK, WORLD = comm.get_rank(), comm.get_world_size()
LENGTHS = [2, 5, 0, 3][:WORLD]
LR = 0.1


def batch(r, i):
    rng = np.random.default_rng(100 * r + i)
    return rng.standard_normal((4, 5)), rng.integers(0, 3, 4)


def model():
    m = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    with dg.no_grad():
        for k, p in enumerate(m.parameters()):      # the same weights everywhere, by construction
            p.copy_(dg.tensor(np.cos(np.arange(p.numel()) + k).reshape(p.shape)))
    return m


def grads(m, r, i):
    for p in m.parameters():
        p.grad = None
    x, y = batch(r, i)
    F.cross_entropy(m(dg.tensor(x)), dg.tensor(y)).backward()
    return [p.grad.numpy().copy() for p in m.parameters()]


def reference(divide_by_initial=True):
    m = model()
    for i in range(max(LENGTHS)):
        active = [r for r in range(WORLD) if i < LENGTHS[r]]
        total = None
        for r in active:
            g = grads(m, r, i)
            total = g if total is None else [a + b for a, b in zip(total, g)]
        n = WORLD if divide_by_initial else len(active)
        with dg.no_grad():
            for p, g in zip(m.parameters(), total):
                p.array -= LR * g / n
    return [p.detach().numpy().copy() for p in m.parameters()]


def train(ddp, m, ctx, eval_forwards=False):
    opt = dg.optim.SGD(m.parameters(), lr=LR)
    with ctx:
        for i in range(LENGTHS[RANK]):
            x, y = batch(RANK, i)
            if eval_forwards:
                with dg.no_grad():
                    ddp(dg.tensor(x))          # no backward follows: the joined ranks shadow none
            opt.zero_grad()
            F.cross_entropy(ddp(dg.tensor(x)), dg.tensor(y)).backward()
            opt.step()
    return [p.detach().numpy().copy() for p in m.parameters()]


def close(got, want, what):
    err = max(float(np.abs(a - b).max()) for a, b in zip(got, want))
    assert err < 1e-10, f"rank {RANK} {what}: max error {err}"


def check_join():
    m = model()
    ddp = DDP(m, bucket_cap_mb=0.0005)                        # several buckets
    close(train(ddp, m, ddp.join()), reference(), "join()")
    print(f"OK join rank {RANK}", flush=True)


def check_effective_world_size():
    m = model()
    ddp = DDP(m)
    close(train(ddp, m, ddp.join(divide_by_initial_world_size=False), eval_forwards=True),
          reference(divide_by_initial=False), "join(divide_by_initial_world_size=False)")
    print(f"OK effective rank {RANK}", flush=True)


def check_hook_and_generic_join():
    m = model()
    ddp = DDP(m)
    ddp.register_comm_hook(None, default_hooks.allreduce_hook)
    close(train(ddp, m, Join([ddp])), reference(), "Join([ddp]) with allreduce_hook")
    print(f"OK hook rank {RANK}", flush=True)


def check_buffers():
    """A BatchNorm model: buffers broadcast each forward from a rank still training; all end equal."""
    dg.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    ddp = DDP(m)
    train(ddp, m, ddp.join())
    mine = [t.detach().numpy().copy() for t in list(m.parameters()) + list(m.buffers())]
    everyone = [None] * WORLD
    comm.all_gather_object(everyone, mine)
    for r in range(WORLD):
        close(everyone[r], mine, f"parameters and buffers of rank {r}")
    assert int(m[1].num_batches_tracked.item()) == max(LENGTHS), m[1].num_batches_tracked
    print(f"OK buffers rank {RANK}", flush=True)


def check_throw():
    m = model()
    ddp = DDP(m)
    try:
        train(ddp, m, ddp.join(throw_on_early_termination=True))
    except RuntimeError as e:
        print(f"THROWN rank {RANK}: {e}", flush=True)
    else:
        raise AssertionError("uneven inputs were not detected")
    comm.barrier()                                  # every rank raised at the same step: still in step
    print(f"OK throw rank {RANK}", flush=True)


def check_compiled():
    """A dg.compile'd step under join() runs eagerly (the join collectives are not replayable)."""
    import warnings
    m = model()
    ddp = DDP(m)
    opt = dg.optim.SGD(m.parameters(), lr=LR)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        return loss
    compiled = dg.compile(step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ddp.join():
            for i in range(LENGTHS[RANK]):
                x, y = batch(RANK, i)
                compiled(dg.tensor(x), dg.tensor(y))
    close([p.detach().numpy() for p in m.parameters()], reference(), "a compiled step under join()")
    if LENGTHS[RANK] >= 2:
        assert any("join()" in str(w.message) for w in caught), [str(w.message) for w in caught]
    print(f"OK compiled rank {RANK}", flush=True)


def check_disabled_and_even():
    m = model()
    ddp = DDP(m)
    saved = LENGTHS[:]
    LENGTHS[:] = [2] * WORLD                        # even inputs: join(enable=False) is a no-op
    try:
        close(train(ddp, m, ddp.join(enable=False)), reference(), "join(enable=False) on even inputs")
    finally:
        LENGTHS[:] = saved
    print(f"OK disabled rank {RANK}", flush=True)


CHECKS = {n[6:]: f for n, f in globals().items() if n.startswith("check_")}

if __name__ == "__main__":
    for name in sys.argv[1:] or CHECKS:
        CHECKS[name]()
    comm.destroy_process_group()
