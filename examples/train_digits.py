"""Train an MLP and a LeNet-style CNN on scikit-learn's bundled handwritten digits.

Real data (1,797 8x8 images, no download), an ordinary PyTorch-style loop, and
data parallelism when started with several ranks:

    python examples/train_digits.py                      # one process (CPU, or --device cuda)
    distgraph-run -n 2 examples/train_digits.py          # 2 ranks, DistributedDataParallel
    mpirun -n 2 python examples/train_digits.py          # the same, with plain mpirun

It checks its own result: at least 97% test accuracy for both models.
"""
import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph import comm
from distgraph.nn.parallel import DistributedDataParallel as DDP
from distgraph.utils.data import DataLoader, DistributedSampler, TensorDataset


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def lenet():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))


def evaluate(model, x, y, device):
    model.eval()
    with dg.no_grad():
        pred = model(dg.tensor(x, device=device)).argmax(1).cpu().numpy()
    model.train()
    return float((pred == y).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--min-accuracy", type=float, default=0.97)
    args = p.parse_args()

    comm.init_process_group()          # a world of one under plain python
    rank, world = comm.get_rank(), comm.get_world_size()
    device = args.device if args.device != "cuda" or dg.cuda.is_available() else "cpu"
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]          # (N, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.25, random_state=0,
                                                        stratify=digits.target)
    data = TensorDataset(dg.tensor(x_train), dg.tensor(y_train))
    results = {}
    for name in args.models.split(","):
        dg.manual_seed(args.seed)
        model = (mlp if name == "mlp" else lenet)().to(device)
        net = DDP(model) if world > 1 else model
        opt = dg.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
        sched = dg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=args.seed)
        loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler)
        start = time.perf_counter()
        bar = tqdm(range(args.epochs), desc=f"{name} rank {rank}", disable=rank != 0, leave=False)
        for epoch in bar:
            sampler.set_epoch(epoch)
            for xb, yb in loader:
                loss = F.cross_entropy(net(xb.to(device)), yb.to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        acc = evaluate(model, x_test, y_test, device)
        results[name] = acc
        if rank == 0:
            print(f"{name}: test accuracy {acc:.4f} after {args.epochs} epochs on {world} rank(s), "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    comm.destroy_process_group()
    bad = {k: v for k, v in results.items() if v < args.min_accuracy}
    if bad:
        raise SystemExit(f"accuracy below {args.min_accuracy}: {bad}")
    if rank == 0:
        print("summary: " + ", ".join(f"{k} {v:.2%}" for k, v in results.items()) + " (all above "
              f"{args.min_accuracy:.0%})")


if __name__ == "__main__":
    main()
