"""Index-driven ops: ``x[index]`` and ``x[index] = v`` with PyTorch's rules, the
gather/scatter families, index_add/copy/fill/put, masked_select/scatter, nonzero, take."""
from __future__ import annotations

import numpy as np

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.function import Function, unbroadcast
from distgraph.autograd.ops._common import as_tensor, cast, normalize_dims, xp_of
from distgraph.autograd.ops.shape import _as_view, expand, reshape
from distgraph.autograd.tensor import Tensor, _inplace, _make

__all__ = ["getitem", "setitem", "index_select", "gather", "scatter", "scatter_add", "scatter_reduce",
           "index_add", "index_copy", "index_fill", "index_put", "masked_select", "masked_scatter",
           "nonzero", "argwhere", "take", "take_along_dim", "put"]


# ====================================================== x[index], x[index] = v
def _index_item(it, like):
    """One entry of an index as (kind, value); kinds: int, slice, none, ellipsis, bool, adv, mask."""
    if it is None:
        return "none", None
    if it is Ellipsis:
        return "ellipsis", None
    if isinstance(it, slice):
        if it.step is not None and it.step.__index__() <= 0:
            raise ValueError(f"getitem: step must be greater than zero, got {it.step}; use flip() to reverse")
        return "slice", it
    if isinstance(it, (bool, np.bool_)):
        return "bool", bool(it)
    if isinstance(it, (int, np.integer)):
        return "int", int(it)
    if isinstance(it, Tensor):
        arr = it.array
    elif isinstance(it, (list, tuple)):
        arr = np.asarray(it)
        if arr.size == 0:
            arr = arr.astype(np.int64)
    elif isinstance(it, np.ndarray) or hasattr(it, "__cuda_array_interface__"):
        arr = it
    else:
        raise IndexError(f"getitem: only integers, slices, None, Ellipsis and integer or bool tensors are "
                         f"valid indices, got {type(it).__name__}")
    if arr.dtype == np.bool_ or arr.dtype == np.uint8:
        if arr.ndim == 0:
            return "bool", bool(arr)
        return "mask", backend.to_device(arr.astype(np.bool_, copy=False), like.device)
    if arr.dtype not in (np.int64, np.int32):
        raise IndexError(f"getitem: tensors used as indices must be int64, int32 or bool, got {arr.dtype}")
    if arr.ndim == 0:
        return "int", int(arr)
    return "adv", backend.to_device(arr, like.device)


def _split_index(index, x):
    """PyTorch's indexing as two NumPy steps: ``x[basic][adv]``.

    In PyTorch an integer selects (it drops its dim before any advanced index is
    looked at), so ``x[0, :, [0, 1]]`` has shape ``(n1, 2)`` where NumPy, which
    treats the integer as one more advanced index, gives ``(2, n1)``.  ``basic``
    holds the integers, slices and new axes (always a view); ``adv`` the tensor
    indices and masks (as integer arrays), with ``slice(None)`` elsewhere, or
    None when there are none.
    """
    items = [_index_item(it, x) for it in (index if isinstance(index, tuple) else (index,))]
    used = sum(1 if k in ("int", "slice", "adv") else v.ndim if k == "mask" else 0 for k, v in items)
    if used > x.ndim:
        raise IndexError(f"getitem: too many indices for a tensor of dimension {x.ndim} ({used} given)")
    basic, adv, dim, has_adv = [], [], 0, False
    for k, v in items:
        if k == "ellipsis":  # as in PyTorch, only the first "..." stands for the unindexed dims
            basic += [slice(None)] * (x.ndim - used)
            adv += [slice(None)] * (x.ndim - used)
            dim += x.ndim - used
            used = x.ndim
        elif k == "int":
            n = x.shape[dim]
            if not -n <= v < n:
                raise IndexError(f"getitem: index {v} is out of bounds for dimension {dim} with size {n}")
            basic.append(v)
            dim += 1
        elif k in ("slice", "adv"):
            basic.append(slice(None) if k == "adv" else v)
            adv.append(v if k == "adv" else slice(None))
            has_adv |= k == "adv"
            dim += 1
        elif k in ("none", "bool"):
            basic.append(None)
            adv.append(slice(0, 0) if v is False else slice(None))
            has_adv |= v is False  # x[False] is empty, and not a view
        else:  # a mask covers mask.ndim dims; NumPy would expand it the same way
            shape = x.shape[dim:dim + v.ndim]
            if v.shape != shape:
                raise IndexError(f"getitem: the mask of shape {v.shape} does not match the indexed dims "
                                 f"{shape} starting at dim {dim}")
            basic += [slice(None)] * v.ndim
            adv += list(v.nonzero())
            has_adv = True
            dim += v.ndim
    return tuple(basic) + (Ellipsis,), (tuple(adv) if has_adv else None)


