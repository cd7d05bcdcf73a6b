"""Shape and indexing ops: views, joins, splits, gathers and scatters."""
from __future__ import annotations

import math

import numpy as np

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.function import Function, unbroadcast
from distgraph.autograd.ops._common import as_tensor, normalize_dims, promote, xp_of
from distgraph.autograd.tensor import Tensor, _inplace

__all__ = ["reshape", "view", "flatten", "unflatten", "squeeze", "unsqueeze", "transpose", "permute",
           "expand", "repeat", "flip", "cat", "concat", "stack", "split", "chunk", "getitem", "setitem",
           "index_select", "gather", "scatter_add", "tril", "triu"]


def _as_view(out: Tensor, x: Tensor, index=None) -> Tensor:
    """Views share their base's version counter, so in-place writes through
    either one invalidate what the other saved.  ``index``: the basic index
    that made the view, kept (for a view of a non-view) so that in-place ops on
    the view can be replayed on the base."""
    if out.array.base is not None:
        out._version = x._version
        out._base = x if x._base is None else x._base
        out._view_index = index if x._base is None else None
    return out


def _sizes(args):
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


# ================================================================= views
class Reshape(Function):
    __slots__ = ("shape", "src")

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.src = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return (gy.reshape(self.src),)


class Permute(Function):
    __slots__ = ("dims",)

    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, gy):
        return (gy.transpose(np.argsort(self.dims)),)


class Expand(Function):
    __slots__ = ("shape", "src")

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.src = x.shape
        return xp_of(x).broadcast_to(x, self.shape)

    def backward(self, gy):
        return (unbroadcast(gy, self.src),)


def reshape(input, *shape):
    """A tensor with the same elements in ``shape`` (one entry may be -1)."""
    x = as_tensor(input)
    shape = _sizes(shape)
    try:
        return _as_view(Reshape(shape).apply(x), x)
    except ValueError:
        raise RuntimeError(f"reshape: shape {list(shape)} is invalid for an input of shape "
                           f"{x.shape} ({x.numel()} elements)") from None


view = reshape


def flatten(input, start_dim=0, end_dim=-1):
    x = as_tensor(input)
    if x.ndim == 0:
        return reshape(x, 1)
    s, e = normalize_dims(start_dim, x.ndim, "flatten")[0], normalize_dims(end_dim, x.ndim, "flatten")[0]
    return reshape(x, x.shape[:s] + (-1 if x.numel() else math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def unflatten(input, dim, sizes):
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, "unflatten")
    return reshape(x, x.shape[:d] + tuple(sizes) + x.shape[d + 1:])


def squeeze(input, dim=None):
    """Drop dimensions of size 1 (all, or those in ``dim`` that have size 1)."""
    x = as_tensor(input)
    axes = normalize_dims(dim, x.ndim, "squeeze") if x.ndim else ()
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if not (i in axes and n == 1)))


def unsqueeze(input, dim):
    """Insert a dimension of size 1 at ``dim`` (``-ndim-1 <= dim <= ndim``)."""
    x = as_tensor(input)
    if not -x.ndim - 1 <= dim <= x.ndim:
        raise IndexError(f"unsqueeze: dimension {dim} is out of range (expected {-x.ndim - 1} to {x.ndim})")
    d = dim % (x.ndim + 1)
    return reshape(x, x.shape[:d] + (1,) + x.shape[d:])


def permute(input, *dims):
    """Reorder dimensions: ``y.shape[i] = x.shape[dims[i]]``."""
    x = as_tensor(input)
    dims = _sizes(dims)
    if sorted(d % max(x.ndim, 1) for d in dims) != list(range(x.ndim)):
        raise RuntimeError(f"permute: dims {dims} are not a permutation of {x.ndim} dims")
    dims = tuple(d % x.ndim for d in dims)
    return _as_view(Permute(dims).apply(x), x)


