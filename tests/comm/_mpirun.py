"""Run a program from this folder under ``mpiexec -n N`` (see ``tests/mpi_util.py``)."""
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from mpi_util import LAUNCHER_VARS, mpiexec  # noqa: E402,F401
from mpi_util import run_mpi as _run_mpi  # noqa: E402


def run_mpi(n, script, *args, env=None, timeout=120):
    """Run ``mpiexec -n n python tests/comm/<script> args``; return (CompletedProcess, seconds)."""
    return _run_mpi(n, HERE / script, *args, env=env, timeout=timeout)