class GetItem(Function):
    __slots__ = ("basic", "adv", "shape", "dtype")

    def __init__(self, basic, adv):
        self.basic, self.adv = basic, adv

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        y = x[self.basic]
        return y if self.adv is None else y[self.adv]

    def backward(self, gy):
        gx = xp_of(gy).zeros(self.shape, self.dtype)
        if self.adv is None:
            gx[self.basic] = gy
        else:
            xp_of(gy).add.at(gx[self.basic], self.adv, gy)  # repeated indices accumulate
        return (gx,)


def getitem(input, index):
    """``x[index]`` with PyTorch's rules: ints, slices (positive steps), None, Ellipsis, bools,
    integer tensors/lists and bool masks; a result of basic indexing is a view."""
    x = as_tensor(input)
    basic, adv = _split_index(index, x)
    try:
        out = GetItem(basic, adv).apply(x)
    except IndexError as e:
        raise IndexError(f"getitem: index {index!r} is invalid for a tensor of shape {x.shape}: {e}") from None
    return _as_view(out, x, basic) if adv is None else out


def _value_grad(gv, vs):
    """Sum the gradient of a broadcast value back to the value's shape ``vs``."""
    if len(vs) > gv.ndim:
        gv = gv.reshape((1,) * (len(vs) - gv.ndim) + gv.shape)
    return unbroadcast(gv, tuple(vs))


class SetItem(Function):
    __slots__ = ("basic", "adv", "vs")

    def __init__(self, basic, adv):
        self.basic, self.adv = basic, adv

    def forward(self, x, v):
        self.vs = v.shape if hasattr(v, "shape") else ()
        y = x.copy()
        part = y[self.basic]
        part[self.adv if self.adv is not None else ...] = v
        return y

    def backward(self, gy):
        gx = gy.copy()
        where = self.adv if self.adv is not None else ...
        gx[self.basic][where] = 0
        gv = _value_grad(gy[self.basic][where], self.vs) if self.needs_input_grad[1] else None
        return gx, gv


def setitem(input: Tensor, index, value):
    """``x[index] = value`` in place: same index rules as ``getitem``; ``value`` (a scalar or a
    tensor broadcastable to ``x[index]``) is cast to ``x``'s dtype; recorded when grad is needed."""
    basic, adv = _split_index(index, input)
    v = value
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        v = v.item()
    if not isinstance(v, Tensor) and type(v) not in (int, float, bool):
        raise TypeError(f"setitem: can't assign a {type(v).__name__} to a tensor; use a number or a tensor "
                        "(dg.tensor(value))")
    if isinstance(v, Tensor):
        v = as_tensor(backend.to_device(v.array, input.device)) if not v.requires_grad else v
        if v.array.dtype != input.array.dtype:
            if _int_tensor_index(index) or (adv is not None and v.ndim):
                raise RuntimeError(f"setitem: with tensor indices the value must have the tensor's dtype "
                                   f"{backend.dtype_name(input.array.dtype)}, got "
                                   f"{backend.dtype_name(v.array.dtype)}; convert it with .to(x.dtype)")
            v = cast(v, input.array.dtype)
    try:
        if grad_mode.is_grad_enabled() and (input.requires_grad or (isinstance(v, Tensor) and v.requires_grad)):
            return _inplace(input, lambda t, val: SetItem(basic, adv).apply(t, val), v)
        part = input.array[basic]
        part[adv if adv is not None else ...] = v.array if isinstance(v, Tensor) else v
    except ValueError as e:
        raise RuntimeError(f"setitem: the value of shape {getattr(v, 'shape', ())} does not broadcast to "
                           f"the indexed shape: {e}") from None
    input._version[0] += 1
    return input


