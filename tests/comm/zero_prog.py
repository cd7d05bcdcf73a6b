"""ZeroRedundancyOptimizer on real ranks: `mpiexec -n 3 python tests/comm/zero_prog.py`.

Each check prints "OK <name> rank <r>"; tests/comm/test_zero.py runs it on 2 and 3 ranks.
"""
import sys

import numpy as np

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph import comm
from distgraph.distributed.algorithms import Join
from distgraph.distributed.optim import ZeroRedundancyOptimizer as ZeRO
from distgraph.nn.parallel import DistributedDataParallel as DDP

comm.init_process_group()
RANK, WORLD = comm.get_rank(), comm.get_world_size()


def model():
    m = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    with dg.no_grad():
        for k, p in enumerate(m.parameters()):
            p.copy_(dg.tensor(np.cos(np.arange(p.numel()) + k).reshape(p.shape)))
    return m


def batch(r, i):
    rng = np.random.default_rng(100 * r + i)
    return dg.tensor(rng.standard_normal((4, 5))), dg.tensor(rng.integers(0, 3, 4))


def params(m):
    return [p.detach().numpy().copy() for p in m.parameters()]


def close(got, want, what, tol=1e-12):
    err = max(float(np.abs(a - b).max()) for a, b in zip(got, want))
    assert err <= tol, f"rank {RANK} {what}: max error {err}"


def train(make_opt, steps, sharded=True, start=None):
    """DDP over every rank's batches (sharded) or one process over all of them (reference)."""
    m = model()
    if start is not None:
        with dg.no_grad():
            for p, a in zip(m.parameters(), start):
                p.copy_(dg.tensor(a))
    net = DDP(m) if sharded else m
    opt = make_opt(m.parameters())
    for i in range(steps):
        opt.zero_grad()
        if sharded:
            x, y = batch(RANK, i)
            F.cross_entropy(net(x), y).backward()
        else:
            for r in range(WORLD):
                x, y = batch(r, i)
                (F.cross_entropy(m(x), y) / WORLD).backward()
        opt.step()
    return m, opt


