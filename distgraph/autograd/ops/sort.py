"""Sorting and selection: sort, argsort, msort, topk, kthvalue, median, nanmedian, mode,
quantile, unique, unique_consecutive, searchsorted, bucketize; and counting: count_nonzero, histc, bincount.

Orders are stable and NaN sorts as the largest value (as PyTorch).  Selected values are
differentiable: their gradient goes back to the index each value came from.  A 0-d
input is treated as a 1-element vector (PyTorch allows ``dim=0``/``-1`` on it).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from distgraph import backend
from distgraph.autograd.ops._common import as_tensor, normalize_dims, xp_of
from distgraph.autograd.ops.cumulative import TakeAlong, scan
from distgraph.autograd.ops.elementwise import where
from distgraph.autograd.tensor import Tensor, _make

__all__ = ["sort", "argsort", "msort", "topk", "kthvalue", "median", "nanmedian", "mode", "quantile", "unique",
           "unique_consecutive", "searchsorted", "bucketize", "count_nonzero", "histc", "bincount"]

# torch.return_types.*
sort_result = namedtuple("sort", ["values", "indices"])
topk_result = namedtuple("topk", ["values", "indices"])
kthvalue_result = namedtuple("kthvalue", ["values", "indices"])
median_result = namedtuple("median", ["values", "indices"])
nanmedian_result = namedtuple("nanmedian", ["values", "indices"])
mode_result = namedtuple("mode", ["values", "indices"])


def order(a, axis, descending=False):
    """Indices that sort ``a`` along ``axis``, stable; NaN last (first when descending)."""
    xp = xp_of(a)
    if not descending:
        return xp.argsort(a, axis=axis, kind="stable")
    # Stable descending: sort the reversed array ascending, then reverse back, so
    # equal elements keep their original order.
    n = a.shape[axis]
    return (n - 1) - xp.flip(xp.argsort(xp.flip(a, axis), axis=axis, kind="stable"), axis)


def _along(op, input, dim):
    """The input as at least 1-D, the normalised axis, and whether it was 0-d."""
    x = as_tensor(input)
    (axis,) = normalize_dims(dim, x.ndim, op)
    scalar = x.ndim == 0
    return (x.reshape(1) if scalar else x), axis, scalar


def _pick(x, idx, axis, keepdim=True, scalar=False):
    """Differentiable values at ``idx`` (int64, same ndim as x) and the indices as a tensor."""
    idx = idx.astype(backend.int64, copy=False)
    values = TakeAlong(axis, idx).apply(x)
    if not keepdim:
        values, idx = values.squeeze(axis), idx.squeeze(axis)
    if scalar:
        values, idx = values.reshape(()), idx.reshape(())
    return values, _make(idx, None, False)


def sort(input, dim=-1, descending=False, stable=False):
    """Sort along ``dim``: ``(values, indices)``.  Always stable (``stable`` is accepted)."""
    x, axis, scalar = _along("sort", input, dim)
    return sort_result(*_pick(x, order(x.array, axis, descending), axis, scalar=scalar))


def argsort(input, dim=-1, descending=False, stable=False):
    """Indices that sort ``input`` along ``dim`` (stable)."""
    return sort(input, dim, descending, stable).indices


def msort(input):
    """``sort(input, dim=0).values``."""
    return sort(input, 0).values


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (or smallest) elements along ``dim``: ``(values, indices)``, in sorted order."""
    x, axis, scalar = _along("topk", input, dim)
    n = x.array.shape[axis]
    if not 0 <= k <= n:
        raise RuntimeError(f"topk: expected 0 <= k <= {n} (the size of dim {axis}), got k={k}")
    idx = order(x.array, axis, descending=largest)
    idx = xp_of(idx).take(idx, range(k), axis=axis) if k < n else idx
    return topk_result(*_pick(x, idx, axis, scalar=scalar))