def _int_tensor_index(index):
    """Whether ``index`` holds an integer tensor (or list) of at least one dim."""
    for it in index if isinstance(index, tuple) else (index,):
        arr = it.array if isinstance(it, Tensor) else np.asarray(it) if isinstance(it, list) else it
        if hasattr(arr, "dtype") and getattr(arr, "ndim", 0) and arr.dtype.kind in "iu" and arr.dtype != np.uint8:
            return True
    return False


# ============================================================ gather / scatter
def _long_index(op, index, like, error=RuntimeError):
    idx = as_tensor(index, like).array
    if idx.dtype.kind not in "iu":
        raise error(f"{op}: expected an int64 index tensor, got {idx.dtype}")
    return backend.to_device(idx, like.device)


def _gather_index(index, dim):
    """A full index tuple that reads position ``index[..., i, ...]`` along ``dim``."""
    xp = xp_of(index)
    return tuple(index if d == dim else
                 xp.arange(n).reshape([-1 if k == d else 1 for k in range(index.ndim)])
                 for d, n in enumerate(index.shape))


def _check_gather(op, x, idx, d, src=None, in_range=False):
    if idx.ndim != x.ndim and not (idx.ndim <= 1 and x.ndim <= 1):
        raise RuntimeError(f"{op}: index must have as many dims as the input ({x.ndim}), got {idx.ndim}")
    for k in range(idx.ndim):
        if k != d and idx.shape[k] > x.shape[k]:
            raise RuntimeError(f"{op}: index {tuple(idx.shape)} is larger than the input {x.shape} at dimension {k}")
        if src is not None and idx.shape[k] > src.shape[k]:
            raise RuntimeError(f"{op}: index {tuple(idx.shape)} is larger than src {src.shape} at dimension {k}")
    if not in_range:
        _check_index_range(op, idx, x.shape[d] if x.ndim else 1, d)


def _check_index_range(op, idx, n, d):
    """Index values in ``[-n, n)``: two host reads of the index (a synchronisation on a GPU)."""
    if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise RuntimeError(f"{op}: index values must be in [-{n}, {n}) (the size of dim {d}), "
                           f"got {int(idx.min())}..{int(idx.max())}")


def _prepare(op, input, dim, index, src=None, in_range=False):
    """Common checks of the gather/scatter family: (x, d, full index tuple, src, window);
    ``in_range``: the caller made the index values valid (no host check of them)."""
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, op)
    idx = _long_index(op, index, x)
    s = None
    if src is not None and not isinstance(src, (int, float, bool)):
        s = as_tensor(src, x)
        if s.array.dtype != x.array.dtype:
            raise RuntimeError(f"{op}: expected src of dtype {backend.dtype_name(x.array.dtype)} (self's), got "
                               f"{backend.dtype_name(s.array.dtype)}; convert it with .to(self.dtype)")
    _check_gather(op, x, idx, d, s, in_range)
    if x.ndim == 0:
        x0 = reshape(x, 1)
        return x0, 0, (idx.reshape(-1),), (reshape(s, -1) if s is not None else None), (slice(0, idx.size),)
    return x, d, _gather_index(idx, d), s, tuple(slice(0, n) for n in idx.shape)


class Gather(Function):
    __slots__ = ("idx", "shape", "dtype")

    def __init__(self, idx):
        self.idx = idx

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        return x[self.idx]

    def backward(self, gy):
        xp = xp_of(gy)
        gx = xp.zeros(self.shape, self.dtype)
        xp.add.at(gx, self.idx, gy)
        return (gx,)


def gather(input, dim, index, *, sparse_grad=False):
    """``out[i][j][k] = input[i][index[i][j][k]][k]`` (for ``dim=1``); the result has index's shape."""
    x, d, idx, _, _ = _prepare("gather", input, dim, index)
    out = Gather(idx).apply(x)
    return reshape(out, as_tensor(index).shape) if as_tensor(input).ndim == 0 else out


def gather_in_range(input, dim, index):
    """``gather`` for an index its caller already made valid (``nll_loss``'s clipped targets): the same
    op, without the host read of the index range (a synchronisation per call on a GPU)."""
    x, d, idx, _, _ = _prepare("gather", input, dim, index, in_range=True)
    return Gather(idx).apply(x)


