"""distgraph: data-parallel training over an eager autograd engine (NumPy / CuPy, MPI / NCCL).

    import distgraph as dg
    x = dg.randn(3, requires_grad=True)
    (x * x).sum().backward()
"""
import sys as _sys


def _checkout_launch():
    """From a plain checkout (not installed), ``distgraph.launch`` is the top-level ``launch/``
    folder, which pyproject.toml maps there only at install time: load it from there."""
    import importlib.util
    import os
    if importlib.util.find_spec(__name__ + ".launch") is not None:  # installed (or editable)
        return
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch")
    init = os.path.join(folder, "__init__.py")
    if os.path.isfile(init):
        spec = importlib.util.spec_from_file_location(__name__ + ".launch", init,
                                                      submodule_search_locations=[folder])
        module = importlib.util.module_from_spec(spec)
        _sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        globals()["launch"] = module  # what the import system does for a found submodule


_checkout_launch()

from distgraph import backend  # noqa: E402
from distgraph.autograd import (Tensor, enable_grad, inference_mode, is_grad_enabled, no_grad,
                                set_detect_anomaly, set_grad_enabled)
from distgraph.autograd.creation import *  # noqa: F401,F403
from distgraph.autograd.ops import *  # noqa: F401,F403
from distgraph.autograd.ops import abs, all, any, max, min, pow, sum  # noqa: F401,A004
from distgraph.backend import (Device, bool_, double, float16, float32, float64, half, int8, int16, int32,
                               int64, long, short, uint8)
from distgraph.backend import Device as device
from distgraph import amp, autograd, comm, cuda, nn, optim, profiler, utils  # noqa: E402
from distgraph import accelerator, multiprocessing  # noqa: E402
from distgraph.amp import autocast  # noqa: E402
from distgraph import linalg, random, testing  # noqa: E402
from distgraph.random import (Generator, default_generator, fork_rng, get_rng_state, initial_seed,  # noqa: E402
                              manual_seed, seed, set_rng_state)
from distgraph.types import *  # noqa: E402,F401,F403
from distgraph.config import *  # noqa: E402,F401,F403
from distgraph.config import backends  # noqa: E402

# ``torch.cuda.amp`` and ``torch.amp`` are the same mixed-precision module here.
cuda.amp = amp
_sys.modules[__name__ + ".cuda.amp"] = amp

# ``torch.distributed`` is ``dg.comm``: one module under both names, so that
# ``import distgraph.distributed as dist`` gives the very module ``dg.comm`` is.
distributed = comm
_sys.modules[__name__ + ".distributed"] = comm
# Scripts written for torchrun read RANK/LOCAL_RANK/WORLD_SIZE before init_process_group:
# under mpiexec/srun these are set from the launcher's own variables (MPI is not started here).
comm.env.export_torch_env()
from distgraph.serialization import load, save  # noqa: E402

bool = bool_  # noqa: A001 - PyTorch's name: dg.bool
float = float32  # noqa: A001
int = int32  # noqa: A001

__version__ = "0.1.0"
