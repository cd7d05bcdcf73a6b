"""Reductions over ``dim`` (an int, a tuple, or ``None`` for all) with ``keepdim``."""
from __future__ import annotations

import builtins
from collections import namedtuple

from distgraph import backend
from distgraph.autograd.function import Function
from distgraph.autograd.ops._common import as_tensor, autocast_float32, cast, normalize_dims, xp_of
from distgraph.autograd.tensor import Tensor, _make

__all__ = ["sum", "mean", "nansum", "nanmean", "amax", "amin", "aminmax", "max", "min", "var", "std", "var_mean",
           "std_mean", "logsumexp", "prod", "norm", "argmax", "argmin", "all", "any"]

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
aminmax_result = namedtuple("aminmax", ["min", "max"])  # torch.return_types.aminmax


def _float_for(op, x):
    if not backend.is_floating(x.array.dtype):
        raise RuntimeError(f"{op}(): expected a floating point input, got {backend.dtype_name(x.array.dtype)}; "
                           "convert with .float() or pass dtype=")


def _dim(op, dim, axis):
    """``axis=`` is PyTorch's (and NumPy's) alias of ``dim=``."""
    if axis is None:
        return dim
    if dim is not None:
        raise TypeError(f"{op}(): got both dim={dim!r} and its alias axis={axis!r}; pass one")
    return dim if axis is None else axis


def _axes(op, x, dim):
    """Axes to reduce: all for ``None`` or an empty list (as PyTorch); none on a 0-d
    tensor (``dim=0`` / ``-1`` are accepted there and reduce nothing)."""
    if dim is not None and hasattr(dim, "__len__") and not isinstance(dim, Tensor) and len(dim) == 0:
        dim = None
    axes = normalize_dims(dim, x.ndim, op)
    return axes if x.ndim else ()


def _one_axis(op, x, dim):
    if not isinstance(dim, int) and hasattr(dim, "__len__"):
        if len(dim) != 1:
            raise TypeError(f"{op}(): expected one dim (an int), got {dim!r}")
        dim = dim[0]
    (d,) = normalize_dims(dim, x.ndim, op)
    return d


def _int_to_long(x, dtype):
    if dtype is not None:
        return cast(x, backend.as_dtype(dtype))
    if backend.category(x.array.dtype) < 2 and x.array.dtype != backend.int64:
        return cast(x, backend.int64)  # bool and integer sums/products are int64, as PyTorch
    return x


def sum(input, dim=None, keepdim=False, *, dtype=None, axis=None):
    """Sum over ``dim``; bool and integer inputs sum in int64 (as PyTorch)."""
    x = _int_to_long(as_tensor(input), dtype)
    return Sum(_axes("sum", x, _dim("sum", dim, axis)), keepdim).apply(x)


def mean(input, dim=None, keepdim=False, *, dtype=None, axis=None):
    """Arithmetic mean over ``dim`` (floating inputs, or pass ``dtype=``)."""
    x = as_tensor(input)
    if dtype is not None:
        x = cast(x, backend.as_dtype(dtype))
    _float_for("mean", x)
    return Mean(_axes("mean", x, _dim("mean", dim, axis)), keepdim).apply(x)


def nansum(input, dim=None, keepdim=False, *, dtype=None, axis=None):
    """Sum over ``dim`` treating NaN as zero (NaN positions get no gradient)."""
    from distgraph.autograd.ops.elementwise import where
    x = as_tensor(input)
    if backend.is_floating(x.array.dtype):
        x = where(_make(xp_of(x.array).isnan(x.array), None, False), 0.0, x)
    return sum(x, _dim("nansum", dim, axis), keepdim, dtype=dtype)


def nanmean(input, dim=None, keepdim=False, *, dtype=None, axis=None):
    """Mean over ``dim`` of the non-NaN elements."""
    x = as_tensor(input)
    if dtype is not None:
        x = cast(x, backend.as_dtype(dtype))
    _float_for("nanmean", x)
    dim = _dim("nanmean", dim, axis)
    count = (~xp_of(x.array).isnan(x.array)).sum(axis=_axes("nanmean", x, dim), keepdims=keepdim)
    return nansum(x, dim, keepdim) / _make(xp_of(x.array).asarray(count, dtype=x.array.dtype), None, False)


def _check_nonempty(op, x, axes, dim_given=True):
    if x.array.size == 0 and not dim_given:
        raise RuntimeError(f"{op}(): expected a non-empty tensor, got shape {tuple(x.shape)}; "
                           "pass dim= to reduce over a non-zero dimension")
    if builtins.any(x.array.shape[a] == 0 for a in axes) or (not axes and x.array.size == 0):
        raise IndexError(f"{op}(): expected a non-empty reduction, got shape {tuple(x.shape)}; "
                         "reduce over a non-zero dimension")


