"""distgraph: data-parallel training over an eager autograd engine (NumPy / CuPy, MPI / NCCL).

    import distgraph as dg
    x = dg.randn(3, requires_grad=True)
    (x * x).sum().backward()
"""
import sys as _sys


class _Alias:
    """A meta-path finder that makes ``prefix`` (and its submodules) other names of the very modules of
    ``real`` (also for ``python -m prefix.mod``, which asks the loader for the code): ``distgraph.launch``
    is ``distgraph_launch``; ``distgraph.distributed.X`` is ``distgraph.comm.X`` (torch.distributed's
    submodule paths, ``...distributed.elastic.multiprocessing.errors``, give distgraph.comm's modules,
    not second copies of them)."""

    def __init__(self, prefix, real):
        self.prefix, self.real = prefix, real

    def _real(self, fullname):
        return self.real + fullname[len(self.prefix):]

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.prefix and not fullname.startswith(self.prefix + "."):
            return None
        import importlib.util
        real = importlib.util.find_spec(self._real(fullname))
        if real is None:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, is_package=real.submodule_search_locations is not None)
        if real.submodule_search_locations is not None:
            spec.submodule_search_locations = list(real.submodule_search_locations)
        spec.origin, spec.has_location = real.origin, real.has_location
        return spec

    def create_module(self, spec):
        import importlib
        module = importlib.import_module(self._real(spec.name))
        spec.loader_state = module.__spec__  # the import system overwrites it: put back below
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state

    def get_code(self, fullname):  # runpy: ``python -m distgraph.launch``
        import importlib.util
        real = self._real(fullname)
        return importlib.util.find_spec(real).loader.get_code(real)


def _install_alias(prefix, real):
    for f in _sys.meta_path:   # (a loop: ``any`` is dg.any once the ops are imported below)
        if isinstance(f, _Alias) and f.prefix == prefix:
            return
    _sys.meta_path.insert(0, _Alias(prefix, real))


def _launcher_package():
    """The launcher is the top-level ``launch/`` folder, installed as the package ``distgraph_launch``
    (outside this package: it must start without importing any array code); ``distgraph.launch`` is
    another name for it.  From a plain checkout (nothing installed) it is loaded from the folder."""
    import importlib.util
    import os
    if importlib.util.find_spec("distgraph_launch") is None:
        folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch")
        init = os.path.join(folder, "__init__.py")
        if not os.path.isfile(init):
            return
        spec = importlib.util.spec_from_file_location("distgraph_launch", init, submodule_search_locations=[folder])
        module = importlib.util.module_from_spec(spec)
        module.LOADED_BY_DISTGRAPH = True  # a new interpreter cannot import it by name (see launch/cli.py)
        _sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    _install_alias(__name__ + ".launch", "distgraph_launch")


_launcher_package()

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
from distgraph import futures, linalg, random, testing  # noqa: E402
from distgraph import distributions  # noqa: E402 - torch.distributions' names
from distgraph import special  # noqa: E402 - torch.special's names
from distgraph import func  # noqa: E402 - torch.func (functional_call, grad, vjp, jacrev, vmap, ...)
from distgraph import onnx  # noqa: E402 - dg.onnx; the onnx package itself loads on the first export
from distgraph import export  # noqa: E402 - torch.export's Dim (for dg.onnx.export(dynamic_shapes=))
from distgraph.random import (Generator, default_generator, fork_rng, get_rng_state, initial_seed,  # noqa: E402
                              manual_seed, seed, set_rng_state)
from distgraph.types import *  # noqa: E402,F401,F403
from distgraph.config import *  # noqa: E402,F401,F403
from distgraph.config import backends  # noqa: E402
from distgraph.graph import compile  # noqa: E402,A004 - capture and replay (docs/graph.md)
from distgraph import _dynamo, compiler  # noqa: E402 - torch.compiler / torch._dynamo's names

# ``torch.cuda.amp`` and ``torch.amp`` are the same mixed-precision module here.
cuda.amp = amp
_sys.modules[__name__ + ".cuda.amp"] = amp

# ``torch.distributed`` is ``dg.comm``: one module under both names, so that
# ``import distgraph.distributed as dist`` gives the very module ``dg.comm`` is.
distributed = comm
_sys.modules[__name__ + ".distributed"] = comm
_install_alias(__name__ + ".distributed", __name__ + ".comm")
# Scripts written for torchrun read RANK/LOCAL_RANK/WORLD_SIZE before init_process_group:
# under mpiexec/srun these are set from the launcher's own variables (MPI is not started here).
comm.env.export_torch_env()
from distgraph.serialization import load, save  # noqa: E402

bool = bool_  # noqa: A001 - PyTorch's name: dg.bool
float = float32  # noqa: A001
int = int32  # noqa: A001

__version__ = "0.1.0"
