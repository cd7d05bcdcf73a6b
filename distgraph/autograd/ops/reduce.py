"""Reductions over ``dim`` (an int, a tuple, or ``None`` for all) with ``keepdim``."""
from __future__ import annotations

import builtins
from collections import namedtuple

from distgraph import backend
from distgraph.autograd.function import Function
from distgraph.autograd.ops._common import as_tensor, autocast_float32, cast, normalize_dims, xp_of
from distgraph.autograd.tensor import Tensor, _make

__all__ = ["sum", "mean", "amax", "amin", "max", "min", "var", "std", "logsumexp", "prod", "norm",
           "argmax", "argmin", "all", "any"]

MinMax = namedtuple("MinMax", ["values", "indices"])  # torch.return_types.max / min


def _expand(gy, axes, keepdim, shape):
    """Broadcast a reduced gradient back to the input's ``shape``."""
    xp = xp_of(gy)
    if not keepdim:
        gy = gy.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    return xp.broadcast_to(gy, shape)


class Sum(Function):
    __slots__ = ("axes", "keepdim", "shape")

    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        self.shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        return (_expand(gy, self.axes, self.keepdim, self.shape),)


class Mean(Function):
    __slots__ = ("axes", "keepdim", "shape")

    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        self.shape = x.shape
        return x.mean(axis=self.axes, keepdims=self.keepdim)

    def backward(self, gy):
        n = 1
        for a in self.axes:
            n *= self.shape[a]
        return (_expand(gy / n, self.axes, self.keepdim, self.shape),)


class Amax(Function):
    """Max (or min) over ``axes``; equal maxima share the gradient evenly."""
    __slots__ = ("axes", "keepdim", "lesser", "x", "out")
    saves = (0,)
    saves_output = True

    def __init__(self, axes, keepdim, lesser=False):
        self.axes, self.keepdim, self.lesser = axes, keepdim, lesser

    def forward(self, x):
        self.x = x
        self.out = y = (x.min if self.lesser else x.max)(axis=self.axes, keepdims=self.keepdim)
        return y

    def backward(self, gy):
        x = self.x
        y = _expand(self.out, self.axes, self.keepdim, x.shape)
        mask = (x == y).astype(gy.dtype)
        count = mask.sum(axis=self.axes, keepdims=True)
        return (mask / count * _expand(gy, self.axes, self.keepdim, x.shape),)


class MaxDim(Function):
    """``max(dim)`` / ``min(dim)``: values and indices; the gradient goes to the index."""
    __slots__ = ("dim", "keepdim", "lesser", "shape", "idx")

    def __init__(self, dim, keepdim, lesser=False):
        self.dim, self.keepdim, self.lesser = dim, keepdim, lesser

    def forward(self, x):
        xp = xp_of(x)
        self.shape = x.shape
        idx = (xp.argmin if self.lesser else xp.argmax)(x, axis=self.dim)
        self.idx = xp.expand_dims(idx, self.dim)
        y = xp.take_along_axis(x, self.idx, axis=self.dim)
        return y if self.keepdim else y.squeeze(self.dim)

    def backward(self, gy):
        xp = xp_of(gy)
        d = self.dim
        if not self.keepdim:
            gy = xp.expand_dims(gy, d)
        pos = xp.arange(self.shape[d]).reshape([-1 if i == d else 1 for i in range(len(self.shape))])
        return (xp.where(pos == self.idx, gy, gy.dtype.type(0)),)


class Var(Function):
    __slots__ = ("axes", "keepdim", "correction", "x", "mu")
    saves = (0,)

    def __init__(self, axes, keepdim, correction):
        self.axes, self.keepdim, self.correction = axes, keepdim, correction

    def forward(self, x):
        self.x = x
        self.mu = mu = x.mean(axis=self.axes, keepdims=True)
        d = x - mu
        return (d * d).sum(axis=self.axes, keepdims=self.keepdim) / builtins.max(self._n() - self.correction, 0)

    def _n(self):
        n = 1
        for a in self.axes:
            n *= self.x.shape[a]
        return n

    def backward(self, gy):
        gy = _expand(gy, self.axes, self.keepdim, self.x.shape)
        return (gy * 2 * (self.x - self.mu) / (self._n() - self.correction),)


