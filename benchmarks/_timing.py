"""What the single-process CPU benchmarks share: thread pinning before NumPy loads, the median
timer and the machine line.  Imported first (it imports no NumPy itself)."""
import argparse
import os
import platform
import time


def parse_args(description, repeat=7, chain=300):
    """``--threads`` (set for BLAS before NumPy is imported), ``--repeat``, ``--chain``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1, help="BLAS / torch intra-op threads (default 1)")
    parser.add_argument("--repeat", type=int, default=repeat, help="timed repeats; the median is reported")
    parser.add_argument("--chain", type=int, default=chain, help="ops in the elementwise chain")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before NumPy loads its BLAS
    return args


def optional_torch(threads):
    """torch with ``threads`` intra-op threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def median_time(fn, repeat, inner, warmup=1):
    """Median over ``repeat`` runs of the mean seconds of ``inner`` calls of ``fn``."""
    import statistics
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return float(statistics.median(times))


def machine_line(np, torch, threads):
    return (f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
            f"python {platform.python_version()}, numpy {np.__version__}, "
            f"torch {torch.__version__ if torch else 'not installed'}, threads {threads}")


def chain(x, n):
    """``n`` small elementwise ops on the leaf ``x`` (distgraph or torch), forward and backward: the
    op-overhead benchmark's step; returns a function that runs it and returns the chain's end."""
    def run():
        y = x
        for _ in range(n // 3):
            y = y * 1.001
            y = y + 0.01
            y = y.tanh()
        y.sum().backward()
        x.grad = None
        return y
    return run
