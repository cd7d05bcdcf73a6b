"""Weak scaling of DistributedDataParallel on this machine, beside PyTorch DDP (gloo).

Run it twice, with one rank and with two, each rank on one thread:

    mpiexec -n 1 python benchmarks/ddp_scaling.py
    mpiexec -n 2 python benchmarks/ddp_scaling.py

or let it do both:  python benchmarks/ddp_scaling.py --driver

It reports the step time (forward, backward with bucketed all-reduce, SGD
step) for an MLP 784-1024-1024-10 at per-rank batch 64 and a LeNet-style CNN
at per-rank batch 64, the scaling efficiency (1-rank step time / 2-rank step
time; weak scaling, so 1.0 is perfect) and the share of all-reduce time that
the timeline shows inside backward.  With torch installed the same models run
under torch.distributed (gloo) in the same job.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--warmup", type=int, default=5)
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--driver", action="store_true", help="run 1 and 2 ranks and print the comparison")
parser.add_argument("--json", default=None, help="write this rank-0 result as JSON here")
parser.add_argument("--bucket-cap-mb", type=float, default=25.0, help="DDP bucket cap (PyTorch's default 25)")
args = parser.parse_args()


def driver():
    here = os.path.abspath(__file__)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    results = {}
    for n in (1, 2):
        out = f"/tmp/ddp_scaling_{n}.json"
        subprocess.run([mpiexec, "-n", str(n), sys.executable, here, "--json", out, "--steps", str(args.steps),
                        "--bucket-cap-mb", str(args.bucket_cap_mb)],
                       check=True, timeout=900, env={**os.environ, "MPIEXEC_TIMEOUT": "900"})
        results[n] = json.load(open(out))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, 1 thread per rank, python "
          f"{platform.python_version()}, numpy {np.__version__}, distgraph bucket_cap_mb {args.bucket_cap_mb:g}")
    print(f"{'model':8s} {'impl':10s} {'1 rank ms':>10s} {'2 ranks ms':>11s} {'efficiency':>11s} {'hidden':>7s}")
    for model in results[1]:
        for impl in results[1][model]:
            one, two = results[1][model][impl], results[2][model][impl]
            hidden = two.get("hidden")
            print(f"{model:8s} {impl:10s} {one['ms']:10.2f} {two['ms']:11.2f} {one['ms'] / two['ms']:11.2f} "
                  f"{'' if hidden is None else f'{hidden:7.2f}'}")


def dg_models():
    import distgraph.nn as nn
    mlp = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    cnn = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                        nn.Linear(84, 10))
    return {"mlp": (mlp, (784,)), "cnn": (cnn, (1, 28, 28))}


def bench_dg(rng):
    import distgraph as dg
    import distgraph.nn.functional as F
    from distgraph import comm, profiler
    from distgraph.nn.parallel import DistributedDataParallel as DDP
    comm.init_process_group()
    out = {}
    for name, (model, shape) in dg_models().items():
        net = DDP(model, bucket_cap_mb=args.bucket_cap_mb)
        x = dg.tensor(rng.standard_normal((args.batch,) + shape), dtype=dg.float32)
        y = dg.tensor(rng.integers(0, 10, args.batch))
        params = list(model.parameters())

        def step():
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            with dg.no_grad():
                for p in params:
                    p.array -= 0.01 * p.grad.array
                    p.grad = None
        for _ in range(args.warmup):
            step()
        comm.barrier()
        profiler.enable("/dev/null")
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        ms = (time.perf_counter() - t0) / args.steps * 1e3
        hidden = profiler.overlap_fraction() if comm.get_world_size() > 1 else None
        profiler.disable()
        profiler._events.clear()
        out[name] = {"ms": ms, "hidden": hidden}
    return out


def bench_torch(rng):
    try:
        import torch
        import torch.distributed as tdist
    except ImportError:
        return None
    torch.set_num_threads(1)
    from distgraph import comm
    rank, world = comm.get_rank(), comm.get_world_size()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    port = [None]
    if rank == 0:  # a port that is free now (a fixed one can still be held by the previous run)
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port[0] = s.getsockname()[1]
    comm.broadcast_object_list(port, src=0)
    os.environ["MASTER_PORT"] = str(port[0])
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    tnn = torch.nn
    models = {
        "mlp": (tnn.Sequential(tnn.Linear(784, 1024), tnn.ReLU(), tnn.Linear(1024, 1024), tnn.ReLU(),
                               tnn.Linear(1024, 10)), (784,)),
        "cnn": (tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
                               tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
                               tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10)), (1, 28, 28)),
    }
    out = {}
    for name, (model, shape) in models.items():
        net = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.tensor(rng.standard_normal((args.batch,) + shape), dtype=torch.float32)
        y = torch.tensor(rng.integers(0, 10, args.batch))

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        for _ in range(args.warmup):
            step()
        tdist.barrier()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        out[name] = {"ms": (time.perf_counter() - t0) / args.steps * 1e3}
    tdist.destroy_process_group()
    return out


def main():
    if args.driver:
        return driver()
    rng = np.random.default_rng(0)
    ours = bench_dg(rng)
    theirs = bench_torch(rng)
    from distgraph import comm
    result = {m: {"distgraph": ours[m], **({"torch-gloo": theirs[m]} if theirs else {})} for m in ours}
    if comm.get_rank() == 0:
        print(json.dumps(result, indent=1))
        if args.json:
            json.dump(result, open(args.json, "w"))
    comm.destroy_process_group()


if __name__ == "__main__":
    main()
