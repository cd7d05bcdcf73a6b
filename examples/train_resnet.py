"""Train ResNet-18 (the CIFAR variant) on CIFAR-10, or on synthetic CIFAR-shaped data, with checkpoints and metrics.

What it shows: a full training run a researcher would write — SGD with momentum,
a cosine schedule stepped per iteration, BatchNorm (or SyncBatchNorm across
ranks), random-crop + flip augmentation on NumPy arrays, DistributedDataParallel
with a DistributedSampler, checkpoints it can resume from, and metrics on rank 0.

    python examples/train_resnet.py                                  # synthetic data, one process
    python examples/train_resnet.py --data ~/cifar-10-batches-py     # real CIFAR-10 (python pickle batches)
    distgraph-run -n 2 examples/train_resnet.py --sync-bn            # 2 ranks, SyncBatchNorm
    mpirun -n 2 python examples/train_resnet.py --checkpoint-dir ckpt --log-dir runs/r18
    mpirun -n 2 python examples/train_resnet.py --checkpoint-dir ckpt --resume   # after a stop or crash
    python examples/plot_metrics.py runs/r18                         # loss/accuracy curves to PNG

The model is ResNet-18 as used for 32x32 images: a 3x3 stem without max-pool,
BasicBlocks [2, 2, 2, 2] of widths w, 2w, 4w, 8w (w = ``--width``, 64 for the
real network). Without ``--data`` the images are synthetic: one smooth random
pattern per class plus noise, so a short run learns something measurable.

It checks its own result: test accuracy at least ``--min-accuracy`` (default:
0.5 on synthetic data, off on CIFAR-10). ``--dtype float64`` makes a CPU run
bitwise reproducible across a stop and ``--resume`` (tests/test_examples_e2e.py).
"""
import argparse
import os
import pickle
import signal
import time

import numpy as np
from tqdm import tqdm

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph import comm
from distgraph.nn.parallel import DistributedDataParallel as DDP
from distgraph.utils.data import DistributedSampler
from distgraph.utils.metrics import MetricsLogger
from distgraph.utils.training import CheckpointManager, device_for_rank

CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465]).reshape(1, 3, 1, 1)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616]).reshape(1, 3, 1, 1)


# ---------------------------------------------------------------------- model
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a shortcut (a 1x1 convolution when the shape changes)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), width=64, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, n in enumerate(blocks):
            cout, stride = width * 2 ** i, 1 if i == 0 else 2
            layer = []
            for j in range(n):
                layer.append(BasicBlock(cin, cout, stride if j == 0 else 1))
                cin = cout
            layers.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(width=64, num_classes=10):
    return ResNet((2, 2, 2, 2), width, num_classes)


# ----------------------------------------------------------------------- data
def load_cifar10(directory):
    """(x_train, y_train, x_test, y_test) from the python-pickle batches (``data_batch_1..5``, ``test_batch``)."""
    directory = os.path.expanduser(directory)
    if os.path.isdir(os.path.join(directory, "cifar-10-batches-py")):
        directory = os.path.join(directory, "cifar-10-batches-py")

    def read(names):
        xs, ys = [], []
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.exists(path):
                raise SystemExit(f"--data {directory}: expected CIFAR-10's python batches there, {name} is missing "
                                 "(get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html)")
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
        x = (np.concatenate(xs) / 255.0 - CIFAR_MEAN) / CIFAR_STD
        return x.astype(np.float32), np.concatenate(ys)

    return (*read([f"data_batch_{i}" for i in range(1, 6)]), *read(["test_batch"]))


def synthetic_cifar(n_train, n_test, seed):
    """Smooth random class patterns (8x8 upsampled to 32x32) plus pixel noise, standardised like CIFAR."""
    rng = np.random.default_rng(seed)
    patterns = np.kron(rng.standard_normal((10, 3, 8, 8)), np.ones((1, 1, 4, 4)))

    def draw(n):
        y = rng.integers(0, 10, n)
        shift = rng.integers(-2, 3, (n, 2))  # small translations, so that cropping matters
        x = np.stack([np.roll(patterns[c], tuple(s), axis=(1, 2)) for c, s in zip(y, shift)])
        x = 0.6 * x + rng.standard_normal(x.shape)
        return x.astype(np.float32), y.astype(np.int64)

    return (*draw(n_train), *draw(n_test))


