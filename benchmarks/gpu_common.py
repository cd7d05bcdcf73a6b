"""Helpers shared by the GPU suite's stage programs (benchmarks/gpu_*.py).

Every stage program takes ``--json PATH`` (where it writes its result as one JSON
object) and ``--dry`` (the CPU dry run: ``device cpu``, tiny sizes), so that the
code path of every stage runs, and is tested, on a machine without a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parser(doc):
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--json", help="write the result here (one JSON object)")
    ap.add_argument("--dry", action="store_true", help="CPU dry run: device cpu, tiny sizes")
    ap.add_argument("--time-cap", type=float, default=20.0,
                    help="seconds of timed work per framework and case (default 20)")
    return ap


def device_for(args):
    return "cpu" if args.dry else "cuda"


def write_json(path, result):
    """Write ``result`` atomically (a stage killed mid-write leaves no half file)."""
    if not path:
        print(json.dumps(result, indent=1, default=str))
        return
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(tmp, path)


def dg_sync(device):
    if device != "cpu":
        import distgraph as dg
        dg.cuda.synchronize()


def torch_sync(device):
    if device != "cpu":
        import torch
        torch.cuda.synchronize()


def time_loop(step, sync, warmup=2, steps=20, time_cap=20.0, min_steps=3):
    """Median seconds per ``step()`` (synchronised each step) after ``warmup`` steps.

    Stops early once ``time_cap`` seconds of timed work have passed (at least
    ``min_steps`` are timed).  Returns ``(median_seconds, steps_timed)``.
    """
    for _ in range(warmup):
        step()
    sync()
    times = []
    start = time.perf_counter()
    while len(times) < steps:
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > time_cap and len(times) >= min_steps:
            break
    times.sort()
    return times[len(times) // 2], len(times)


def row(name, unit, ours, theirs, aim=None, **extra):
    """One benchmark row: distgraph beside torch, and the ratio ours / theirs."""
    ratio = ours / theirs if ours is not None and theirs else None
    out = {"name": name, "unit": unit, "distgraph": ours, "torch": theirs, "ratio": ratio,
           "aim": aim}
    if aim is not None and ratio is not None:
        out["meets_aim"] = ratio <= aim
    out.update(extra)
    return out