def _extreme(op, input, dim, keepdim, axis, lesser):
    x = as_tensor(input)
    dim = _dim(op, dim, axis)
    axes = _axes(op, x, dim)
    _check_nonempty(op, x, axes, dim is not None and (not hasattr(dim, "__len__") or len(dim) > 0))
    return Amax(axes, keepdim, lesser).apply(x)


def amax(input, dim=(), keepdim=False, *, axis=None):
    """Max over ``dim`` (all dims by default; ties share the gradient evenly)."""
    return _extreme("amax", input, None if dim == () else dim, keepdim, axis, False)


def amin(input, dim=(), keepdim=False, *, axis=None):
    """Min over ``dim`` (all dims by default; ties share the gradient evenly)."""
    return _extreme("amin", input, None if dim == () else dim, keepdim, axis, True)


def aminmax(input, *, dim=None, keepdim=False):
    """``(min, max)`` over ``dim`` (or all elements)."""
    x = as_tensor(input)
    if x.array.size == 0 and (dim is None or x.shape[_one_axis("aminmax", x, dim)] == 0):
        raise RuntimeError(f"aminmax(): expected a non-empty reduction, got shape {x.shape}")
    if dim is not None:
        dim = _one_axis("aminmax", x, dim)
    return aminmax_result(amin(x, dim, keepdim), amax(x, dim, keepdim))


def _minmax(op, input, dim, keepdim, axis, lesser):
    x = as_tensor(input)
    dim = _dim(op, dim, axis)
    if dim is None:
        return (amin if lesser else amax)(x)
    if not isinstance(dim, (int, list, tuple)):  # max(a, b): the elementwise form
        from distgraph.autograd.ops.elementwise import maximum, minimum
        return (minimum if lesser else maximum)(x, dim)
    d = _one_axis(op, x, dim)
    x1 = x.reshape(1) if x.ndim == 0 else x
    _check_nonempty(op, x1, (d,))
    node = MaxDim(d, keepdim or x.ndim == 0, lesser)
    values = node.apply(x1)
    idx = node.idx if keepdim else node.idx.squeeze(d)
    if x.ndim == 0:
        values, idx = values.reshape(()), idx.reshape(())
    return MinMax(values, _make(idx.astype(backend.int64, copy=False), None, False))


def max(input, dim=None, keepdim=False, *, axis=None):
    """``max(x)``: the largest element; ``max(x, dim)``: ``(values, indices)``; ``max(x, y)``: elementwise."""
    return _minmax("max", input, dim, keepdim, axis, False)


def min(input, dim=None, keepdim=False, *, axis=None):
    """``min(x)``, ``min(x, dim)`` -> ``(values, indices)``, or ``min(x, y)`` elementwise."""
    return _minmax("min", input, dim, keepdim, axis, True)