def _ufunc_at(name, y, idx, v):
    """``ufunc.at`` where the array module has it; else rounds in which no target repeats."""
    xp = xp_of(y)
    ufunc = getattr(xp, name)
    if hasattr(ufunc, "at") and xp is np:
        ufunc.at(y, idx, v)
        return
    flat = xp.ravel_multi_index(tuple(xp.broadcast_to(i, v.shape).ravel() for i in idx), y.shape)
    v, order = v.ravel(), xp.argsort(flat, kind="stable")
    flat, v = flat[order], v[order]
    starts = xp.concatenate([xp.ones(1, bool), flat[1:] != flat[:-1]]) if flat.size else flat.astype(bool)
    first = xp.maximum.accumulate(xp.where(starts, xp.arange(flat.size), 0)) if flat.size else flat
    rank = xp.arange(flat.size) - first
    yf = y.reshape(-1)
    for r in range(int(rank.max()) + 1 if flat.size else 0):
        sel = rank == r
        yf[flat[sel]] = ufunc(yf[flat[sel]], v[sel])


class Scatter(Function):
    """``reduce`` in (None, sum, prod, mean, amax, amin); ``include_self`` as in scatter_reduce."""
    __slots__ = ("idx", "window", "reduce", "include_self", "src_shape", "x", "src", "y", "count")

    def __init__(self, idx, window, reduce=None, include_self=True):
        self.idx, self.window, self.reduce, self.include_self = idx, window, reduce, include_self

    def forward(self, x, src):
        xp = xp_of(x)
        y = x.copy()
        if not isinstance(src, (int, float, bool)):
            self.src_shape, src = src.shape, src[self.window]
        red = self.reduce
        if red is None:
            y[self.idx] = src
            return y
        if not self.include_self:
            init = {"sum": 0, "mean": 0, "prod": 1}.get(red)
            if init is None:
                info = xp.finfo(y.dtype) if y.dtype.kind == "f" else xp.iinfo(y.dtype)
                init = info.min if red == "amax" else info.max
            y[self.idx] = init
        _ufunc_at({"sum": "add", "mean": "add", "prod": "multiply", "amax": "maximum", "amin": "minimum"}[red],
                  y, self.idx, src)
        if red == "mean":
            count = xp.full(y.shape, 1 if self.include_self else 0, y.dtype)
            xp.add.at(count, self.idx, 1)
            self.count = xp.maximum(count, 1)
            y = y / self.count if y.dtype.kind == "f" else y // self.count
        self.x, self.src, self.y = x, src, y
        return y

    def backward(self, gy):
        xp, red = xp_of(gy), self.reduce
        hit = xp.zeros(gy.shape, bool)
        hit[self.idx] = True
        keep = ~hit if (red is None or not self.include_self) else xp.ones(gy.shape, bool)
        gx, gsrc = gy * keep, None
        if red == "mean":
            gy = gy / self.count
            gx = gy * keep
        elif red == "prod":
            gx, gs = self._prod_grads(gy, keep)
        elif red in ("amax", "amin"):
            x_tie = self.x == self.y  # PyTorch counts self among the ties even without include_self
            s_tie = self.src == self.y[self.idx]
            ties = x_tie.astype(gy.dtype)
            xp.add.at(ties, self.idx, s_tie.astype(gy.dtype))
            ties = xp.maximum(ties, 1)
            gx = gy * hit * (x_tie & keep) / ties + gy * ~hit
            gs = (gy / ties)[self.idx] * s_tie
        if self.needs_input_grad[1]:
            gsrc = xp.zeros(self.src_shape, gy.dtype)
            gsrc[self.window] = gs if red in ("prod", "amax", "amin") else gy[self.idx]
        return gx, gsrc

    def _prod_grads(self, gy, keep):
        """d prod / d element = the product of the others, exact when elements are zero."""
        xp = xp_of(gy)
        x_in = xp.where(keep, self.x, 1)
        nonzero = xp.where(x_in == 0, 1, x_in)
        zeros = (x_in == 0).astype(gy.dtype)
        s_nz = xp.where(self.src == 0, 1, self.src)
        xp.add.at(zeros, self.idx, (self.src == 0).astype(gy.dtype))
        _ufunc_at("multiply", nonzero, self.idx, s_nz)

        def others(v):
            z = zeros if v is x_in else zeros[self.idx]
            p = nonzero if v is x_in else nonzero[self.idx]
            return xp.where(v == 0, xp.where(z == 1, p, 0), xp.where(z == 0, p / xp.where(v == 0, 1, v), 0))
        gx = xp.where(keep, gy * others(x_in), gy * 0)
        hit = xp.zeros(gy.shape, bool)
        hit[self.idx] = True
        gx = xp.where(hit, gx, gy)
        return gx, gy[self.idx] * others(self.src)


