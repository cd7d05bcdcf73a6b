"""The GPU suite's first stage: what is installed and importable, and which GPU this is.

    python benchmarks/gpu_env.py [--json env.json] [--dry]

Nothing here fails the stage except a crash: every probe records its error text.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from gpu_common import parser, write_json


def probe(fn):
    try:
        return fn()
    except BaseException as e:  # noqa: BLE001 - a probe records, it never fails the stage
        return f"ERROR {type(e).__name__}: {e}"


def version(name):
    def get():
        mod = importlib.import_module(name)
        return getattr(mod, "__version__", "imported (no __version__)")
    return probe(get)


def location(name):
    """Where ``name`` is imported from (which environment a fallback venv really sees)."""
    def get():
        spec = importlib.util.find_spec(name)
        return spec.origin if spec is not None else "not found"
    return probe(get)


def cupy_info():
    import cupy as cp
    rt = cp.cuda.runtime
    info = {"runtime_version": rt.runtimeGetVersion(), "driver_version": rt.driverGetVersion(),
            "device_count": rt.getDeviceCount()}

    def nccl():
        from cupy.cuda import nccl as n
        return {"available": bool(getattr(n, "available", True)), "version": n.get_version()}
    info["nccl"] = probe(nccl)

    def cudnn():
        from cupy.cuda import cudnn as c  # noqa: F401 - CuPy 14 dropped cuDNN
        return "importable"
    info["cudnn"] = probe(cudnn)

    def bf16():
        import ml_dtypes
        x = cp.zeros(4, dtype=ml_dtypes.bfloat16)
        y = (x + x).get()
        return f"cupy array of ml_dtypes.bfloat16 works ({y.dtype})"
    info["bfloat16"] = probe(bf16)

    def f16_matmul():
        a = cp.ones((64, 64), dtype=cp.float16)
        return float((a @ a)[0, 0].get())
    info["float16_matmul_64"] = probe(f16_matmul)
    return info


def torch_info():
    import torch
    info = {"version": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
        info["cudnn"] = torch.backends.cudnn.version()
        info["nccl"] = probe(lambda: ".".join(map(str, torch.cuda.nccl.version())))
    return info


def mpi_info():
    from mpi4py import MPI  # noqa: PLC0415 - initialises MPI (a world of one)
    from distgraph.comm import mpi
    return {"library": MPI.Get_library_version().splitlines()[0].strip(),
            "thread_level": MPI.Query_thread(), "cuda_aware_detected": probe(mpi.cuda_aware),
            "override": os.environ.get("DISTGRAPH_MPI_CUDA_AWARE")}


def mpiexec_path():
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def dg_info():
    import distgraph as dg
    info = {"cuda_available": dg.cuda.is_available(), "device_count": dg.cuda.device_count()}
    if dg.cuda.is_available():
        p = dg.cuda.get_device_properties()
        info.update(device=p.name, capability=f"{p.major}.{p.minor}",
                    memory_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count)
    from distgraph.comm import nccl
    info["nccl_backend_available"] = probe(nccl.available)
    return info


def nvidia_smi():
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "not on PATH"
    out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                          "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    return out.stdout.strip() or out.stderr.strip()


def main():
    args = parser(__doc__).parse_args()
    env = {"python": f"{platform.python_version()} ({sys.executable})",
           "platform": platform.platform(), "cpus": os.cpu_count(),
           "dry_run": args.dry,
           "packages": {n: version(n) for n in ("numpy", "cupy", "torch", "mpi4py", "scipy",
                                                "safetensors", "ml_dtypes", "pytest")},
           "locations": {n: location(n) for n in ("numpy", "cupy", "torch", "mpi4py", "pytest",
                                                   "distgraph", "distgraph.launch")},
           "sys_prefix": sys.prefix, "base_prefix": sys.base_prefix,
           "nvidia_smi": probe(nvidia_smi),
           "cupy": probe(cupy_info) if not args.dry else "dry run: not probed",
           "torch": probe(torch_info),
           "distgraph": probe(dg_info),
           "mpi": probe(mpi_info),
           "mpiexec": mpiexec_path(),
           "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "NCCL_MULTI_RANK_GPU_ENABLE",
                                                  "DISTGRAPH_MPI_CUDA_AWARE", "PYTHONPATH")}}
    for k, v in env.items():
        print(f"{k}: {v}")
    write_json(args.json, env)


if __name__ == "__main__":
    main()