def augment(x, rng):
    """Random 32x32 crop of the image zero-padded by 4, and a horizontal flip with probability 1/2."""
    n, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))  # (n, c, 9, 9, h, w)
    oy, ox = rng.integers(0, 9, n), rng.integers(0, 9, n)
    crops = windows[np.arange(n), :, oy, ox]  # (n, c, h, w)
    flip = rng.random(n) < 0.5
    return np.ascontiguousarray(np.where(flip[:, None, None, None], crops[..., ::-1], crops))


# ------------------------------------------------------------------- training
def evaluate(model, x, y, batch_size, device, dtype, rank, world):
    """Accuracy on (x, y): each rank scores its share, the counts are summed over ranks.

    Every rank first takes rank 0's BatchNorm running statistics (DDP broadcasts them
    at each forward, but each rank's last training step updated its own), and the
    plain module is used, not DDP: ranks may score different numbers of batches.
    """
    if world > 1:
        for buf in model.buffers():
            comm.broadcast(buf, src=0)
    model.eval()
    correct = 0
    mine = np.arange(rank, len(x), world)
    with dg.no_grad():
        for i in range(0, len(mine), batch_size):
            idx = mine[i:i + batch_size]
            logits = model(dg.tensor(x[idx], dtype=dtype, device=device))
            correct += int((logits.argmax(1).cpu().numpy() == y[idx]).sum())
    model.train()
    counts = dg.tensor([float(correct)], dtype=dg.float64)
    if world > 1:
        comm.all_reduce(counts)
    return counts.item() / len(x)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="directory of CIFAR-10's python batches; synthetic data when omitted")
    p.add_argument("--synthetic-size", type=int, default=2048, help="synthetic training images (test: 1/4)")
    p.add_argument("--width", type=int, default=64, help="channels of the first stage (64: ResNet-18)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="total optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=64, help="per rank")
    p.add_argument("--lr", type=float, default=0.05, help="peak learning rate (cosine-annealed to 0)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm: batch statistics over all ranks")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (rank r uses GPU local_rank)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", help="write checkpoints here (rank 0)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--keep", type=int, default=2, help="checkpoints kept")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir")
    p.add_argument("--log-dir", help="metrics as CSV / JSON lines (and TensorBoard when installed)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--timeline", help="write a Chrome trace of the run (DDP buckets, forward, backward) here")
    p.add_argument("--min-accuracy", type=float, default=None)
    p.add_argument("--crash-at-step", type=int, default=None, help=argparse.SUPPRESS)  # tests: SIGKILL rank 0
    args = p.parse_args(argv)
    if args.resume and not args.checkpoint_dir:
        p.error("--resume needs --checkpoint-dir")
    return args