class ScatterReading(Scatter):
    """Scatter whose backward reads the input and src values (prod, amax, amin)."""
    __slots__ = ()
    saves = (0, 1)


def _scatter(op, input, dim, index, src, reduce=None, include_self=True):
    x, d, idx, s, window = _prepare(op, input, dim, index, src)
    if s is not None and s.ndim != as_tensor(index).ndim and x.ndim:
        raise RuntimeError(f"{op}: src must have as many dims as index ({as_tensor(index).ndim}), got {s.ndim}")
    v = s if s is not None else x.array.dtype.type(src).item()
    cls = ScatterReading if reduce in ("prod", "amax", "amin") else Scatter
    out = cls(idx, window, reduce, include_self).apply(x, v)
    return reshape(out, ()) if as_tensor(input).ndim == 0 else out


def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    """Write ``src`` (a tensor, or the scalar ``value``) into ``input`` at ``index`` along ``dim``:
    ``out[i][index[i][j]] = src[i][j]`` (``dim=1``); ``reduce`` in ("add", "multiply") combines instead."""
    if src is None:
        src = value
    if src is None:
        raise TypeError("scatter: expected src (a tensor) or value (a number)")
    red = {None: None, "add": "sum", "multiply": "prod"}.get(reduce, "?")
    if red == "?":
        raise RuntimeError(f"scatter: reduce must be 'add' or 'multiply', got {reduce!r}")
    return _scatter("scatter", input, dim, index, src, red)


def scatter_add(input, dim, index, src):
    """``out[i][index[i][j]] += src[i][j]`` (``dim=1``), out of place; repeated indices add up."""
    return _scatter("scatter_add", input, dim, index, src, "sum")


def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    """Combine ``src`` into ``input`` at ``index`` along ``dim`` with ``reduce`` in sum, prod, mean,
    amax, amin; ``include_self=False`` leaves ``input``'s values out where something is scattered."""
    reduce = {"max": "amax", "min": "amin"}.get(reduce, reduce)
    if reduce not in ("sum", "prod", "mean", "amax", "amin"):
        raise RuntimeError(f"scatter_reduce: reduce must be one of sum, prod, mean, amax, amin, got {reduce!r}")
    return _scatter("scatter_reduce", input, dim, index, src, reduce, include_self)


# =========================================================== index_* family
def _dim_index(op, x, dim, index):
    (d,) = normalize_dims(dim, x.ndim, op)
    idx = _long_index(op, index, x, IndexError)
    if idx.ndim > 1:
        raise IndexError(f"{op}: expected a 0-d or 1-d index, got shape {tuple(idx.shape)}")
    idx = idx.reshape(-1)
    n = x.shape[d] if x.ndim else 1
    if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"{op}: index out of range for dimension {d} of size {n}: got {int(idx.min())}..."
                         f"{int(idx.max())}")
    return d, idx


def _along(d, idx, ndim):
    return (slice(None),) * d + (idx,) + (slice(None),) * (ndim - d - 1)


def index_select(input, dim, index):
    """Pick entries ``index`` (0-d or 1-d) along ``dim``; the result is a copy."""
    x = as_tensor(input)
    d, idx = _dim_index("index_select", x, dim, index)
    if x.ndim == 0:
        return getitem(reshape(x, 1), idx).reshape(())
    return GetItem((Ellipsis,), _along(d, idx, x.ndim)).apply(x)


class IndexPut(Function):
    """``y = x; y[idx] = v`` (or ``+= v`` with ``accumulate``); ``v`` broadcasts to ``x[idx]``."""
    __slots__ = ("idx", "accumulate", "vs")

    def __init__(self, idx, accumulate):
        self.idx, self.accumulate = idx, accumulate

    def forward(self, x, v):
        self.vs = v.shape if hasattr(v, "shape") else ()
        y = x.copy()
        if self.accumulate:
            xp_of(x).add.at(y, self.idx, v)
        else:
            y[self.idx] = v
        return y

    def backward(self, gy):
        gx = gy
        if not self.accumulate:
            gx = gy.copy()
            gx[self.idx] = 0
        return gx, _value_grad(gy[self.idx], self.vs) if self.needs_input_grad[1] else None