def _var_args(op, dim, unbiased, correction, axis):
    """PyTorch's two spellings: ``var(x, dim, unbiased, keepdim)`` and ``var(x, dim, *, correction)``;
    ``var(x, True)`` passes ``unbiased`` in the place of ``dim``."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}(): got both unbiased= and correction=; pass one")
    corr = correction if correction is not None else (1 if unbiased is None else int(bool(unbiased)))
    return _dim(op, dim, axis), corr


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None):
    """``sum((x - mean)^2) / (N - correction)`` over ``dim`` (``correction=1`` by default)."""
    x = as_tensor(input)
    _float_for("var", x)
    dim, corr = _var_args("var", dim, unbiased, correction, axis)
    return Var(_axes("var", x, dim), keepdim, corr).apply(x)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None):
    """``sqrt(var(x))``."""
    from distgraph.autograd.ops.elementwise import sqrt
    return sqrt(var(input, dim, unbiased, keepdim, correction=correction, axis=axis))


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None):
    """``(var(x, dim), mean(x, dim))``."""
    dim, corr = _var_args("var_mean", dim, None if correction is not None else unbiased, correction, axis)
    return var(input, dim, keepdim=keepdim, correction=corr), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None):
    """``(std(x, dim), mean(x, dim))``."""
    dim, corr = _var_args("std_mean", dim, None if correction is not None else unbiased, correction, axis)
    return std(input, dim, keepdim=keepdim, correction=corr), mean(input, dim, keepdim)


def logsumexp(input, dim, keepdim=False):
    """``log(sum(exp(x)))`` over ``dim``, computed stably (max subtracted first); integers become float32."""
    x = as_tensor(input)
    if not backend.is_floating(x.array.dtype):
        x = cast(x, backend.float32)
    (x,) = autocast_float32(x)
    return LogSumExp(_axes("logsumexp", x, dim), keepdim).apply(x)


def prod(input, dim=None, keepdim=False, *, dtype=None):
    """Product of all elements, or over the single axis ``dim``."""
    x = _int_to_long(as_tensor(input), dtype)
    if dim is not None:
        if not isinstance(dim, int):
            raise TypeError(f"prod(): expected dim to be an int, got {dim!r}; reduce one dim at a time")
        dim = _one_axis("prod", x, dim)
        if x.ndim == 0:
            return Prod(None, False).apply(x)
    return Prod(dim, keepdim).apply(x)


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    """Vector p-norm over ``dim`` (``p`` = 2/'fro', 1, inf, -inf, 0 (count of non-zeros), any other
    number, or 'nuc'); a 2-tuple ``dim`` with 'fro'/'nuc' is a matrix norm."""
    from distgraph.autograd.ops.elementwise import abs, pow
    x = as_tensor(input)
    if dtype is not None:
        x = cast(x, backend.as_dtype(dtype))
    (x,) = autocast_float32(x)
    _float_for("norm", x)
    if p == "nuc":
        from distgraph.linalg import matrix_norm
        return matrix_norm(x, "nuc", (-2, -1) if dim is None else dim, keepdim)
    if p is None:
        p = 2
    axes = _axes("norm", x, dim)
    if p in ("fro", 2, 2.0):
        return Norm2(axes, keepdim).apply(x)
    if isinstance(p, str):
        raise RuntimeError(f"norm: expected p to be a number, 'fro' or 'nuc', got {p!r}")
    if p == float("inf"):
        return amax(abs(x), axes, keepdim)
    if p == float("-inf"):
        return amin(abs(x), axes, keepdim)
    if p == 0:
        return sum(x != 0, axes, keepdim, dtype=x.dtype)
    if p == 1:
        return sum(abs(x), axes, keepdim)
    return pow(sum(pow(abs(x), p), axes, keepdim), 1.0 / p)


def _arg(op, input, dim, keepdim, lesser):
    x = as_tensor(input).array
    xp = xp_of(x)
    fn = xp.argmin if lesser else xp.argmax
    if dim is None:
        if x.size == 0:
            raise IndexError(f"{op}(): expected a non-empty tensor, got shape {tuple(x.shape)}; pass dim=")
        idx = fn(x.reshape(-1))
        idx = xp.asarray(idx).reshape((1,) * x.ndim) if keepdim else idx
    else:
        d = _one_axis(op, as_tensor(input), dim)
        if x.ndim == 0:
            idx = xp.zeros((), backend.int64)
        else:
            if x.shape[d] == 0:
                raise IndexError(f"{op}(): expected a non-empty dim {d}, got shape {tuple(x.shape)}")
            idx = fn(x, axis=d)
            idx = xp.expand_dims(idx, d) if keepdim else idx
    return _make(xp.asarray(idx).astype(backend.int64, copy=False), None, False)


def argmax(input, dim=None, keepdim=False, *, axis=None):
    """Index of the largest element (of the flattened tensor when ``dim`` is None); ties: the first."""
    return _arg("argmax", input, _dim("argmax", dim, axis), keepdim, False)


def argmin(input, dim=None, keepdim=False, *, axis=None):
    """Index of the smallest element (of the flattened tensor when ``dim`` is None); ties: the first."""
    return _arg("argmin", input, _dim("argmin", dim, axis), keepdim, True)


def _logical(op, input, dim, keepdim, axis):
    x = as_tensor(input)
    a = x.array
    axes = _axes(op, x, _dim(op, dim, axis))
    y = getattr(a.astype(bool, copy=False), op)(axis=axes, keepdims=keepdim)
    y = xp_of(a).asarray(y)
    return _make(y.astype(a.dtype) if a.dtype == backend.uint8 else y, None, False)  # uint8 stays uint8


def all(input, dim=None, keepdim=False, *, axis=None):
    """True where every element over ``dim`` is non-zero (uint8 inputs give uint8)."""
    return _logical("all", input, dim, keepdim, axis)


def any(input, dim=None, keepdim=False, *, axis=None):
    """True where some element over ``dim`` is non-zero (uint8 inputs give uint8)."""
    return _logical("any", input, dim, keepdim, axis)