class LogSumExp(Function):
    __slots__ = ("axes", "keepdim", "x", "out")
    saves = (0,)

    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        xp = xp_of(x)
        self.x = x
        m = x.max(axis=self.axes, keepdims=True) if x.size else xp.zeros((1,) * x.ndim, x.dtype)
        m = xp.where(xp.isfinite(m), m, 0)  # all -inf rows stay -inf, not nan
        y = xp.log(xp.exp(x - m).sum(axis=self.axes, keepdims=True)) + m
        self.out = y
        return y if self.keepdim else y.squeeze(self.axes)

    def backward(self, gy):
        xp = xp_of(gy)
        gy = _expand(gy, self.axes, self.keepdim, self.x.shape)
        return (gy * xp.exp(self.x - self.out),)


class Prod(Function):
    """Product over one axis (or all); the gradient is the product of the *other*
    elements, computed with exclusive cumulative products so zeros are exact."""
    __slots__ = ("axis", "keepdim", "x")
    saves = (0,)

    def __init__(self, axis, keepdim):
        self.axis, self.keepdim = axis, keepdim

    def forward(self, x):
        self.x = x
        if self.axis is None:
            y = x.prod()
            return y.reshape((1,) * x.ndim) if self.keepdim else y
        return x.prod(axis=self.axis, keepdims=self.keepdim)

    def backward(self, gy):
        xp = xp_of(gy)
        x = self.x
        if self.axis is None:
            flat = x.reshape(-1)
            return ((_others_prod(xp, flat, 0) * gy.reshape(())).reshape(x.shape),)
        gy = gy if self.keepdim else xp.expand_dims(gy, self.axis)
        return (_others_prod(xp, x, self.axis) * gy,)


def _others_prod(xp, x, axis):
    x = xp.moveaxis(x, axis, -1)
    ones = xp.ones(x.shape[:-1] + (1,), x.dtype)
    left = xp.cumprod(xp.concatenate([ones, x[..., :-1]], axis=-1), axis=-1)
    right = xp.flip(xp.cumprod(xp.flip(xp.concatenate([x[..., 1:], ones], axis=-1), -1), axis=-1), -1)
    return xp.moveaxis(left * right, -1, axis)


class Norm2(Function):
    """Euclidean norm; the gradient at a zero vector is 0 (as PyTorch)."""
    __slots__ = ("axes", "keepdim", "x", "out")
    saves = (0,)
    saves_output = True

    def __init__(self, axes, keepdim):
        self.axes, self.keepdim = axes, keepdim

    def forward(self, x):
        self.x = x
        self.out = y = xp_of(x).sqrt((x * x).sum(axis=self.axes, keepdims=self.keepdim))
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        y = _expand(self.out, self.axes, self.keepdim, self.x.shape)
        safe = xp.where(y == 0, 1, y)
        return (_expand(gy, self.axes, self.keepdim, self.x.shape) * xp.where(y == 0, 0, self.x / safe),)


# ============================================================= public API
def _float_for(op, x):
    if not backend.is_floating(x.array.dtype):
        raise RuntimeError(f"{op}(): expected a floating point input, got {backend.dtype_name(x.array.dtype)}; "
                           "convert with .float() or pass dtype=")


def sum(input, dim=None, keepdim=False, *, dtype=None):
    """Sum over ``dim``; bool and integer inputs sum in int64 (as PyTorch)."""
    x = as_tensor(input)
    if dtype is not None:
        x = cast(x, backend.as_dtype(dtype))
    elif backend.category(x.array.dtype) < 2 and x.array.dtype != backend.int64:
        x = cast(x, backend.int64)
    return Sum(normalize_dims(dim, x.ndim, "sum"), keepdim).apply(x)


def mean(input, dim=None, keepdim=False):
    """Arithmetic mean over ``dim`` (floating inputs only, as PyTorch)."""
    x = as_tensor(input)
    _float_for("mean", x)
    return Mean(normalize_dims(dim, x.ndim, "mean"), keepdim).apply(x)


def _check_nonempty(op, x, axes):
    if builtins.any(x.array.shape[a] == 0 for a in axes) or (not axes and x.array.size == 0):
        raise IndexError(f"{op}(): expected a non-empty reduction, got shape {x.shape}; "
                         "reduce over a non-zero dimension")


def amax(input, dim=None, keepdim=False):
    """Max over ``dim`` (ties share the gradient evenly)."""
    x = as_tensor(input)
    axes = normalize_dims(dim if dim != () else None, x.ndim, "amax")
    _check_nonempty("amax", x, axes)
    return Amax(axes, keepdim).apply(x)


def amin(input, dim=None, keepdim=False):
    """Min over ``dim`` (ties share the gradient evenly)."""
    x = as_tensor(input)
    axes = normalize_dims(dim if dim != () else None, x.ndim, "amin")
    _check_nonempty("amin", x, axes)
    return Amax(axes, keepdim, lesser=True).apply(x)