def check_equals_unsharded():
    for name, cls, kw in (("sgd", dg.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                          ("adam", dg.optim.Adam, {"lr": 0.01, "weight_decay": 0.01})):
        m, opt = train(lambda ps: ZeRO(ps, cls, **kw), 6)
        ref, _ = train(lambda ps: cls(ps, **kw), 6, sharded=False)
        close(params(m), params(ref), f"ZeRO({name}) vs {name} unsharded", 1e-10)
        held = sum(1 for s in opt.optim.state.values() if s)   # parameters whose state this rank keeps
        assert held < len(list(m.parameters())) or WORLD == 1, "every rank held every state"
    print(f"OK equal rank {RANK}", flush=True)


def check_partition():
    m = model()
    opt = ZeRO(m.parameters(), dg.optim.SGD, lr=0.1)
    shares = [[tuple(p.shape) for g in shard for p in g["params"]] for shard in opt._partition()]
    # largest first, each to the rank with the fewest elements so far (torch's rule)
    sizes, want = [0] * WORLD, [[] for _ in range(WORLD)]
    for p in sorted(m.parameters(), key=lambda t: t.numel(), reverse=True):
        r = sizes.index(min(sizes))
        want[r].append(tuple(p.shape))
        sizes[r] += p.numel()
    assert shares == want, (shares, want)
    assert [p is q for p, q in zip(opt.param_groups[0]["params"], m.parameters())] == [True] * 6
    print(f"OK partition rank {RANK}", flush=True)


def check_state_dict_round_trip():
    kw = {"lr": 0.01}
    m, opt = train(lambda ps: ZeRO(ps, dg.optim.Adam, **kw), 3)
    try:
        opt.state_dict()
        raise AssertionError("state_dict before consolidate_state_dict was accepted")
    except RuntimeError as e:
        assert "has not been consolidated" in str(e), e
    opt.consolidate_state_dict(to=0)
    box = [opt.state_dict() if RANK == 0 else None]
    comm.broadcast_object_list(box, src=0)
    sd = box[0]
    _, plain = train(lambda ps: dg.optim.Adam(ps, **kw), 3, sharded=False)
    want = plain.state_dict()
    assert sorted(sd["state"]) == sorted(want["state"]) == list(range(6)), (sorted(sd["state"]), WORLD)
    for k in want["state"]:
        for n, v in want["state"][k].items():
            got = sd["state"][k][n]
            a = got.numpy() if hasattr(got, "numpy") else np.asarray(got)
            b = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
            assert np.allclose(a, b, rtol=1e-10, atol=1e-14), (k, n)
    assert [g["params"] for g in sd["param_groups"]] == [list(range(6))]
    # a fresh ZeRO loads it and goes on as the original does
    start = params(m)
    m2 = model()
    with dg.no_grad():
        for p, a in zip(m2.parameters(), start):
            p.copy_(dg.tensor(a))
    opt2 = ZeRO(m2.parameters(), dg.optim.Adam, **kw)
    opt2.load_state_dict(sd)
    net, net2 = DDP(m), DDP(m2)
    for i in range(3, 5):
        for o, n_ in ((opt, net), (opt2, net2)):
            o.zero_grad()
            x, y = batch(RANK, i)
            F.cross_entropy(n_(x), y).backward()
            o.step()
    close(params(m2), params(m), "resumed from a consolidated state dict")
    print(f"OK state_dict rank {RANK}", flush=True)


def check_scheduler_and_groups():
    m = model()
    layers = list(m.children())
    opt = ZeRO([{"params": layers[0].parameters(), "lr": 0.05}, {"params": layers[2].parameters()}],
               dg.optim.SGD, lr=0.1, momentum=0.5)
    sched = dg.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    assert opt.param_groups[1]["momentum"] == 0.5          # the wrapped optimizer's options, exposed
    opt.add_param_group({"params": layers[4].parameters(), "lr": 0.2})
    net = DDP(m)
    ref = model()
    ref_opt = dg.optim.SGD([{"params": list(ref.children())[0].parameters(), "lr": 0.05},
                            {"params": list(ref.children())[2].parameters()}], lr=0.1, momentum=0.5)
    ref_opt.add_param_group({"params": list(ref.children())[4].parameters(), "lr": 0.2})
    ref_sched = dg.optim.lr_scheduler.StepLR(ref_opt, step_size=1, gamma=0.5)
    for i in range(3):
        opt.zero_grad()
        ref_opt.zero_grad()
        x, y = batch(RANK, i)
        F.cross_entropy(net(x), y).backward()
        for r in range(WORLD):
            xr, yr = batch(r, i)
            (F.cross_entropy(ref(xr), yr) / WORLD).backward()
        opt.step()
        ref_opt.step()
        sched.step()
        ref_sched.step()
    close(params(m), params(ref), "param groups, add_param_group and StepLR", 1e-10)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref_opt.param_groups]   # (the shard: at the next step)
    print(f"OK groups rank {RANK}", flush=True)


def check_join():
    """Join([ddp, zero]) on uneven inputs: the joined rank shadows DDP's all-reduces and ZeRO's broadcasts."""
    lengths = [2 + 2 * r for r in range(WORLD)]
    m = model()
    net = DDP(m)
    opt = ZeRO(m.parameters(), dg.optim.SGD, lr=0.1)
    with Join([net, opt]):
        for i in range(lengths[RANK]):
            opt.zero_grad()
            x, y = batch(RANK, i)
            F.cross_entropy(net(x), y).backward()
            opt.step()
    ref = model()
    for i in range(max(lengths)):
        for p in ref.parameters():
            p.grad = None
        for r in range(WORLD):
            if i < lengths[r]:
                x, y = batch(r, i)
                (F.cross_entropy(ref(x), y) / WORLD).backward()
        with dg.no_grad():
            for p in ref.parameters():
                p.array -= 0.1 * p.grad.array
    close(params(m), params(ref), "Join([ddp, zero]) on uneven inputs", 1e-10)
    print(f"OK join rank {RANK}", flush=True)


def check_errors():
    try:
        ZeRO(model().parameters(), dg.optim.SGD, overlap_with_ddp=True, lr=0.1)
    except NotImplementedError as e:
        assert "overlap_with_ddp=False" in str(e)
    else:
        raise AssertionError("overlap_with_ddp=True was accepted")
    print(f"OK errors rank {RANK}", flush=True)


CHECKS = {n[6:]: f for n, f in globals().items() if n.startswith("check_")}

if __name__ == "__main__":
    for name in sys.argv[1:] or CHECKS:
        CHECKS[name]()
    comm.destroy_process_group()
