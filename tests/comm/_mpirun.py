"""Run a test program under ``mpiexec -n N`` with hard time limits."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
LAUNCHER_VARS = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                 "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID",
                 "MPI_LOCALNRANKS", "PMIX_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
                 "SLURM_NTASKS_PER_NODE")


def mpiexec():
    """The mpiexec next to this Python (the mpich wheel's), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    from shutil import which
    return which("mpiexec")


def run_mpi(n, script, *args, env=None, timeout=120):
    """Run ``mpiexec -n n python script args``; return (CompletedProcess, seconds).

    Two guards against a hang: Hydra's own ``MPIEXEC_TIMEOUT`` (kills the job
    and its ranks) and ``subprocess.run(timeout=)`` a little later.
    """
    try:
        import mpi4py  # noqa: F401 - only checking that it is installed
    except ImportError:
        pytest.skip("needs mpi4py: pip install distgraph[mpi]")
    exe = mpiexec()
    if exe is None:
        pytest.skip("needs mpiexec: pip install distgraph[mpi] (the mpich wheel ships one)")
    full_env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    full_env.update({"MPIEXEC_TIMEOUT": str(int(timeout)), "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    root = str(HERE.parent.parent)
    full_env["PYTHONPATH"] = root + os.pathsep + full_env.get("PYTHONPATH", "")
    cmd = [exe, "-n", str(n), sys.executable, str(HERE / script), *map(str, args)]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30,
                          env=full_env, cwd=root)
    return proc, time.monotonic() - start
