"""Differentiable ops, grouped by family; every public function is re-exported here."""
from distgraph.autograd.ops.activation import *  # noqa: F401,F403
from distgraph.autograd.ops.elementwise import *  # noqa: F401,F403
from distgraph.autograd.ops.linalg import *  # noqa: F401,F403
from distgraph.autograd.ops.reduce import *  # noqa: F401,F403
from distgraph.autograd.ops.shape import *  # noqa: F401,F403
from distgraph.autograd.ops import activation, elementwise, linalg, reduce, shape

__all__ = activation.__all__ + elementwise.__all__ + linalg.__all__ + reduce.__all__ + shape.__all__
from distgraph.autograd.ops.nn import log_softmax, softmax  # noqa: E402,F401

__all__ += ["log_softmax", "softmax"]
