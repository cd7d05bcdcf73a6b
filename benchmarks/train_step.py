"""Milliseconds per training step (zero_grad, forward, loss, backward, step), beside PyTorch.

  (a) MLP 784-1024-1024-10, batch 128, SGD with momentum
  (b) LeNet-style CNN on 1x28x28, batch 64, SGD with momentum
  (c) a transformer encoder layer (d_model 256, 4 heads, FFN 1024, sequence 128, batch 16), AdamW

Run:  python benchmarks/train_step.py [--threads 1] [--steps 20]
Both frameworks run the same models, on the same thread count, in this one process.
"""
import argparse
import os
import platform
import time

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--only", default="mlp,cnn,transformer")
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402

import distgraph as dg  # noqa: E402

try:
    import torch
    torch.set_num_threads(args.threads)
except ImportError:
    torch = None


def time_steps(step, steps):
    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps * 1e3


def models(lib):
    L = lib.nn
    mlp = L.Sequential(L.Linear(784, 1024), L.ReLU(), L.Linear(1024, 1024), L.ReLU(), L.Linear(1024, 10))
    cnn = L.Sequential(L.Conv2d(1, 6, 5, padding=2), L.ReLU(), L.MaxPool2d(2), L.Conv2d(6, 16, 5), L.ReLU(),
                       L.MaxPool2d(2), L.Flatten(), L.Linear(400, 120), L.ReLU(), L.Linear(120, 84), L.ReLU(),
                       L.Linear(84, 10))

    class Encoder(L.Module):
        """Post-norm encoder layer, as torch.nn.TransformerEncoderLayer(256, 4, 1024, dropout=0)."""

        def __init__(self, d=256, heads=4, ff=1024):
            super().__init__()
            self.attn = L.MultiheadAttention(d, heads, batch_first=True)
            self.ff1, self.ff2 = L.Linear(d, ff), L.Linear(ff, d)
            self.norm1, self.norm2 = L.LayerNorm(d), L.LayerNorm(d)

        def forward(self, x):
            x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
            return self.norm2(x + self.ff2(self.ff1(x).relu()))
    return {"mlp": (mlp, (128, 784), "sgd"), "cnn": (cnn, (64, 1, 28, 28), "sgd"),
            "transformer": (Encoder(), (16, 128, 256), "adamw")}


def step_fn(lib, model, x, y, opt_name, seq):
    if opt_name == "sgd":
        opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    else:
        opt = lib.optim.AdamW(model.parameters(), lr=1e-3)
    ce = lib.nn.functional.cross_entropy if lib is dg else torch.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        out = model(x)
        loss = ce(out.reshape(-1, out.shape[-1]) if seq else out, y)
        loss.backward()
        opt.step()
    return step


def main():
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, threads {args.threads}, python "
          f"{platform.python_version()}, numpy {np.__version__}, torch {torch.__version__ if torch else 'n/a'}")
    rng = np.random.default_rng(0)
    print(f"{'model':12s} {'distgraph ms':>13s} {'torch ms':>9s} {'ratio':>7s}")
    dg_models = models(dg)
    t_models = models(torch) if torch else {}
    for name in args.only.split(","):
        model, shape, opt = dg_models[name]
        x = rng.standard_normal(shape).astype(np.float32)
        seq = name == "transformer"
        y = rng.integers(0, 10 if not seq else 256, shape[0] * (shape[1] if seq else 1))
        ours = time_steps(step_fn(dg, model, dg.tensor(x), dg.tensor(y), opt, seq), args.steps)
        theirs = None
        if torch:
            tm = t_models[name][0]
            theirs = time_steps(step_fn(torch, tm, torch.tensor(x), torch.tensor(y), opt, seq), args.steps)
        ratio = f"{ours / theirs:6.2f}x" if theirs else "   n/a"
        print(f"{name:12s} {ours:13.2f} {theirs if theirs else float('nan'):9.2f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