def _index_source(op, x, d, idx, source, alpha=1):
    s = as_tensor(source, x)
    if s.array.dtype != x.array.dtype:
        raise RuntimeError(f"{op}: expected source of dtype {backend.dtype_name(x.array.dtype)} (self's), got "
                           f"{backend.dtype_name(s.array.dtype)}")
    want = x.shape[:d] + (idx.size,) + x.shape[d + 1:] if x.ndim else (idx.size,) if s.ndim else ()
    if s.shape != want and s.numel() != 1 or (s.ndim != len(want) and s.ndim > 1):
        raise RuntimeError(f"{op}: expected source of shape {want}, got {s.shape}")
    return s * alpha if alpha != 1 else s


def index_add(input, dim, index, source, *, alpha=1):
    """``out[..., index[i], ...] += alpha * source[..., i, ...]`` along ``dim`` (repeats add up)."""
    x = as_tensor(input)
    d, idx = _dim_index("index_add", x, dim, index)
    s = _index_source("index_add", x, d, idx, source, alpha)
    return IndexPut(_along(d, idx, max(x.ndim, 1)), True).apply(x if x.ndim else reshape(x, 1), s).reshape(x.shape)


def index_copy(input, dim, index, source):
    """``out[..., index[i], ...] = source[..., i, ...]`` along ``dim``."""
    x = as_tensor(input)
    d, idx = _dim_index("index_copy", x, dim, index)
    s = _index_source("index_copy", x, d, idx, source)
    return IndexPut(_along(d, idx, max(x.ndim, 1)), False).apply(x if x.ndim else reshape(x, 1), s).reshape(x.shape)


def index_fill(input, dim, index, value):
    """``out[..., index[i], ...] = value`` along ``dim`` (``value`` a number or a 0-d tensor)."""
    x = as_tensor(input)
    d, idx = _dim_index("index_fill", x, dim, index)
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"index_fill: expected a 0-d value tensor, got shape {value.shape}")
        v = cast(value, x.array.dtype) if value.requires_grad else x.array.dtype.type(value.item()).item()
    else:
        v = x.array.dtype.type(value).item()
    return IndexPut(_along(d, idx, max(x.ndim, 1)), False).apply(x if x.ndim else reshape(x, 1), v).reshape(x.shape)


def index_put(input, indices, values, accumulate=False):
    """Out-of-place ``input[indices] = values`` (``+=`` with ``accumulate``); ``indices`` a tuple of tensors."""
    x = as_tensor(input)
    if not isinstance(indices, (tuple, list)):
        raise TypeError(f"index_put: expected a tuple of index tensors, got {type(indices).__name__}")
    basic, adv = _split_index(tuple(as_tensor(i, x) for i in indices), x)
    v = as_tensor(values, x)
    if v.array.dtype != x.array.dtype:
        raise RuntimeError(f"index_put: expected values of dtype {backend.dtype_name(x.array.dtype)}, got "
                           f"{backend.dtype_name(v.array.dtype)}")
    full = tuple(b if isinstance(b, int) else a for b, a in zip(basic[:-1], adv or (slice(None),) * len(basic)))
    return IndexPut(full, accumulate).apply(x, v)


# ===================================================== masks, nonzero, take
def _bool_mask(op, mask, like):
    m = as_tensor(mask, like)
    if m.array.dtype != np.bool_:
        raise RuntimeError(f"{op}: expected a bool mask, got {backend.dtype_name(m.array.dtype)}")
    return _make(backend.to_device(m.array, like.device), None, False)


def masked_select(input, mask):
    """The 1-d tensor of ``input``'s elements where ``mask`` (broadcast together) is true."""
    x = as_tensor(input)
    m = _bool_mask("masked_select", mask, x)
    shape = np.broadcast_shapes(x.shape, m.shape)
    return getitem(expand(x, shape), expand(m, shape).array)