def _take_position(op, input, dim, keepdim, position, result):
    """The element at sorted ``position(sorted_array, axis)`` along ``dim``."""
    x, axis, scalar = _along(op, input, dim)
    a = x.array
    if a.shape[axis] == 0:
        raise IndexError(f"{op}: expected a non-empty dim {axis}, got shape {tuple(x.shape)}")
    xp = xp_of(a)
    idx = order(a, axis)
    pos = position(xp.take_along_axis(a, idx, axis=axis), axis)
    idx = xp.take_along_axis(idx, pos, axis=axis)
    return result(*_pick(x, idx, axis, keepdim, scalar))


def kthvalue(input, k, dim=-1, keepdim=False):
    """The ``k``-th smallest element (``k`` from 1) along ``dim``: ``(values, indices)``."""
    x = as_tensor(input)
    (axis,) = normalize_dims(dim, x.ndim, "kthvalue")
    n = x.shape[axis] if x.ndim else 1
    if n == 0:
        raise IndexError(f"kthvalue: expected a non-empty dim {axis}, got shape {tuple(x.shape)}")
    if not 1 <= k <= n:
        raise RuntimeError(f"kthvalue: expected 1 <= k <= {n} (the size of dim {axis}), got k={k}")

    def position(s, axis):
        shape = list(s.shape)
        shape[axis] = 1
        return xp_of(s).full(shape, k - 1, dtype=backend.int64)
    return _take_position("kthvalue", x, dim, keepdim, position, kthvalue_result)


