"""Differentiable ops, grouped by family; every public function is re-exported here."""
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
from distgraph.autograd.ops import (activation, bitwise, cumulative, elementwise, index, linalg, math, reduce, shape,
                                    sort)

__all__ = (activation.__all__ + elementwise.__all__ + linalg.__all__ + reduce.__all__ + shape.__all__
           + math.__all__ + bitwise.__all__ + cumulative.__all__ + sort.__all__ + index.__all__)
from distgraph.autograd.ops.nn import log_softmax, softmax  # noqa: E402,F401

__all__ += ["log_softmax", "softmax"]