def _minmax(op, input, dim, keepdim, lesser):
    x = as_tensor(input)
    if dim is None:
        return (amin if lesser else amax)(x)
    if isinstance(dim, Tensor):  # max(a, b): the elementwise form
        from distgraph.autograd.ops.elementwise import maximum, minimum
        return (minimum if lesser else maximum)(x, dim)
    (d,) = normalize_dims(dim, x.ndim, op)
    _check_nonempty(op, x, (d,))
    node = MaxDim(d, keepdim, lesser)
    values = node.apply(x)
    idx = node.idx if keepdim else node.idx.squeeze(d)
    return MinMax(values, _make(idx.astype(backend.int64, copy=False), None, False))


def max(input, dim=None, keepdim=False):
    """``max(x)``: the largest element; ``max(x, dim)``: ``(values, indices)``; ``max(x, y)``: elementwise."""
    return _minmax("max", input, dim, keepdim, False)


def min(input, dim=None, keepdim=False):
    """``min(x)``, ``min(x, dim)`` -> ``(values, indices)``, or ``min(x, y)`` elementwise."""
    return _minmax("min", input, dim, keepdim, True)


def _correction(correction, unbiased):
    return correction if unbiased is None else int(bool(unbiased))


def var(input, dim=None, keepdim=False, *, correction=1, unbiased=None):
    """``sum((x - mean)^2) / (N - correction)`` over ``dim``."""
    x = as_tensor(input)
    _float_for("var", x)
    return Var(normalize_dims(dim, x.ndim, "var"), keepdim, _correction(correction, unbiased)).apply(x)


def std(input, dim=None, keepdim=False, *, correction=1, unbiased=None):
    """``sqrt(var(x))``."""
    from distgraph.autograd.ops.elementwise import sqrt
    return sqrt(var(input, dim, keepdim, correction=correction, unbiased=unbiased))


def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(x)))`` over ``dim``, computed stably (max subtracted first)."""
    (x,) = autocast_float32(as_tensor(input))
    _float_for("logsumexp", x)
    return LogSumExp(normalize_dims(dim, x.ndim, "logsumexp"), keepdim).apply(x)


def prod(input, dim=None, keepdim=False):
    """Product of all elements, or over the single axis ``dim``."""
    x = as_tensor(input)
    if dim is not None:
        (dim,) = normalize_dims(dim, x.ndim, "prod")
    if backend.category(x.array.dtype) < 2 and x.array.dtype != backend.int64:
        x = cast(x, backend.int64)
    return Prod(dim, keepdim).apply(x)


def norm(input, p="fro", dim=None, keepdim=False):
    """Vector p-norm over ``dim`` (``p`` = 2/'fro', 1, inf, -inf, or any other number)."""
    from distgraph.autograd.ops.elementwise import abs, pow
    (x,) = autocast_float32(as_tensor(input))
    _float_for("norm", x)
    axes = normalize_dims(dim, x.ndim, "norm")
    if p in ("fro", 2, 2.0):
        return Norm2(axes, keepdim).apply(x)
    if p == float("inf"):
        return amax(abs(x), axes, keepdim)
    if p == float("-inf"):
        return amin(abs(x), axes, keepdim)
    if p == 1:
        return sum(abs(x), axes, keepdim)
    return pow(sum(pow(abs(x), p), axes, keepdim), 1.0 / p)


def _arg(op, input, dim, keepdim, lesser):
    x = as_tensor(input).array
    xp = xp_of(x)
    fn = xp.argmin if lesser else xp.argmax
    if dim is None:
        idx = fn(x.reshape(-1))
        idx = idx.reshape((1,) * x.ndim) if keepdim else idx
    else:
        (d,) = normalize_dims(dim, x.ndim, op)
        idx = fn(x, axis=d)
        idx = xp.expand_dims(idx, d) if keepdim else idx
    return _make(xp.asarray(idx).astype(backend.int64, copy=False), None, False)


def argmax(input, dim=None, keepdim=False):
    """Index of the largest element (of the flattened tensor when ``dim`` is None)."""
    return _arg("argmax", input, dim, keepdim, False)


def argmin(input, dim=None, keepdim=False):
    """Index of the smallest element (of the flattened tensor when ``dim`` is None)."""
    return _arg("argmin", input, dim, keepdim, True)


def all(input, dim=None, keepdim=False):
    x = as_tensor(input).array
    return _make(xp_of(x).asarray(x.all(axis=dim, keepdims=keepdim)), None, False)


def any(input, dim=None, keepdim=False):
    x = as_tensor(input).array
    return _make(xp_of(x).asarray(x.any(axis=dim, keepdims=keepdim)), None, False)