def transpose(input, dim0, dim1):
    """Swap dimensions ``dim0`` and ``dim1``."""
    x = as_tensor(input)
    if x.ndim < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return x
    dims = list(range(x.ndim))
    a, b = normalize_dims(dim0, x.ndim, "transpose")[0], normalize_dims(dim1, x.ndim, "transpose")[0]
    dims[a], dims[b] = dims[b], dims[a]
    return permute(x, dims)


def expand(input, *sizes):
    """Broadcast to ``sizes`` without copying (-1 keeps a dimension)."""
    x = as_tensor(input)
    sizes = _sizes(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise RuntimeError(f"expand: the number of sizes ({len(sizes)}) must be >= the tensor's dims ({x.ndim})")
    shape = []
    for i, n in enumerate(sizes):
        old = x.shape[i - lead] if i >= lead else None
        if n == -1:
            if old is None:
                raise RuntimeError(f"expand: -1 is not allowed for the new leading dimension {i}")
            n = old
        elif old is not None and old != 1 and old != n:
            raise RuntimeError(f"expand: the expanded size ({n}) must match the existing size ({old}) "
                               f"at non-singleton dimension {i}; target sizes {list(sizes)}, tensor {x.shape}")
        shape.append(n)
    return _as_view(Expand(tuple(shape)).apply(x), x)


# ========================================================== copies and joins
class Repeat(Function):
    __slots__ = ("reps", "shape")

    def __init__(self, reps):
        self.reps = reps

    def forward(self, x):
        self.shape = x.shape
        return xp_of(x).tile(x, self.reps)

    def backward(self, gy):
        src = (1,) * (len(self.reps) - len(self.shape)) + self.shape
        inter = [v for r, n in zip(self.reps, src) for v in (r, n)]
        return (gy.reshape(inter).sum(axis=tuple(range(0, len(inter), 2))).reshape(self.shape),)


class Flip(Function):
    __slots__ = ("dims",)

    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return xp_of(x).flip(x, self.dims)

    def backward(self, gy):
        return (xp_of(gy).flip(gy, self.dims),)


class Cat(Function):
    __slots__ = ("dim", "sizes")

    def __init__(self, dim):
        self.dim = dim

    def forward(self, *xs):
        self.sizes = [x.shape[self.dim] for x in xs]
        return xp_of(xs[0]).concatenate(xs, axis=self.dim)

    def backward(self, gy):
        cuts = np.cumsum(self.sizes)[:-1].tolist()
        parts = xp_of(gy).split(gy, cuts, axis=self.dim)
        return tuple(p if need else None for p, need in zip(parts, self.needs_input_grad))


def repeat(input, *sizes):
    """Tile the tensor ``sizes[i]`` times along dimension ``i`` (copies)."""
    x = as_tensor(input)
    sizes = _sizes(sizes)
    if len(sizes) < x.ndim:
        raise RuntimeError(f"repeat: the number of repeats ({len(sizes)}) must be >= the tensor's dims ({x.ndim})")
    return Repeat(sizes).apply(x)


def flip(input, dims):
    """Reverse the order of elements along ``dims``."""
    x = as_tensor(input)
    return Flip(normalize_dims(dims, x.ndim, "flip")).apply(x)


def cat(tensors, dim=0):
    """Concatenate along an existing dimension; other dimensions must match."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    ts, _ = promote("cat", *tensors)
    ts = [as_tensor(t) for t in ts]
    nd = ts[0].ndim
    (d,) = normalize_dims(dim, nd, "cat")
    for i, t in enumerate(ts):
        if t.ndim != nd or t.shape[:d] + t.shape[d + 1:] != ts[0].shape[:d] + ts[0].shape[d + 1:]:
            raise RuntimeError(f"cat: sizes must match except in dimension {d}; tensor 0 has shape "
                               f"{ts[0].shape}, tensor {i} has shape {t.shape}")
    return Cat(d).apply(*ts)


concat = cat


def stack(tensors, dim=0):
    """Join tensors of one shape along a new dimension ``dim``."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise RuntimeError(f"stack: expects each tensor to be equal size, but got {tensors[0].shape} "
                               f"at entry 0 and {t.shape} at entry {i}")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def split(input, split_size_or_sections, dim=0):
    """Split into pieces of ``split_size`` (the last may be smaller) or of the listed sizes."""
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [min(step, n - i) for i in range(0, n, step)] if n else [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise RuntimeError(f"split: sizes {sizes} sum to {sum(sizes)}, expected dimension {d} size {n}")
    out, start = [], 0
    for s in sizes:
        index = (slice(None),) * d + (slice(start, start + s),)
        out.append(getitem(x, index))
        start += s
    return tuple(out)


def chunk(input, chunks, dim=0):
    """Split into ``chunks`` pieces of ``ceil(n / chunks)`` (the last may be smaller)."""
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, "chunk")
    return split(x, max(1, -(-x.shape[d] // chunks)), d)


# ================================================================ indexing
def _index(index, like: Tensor):
    """Turn tensors and lists in an index into arrays on ``like``'s device and
    boolean masks into integer arrays; report whether the index is basic."""
    items = index if isinstance(index, tuple) else (index,)
    out, basic = [], True
    for it in items:
        if isinstance(it, Tensor):
            it = it.array
        elif isinstance(it, (list, np.ndarray)):
            it = np.asarray(it)
        if hasattr(it, "dtype") and hasattr(it, "shape") and not isinstance(it, np.generic):
            it = backend.to_device(it, like.device)
            basic = False
            if it.dtype == np.bool_:
                out.extend(it.nonzero())
                continue
            if it.dtype.kind not in "iu":
                raise IndexError(f"tensors used as indices must be long, int or bool, got {it.dtype}")
        out.append(it)
    return tuple(out), basic


class GetItem(Function):
    __slots__ = ("index", "basic", "shape", "dtype")

    def __init__(self, index, basic):
        self.index, self.basic = index, basic

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, gy):
        xp = xp_of(gy)
        gx = xp.zeros(self.shape, self.dtype)
        if self.basic:
            gx[self.index] = gy
        else:
            xp.add.at(gx, self.index, gy)  # repeated indices accumulate
        return (gx,)


def getitem(input, index):
    """``x[index]`` with ints, slices, None, Ellipsis, integer tensors/arrays and boolean masks."""
    x = as_tensor(input)
    idx, basic = _index(index, x)
    try:
        out = GetItem(idx, basic).apply(x)
    except IndexError as e:
        raise IndexError(f"getitem: index {index!r} is invalid for a tensor of shape {x.shape}: {e}") from None
    return _as_view(out, x, idx) if basic else out


class SetItem(Function):
    __slots__ = ("index", "basic", "vs")

    def __init__(self, index, basic):
        self.index, self.basic = index, basic

    def forward(self, x, v):
        self.vs = v.shape if hasattr(v, "shape") else ()
        y = x.copy()
        y[self.index] = v
        return y

    def backward(self, gy):
        gx = gy.copy()
        gx[self.index] = 0
        gv = gy[self.index]
        return gx, unbroadcast(gv, self.vs) if self.needs_input_grad[1] else None


def setitem(input: Tensor, index, value):
    """``x[index] = value`` in place (recorded in the graph when grad is needed)."""
    idx, basic = _index(index, input)
    v = value
    if isinstance(v, Tensor) and (v.requires_grad or input.requires_grad) and grad_mode.is_grad_enabled():
        (_, v), _ = promote("setitem", input, v)
        return _inplace(input, lambda t, val: SetItem(idx, basic).apply(t, val), v)
    if input.requires_grad and grad_mode.is_grad_enabled():
        return _inplace(input, lambda t, val: SetItem(idx, basic).apply(t, val), v)
    input.array[idx] = v.array if isinstance(v, Tensor) else v
    input._version[0] += 1
    return input


def _gather_index(index, dim):
    """A full index tuple that reads position ``index[..., i, ...]`` along ``dim``."""
    xp = xp_of(index)
    return tuple(index if d == dim else
                 xp.arange(n).reshape([-1 if k == d else 1 for k in range(index.ndim)])
                 for d, n in enumerate(index.shape))


class IndexSelect(Function):
    __slots__ = ("dim", "index", "shape", "dtype")

    def __init__(self, dim, index):
        self.dim, self.index = dim, index

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        return xp_of(x).take(x, self.index, axis=self.dim)

    def backward(self, gy):
        xp = xp_of(gy)
        gx = xp.zeros(self.shape, self.dtype)
        xp.add.at(xp.moveaxis(gx, self.dim, 0), self.index, xp.moveaxis(gy, self.dim, 0))
        return (gx,)


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


class ScatterAdd(Function):
    __slots__ = ("idx", "src_shape", "window")

    def __init__(self, idx, window):
        self.idx, self.window = idx, window

    def forward(self, x, src):
        self.src_shape = src.shape
        y = x.copy()
        xp_of(x).add.at(y, self.idx, src[self.window])
        return y

    def backward(self, gy):
        gsrc = None
        if self.needs_input_grad[1]:
            gsrc = xp_of(gy).zeros(self.src_shape, gy.dtype)
            gsrc[self.window] = gy[self.idx]
        return gy, gsrc


def _long_index(op, index, like, dim):
    idx = as_tensor(index, like).array
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: expected an int64 index, got {idx.dtype}")
    return idx


def index_select(input, dim, index):
    """Pick entries ``index`` (1-D) along ``dim``."""
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, "index_select")
    idx = _long_index("index_select", index, x, d)
    if idx.ndim > 1:
        raise IndexError(f"index_select: expected a 1-D index, got shape {tuple(idx.shape)}")
    return IndexSelect(d, idx.reshape(-1)).apply(x)


def _check_gather_shape(op, x, idx, d, src=None):
    if idx.ndim != x.ndim:
        raise RuntimeError(f"{op}: index must have as many dims as the input ({x.ndim}), got {idx.ndim}")
    for k in range(x.ndim):
        if k != d and idx.shape[k] > x.shape[k]:
            raise RuntimeError(f"{op}: index {tuple(idx.shape)} is larger than the input {x.shape} "
                               f"at dimension {k}")
        if src is not None and idx.shape[k] > src.shape[k]:
            raise RuntimeError(f"{op}: index {tuple(idx.shape)} is larger than src {src.shape} at dimension {k}")


def gather(input, dim, index):
    """``out[i][j][k] = input[i][index[i][j][k]][k]`` (for ``dim=1``)."""
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, "gather")
    idx = _long_index("gather", index, x, d)
    _check_gather_shape("gather", x, idx, d)
    return Gather(_gather_index(idx, d)).apply(x)