def _median_position(ignore_nan):
    def position(s, axis):
        xp = xp_of(s)
        n = s.shape[axis]
        if backend.is_floating(s.dtype):
            valid = (~xp.isnan(s)).sum(axis=axis, keepdims=True)
            # with NaNs: the first NaN (median) or the lower median of the rest (nanmedian)
            pos = xp.maximum(valid - 1, 0) // 2 if ignore_nan else xp.where(valid < n, valid, (n - 1) // 2)
        else:
            shape = list(s.shape)
            shape[axis] = 1
            pos = xp.full(shape, (n - 1) // 2, dtype=backend.int64)
        return pos.astype(backend.int64, copy=False)
    return position


def _median(op, input, dim, keepdim, ignore_nan, result):
    x = as_tensor(input)
    if dim is None:
        if x.array.size == 0:
            return _make(xp_of(x.array).full((), float("nan"), x.array.dtype), None, False)
        return _take_position(op, x.reshape(-1), 0, False, _median_position(ignore_nan), result).values
    return _take_position(op, x, dim, keepdim, _median_position(ignore_nan), result)


def median(input, dim=None, keepdim=False):
    """The lower median: of all elements (a 0-d tensor) or along ``dim`` (``(values, indices)``);
    NaN if there is a NaN."""
    return _median("median", input, dim, keepdim, False, median_result)


def nanmedian(input, dim=None, keepdim=False):
    """``median`` ignoring NaNs (NaN only where every element is NaN)."""
    return _median("nanmedian", input, dim, keepdim, True, nanmedian_result)


def mode(input, dim=-1, keepdim=False):
    """The most frequent value along ``dim`` (the smallest among equally frequent ones) and the
    last index where it occurs: ``(values, indices)``."""
    x, axis, scalar = _along("mode", input, dim)
    a = x.array
    if a.shape[axis] == 0:
        raise IndexError(f"mode: expected a non-empty dim {axis}, got shape {tuple(x.shape)}")
    xp = xp_of(a)
    idx = xp.moveaxis(order(a, axis), axis, -1)
    s = xp.take_along_axis(xp.moveaxis(a, axis, -1), idx, axis=-1)
    n = s.shape[-1]
    i = xp.arange(n)
    change = s[..., 1:] != s[..., :-1]
    first = xp.concatenate([xp.ones(s.shape[:-1] + (1,), bool), change], axis=-1)
    last = xp.concatenate([change, xp.ones(s.shape[:-1] + (1,), bool)], axis=-1)
    start = scan(xp.maximum, xp.where(first, i, 0), -1)
    end = xp.flip(scan(xp.minimum, xp.flip(xp.where(last, i, n), -1), -1), -1)
    best = xp.argmax(end - start, axis=-1)[..., None]  # first maximum: the smallest value
    pick = xp.take_along_axis(idx, xp.take_along_axis(end, best, axis=-1), axis=-1)
    return mode_result(*_pick(x, xp.moveaxis(pick, -1, axis), axis, keepdim, scalar))


_QUANTILE_MODES = ("linear", "lower", "higher", "midpoint", "nearest")


def quantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    """The ``q``-quantiles of ``input`` over ``dim`` (of all elements when None): the sorted values at
    position ``q * (n - 1)``, between neighbours by ``interpolation`` (``linear``: ``lo + (hi - lo) *
    frac``; ``lower``, ``higher``, ``midpoint``, ``nearest`` with ties to even).  A 1-D ``q`` puts its
    dim first in the result.  A slice holding NaN gives NaN.  Differentiable (through the sort).

    Raises:
        RuntimeError: a non-float input, an empty input, ``q`` outside [0, 1], of another dtype or
            with more than 1 dim, or an unknown ``interpolation`` (PyTorch's checks).
    """
    x = as_tensor(input)
    if not backend.is_floating(x.dtype) or x.dtype == backend.float16:
        raise RuntimeError(f"quantile: expected a float32 or float64 input, got {backend.dtype_name(x.dtype)}; "
                           "convert with .float()")
    if x.numel() == 0:
        raise RuntimeError("quantile: expected a non-empty input, got shape " + str(tuple(x.shape)))
    if interpolation not in _QUANTILE_MODES:
        raise RuntimeError(f"quantile: expected interpolation one of {', '.join(_QUANTILE_MODES)}, "
                           f"got {interpolation!r}")
    if isinstance(q, Tensor):
        if q.dtype != x.dtype:
            raise RuntimeError(f"quantile: expected q of the input's dtype {backend.dtype_name(x.dtype)}, got "
                               f"{backend.dtype_name(q.dtype)}")
        if q.ndim > 1:
            raise RuntimeError(f"quantile: expected q a scalar or a 1-D tensor, got {q.ndim} dims")
        one_q, qs = q.ndim == 0, backend.to_device(q.array, backend.CPU).reshape(-1).astype(backend.float64)
    else:
        one_q, qs = True, np.asarray([float(q)])
    if ((qs < 0) | (qs > 1)).any():
        raise RuntimeError(f"quantile: expected q in the range [0, 1], got {qs.tolist()}")
    v = x.reshape(-1) if dim is None else x
    d = 0 if dim is None else normalize_dims(dim, max(x.ndim, 1), "quantile")[0]
    v = v.reshape(1) if v.ndim == 0 else v
    s = sort(v, d).values.movedim(d, -1)                   # NaN sorts last
    n = s.shape[-1]
    pos = qs * (n - 1)
    lo, hi = np.floor(pos).astype(np.int64), np.ceil(pos).astype(np.int64)
    if interpolation == "lower":
        hi = lo
    elif interpolation == "higher":
        lo = hi
    elif interpolation == "nearest":
        lo = hi = np.round(pos).astype(np.int64)           # NumPy's round is PyTorch's: half to even
    frac = np.full_like(pos, 0.5) if interpolation == "midpoint" else pos - lo
    xp = xp_of(s.array)
    lo_v, hi_v = s[..., xp.asarray(lo)], s[..., xp.asarray(hi)]
    out = lo_v + (hi_v - lo_v) * _make(xp.asarray(frac.astype(x.dtype)), None, False)
    nan = xp.isnan(s.array[..., -1:])
    if nan.any():   # the slice's answer (and gradient) is its NaN, sorted last: PyTorch's rule
        out = where(_make(nan, None, False), s[..., -1:], out)
    out = out.movedim(-1, 0)                               # (len(q), *reduced)
    if keepdim:
        out = out.reshape((len(qs),) + tuple(1 if dim is None or i == d else n_ for i, n_ in enumerate(x.shape)))
    return out[0] if one_q else out


def _int_tensor(arr, like):
    return _make(xp_of(like).asarray(arr).astype(backend.int64, copy=False), None, False)


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct values (sorted), or the distinct slices along ``dim``; optionally the index
    of each input element in the result and the count of each value.  Not differentiable."""
    x = as_tensor(input)
    a = x.array
    xp = xp_of(a)
    if dim is not None:
        (dim,) = normalize_dims(dim, x.ndim, "unique")
        if x.ndim == 0:
            raise IndexError("unique: expected a tensor with at least 1 dim when dim is given, got a 0-d tensor")
    values, inverse, counts = xp.unique(a if dim is not None else a.reshape(-1), return_inverse=True,
                                        return_counts=True, axis=dim)
    out = [_make(values, None, False)]
    if return_inverse:
        out.append(_int_tensor(inverse.reshape(a.shape if dim is None else (a.shape[dim],)), a))
    if return_counts:
        out.append(_int_tensor(counts, a))
    return out[0] if len(out) == 1 else tuple(out)


def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    """Collapse runs of equal consecutive values (or slices along ``dim``) to one."""
    x = as_tensor(input)
    a = x.array
    xp = xp_of(a)
    if dim is None:
        rows = a.reshape(-1, 1)
    else:
        (dim,) = normalize_dims(dim, x.ndim, "unique_consecutive")
        rows = xp.moveaxis(a, dim, 0).reshape(a.shape[dim], -1) if x.ndim else a.reshape(1, 1)
    n = rows.shape[0]
    starts = xp.concatenate([xp.ones(min(n, 1), bool), (rows[1:] != rows[:-1]).any(axis=1)])
    keep = xp.nonzero(starts)[0]
    if dim is None:
        values = a.reshape(-1)[keep]
    else:
        values = xp.take(a, keep, axis=dim) if x.ndim else a
    out = [_make(values, None, False)]
    if return_inverse:
        inv = xp.cumsum(starts) - 1
        out.append(_int_tensor(inv.reshape(a.shape) if dim is None else inv, a))
    if return_counts:
        out.append(_int_tensor(xp.diff(xp.concatenate([keep, xp.asarray([n])])), a))
    return out[0] if len(out) == 1 else tuple(out)


def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, sorter=None):
    """For each value, the index where it would be inserted into ``sorted_sequence``'s last dim to keep
    it sorted (before equal entries, or after them with ``right=True`` / ``side="right"``)."""
    seq = as_tensor(sorted_sequence)
    scalar = not isinstance(input, Tensor) and not hasattr(input, "shape") and not isinstance(input, (list, tuple))
    v = as_tensor(input, like=seq)
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(f"searchsorted: expected side 'left' or 'right', got {side!r}")
        if right and side == "left":
            raise RuntimeError("searchsorted: side='left' and right=True contradict each other; pass one of them")
    side = side or ("right" if right else "left")
    s, va = seq.array, v.array
    xp = xp_of(s)
    if sorter is not None:
        s = xp.take_along_axis(s, as_tensor(sorter).array.astype(backend.int64), axis=-1)
    if s.ndim == 0:
        raise RuntimeError("searchsorted: expected a sorted_sequence with at least 1 dim, got a 0-d tensor")
    if s.ndim == 1:
        idx = xp.searchsorted(s, va, side=side)
    else:
        if scalar or va.shape[:-1] != s.shape[:-1]:
            raise RuntimeError(f"searchsorted: expected sorted_sequence to be 1-D or to share the leading dims of "
                               f"the values, got {tuple(s.shape)} and {tuple(va.shape)}")
        rows_s, rows_v = s.reshape(-1, s.shape[-1]), va.reshape(-1, va.shape[-1])
        idx = xp.stack([xp.searchsorted(r, q, side=side) for r, q in zip(rows_s, rows_v)]).reshape(va.shape) \
            if rows_s.shape[0] else xp.zeros(va.shape, backend.int64)
    dtype = backend.int32 if out_int32 else backend.int64
    return _make(xp.asarray(idx).astype(dtype, copy=False).reshape(va.shape), None, False)


def bucketize(input, boundaries, *, out_int32=False, right=False):
    """The bucket of each value: ``i`` with ``boundaries[i-1] < x <= boundaries[i]``
    (``boundaries[i-1] <= x < boundaries[i]`` with ``right=True``); ``boundaries`` is 1-D, sorted."""
    b = as_tensor(boundaries)
    if b.ndim != 1:
        raise RuntimeError(f"bucketize: expected 1-D boundaries, got {b.ndim} dims; use searchsorted for N-D")
    return searchsorted(b, input, out_int32=out_int32, right=right)


# ------------------------------------------------------------------ counting
def count_nonzero(input, dim=None):
    """Number of non-zero elements over ``dim`` (int64)."""
    x = as_tensor(input)
    axes = normalize_dims(dim, x.ndim, "count_nonzero") if x.ndim else ()
    y = xp_of(x.array).asarray((x.array != 0).sum(axis=axes))
    return _make(y.astype(backend.int64, copy=False), None, False)


def histc(input, bins=100, min=0, max=0):
    """Histogram of ``bins`` equal-width bins over ``[min, max]`` (the data's range when both are 0);
    elements outside are ignored.  Not differentiable."""
    x = as_tensor(input)
    a = x.array
    if not backend.is_floating(a.dtype):
        raise NotImplementedError(f"histc: expected a floating point input, got {backend.dtype_name(a.dtype)}; "
                                  "convert with .float()")
    if bins <= 0:
        raise RuntimeError(f"histc: expected bins > 0, got {bins}")
    if min > max:
        raise RuntimeError(f"histc: expected min <= max, got min={min}, max={max}")
    xp = xp_of(a)
    lo, hi = float(min), float(max)
    if lo == hi and a.size:
        lo, hi = float(a.min()), float(a.max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    flat = a.reshape(-1).astype(backend.float64)
    inside = (flat >= lo) & (flat <= hi)
    b = xp.clip(((flat[inside] - lo) * bins / (hi - lo)).astype(backend.int64), 0, bins - 1)
    return _make(xp.bincount(b, minlength=bins).astype(a.dtype), None, False)


def bincount(input, weights=None, minlength=0):
    """``out[i]`` = the number of times ``i`` occurs in the 1-D non-negative integer ``input`` (int64), or
    the sum of ``weights`` at those places; ``max(input) + 1`` bins, at least ``minlength``.  With
    weights the result is float32 for float32 weights, float64 otherwise (as PyTorch).  Not
    differentiable (PyTorch has no derivative for it either)."""
    x = as_tensor(input)
    a = x.array
    if backend.category(a.dtype) != 1:
        raise NotImplementedError(f"bincount: expected an integer input, got {backend.dtype_name(a.dtype)}; "
                                  "convert with .long()")
    if a.ndim != 1 or (a.size and int(a.min()) < 0):
        raise RuntimeError(f"bincount: expected a 1-D tensor of non-negative integers, got shape {tuple(a.shape)}"
                           + (f" with minimum {int(a.min())}" if a.size and a.ndim == 1 else ""))
    if minlength < 0:
        raise RuntimeError(f"bincount: expected minlength >= 0, got {minlength}")
    xp = xp_of(a)
    if weights is None:
        return _int_tensor(xp.bincount(a, minlength=minlength), a)
    w = as_tensor(weights, like=x).array
    if w.shape != a.shape:
        raise RuntimeError(f"bincount: expected weights of the input's shape {tuple(a.shape)}, got {tuple(w.shape)}")
    dtype = backend.float32 if w.dtype == backend.float32 else backend.float64
    y = xp.bincount(a, weights=w.astype(backend.float64), minlength=minlength)
    return _make(y.astype(dtype), None, False)
