"""``torch.linalg`` names: norms (vector, matrix, the dispatching ``norm``), singular values,
``cross``, ``vecdot``, ``matmul``."""
from __future__ import annotations

from distgraph import backend
from distgraph.autograd.function import Function
from distgraph.autograd.ops import amax, amin, cast, sum
from distgraph.autograd.ops._common import as_tensor, xp_of
from distgraph.autograd.ops.elementwise import abs
from distgraph.autograd.ops.linalg import cross as _cross, matmul
from distgraph.autograd.ops.reduce import norm as _vector_p_norm

__all__ = ["norm", "vector_norm", "matrix_norm", "svdvals", "cross", "vecdot", "matmul"]

_INF = float("inf")


class SingularValues(Function):
    """Singular values of (batched) matrices, descending; ``gA = U diag(gs) V^T``
    (well defined where the singular values are distinct)."""
    __slots__ = ("u", "vh")

    def forward(self, a):
        u, s, vh = xp_of(a).linalg.svd(a, full_matrices=False)
        self.u, self.vh = u, vh
        return s

    def backward(self, gs):
        return ((self.u * gs[..., None, :]) @ self.vh,)


def _floating(op, x, dtype):
    x = as_tensor(x)
    if dtype is not None:
        x = cast(x, backend.as_dtype(dtype))
    if not backend.is_floating(x.array.dtype):
        raise RuntimeError(f"linalg.{op}: expected a floating point input, got {backend.dtype_name(x.array.dtype)}; "
                           "convert with .float() or pass dtype=")
    return x


def svdvals(A):
    """Singular values of ``A`` (.., m, n), in descending order."""
    x = _floating("svdvals", A, None)
    if x.ndim < 2:
        raise RuntimeError(f"linalg.svdvals: expected a tensor of at least 2 dims, got {x.ndim}")
    return SingularValues().apply(x)


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """``(sum |x|^ord)^(1/ord)`` over ``dim`` (all elements when None); ``ord`` may be inf, -inf or 0."""
    x = _floating("vector_norm", x, dtype)
    if isinstance(ord, str):
        raise RuntimeError(f"linalg.vector_norm: expected a number for ord, got {ord!r}")
    if dim is None:  # all elements; keepdim keeps every dim as size 1
        y = _vector_p_norm(x.reshape(-1), ord, 0)
        return y.reshape(*([1] * x.ndim)) if keepdim else y
    return _vector_p_norm(x, ord, dim, keepdim)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """Matrix norm over the two dims ``dim``: 'fro', 'nuc', 1 / -1 (max / min column sum),
    inf / -inf (row sum), 2 / -2 (largest / smallest singular value)."""
    x = _floating("matrix_norm", A, dtype)
    if x.ndim < 2:
        raise RuntimeError(f"linalg.matrix_norm: expected a tensor of at least 2 dims, got {x.ndim}")
    d0, d1 = (d % x.ndim for d in dim)
    if d0 == d1:
        raise RuntimeError(f"linalg.matrix_norm: expected two different dims, got {tuple(dim)}")
    if ord == "fro":
        return _vector_p_norm(x, 2, (d0, d1), keepdim)
    if ord in ("nuc", 2, -2):
        s = svdvals(x.movedim((d0, d1), (-2, -1)))
        y = s.sum(-1) if ord == "nuc" else (amax if ord == 2 else amin)(s, -1)
        if keepdim:
            y = y.unsqueeze(min(d0, d1)).unsqueeze(max(d0, d1))
        return y
    if ord in (1, -1, _INF, -_INF):
        inner, outer = (d0, d1) if ord in (1, -1) else (d1, d0)
        sums = sum(abs(x), inner, keepdim=True)
        y = (amax if ord in (1, _INF) else amin)(sums, outer, keepdim=True)
        return y if keepdim else y.squeeze((d0, d1))
    raise RuntimeError(f"linalg.matrix_norm: expected ord in 'fro', 'nuc', 1, -1, 2, -2, inf, -inf, got {ord!r}")


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """A vector norm (``dim`` an int, or a 1-D input) or a matrix norm (``dim`` a pair, or a 2-D input);
    with ``ord=None`` and ``dim=None``: the 2-norm of all elements."""
    x = as_tensor(A)
    if isinstance(dim, int):
        dim = (dim,)
    if dim is None and ord is not None:
        if x.ndim not in (1, 2):
            raise RuntimeError(f"linalg.norm: with ord given and dim=None the input must be 1-D or 2-D, "
                               f"got {x.ndim} dims; pass dim")
        dim = tuple(range(x.ndim))
    if dim is not None and len(dim) == 2:
        return matrix_norm(x, "fro" if ord is None else ord, dim, keepdim, dtype=dtype)
    return vector_norm(x, 2 if ord is None else ord, dim, keepdim, dtype=dtype)


def cross(input, other, *, dim=-1):
    """Cross product of 3-vectors along ``dim`` (the last by default)."""
    return _cross(input, other, dim)


def vecdot(x, y, *, dim=-1):
    """``sum(x * y, dim)`` (real tensors)."""
    return sum(as_tensor(x) * y, dim)