def scatter_add(input, dim, index, src):
    """Out-of-place ``input.scatter_add_(dim, index, src)``: adds ``src`` at ``index`` along ``dim``."""
    (x, s), _ = promote("scatter_add", input, src)
    x, s = as_tensor(x), as_tensor(s, x)
    (d,) = normalize_dims(dim, x.ndim, "scatter_add")
    idx = _long_index("scatter_add", index, x, d)
    _check_gather_shape("scatter_add", x, idx, d, s)
    window = tuple(slice(0, n) for n in idx.shape)
    return ScatterAdd(_gather_index(idx, d), window).apply(x, s)


class Tri(Function):
    __slots__ = ("k", "upper")

    def __init__(self, k, upper):
        self.k, self.upper = k, upper

    def forward(self, x):
        xp = xp_of(x)
        return xp.triu(x, self.k) if self.upper else xp.tril(x, self.k)

    def backward(self, gy):
        xp = xp_of(gy)
        return (xp.triu(gy, self.k) if self.upper else xp.tril(gy, self.k),)


def tril(input, diagonal=0):
    """Lower triangle of the last two dims (the rest zeroed)."""
    return Tri(diagonal, False).apply(as_tensor(input))


def triu(input, diagonal=0):
    """Upper triangle of the last two dims (the rest zeroed)."""
    return Tri(diagonal, True).apply(as_tensor(input))
