"""Optimizer step time, distgraph beside PyTorch on the same parameters (MLP 784-1024-1024-10).

Run: python benchmarks/optim_step.py [--threads 1]
Prints ms per ``optimizer.step()`` (best of 7 repeats) and the ratio distgraph / PyTorch.
"""
import argparse
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import numpy as np
    import torch

    import distgraph as dg
    from distgraph import optim
    from distgraph.autograd import Parameter
    torch.set_num_threads(args.threads)

    shapes = [(1024, 784), (1024,), (1024, 1024), (1024,), (10, 1024), (10,)]
    cases = [("SGD momentum", "SGD", dict(lr=0.01, momentum=0.9)),
             ("SGD momentum+wd", "SGD", dict(lr=0.01, momentum=0.9, weight_decay=1e-4)),
             ("Adam", "Adam", dict(lr=1e-3)),
             ("AdamW", "AdamW", dict(lr=1e-3)),
             ("RMSprop", "RMSprop", dict(lr=1e-3, momentum=0.9))]

    def best_ms(fn):
        fn()
        best = float("inf")
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(args.steps):
                fn()
            best = min(best, (time.perf_counter() - t) / args.steps * 1e3)
        return best

    rng = np.random.default_rng(0)
    print(f"{'optimizer':<18}{'distgraph ms':>14}{'torch ms':>10}{'ratio':>8}   ({args.threads} thread(s))")
    for label, name, kw in cases:
        arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        ps = [Parameter(dg.from_numpy(a.copy())) for a in arrays]
        for p, g in zip(ps, grads):
            p.grad = dg.from_numpy(g.copy())
        qs = [torch.tensor(a, requires_grad=True) for a in arrays]
        for q, g in zip(qs, grads):
            q.grad = torch.from_numpy(g.copy())
        ours = best_ms(getattr(optim, name)(ps, **kw).step)
        theirs = best_ms(getattr(torch.optim, name)(qs, **kw).step)
        print(f"{label:<18}{ours:>14.3f}{theirs:>10.3f}{ours / theirs:>8.2f}")


if __name__ == "__main__":
    main()