class MaskedScatter(Function):
    __slots__ = ("mask", "src_shape", "count")

    def __init__(self, mask):
        self.mask = mask

    def forward(self, x, src):
        self.src_shape, self.count = src.shape, int(self.mask.sum())
        y = x.copy()
        y[self.mask] = src.reshape(-1)[:self.count]
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        gsrc = None
        if self.needs_input_grad[1]:
            gsrc = xp.zeros(int(np.prod(self.src_shape)), gy.dtype)
            gsrc[:self.count] = gy[self.mask]
            gsrc = gsrc.reshape(self.src_shape)
        return gy * ~self.mask, gsrc


def masked_scatter(input, mask, source):
    """Copy ``source``'s elements, in order, into ``input`` where ``mask`` (broadcast) is true."""
    x = as_tensor(input)
    m = _bool_mask("masked_scatter", mask, x)
    s = as_tensor(source, x)
    if s.array.dtype != x.array.dtype:
        raise RuntimeError(f"masked_scatter: expected source of dtype {backend.dtype_name(x.array.dtype)}, "
                           f"got {backend.dtype_name(s.array.dtype)}")
    shape = np.broadcast_shapes(x.shape, m.shape)
    marr = xp_of(m.array).broadcast_to(m.array, shape)
    if int(marr.sum()) > s.numel():
        raise RuntimeError(f"masked_scatter: the mask selects {int(marr.sum())} elements but source has "
                           f"only {s.numel()}")
    return MaskedScatter(marr).apply(expand(x, shape) if x.shape != shape else x, s)


def nonzero(input, *, as_tuple=False):
    """Indices of the non-zero elements: an int64 (n, ndim) tensor, or a tuple of ndim 1-d tensors."""
    x = as_tensor(input)
    xp = xp_of(x.array)
    arr = x.array if x.ndim else x.array.reshape(1)
    found = [i.astype(np.int64) for i in xp.nonzero(arr)]
    if as_tuple:
        return tuple(_make(i, None, False) for i in found)
    out = xp.stack(found, axis=1) if x.ndim else xp.zeros((len(found[0]), 0), np.int64)
    return _make(out, None, False)


def argwhere(input):
    """``nonzero(input)``: the (n, ndim) int64 tensor of indices of non-zero elements."""
    return nonzero(input)


def take(input, index):
    """``input.flatten()[index]``: the result has ``index``'s shape."""
    x = as_tensor(input)
    idx = _long_index("take", index, x)
    n = x.numel()
    if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"take: index out of range for a tensor of {n} elements, got {int(idx.min())}..."
                         f"{int(idx.max())}")
    return GetItem((Ellipsis,), (idx,)).apply(reshape(x, -1))


def take_along_dim(input, indices, dim=None):
    """``gather`` along ``dim`` after broadcasting ``input`` and ``indices`` on the other dims
    (``dim=None``: on the flattened input)."""
    x = as_tensor(input)
    idx = as_tensor(indices, x)
    if dim is None:
        return take(x, reshape(idx, -1))
    if idx.ndim != x.ndim:
        raise RuntimeError(f"take_along_dim: input and indices should have the same number of dims, got "
                           f"{x.ndim} and {idx.ndim}")
    (d,) = normalize_dims(dim, x.ndim, "take_along_dim")
    xs, ids = list(x.shape), list(idx.shape)
    xs[d] = ids[d] = 1
    b = list(np.broadcast_shapes(tuple(xs), tuple(ids)))
    xb, ib = b.copy(), b.copy()
    xb[d], ib[d] = x.shape[d], idx.shape[d]
    return gather(expand(x, xb), d, expand(idx, ib).array.copy())


def put(input, index, source, accumulate=False):
    """Out-of-place ``input.put_(index, source)``: writes ``source`` at flat positions ``index``."""
    x = as_tensor(input)
    idx = _long_index("put", index, x)
    s = as_tensor(source, x)
    if s.numel() != idx.size:
        raise RuntimeError(f"put: expected source with {idx.size} elements (as index), got {s.numel()}")
    if s.array.dtype != x.array.dtype:
        raise RuntimeError(f"put: expected source of dtype {backend.dtype_name(x.array.dtype)}, "
                           f"got {backend.dtype_name(s.array.dtype)}")
    n = x.numel()
    if idx.size and (int(idx.min()) < -n or int(idx.max()) >= n):
        raise IndexError(f"put: index out of range for a tensor of {n} elements")
    flat = IndexPut((idx.reshape(-1),), accumulate).apply(reshape(x, -1), reshape(s, -1))
    return reshape(flat, x.shape)
