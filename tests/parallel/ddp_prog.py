"""DDP checks run under `mpiexec -n N python ddp_prog.py`; every rank checks, prints 'OK <name>'.

Each check trains with DDP on this rank's shard of a global batch and compares
with a single-process reference on the whole batch, computed on every rank.
"""
import sys
import warnings

import numpy as np

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph import comm
from distgraph.nn.parallel import DistributedDataParallel as DDP, comm_hooks

comm.init_process_group()
RANK, WORLD = comm.get_rank(), comm.get_world_size()
B = 4  # per-rank batch


def data(seed, n, d_in, classes):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d_in)), rng.integers(0, classes, n)


def mlp(dtype, seed=0):
    dg.manual_seed(seed + RANK)   # different init per rank: DDP must broadcast rank 0's
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype=dtype)


def sgd(params, lr=0.1):
    with dg.no_grad():
        for p in params:
            if p.grad is not None:
                p.array -= lr * p.grad.array
                p.grad = None


def shard(a):
    return a[RANK * B:(RANK + 1) * B]


def train(model, x, y, steps, wrap=None, micro=1, dtype=dg.float64, make_opt=None):
    net = wrap(model) if wrap else model
    opt = make_opt(model.parameters()) if make_opt else None
    for step in range(steps):
        xs, ys = (shard(x), shard(y)) if wrap else (x, y)
        parts = np.array_split(np.arange(len(xs)), micro)
        for k, idx in enumerate(parts):
            ctx = net.no_sync() if (wrap and k < micro - 1) else _null()
            with ctx:
                out = net(dg.tensor(xs[idx], dtype=dtype))
                loss = F.cross_entropy(out, dg.tensor(ys[idx])) * (len(idx) / len(xs))
                loss.backward()
        if opt is None:
            sgd(model.parameters())
        else:
            opt.step()
            opt.zero_grad()
    return [p.detach().numpy().copy() for p in model.parameters()], net


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def reference(dtype, steps=20, seed=0, make_opt=None):
    x, y = data(1, B * WORLD, 6, 3)
    ref = mlp(dtype, seed)
    with dg.no_grad():     # the reference starts from rank 0's initial weights
        dg.manual_seed(seed)
        r0 = mlp(dtype, seed - RANK)
        for p, q in zip(ref.parameters(), r0.parameters()):
            p.array[...] = q.array
    return train(ref, x, y, steps, dtype=dtype, make_opt=make_opt)[0], x, y


def close(a, b, tol, what):
    for i, (p, q) in enumerate(zip(a, b)):
        err = np.abs(p - q).max()
        if not err <= tol:
            raise AssertionError(f"[rank {RANK}] {what}: parameter {i} differs by {err} (tolerance {tol})")


def check_equivalence():
    for dtype, tol in [(dg.float64, 1e-10), (dg.float32, 1e-5)]:
        want, x, y = reference(dtype)
        got, _ = train(mlp(dtype), x, y, 20, wrap=lambda m: DDP(m), dtype=dtype)
        close(got, want, tol, f"DDP vs one process ({dg.backend.dtype_name(dtype)})")
    print(f"OK equivalence rank {RANK}", flush=True)


def check_adam():
    def adam(ps):
        return dg.optim.Adam(ps, lr=0.01)
    for dtype, tol in [(dg.float64, 1e-10), (dg.float32, 1e-5)]:
        want, x, y = reference(dtype, make_opt=adam)
        got, _ = train(mlp(dtype), x, y, 20, wrap=lambda m: DDP(m), dtype=dtype, make_opt=adam)
        close(got, want, tol, f"DDP + Adam vs one process ({dg.backend.dtype_name(dtype)})")
    print(f"OK adam rank {RANK}", flush=True)


