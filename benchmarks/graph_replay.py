"""Capture and replay (``dg.compile``) beside distgraph eager and PyTorch eager, in one run.

Measures:
  1. per-op overhead: a chain of small elementwise ops (``* 1.001``, ``+ 0.01``, ``tanh``) on
     16x16 float32, forward + backward, in microseconds per op;
  2. small-model training steps (zero_grad, forward, loss, backward, SGD step), milliseconds:
     an MLP 784-256-256-10 at batch 32 and a transformer encoder block (d=64, 4 heads, seq 16, batch 8).

The goal of issue 14: replay at most half of distgraph eager's time on the chain, and faster
than PyTorch eager there. Replay is timed twice: with preallocated buffers and ``out=`` fusion of
elementwise ops (the default) and without (``options={"fuse": False}``: the same inlined ufuncs,
each allocating a fresh array). A third column, ``model only``, compiles the model (or the chain's
forward) and keeps the step eager, as ``model = torch.compile(model)`` does: the forward replays as
a region whose backward runs outside (distgraph/graph/region.py), with no fusion. Replayed results
are checked against eager before timing.

Run:  python benchmarks/graph_replay.py [--threads 1] [--repeat 5] [--chain 300]
Torch is optional (`pip install -e '.[bench]'`); without it only distgraph is timed.
"""
import sys

from _timing import chain, machine_line, median_time as _median_time, optional_torch, parse_args

args = parse_args(__doc__.splitlines()[0], repeat=5)

import numpy as np  # noqa: E402

import distgraph as dg  # noqa: E402

torch = optional_torch(args.threads)


def median_time(fn, repeat, inner):
    return _median_time(fn, repeat, inner, warmup=3)  # compiled steps capture on their first two calls


# ----------------------------------------------------------- elementwise chain
# ----------------------------------------------------------- training steps
def chain_model_only(x, n):
    """The chain with only its forward compiled: the backward runs outside (a region)."""
    def forward(x):
        y = x
        for _ in range(n // 3):
            y = (y * 1.001 + 0.01).tanh()
        return y
    f = dg.compile(forward)

    def run():
        y = f(x)
        y.sum().backward()
        x.grad = None
        return y
    run.compiled = f
    return run


def mlp_step(lib, model_only=False):
    rng = np.random.default_rng(0)
    sizes = (784, 256, 256, 10)
    layers = []
    for i, o in zip(sizes, sizes[1:]):
        layers += [lib.nn.Linear(i, o), lib.nn.ReLU()]
    model = lib.nn.Sequential(*layers[:-1])
    opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if model_only:
        model = step_compiled = lib.compile(model)
    x = lib.tensor(rng.standard_normal((32, 784)).astype(np.float32))
    y = lib.tensor(rng.standard_normal((32, 10)).astype(np.float32))

    def step():
        opt.zero_grad()
        loss = lib.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss
    step.compiled = step_compiled if model_only else None
    return step


def block_step(lib, model_only=False):
    lib.manual_seed(0)
    rng = np.random.default_rng(0)
    block = lib.nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, dropout=0.0, batch_first=True)
    opt = lib.optim.SGD(block.parameters(), lr=0.01)
    compiled = block = lib.compile(block) if model_only else block
    x = lib.tensor(rng.standard_normal((8, 16, 64)).astype(np.float32))
    y = lib.tensor(rng.standard_normal((8, 16, 64)).astype(np.float32))

    def step():
        opt.zero_grad()
        loss = lib.nn.functional.mse_loss(block(x), y)
        loss.backward()
        opt.step()
        return loss
    step.compiled = compiled
    return step


def check_replay(make_eager, make_compiled, what, fuse=True):
    """Replayed values must be eager's (both start from the same state)."""
    e, c = make_eager(), dg.compile(make_compiled(), fullgraph=True, options={"fuse": fuse})
    for _ in range(4):
        ye, yc = e(), c()
    err = float(np.max(np.abs(ye.array - yc.array)))
    assert c.stats["replays"] == 2 and err < 1e-4, f"{what}: replay differs from eager by {err} ({c.stats})"


def check_model_only(make_eager, make_model_only, what):
    e, c = make_eager(), make_model_only()
    for _ in range(4):
        ye, yc = e(), c()
    err = float(np.max(np.abs(ye.array - yc.array)))
    stats = c.compiled.stats
    assert stats["replays"] == 2 and err < 1e-4, f"{what}: model-only replay differs by {err} ({stats})"


def main():
    print(machine_line(np, torch, args.threads))
    n = args.chain
    dg.manual_seed(0)
    chain_x = dg.randn(16, 16, requires_grad=True)
    for fuse in (True, False):
        check_replay(lambda: chain(chain_x, n), lambda: chain(chain_x, n), "chain", fuse)
        for make in (mlp_step, block_step):
            seeded = lambda make=make: (dg.manual_seed(0), make(dg))[1]  # noqa: E731 - twins from one seed
            check_replay(seeded, seeded, make.__name__, fuse)
    check_model_only(lambda: chain(chain_x, n), lambda: chain_model_only(chain_x, n), "chain")
    for make in (mlp_step, block_step):
        check_model_only(lambda make=make: (dg.manual_seed(0), make(dg))[1],
                         lambda make=make: (dg.manual_seed(0), make(dg, True))[1], make.__name__)

    def compiled(fn, fuse):
        return dg.compile(fn, options={"fuse": fuse})

    rows = []
    eager = median_time(chain(dg.randn(16, 16, requires_grad=True), n), args.repeat, 5) / n * 1e6
    fused, plain = (median_time(compiled(chain(dg.randn(16, 16, requires_grad=True), n), f), args.repeat, 5) / n * 1e6
                    for f in (True, False))
    model = median_time(chain_model_only(dg.randn(16, 16, requires_grad=True), n), args.repeat, 5) / n * 1e6
    th = median_time(chain(torch.randn(16, 16, requires_grad=True), n), args.repeat, 5) / n * 1e6 if torch else None
    rows.append(("elementwise chain 16x16 fwd+bwd, us/op", eager, fused, plain, model, th))
    for name, make, inner in (("MLP 784-256-256-10 b32 step, ms", mlp_step, 20),
                              ("transformer block d64 s16 b8 step, ms", block_step, 5)):
        eager = median_time(make(dg), args.repeat, inner) * 1e3
        fused, plain = (median_time(compiled(make(dg), f), args.repeat, inner) * 1e3 for f in (True, False))
        model = median_time(make(dg, True), args.repeat, inner) * 1e3
        th = median_time(make(torch), args.repeat, inner) * 1e3 if torch else None
        rows.append((name, eager, fused, plain, model, th))
    print(f"{'benchmark':40s} {'dg eager':>9s} {'replay':>8s} {'no fuse':>8s} {'model only':>10s} {'torch':>8s} "
          f"{'replay/eager':>13s} {'fuse/no fuse':>13s} {'model/eager':>12s} {'replay/torch':>13s}")
    for name, eager, fused, plain, model, th in rows:
        vs_torch = f"{fused / th:12.2f}x" if th else "          n/a"
        print(f"{name:40s} {eager:9.2f} {fused:8.2f} {plain:8.2f} {model:10.2f} {th if th else float('nan'):8.2f} "
              f"{fused / eager:12.2f}x {fused / plain:12.2f}x {model / eager:11.2f}x {vs_torch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
