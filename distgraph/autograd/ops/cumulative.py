"""Scans along a dimension: cumsum, cumprod, cummax, cummin, logcumsumexp.

A 0-d input is scanned as a 1-element vector (PyTorch allows ``dim=0``/``-1`` on it).
"""
from __future__ import annotations

from collections import namedtuple

from distgraph import backend
from distgraph.autograd.function import Function
from distgraph.autograd.ops._common import as_tensor, cast, normalize_dims, xp_of
from distgraph.autograd.tensor import _make

__all__ = ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"]

cummax_result = namedtuple("cummax", ["values", "indices"])  # torch.return_types.cummax
cummin_result = namedtuple("cummin", ["values", "indices"])


def _rev_cumsum(xp, g, axis):
    """``out[i] = sum_{j >= i} g[j]`` along ``axis``."""
    return xp.flip(xp.cumsum(xp.flip(g, axis), axis=axis), axis)


class Cumsum(Function):
    """``y[i] = sum_{j <= i} x[j]``; ``gx[i] = sum_{j >= i} gy[j]``."""
    __slots__ = ("axis",)

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        return xp_of(x).cumsum(x, axis=self.axis, dtype=x.dtype)

    def backward(self, gy):
        return (_rev_cumsum(xp_of(gy), gy, self.axis),)


class Cumprod(Function):
    """``y[i] = prod_{j <= i} x[j]``.

    ``gx[i] = sum_{j >= i} gy[j] * prod_{k <= j, k != i} x[k]``.  Without zeros that is
    ``revcumsum(gy * y) / x``; with zeros it is ``L[i] * S[i]``, ``L`` the exclusive
    product before ``i`` and ``S[i] = gy[i] + x[i+1] * S[i+1]`` (a backward recurrence),
    which never divides.
    """
    __slots__ = ("axis", "x", "out")
    saves = (0,)
    saves_output = True

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.x = x
        self.out = y = xp_of(x).cumprod(x, axis=self.axis, dtype=x.dtype)
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        x, a = self.x, self.axis
        if not bool((x == 0).any()):
            return (_rev_cumsum(xp, gy * self.out, a) / x,)
        xm, gm = xp.moveaxis(x, a, -1), xp.moveaxis(gy, a, -1)
        n = xm.shape[-1]
        ones = xp.ones(xm.shape[:-1] + (1,), x.dtype)
        left = xp.cumprod(xp.concatenate([ones, xm[..., :-1]], axis=-1), axis=-1)
        s = xp.empty_like(gm)
        s[..., n - 1] = gm[..., n - 1]
        for i in range(n - 2, -1, -1):
            s[..., i] = gm[..., i] + xm[..., i + 1] * s[..., i + 1]
        return (xp.moveaxis(left * s, -1, a),)


class LogCumSumExp(Function):
    """``y[i] = log sum_{j <= i} exp(x[j])``.

    ``gx[j] = sum_{i >= j} gy[i] exp(x[j] - y[i])``; every exponent is <= 0, so the sum
    is formed in log space, the positive and negative parts of ``gy`` apart.
    """
    __slots__ = ("axis", "x", "out")
    saves = (0,)
    saves_output = True

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.x = x
        self.out = y = scan(xp_of(x).logaddexp, x, self.axis)
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        x, y, a = self.x, self.out, self.axis
        ninf = gy.dtype.type(-float("inf"))
        gx = xp.zeros_like(gy)
        live = y != ninf  # y[i] = -inf: every x[j <= i] is -inf, no gradient
        for sign in (1, -1):
            part = sign * gy
            with _quiet(xp):
                lp = xp.where((part > 0) & live, xp.log(xp.where(part > 0, part, 1)) - y, ninf)
            r = xp.flip(scan(xp.logaddexp, xp.flip(lp, a), a), a)
            gx = gx + sign * xp.exp(x + r)
        return (xp.where(x == ninf, 0, gx).astype(gy.dtype, copy=False),)


def _quiet(xp):
    import contextlib
    return xp.errstate(invalid="ignore", over="ignore") if hasattr(xp, "errstate") else contextlib.nullcontext()


def scan(f, x, axis):
    """Inclusive scan of the associative binary ufunc ``f`` along ``axis`` in log2(n)
    vectorised steps (``ufunc.accumulate`` is not available for every ufunc on CuPy)."""
    xp = xp_of(x)
    y = xp.moveaxis(x, axis, -1).copy()
    n, s = y.shape[-1], 1
    while s < n:
        y = xp.concatenate([y[..., :s], f(y[..., s:], y[..., :-s])], axis=-1)
        s *= 2
    return xp.moveaxis(y, -1, axis)