def main(argv=None):
    args = parse_args(argv)
    comm.init_process_group()  # a world of one under plain python
    rank, world = comm.get_rank(), comm.get_world_size()
    device = device_for_rank(args.device)
    dtype = dg.float64 if args.dtype == "float64" else dg.float32
    if args.timeline:
        dg.profiler.enable(args.timeline)

    if args.data:
        x_train, y_train, x_test, y_test = load_cifar10(args.data)
    else:
        x_train, y_train, x_test, y_test = synthetic_cifar(args.synthetic_size, args.synthetic_size // 4, args.seed)
    min_acc = args.min_accuracy if args.min_accuracy is not None else (None if args.data else 0.5)

    dg.manual_seed(args.seed)
    model = resnet18(args.width).to(device=device, dtype=dtype)
    if args.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = DDP(model) if world > 1 else model
    opt = dg.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                       nesterov=True)
    sampler = DistributedSampler(range(len(x_train)), num_replicas=world, rank=rank, shuffle=True,
                                 seed=args.seed, drop_last=True)
    steps_per_epoch = len(sampler) // args.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"--batch-size {args.batch_size} is larger than this rank's {len(sampler)} images")
    total = args.steps if args.steps is not None else args.epochs * steps_per_epoch
    sched = dg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)

    ckpt = CheckpointManager(args.checkpoint_dir, keep=args.keep) if args.checkpoint_dir else None
    step = 0
    if args.resume:
        state = ckpt.restore(model=model, optimizer=opt, scheduler=sched)
        step = state["step"] if state else 0
        if rank == 0:
            print(f"resuming from step {step}" if state else "no checkpoint to resume from: starting afresh",
                  flush=True)
    metrics = MetricsLogger(args.log_dir, purge_step=step if args.resume else None) if args.log_dir else None

    n_params = sum(p.numel() for p in model.parameters())
    if rank == 0:
        print(f"ResNet-18 width {args.width} ({n_params / 1e6:.2f}M parameters), {len(x_train)} "
              f"{'CIFAR-10' if args.data else 'synthetic'} images, {world} rank(s), batch {args.batch_size}/rank, "
              f"{total} steps, {args.dtype} on {device}", flush=True)
    bar = tqdm(total=total, initial=step, disable=rank != 0, unit="step", dynamic_ncols=True)
    start, start_step, loss_value, acc, acc_step = time.perf_counter(), step, float("nan"), None, None
    while step < total:
        epoch, first = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64)
        for i in range(first, steps_per_epoch):
            idx = order[i * args.batch_size:(i + 1) * args.batch_size]
            xb = x_train[idx]
            if not args.no_augment:  # a generator per (seed, step, rank): nothing to save for a resume
                xb = augment(xb, np.random.default_rng([args.seed, step, rank]))
            logits = net(dg.tensor(xb, dtype=dtype, device=device))
            loss = F.cross_entropy(logits, dg.tensor(y_train[idx], device=device))
            opt.zero_grad()
            loss.backward()
            with dg.profiler.span("optimizer.step"):
                opt.step()
            sched.step()
            step += 1
            loss_value = loss.item()
            bar.update(1)
            rate = (step - start_step) * args.batch_size * world / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss_value:.3f}", samples_s=f"{rate:.0f}")
            if metrics and (step % args.log_every == 0 or step == total):
                metrics.log(step, loss=loss_value, lr=opt.param_groups[0]["lr"])
            if ckpt and (step % args.checkpoint_every == 0 or step == total):
                ckpt.save(step, model=model, optimizer=opt, scheduler=sched, epoch=epoch)
            if args.crash_at_step == step and rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)  # a crash, not an orderly exit
            if step == total:
                break
        if step % steps_per_epoch == 0 or step == total:
            acc, acc_step = evaluate(model, x_test, y_test, 256, device, dtype, rank, world), step
            if metrics:
                metrics.log(step, prefix="test/", accuracy=acc)
            if rank == 0:
                bar.write(f"epoch {epoch}: step {step}, loss {loss_value:.4f}, test accuracy {acc:.4f}")
    bar.close()
    seconds = time.perf_counter() - start
    if acc_step != step:  # resumed at the end: nothing ran
        acc = evaluate(model, x_test, y_test, 256, device, dtype, rank, world)
    if metrics:
        metrics.close()
    overlap = None
    if args.timeline:
        overlap = dg.profiler.overlap_fraction()
        dg.profiler.write()  # every rank takes part (it gathers the events)
        dg.profiler.disable()  # written: the at-exit writer, with no group left, would overwrite it with one rank
    comm.destroy_process_group()
    if rank == 0:
        done = step - start_step
        rate = done / seconds if seconds > 0 and done else 0.0
        print(f"summary: ResNet-18 w{args.width}, {world} rank(s), {step} steps, final loss {loss_value:.6f}, "
              f"test accuracy {acc:.4f}, {rate:.2f} steps/s ({rate * args.batch_size * world:.0f} samples/s)"
              + (f", all-reduce overlap {overlap:.0%}" if overlap is not None else ""), flush=True)
    if min_acc is not None and acc < min_acc:
        raise SystemExit(f"test accuracy {acc:.4f} is below --min-accuracy {min_acc}")


if __name__ == "__main__":
    main()