def check_gradient_as_bucket_view():
    want, x, y = reference(dg.float64)
    got, net = train(mlp(dg.float64), x, y, 20, wrap=lambda m: DDP(m, gradient_as_bucket_view=True,
                                                                     bucket_cap_mb=1e-6))
    close(got, want, 1e-10, "gradient_as_bucket_view")
    m = net.module
    net(dg.tensor(shard(x))).sum().backward()
    views = {id(v.base if v.base is not None else v) for b in net.reducer.buckets for v in [b.buffer]}
    for p in m.parameters():
        assert p.grad is not None and p.grad.array.base is not None and id(p.grad.array.base) in views, \
            "a .grad that is not a view into its bucket"
    print(f"OK grad_view rank {RANK}", flush=True)


def check_bucket_sizes_and_overlap():
    want, x, y = reference(dg.float64)
    tiny, net = train(mlp(dg.float64), x, y, 20, wrap=lambda m: DDP(m, bucket_cap_mb=1e-6))
    assert len(net.reducer.buckets) == 6, net.reducer.layout
    huge, net2 = train(mlp(dg.float64), x, y, 20, wrap=lambda m: DDP(m, bucket_cap_mb=1000))
    assert len(net2.reducer.buckets) == 1
    close(tiny, want, 1e-10, "one parameter per bucket")
    close(huge, want, 1e-10, "one bucket")
    # the first bucket's all-reduce starts before backward reaches the first layer
    events = net.reducer.timeline
    first_launch = events.index(("launch", 0))
    last_ready = max(i for i, e in enumerate(events) if e[0] == "ready")
    assert first_launch < last_ready, events
    launches = [e[1] for e in events if e[0] == "launch"]
    assert launches == sorted(launches), f"buckets launched out of order: {launches}"
    # after the first iteration the buckets follow the order gradients became ready
    assert net.reducer.rebuilt
    print(f"OK buckets rank {RANK}", flush=True)


def check_no_sync():
    want, x, y = reference(dg.float64)
    got, _ = train(mlp(dg.float64), x, y, 20, wrap=lambda m: DDP(m), micro=2)
    close(got, want, 1e-10, "no_sync accumulation vs large batch")
    print(f"OK no_sync rank {RANK}", flush=True)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.unused_everywhere = nn.Linear(4, 3)
        self.rank0_only = nn.Linear(4, 3)

    def forward(self, x):
        out = self.a(x)
        if RANK == 0:
            out = out + self.rank0_only(x)
        return out


def check_unused():
    results = []
    for flag in (False, True):
        dg.manual_seed(3)
        m = Branchy().double()
        net = DDP(m, find_unused_parameters=flag)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(3):
                net(dg.tensor(np.ones((2, 4)) * (RANK + 1))).sum().backward()
                assert m.unused_everywhere.weight.grad is None
                assert m.rank0_only.weight.grad is not None      # used on rank 0: averaged with zeros
                sgd(m.parameters())
        msgs = [str(w.message) for w in caught if "did not reach" in str(w.message)]
        if flag:
            assert not msgs, msgs
        else:
            assert len(msgs) == 1 and "unused_everywhere.weight" in msgs[0] and "find_unused_parameters=True" in msgs[0]
        results.append([p.detach().numpy().copy() for p in m.parameters()])
    close(results[0], results[1], 0, "unused parameters with and without the flag")
    print(f"OK unused rank {RANK}", flush=True)


def check_batchnorm_cnn():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((B * WORLD, 1, 6, 6))
    y = rng.integers(0, 3, B * WORLD)

    def cnn():
        dg.manual_seed(11)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(64, 3)).double()
    ref, model = cnn(), cnn()
    net = DDP(model)
    for _ in range(10):
        # reference: the mean of per-shard losses (BatchNorm statistics are per shard, as under DDP)
        loss = sum(F.cross_entropy(ref(dg.tensor(x[r * B:(r + 1) * B])), dg.tensor(y[r * B:(r + 1) * B]))
                   for r in range(WORLD)) / WORLD
        loss.backward()
        sgd(ref.parameters())
        F.cross_entropy(net(dg.tensor(shard(x))), dg.tensor(shard(y))).backward()
        sgd(model.parameters())
    close([p.detach().numpy() for p in model.parameters()], [p.detach().numpy() for p in ref.parameters()],
          1e-10, "CNN with BatchNorm")
    print(f"OK batchnorm rank {RANK}", flush=True)