class TakeAlong(Function):
    """Values picked at ``idx`` along ``axis`` (cummax, sort, topk, median...); the
    gradient goes back to the index each value came from."""
    __slots__ = ("axis", "idx", "shape")

    def __init__(self, axis, idx):
        self.axis, self.idx = axis, idx

    def forward(self, x):
        self.shape = x.shape
        return xp_of(x).take_along_axis(x, self.idx, axis=self.axis)

    def backward(self, gy):
        return (add_along(gy, self.idx, self.axis, self.shape),)


def add_along(gy, idx, axis, shape):
    """Zeros of ``shape`` with ``gy`` added at ``idx`` along ``axis`` (the adjoint of
    ``take_along_axis``; repeated indices accumulate)."""
    xp = xp_of(gy)
    gx = xp.zeros(shape, gy.dtype)
    if gy.size == 0:
        return gx
    where = list(xp.ix_(*[xp.arange(n) for n in idx.shape]))
    where[axis] = idx
    xp.add.at(gx, tuple(where), gy)
    return gx


# ============================================================= public API
def _scan_input(op, input, dim, dtype=None):
    """The input as at least 1-D, the axis, and the original shape."""
    x = as_tensor(input)
    if dtype is not None:
        x = cast(x, backend.as_dtype(dtype))
    elif backend.category(x.array.dtype) < 2 and x.array.dtype != backend.int64 and op in ("cumsum", "cumprod"):
        x = cast(x, backend.int64)  # bool and integer scans accumulate in int64, as PyTorch
    (axis,) = normalize_dims(dim, x.ndim, op)
    shape = x.shape
    if x.ndim == 0:
        x = x.reshape(1)
    return x, axis, shape


def _restore(y, shape):
    return y.reshape(shape) if tuple(y.shape) != tuple(shape) else y


def cumsum(input, dim, *, dtype=None):
    """Cumulative sum along ``dim``: ``y[i] = x[0] + ... + x[i]`` (int inputs accumulate in int64)."""
    x, axis, shape = _scan_input("cumsum", input, dim, dtype)
    return _restore(Cumsum(axis).apply(x), shape)


def cumprod(input, dim, *, dtype=None):
    """Cumulative product along ``dim``; the gradient is exact where the input has zeros."""
    x, axis, shape = _scan_input("cumprod", input, dim, dtype)
    return _restore(Cumprod(axis).apply(x), shape)


def logcumsumexp(input, dim):
    """``log(cumsum(exp(x)))`` along ``dim``, computed without overflow (floating inputs)."""
    x, axis, shape = _scan_input("logcumsumexp", input, dim)
    if not backend.is_floating(x.array.dtype):
        raise NotImplementedError(f"logcumsumexp: expected a floating point input, got "
                           f"{backend.dtype_name(x.array.dtype)}; convert with .float()")
    return _restore(LogCumSumExp(axis).apply(x), shape)


def _cum_extreme(op, input, dim, lesser, result):
    x, axis, shape = _scan_input(op, input, dim)
    a = x.array
    xp = xp_of(a)
    if a.dtype == backend.bool_:
        run = scan(xp.logical_and if lesser else xp.logical_or, a, axis)
    else:
        run = scan(xp.minimum if lesser else xp.maximum, a, axis)
    pos = xp.arange(a.shape[axis]).reshape([-1 if i == axis else 1 for i in range(a.ndim)])
    hit = a == run
    if backend.is_floating(a.dtype):
        hit = hit | xp.isnan(a)  # a NaN starts a run of NaNs, as PyTorch
    idx = xp.where(hit, pos, 0)
    idx = scan(xp.maximum, idx.astype(backend.int64, copy=False), axis)
    values = TakeAlong(axis, idx).apply(x)
    return result(_restore(values, shape), _make(idx.reshape(shape), None, False))


def cummax(input, dim):
    """Running maximum along ``dim``: ``(values, indices)``; among equal values the latest index."""
    return _cum_extreme("cummax", input, dim, False, cummax_result)


def cummin(input, dim):
    """Running minimum along ``dim``: ``(values, indices)``; among equal values the latest index."""
    return _cum_extreme("cummin", input, dim, True, cummin_result)
