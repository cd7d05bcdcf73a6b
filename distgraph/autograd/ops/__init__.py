"""Differentiable ops, grouped by family; every public function is re-exported here.

Tensor's methods call the ops through this package (``_ops.add``): ``distgraph.autograd``
binds it into ``tensor.py`` once it has loaded, since every family imports ``Tensor``.  A
function a method calls must be in its family's ``__all__`` (tests/test_structure.py checks).
"""
from distgraph.autograd.ops.activation import *  # noqa: F401,F403
from distgraph.autograd.ops.elementwise import *  # noqa: F401,F403
from distgraph.autograd.ops.linalg import *  # noqa: F401,F403
from distgraph.autograd.ops.reduce import *  # noqa: F401,F403
from distgraph.autograd.ops.shape import *  # noqa: F401,F403
from distgraph.autograd.ops.math import *  # noqa: F401,F403
from distgraph.autograd.ops.bitwise import *  # noqa: F401,F403
from distgraph.autograd.ops.cumulative import *  # noqa: F401,F403
from distgraph.autograd.ops.sort import *  # noqa: F401,F403
from distgraph.autograd.ops.index import *  # noqa: F401,F403
import sys as _sys

# by module path: a family may export a function named like its file (``sort``)
__all__ = [name for fam in ("activation", "elementwise", "linalg", "reduce", "shape", "math", "bitwise", "cumulative",
                            "sort", "index")
           for name in _sys.modules[f"{__name__}.{fam}"].__all__]
from distgraph.autograd.ops.nn import log_softmax, softmax  # noqa: E402,F401

__all__ += ["log_softmax", "softmax"]