def check_sync_batchnorm():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((B * WORLD, 2, 5, 5))
    y = rng.integers(0, 3, B * WORLD)

    def cnn():
        dg.manual_seed(12)
        return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(36, 3)).double()
    ref = cnn()
    model = nn.SyncBatchNorm.convert_sync_batchnorm(cnn())
    assert isinstance(model[1], nn.SyncBatchNorm)
    net = DDP(model)
    for _ in range(10):
        F.cross_entropy(ref(dg.tensor(x)), dg.tensor(y)).backward()        # the whole batch, one process
        sgd(ref.parameters())
        F.cross_entropy(net(dg.tensor(shard(x))), dg.tensor(shard(y))).backward()
        sgd(model.parameters())
    close([p.detach().numpy() for p in model.parameters()], [p.detach().numpy() for p in ref.parameters()],
          1e-10, "SyncBatchNorm CNN vs one process")
    close([b.numpy() for b in model.buffers()], [b.numpy() for b in ref.buffers()], 1e-10, "running statistics")
    print(f"OK sync_batchnorm rank {RANK}", flush=True)


def check_fp16_hook():
    want, x, y = reference(dg.float64, steps=5)

    def wrap(m):
        d = DDP(m)
        d.register_comm_hook(None, comm_hooks.fp16_compress_hook)
        return d
    got, _ = train(mlp(dg.float64), x, y, 5, wrap=wrap)
    close(got, want, 5e-3, "fp16-compressed all-reduce")
    print(f"OK fp16_hook rank {RANK}", flush=True)


def hooked(hook, state=None, bucket_cap_mb=25):
    def wrap(m):
        d = DDP(m, bucket_cap_mb=bucket_cap_mb)
        d.register_comm_hook(state, hook)
        return d
    return wrap


def check_comm_hooks():
    """PyTorch's hook contract: the bucket holds this rank's gradients (undivided); the Future's value
    goes back into it."""
    from distgraph.distributed.algorithms.ddp_comm_hooks import default_hooks
    import distgraph.distributed as dist
    want, x, y = reference(dg.float64, steps=5)
    # the default hook, by its torch path, with tiny buckets (several hooks per backward)
    got, _ = train(mlp(dg.float64), x, y, 5, wrap=hooked(default_hooks.allreduce_hook, bucket_cap_mb=0.0005))
    close(got, want, 1e-10, "allreduce_hook")

    # a hook written as in torch's tutorial: all-reduce, then divide in the callback
    seen = []

    def mean_hook(state, bucket: dist.GradBucket) -> dg.futures.Future[dg.Tensor]:
        seen.append((bucket.index(), bucket.is_last(), len(bucket.parameters()), bucket.buffer().numel()))
        assert sum(g.numel() for g in bucket.gradients()) == bucket.buffer().numel()
        fut = dist.all_reduce(bucket.buffer(), group=state, async_op=True).get_future()
        return fut.then(lambda f: f.value()[0] / state.size())
    got, _ = train(mlp(dg.float64), x, y, 5, wrap=hooked(mean_hook, state=dist.group.WORLD))
    close(got, want, 1e-10, "a user's all-reduce-then-divide hook")
    n_grads = sum(p.numel() for p in mlp(dg.float64).parameters())
    assert len(seen) == 5 and all(s == (0, True, 6, n_grads) for s in seen), seen   # one bucket per backward

    # a hook that does no communication: each rank keeps its own gradients, undivided
    def local_hook(state, bucket):
        fut = dg.futures.Future()
        fut.set_result(bucket.buffer())
        return fut
    m = mlp(dg.float64)
    net = hooked(local_hook)(m)
    xs, ys = shard(x), shard(y)
    F.cross_entropy(net(dg.tensor(xs)), dg.tensor(ys)).backward()
    mine = [p.grad.numpy().copy() for p in m.parameters()]
    for p in m.parameters():
        p.grad = None
    F.cross_entropy(m(dg.tensor(xs)), dg.tensor(ys)).backward()     # (no_sync-free plain module)
    close(mine, [p.grad.numpy() for p in m.parameters()], 1e-12, "a hook that keeps local gradients")

    # a parameter no rank used keeps grad None under a hook too (flags reduced on their own)
    dg.manual_seed(3)
    b = Branchy().double()
    net = hooked(default_hooks.allreduce_hook)(b)
    net(dg.tensor(np.ones((2, 4)) * (RANK + 1))).sum().backward()
    assert b.unused_everywhere.weight.grad is None and b.rank0_only.weight.grad is not None

    # returning the Work itself is refused, saying what to return
    bad = hooked(lambda s, bk: dist.all_reduce(bk.buffer(), async_op=True))(mlp(dg.float64))
    try:
        F.cross_entropy(bad(dg.tensor(xs)), dg.tensor(ys)).backward()
    except RuntimeError as e:
        assert "must return a distgraph.futures.Future" in str(e) and "work.get_future()" in str(e), e
    else:
        raise AssertionError("a hook returning Work was accepted")
    try:
        net.register_comm_hook(None, default_hooks.allreduce_hook)
    except RuntimeError as e:
        assert "already registered" in str(e), e
    else:
        raise AssertionError("a second hook was accepted")
    print(f"OK comm_hooks rank {RANK}", flush=True)


