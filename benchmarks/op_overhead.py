"""Per-op overhead of the autograd engine, beside PyTorch in the same run.

Measures, forward + backward:
  1. a chain of small elementwise ops on 16x16 float32 (microseconds per op),
     next to the same chain in PyTorch (eager, CPU) and in raw NumPy (forward only);
  2. a 784-1024-1024-10 MLP at batch 128 (milliseconds per step).

Run:  python benchmarks/op_overhead.py [--threads 1] [--repeat 7]
Torch is optional (`pip install -e '.[bench]'`); without it only distgraph is timed.
"""
import sys

from _timing import chain, machine_line, median_time as _median_time, optional_torch, parse_args

args = parse_args(__doc__.splitlines()[0], repeat=7)

import numpy as np  # noqa: E402

import distgraph as dg  # noqa: E402

torch = optional_torch(args.threads)


def median_time(fn, repeat, inner):
    return _median_time(fn, repeat, inner, warmup=1)


# ----------------------------------------------------------- elementwise chain
def chain_dg(n):
    return chain(dg.randn(16, 16, requires_grad=True), n)


def chain_torch(n):
    return chain(torch.randn(16, 16, requires_grad=True), n)


def chain_numpy(n):
    x = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)

    def run():
        y = x
        for i in range(n // 3):
            y = y * np.float32(1.001)
            y = y + np.float32(0.01)
            y = np.tanh(y)
    return run


# --------------------------------------------------------------------- MLP
SIZES = (784, 1024, 1024, 10)


def mlp(lib, tensor, batch):
    """The same MLP step in distgraph (``lib=dg``) or PyTorch (``lib=torch``), from the same numbers."""
    rng = np.random.default_rng(0)
    ws = [tensor(rng.standard_normal((i, o)) * (1 / np.sqrt(i)), requires_grad=True) for i, o in zip(SIZES, SIZES[1:])]
    bs = [lib.zeros(o, requires_grad=True) for o in SIZES[1:]]
    x = tensor(rng.standard_normal((batch, SIZES[0])))
    y = lib.tensor(rng.integers(0, 10, batch))
    rows = lib.arange(batch)

    def run():
        h = x
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = h @ w + b
            if i < len(ws) - 1:
                h = h.relu()
        loss = (h.logsumexp(1) - h[rows, y]).mean()
        loss.backward()
        for p in ws + bs:
            p.grad = None
    return run


def mlp_dg(batch):
    return mlp(dg, lambda a, **kw: dg.tensor(a, dtype=dg.float32, **kw), batch)


def mlp_torch(batch):
    return mlp(torch, lambda a, **kw: torch.tensor(a, dtype=torch.float32, **kw), batch)


def main():
    print(machine_line(np, torch, args.threads))
    n = args.chain
    rows = []
    t_dg = median_time(chain_dg(n), args.repeat, 5) / n * 1e6
    t_np = median_time(chain_numpy(n), args.repeat, 5) / n * 1e6
    rows.append(("elementwise chain 16x16, fwd+bwd, us/op", t_dg, None))
    t_mlp = median_time(mlp_dg(128), args.repeat, 3) * 1e3
    if torch is not None:
        t_torch = median_time(chain_torch(n), args.repeat, 5) / n * 1e6
        rows[0] = rows[0][:2] + (t_torch,)
        rows.append(("MLP 784-1024-1024-10 b128, fwd+bwd, ms", t_mlp, median_time(mlp_torch(128), args.repeat, 3) * 1e3))
    else:
        rows.append(("MLP 784-1024-1024-10 b128, fwd+bwd, ms", t_mlp, None))
    print(f"{'benchmark':44s} {'distgraph':>10s} {'torch':>10s} {'ratio':>7s}")
    for name, ours, theirs in rows:
        ratio = f"{ours / theirs:6.2f}x" if theirs else "   n/a"
        print(f"{name:44s} {ours:10.2f} {theirs if theirs else float('nan'):10.2f} {ratio}")
    print(f"{'raw NumPy forward only, us/op':44s} {t_np:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