def check_mismatched_models():
    m = nn.Linear(4, 3 if RANK == 0 else 5)
    try:
        DDP(m)
    except RuntimeError as e:
        msg = str(e)
        assert "ranks wrapped different models" in msg and "weight" in msg and f"rank {1}" in msg, msg
        print(f"OK mismatch rank {RANK}", flush=True)
        return
    raise AssertionError("mismatched models were not detected")


def check_timeline():
    import json
    import os
    import tempfile
    from distgraph import profiler
    path = os.path.join(tempfile.gettempdir(), f"dg_timeline_{os.getppid()}.json")
    profiler.enable(path)
    _, x, y = reference(dg.float64, steps=1)
    train(mlp(dg.float64), x, y, 3, wrap=lambda m: DDP(m, bucket_cap_mb=1e-6))
    mine = profiler.events()
    cats = {e["cat"] for e in mine}
    assert {"forward", "backward", "allreduce", "wait"} <= cats, cats
    assert sum(e["cat"] == "allreduce" for e in mine) == 3 * 6
    written = profiler.write()
    profiler.disable()
    if RANK == 0:
        trace = json.load(open(written))["traceEvents"]
        assert {e["pid"] for e in trace} == set(range(WORLD))
        os.remove(written)
    print(f"OK timeline rank {RANK}", flush=True)


def check_grad_scaler_agreement():
    model = mlp(dg.float32)
    net = DDP(model)
    opt = dg.optim.SGD(model.parameters(), lr=0.1)
    scaler = dg.amp.GradScaler(init_scale=64.0)
    x, y = data(2, B * WORLD, 6, 3)
    before = [p.detach().numpy().copy() for p in model.parameters()]
    scaler.scale(F.cross_entropy(net(dg.tensor(shard(x), dtype=dg.float32)), dg.tensor(shard(y)))).backward()
    if RANK == 1:          # only one rank overflows: every rank must skip the step
        next(model.parameters()).grad.array[0, 0] = np.inf
    scaler.step(opt)
    scaler.update()
    close([p.detach().numpy() for p in model.parameters()], before, 0, "parameters after a skipped step")
    assert scaler.get_scale() == 32.0
    print(f"OK scaler rank {RANK}", flush=True)


CHECKS = {n[6:]: f for n, f in globals().items() if n.startswith("check_")}

if __name__ == "__main__":
    for name in sys.argv[1:] or CHECKS:
        CHECKS[name]()
    comm.destroy_process_group()
