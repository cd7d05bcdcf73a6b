"""Shape ops: views, joins, splits, diagonals, rolls and flips (indexing lives in ops/index.py).

ops/index.py builds on this module (``getitem`` returns views made by ``_as_view``), so the splits
here index through the Tensor (``x[i]``, ``x.index_select``) rather than importing it.
"""
from __future__ import annotations

import math

import numpy as np

from distgraph.autograd.function import Function, unbroadcast
from distgraph.autograd.ops._common import as_tensor, normalize_dims, promote, xp_of
from distgraph.autograd.tensor import Tensor, _make

__all__ = ["reshape", "view", "flatten", "unflatten", "squeeze", "unsqueeze", "transpose", "permute",
           "expand", "repeat", "flip", "cat", "concat", "stack", "split", "chunk", "tril", "triu",
           "roll", "diagonal", "diag_embed", "diag", "unfold", "repeat_interleave", "meshgrid", "narrow",
           "select", "fliplr", "flipud", "rot90", "movedim", "moveaxis", "swapaxes", "swapdims", "tile",
           "broadcast_to", "broadcast_shapes", "broadcast_tensors", "hstack", "vstack", "row_stack",
           "dstack", "column_stack", "unbind", "tensor_split", "hsplit", "vsplit", "dsplit",
           "atleast_1d", "atleast_2d", "atleast_3d", "block_diag", "cartesian_prod", "combinations"]


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
    # PyTorch's legacy rule: 1-d empty tensors are skipped (so `cat([torch.empty(0), x])` works)
    kept = [t for t in ts if t.shape != (0,)]
    if not kept:
        return Cat(0).apply(*ts)
    ts = kept
    nd = ts[0].ndim
    if nd == 0:
        raise RuntimeError("cat: zero-dimensional tensors cannot be concatenated; unsqueeze them or use stack")
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
        if step <= 0 and n:
            raise RuntimeError(f"split: expected a split size > 0, got {step}")
        sizes = [min(step, n - i) for i in range(0, n, step)] if n else [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise RuntimeError(f"split: sizes {sizes} sum to {sum(sizes)}, expected dimension {d} size {n}")
    out, start = [], 0
    for s in sizes:
        index = (slice(None),) * d + (slice(start, start + s),)
        out.append(x[index])
        start += s
    return tuple(out)


def chunk(input, chunks, dim=0):
    """Split into ``chunks`` pieces of ``ceil(n / chunks)`` (the last may be smaller)."""
    x = as_tensor(input)
    if chunks <= 0:
        raise RuntimeError(f"chunk: expected chunks > 0, got {chunks}")
    (d,) = normalize_dims(dim, x.ndim, "chunk")
    return split(x, max(1, -(-x.shape[d] // chunks)), d)


# ============================================================ triangles
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


# ============================================================ diagonals, rolls
def _diag_view(a, offset, d1, d2):
    """A writable view of a diagonal (NumPy hands out a read-only one)."""
    v = xp_of(a).diagonal(a, offset, d1, d2)
    if not v.flags.writeable:
        v.flags.writeable = True
    return v


class Diagonal(Function):
    __slots__ = ("offset", "d1", "d2", "shape", "dtype")

    def __init__(self, offset, d1, d2):
        self.offset, self.d1, self.d2 = offset, d1, d2

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        return _diag_view(x, self.offset, self.d1, self.d2)

    def backward(self, gy):
        gx = xp_of(gy).zeros(self.shape, self.dtype)
        _diag_view(gx, self.offset, self.d1, self.d2)[...] = gy
        return (gx,)


class DiagEmbed(Function):
    __slots__ = ("offset", "d1", "d2", "shape")

    def __init__(self, offset, d1, d2, shape):
        self.offset, self.d1, self.d2, self.shape = offset, d1, d2, shape

    def forward(self, x):
        y = xp_of(x).zeros(self.shape, x.dtype)
        _diag_view(y, self.offset, self.d1, self.d2)[...] = x
        return y

    def backward(self, gy):
        return (xp_of(gy).diagonal(gy, self.offset, self.d1, self.d2).copy(),)


class Roll(Function):
    __slots__ = ("shifts", "dims")

    def __init__(self, shifts, dims):
        self.shifts, self.dims = shifts, dims

    def forward(self, x):
        return xp_of(x).roll(x, self.shifts, self.dims)

    def backward(self, gy):
        return (xp_of(gy).roll(gy, tuple(-s for s in self.shifts), self.dims),)


class Unfold(Function):
    """Windows of ``size`` every ``step`` along ``dim``, as a new last dim (a strided view)."""
    __slots__ = ("dim", "size", "step", "shape", "dtype")

    def __init__(self, dim, size, step):
        self.dim, self.size, self.step = dim, size, step

    def forward(self, x):
        self.shape, self.dtype = x.shape, x.dtype
        d, n = self.dim, (x.shape[self.dim] - self.size) // self.step + 1
        shape = x.shape[:d] + (n,) + x.shape[d + 1:] + (self.size,)
        strides = x.strides[:d] + (x.strides[d] * self.step,) + x.strides[d + 1:] + (x.strides[d],)
        return xp_of(x).lib.stride_tricks.as_strided(x, shape, strides)

    def backward(self, gy):
        xp = xp_of(gy)
        gx = xp.zeros(self.shape, self.dtype)
        g = xp.moveaxis(gy, (self.dim, -1), (0, 1))
        where = xp.arange(g.shape[0])[:, None] * self.step + xp.arange(self.size)[None, :]
        xp.add.at(xp.moveaxis(gx, self.dim, 0), where, g)  # overlapping windows add up
        return (gx,)


def diagonal(input, offset=0, dim1=0, dim2=1):
    """The diagonal ``offset`` of the (dim1, dim2) planes, as a new last dim (a view)."""
    x = as_tensor(input)
    (a,), (b,) = normalize_dims(dim1, x.ndim, "diagonal"), normalize_dims(dim2, x.ndim, "diagonal")
    if a == b:
        raise RuntimeError(f"diagonal: dim1 and dim2 must differ, both are {a}")
    return _as_view(Diagonal(offset, a, b).apply(x), x)


def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """A tensor whose (dim1, dim2) planes have ``input``'s last dim on diagonal ``offset``, zeros elsewhere."""
    x = as_tensor(input)
    (a,), (b,) = normalize_dims(dim1, x.ndim + 1, "diag_embed"), normalize_dims(dim2, x.ndim + 1, "diag_embed")
    if a == b:
        raise RuntimeError(f"diag_embed: dim1 and dim2 must differ, both are {a}")
    m = (x.shape[-1] if x.ndim else 1) + abs(offset)
    shape = list(x.shape[:-1])
    for d in sorted((a, b)):
        shape.insert(d, m)
    return DiagEmbed(offset, a, b, tuple(shape)).apply(x if x.ndim else reshape(x, 1))


def diag(input, diagonal=0):
    """1-d -> the square matrix with ``input`` on diagonal ``diagonal``; 2-d -> that diagonal (a copy)."""
    x = as_tensor(input)
    if x.ndim == 1:
        return diag_embed(x, diagonal, 0, 1)
    if x.ndim == 2:
        return _copy(Diagonal(diagonal, 0, 1).apply(x))
    raise RuntimeError(f"diag: expected a 1-d or 2-d tensor, got {x.ndim}-d")


def _copy(x):
    from distgraph.autograd.ops.elementwise import clone
    return clone(x)


def roll(input, shifts, dims=None):
    """Shift elements ``shifts`` places along ``dims`` (wrapping round); ``dims=None``: the flattened tensor."""
    x = as_tensor(input)
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    if dims is None:
        if len(shifts) != 1:
            raise RuntimeError(f"roll: with dims=None expected one shift, got {len(shifts)}")
        return reshape(Roll(shifts, None).apply(reshape(x, -1)), x.shape)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"roll: expected as many shifts as dims, got {len(shifts)} and {len(dims)}")
    dims = tuple(normalize_dims(d, x.ndim, "roll")[0] for d in dims)
    return Roll(shifts, dims).apply(x)


def unfold(input, dimension, size, step):
    """``Tensor.unfold``: every window of ``size`` elements, ``step`` apart, along ``dimension``."""
    x = as_tensor(input)
    if x.ndim == 0:
        x = reshape(x, 1)
    (d,) = normalize_dims(dimension, x.ndim, "unfold")
    if step <= 0:
        raise RuntimeError(f"unfold: expected step > 0, got {step}")
    if size > x.shape[d] or size < 0:
        raise RuntimeError(f"unfold: expected 0 <= size <= {x.shape[d]} (the size of dim {d}), got {size}")
    return _as_view(Unfold(d, size, step).apply(x), x)


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Repeat each element ``repeats`` times (an int, or one count per element) along ``dim``
    (``dim=None``: the flattened tensor); ``repeat_interleave(counts)`` repeats ``arange(len(counts))``."""
    x = as_tensor(input)
    xp = xp_of(x.array)
    if repeats is None:
        return repeat_interleave(_from_array(xp.arange(x.numel()), x), x)
    if dim is None:
        x, d = reshape(x, -1), 0
    else:
        (d,) = normalize_dims(dim, x.ndim, "repeat_interleave")
    n = x.shape[d] if x.ndim else 1
    reps = as_tensor(repeats, x).array if not isinstance(repeats, int) else repeats
    if not isinstance(reps, int):
        if reps.dtype.kind not in "iu":
            raise RuntimeError(f"repeat_interleave: repeats must be integers, got {reps.dtype}")
        if reps.ndim > 1 or (reps.size != 1 and reps.size != n):
            raise RuntimeError(f"repeat_interleave: expected one repeat or {n} (the size of dim {d}), "
                               f"got shape {tuple(reps.shape)}")
        reps = reps.reshape(-1)
        if reps.size == 1:
            reps = int(reps[0])
    if (reps < 0) if isinstance(reps, int) else bool((reps < 0).any()):
        raise RuntimeError("repeat_interleave: repeats must be non-negative")
    return (x if x.ndim else reshape(x, 1)).index_select(d, _from_array(xp.repeat(xp.arange(n), reps), x))


def _from_array(arr, like):
    return _make(arr, None, False)


def meshgrid(*tensors, indexing=None):
    """Coordinate grids: output ``i`` holds ``tensors[i]`` along dim ``i`` ("ij", the default) or with
    the first two dims swapped ("xy", Cartesian)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    indexing = indexing or "ij"
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    ts = [as_tensor(t) for t in tensors]
    for t in ts:
        if t.ndim > 1:
            raise RuntimeError(f"meshgrid: expected 0-d or 1-d tensors, got shape {t.shape}")
    shape = [t.numel() for t in ts]
    pos = list(range(len(ts)))
    if indexing == "xy" and len(ts) >= 2:
        shape[0], shape[1], pos[0], pos[1] = shape[1], shape[0], 1, 0
    return tuple(expand(reshape(t, [-1 if k == p else 1 for k in range(len(ts))]), shape) for t, p in zip(ts, pos))


def block_diag(*tensors):
    """The tensors (scalars and vectors as one-row matrices) on the diagonal of one matrix, zeros
    elsewhere; the dtype is the promoted one, as PyTorch's."""
    ts = [as_tensor(t) for t in tensors]
    for i, t in enumerate(ts):
        if t.ndim > 2:
            raise RuntimeError(f"block_diag: input tensors must have 2 or fewer dimensions; input {i} has "
                               f"{t.ndim} dimensions (shape {tuple(t.shape)})")
    if not ts:
        return _make(np.zeros((1, 0), dtype=np.float32), None, False)
    ts = [reshape(t, (1, -1)) if t.ndim < 2 else t for t in ts]
    ts, _ = promote("block_diag", *ts)
    width, left, rows = sum(t.shape[1] for t in ts), 0, []
    for t in ts:
        xp = xp_of(t.array)
        r, c = t.shape
        pad = [_make(xp.zeros((r, n), dtype=t.dtype), None, False) for n in (left, width - left - c)]
        rows.append(cat([pad[0], t, pad[1]], 1))
        left += c
    return cat(rows, 0)


def _vector(name, t):
    if t.ndim != 1:
        raise RuntimeError(f"{name}: expected a 1D vector, got shape {list(t.shape)}")
    return t


def cartesian_prod(*tensors):
    """Every combination of one element from each 1D tensor, as rows (a 1D tensor alone: itself)."""
    ts = [_vector("cartesian_prod", as_tensor(t)) for t in tensors]
    if len(ts) == 1:
        return ts[0]
    if len({t.dtype for t in ts}) > 1:
        raise RuntimeError(f"cartesian_prod: expected tensors of one dtype (as meshgrid), got "
                           f"{', '.join(str(t.dtype) for t in ts)}")
    return stack([reshape(g, (-1,)) for g in meshgrid(*ts, indexing="ij")], 1)


def combinations(input, r=2, with_replacement=False):
    """The length-``r`` combinations of a 1D tensor's elements, as rows, in ``itertools``' order."""
    import itertools
    x = _vector("combinations", as_tensor(input))
    if r == 0:
        return _make(xp_of(x.array).zeros((0,), dtype=x.dtype), None, False)
    pick = itertools.combinations_with_replacement if with_replacement else itertools.combinations
    idx = np.array(list(pick(range(x.shape[0]), r)), dtype=np.int64).reshape(-1, r)
    return x[_make(xp_of(x.array).asarray(idx), None, False)]


def narrow(input, dim, start, length):
    """The view ``input[..., start:start + length, ...]`` along ``dim``."""
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, "narrow")
    n, start = x.shape[d], int(start)
    if not -n <= start <= n:
        raise IndexError(f"narrow: start must be in [-{n}, {n}] (the size of dim {d}), got {start}")
    start %= max(n, 1) if start < 0 else n + 1
    if length < 0 or start + length > n:
        raise RuntimeError(f"narrow: start ({start}) + length ({length}) must be within dim {d}'s size ({n})")
    return x[(slice(None),) * d + (slice(start, start + length),)]


def select(input, dim, index):
    """``input[..., index, ...]`` along ``dim`` (the dim is removed; a view)."""
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, "select")
    return x[(slice(None),) * d + (int(index),)]


# ========================================================== flips and moves
def fliplr(input):
    """Reverse dim 1 (left/right); needs at least 2 dims."""
    x = as_tensor(input)
    if x.ndim < 2:
        raise RuntimeError(f"fliplr: expected a tensor of at least 2 dims, got {x.ndim}")
    return flip(x, 1)


def flipud(input):
    """Reverse dim 0 (up/down); needs at least 1 dim."""
    x = as_tensor(input)
    if x.ndim < 1:
        raise RuntimeError("fliplr: expected a tensor of at least 1 dim, got a 0-d tensor")
    return flip(x, 0)


def rot90(input, k=1, dims=(0, 1)):
    """Rotate by 90 degrees ``k`` times in the plane ``dims``, from the first towards the second."""
    x = as_tensor(input)
    dims = tuple(dims)
    if len(dims) != 2:
        raise RuntimeError(f"rot90: expected 2 rotation dims, got {len(dims)}")
    if x.ndim < 2:
        raise RuntimeError(f"rot90: expected a tensor of at least 2 dims, got {x.ndim}")
    a, b = (normalize_dims(d, x.ndim, "rot90")[0] for d in dims)
    if a == b:
        raise RuntimeError(f"rot90: expected the rotation dims to differ, got {a} and {b}")
    k %= 4
    if k == 1:
        return transpose(flip(x, b), a, b)
    if k == 2:
        return flip(x, (a, b))
    if k == 3:
        return transpose(flip(x, a), a, b)
    return _copy(x)


def movedim(input, source, destination):
    """Move dims ``source`` to positions ``destination``; the others keep their order."""
    x = as_tensor(input)
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: expected as many source as destination dims, got {len(src)} and {len(dst)}")
    src = [normalize_dims(d, x.ndim, "movedim")[0] for d in src]
    dst = [normalize_dims(d, x.ndim, "movedim")[0] for d in dst]
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise RuntimeError(f"movedim: repeated dims in source {src} or destination {dst}")
    order = [None] * x.ndim
    for s_, d_ in zip(src, dst):
        order[d_] = s_
    rest = iter(d for d in range(x.ndim) if d not in src)
    return permute(x, [o if o is not None else next(rest) for o in order])


moveaxis = movedim


def swapaxes(input, axis0, axis1):
    """``transpose(input, axis0, axis1)``."""
    return transpose(input, axis0, axis1)


swapdims = swapaxes


def tile(input, dims):
    """``repeat`` with ``dims`` padded with leading 1s to the tensor's number of dims."""
    x = as_tensor(input)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    return repeat(x, (1,) * (x.ndim - len(dims)) + dims)


def broadcast_shapes(*shapes):
    """The shape that all ``shapes`` broadcast to."""
    try:
        return tuple(np.broadcast_shapes(*[(s,) if isinstance(s, int) else tuple(s) for s in shapes]))
    except ValueError:
        raise RuntimeError(f"broadcast_shapes: shapes {list(shapes)} cannot be broadcast together") from None


def broadcast_to(input, size):
    """``expand(input, size)``: a broadcast view."""
    return expand(input, size)


def broadcast_tensors(*tensors):
    """Expand every tensor to their common broadcast shape."""
    ts = [as_tensor(t) for t in tensors]
    shape = broadcast_shapes(*[t.shape for t in ts])
    return tuple(expand(t, shape) for t in ts)


# ========================================================== stacks and splits
def _tensor_list(tensors):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        return [as_tensor(t) for t in tensors[0]], True
    return [as_tensor(t) for t in tensors], len(tensors) != 1


def _atleast(nd, tensors):
    ts, many = _tensor_list(tensors)
    out = []
    for t in ts:
        if t.ndim < nd:
            shape = {0: (1, 1, 1), 1: (1, t.numel(), 1), 2: t.shape + (1,)}[t.ndim] if nd == 3 else \
                (1,) * (nd - t.ndim) + t.shape
            t = reshape(t, shape)
        out.append(t)
    return tuple(out) if many else out[0]


def atleast_1d(*tensors):
    """0-d tensors become shape (1,); a list in gives a tuple out."""
    return _atleast(1, tensors)


def atleast_2d(*tensors):
    """0-d -> (1, 1), 1-d (n,) -> (1, n)."""
    return _atleast(2, tensors)


def atleast_3d(*tensors):
    """0-d -> (1, 1, 1), (n,) -> (1, n, 1), (m, n) -> (m, n, 1)."""
    return _atleast(3, tensors)


def hstack(tensors):
    """Concatenate along dim 1 (dim 0 for 1-d tensors)."""
    ts = atleast_1d(list(tensors))
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors):
    """Concatenate along dim 0 after ``atleast_2d``."""
    return cat(atleast_2d(list(tensors)), 0)


row_stack = vstack


def dstack(tensors):
    """Concatenate along dim 2 after ``atleast_3d``."""
    return cat(atleast_3d(list(tensors)), 2)


def column_stack(tensors):
    """Concatenate along dim 1; 0-d and 1-d tensors become columns first."""
    ts = [as_tensor(t) for t in tensors]
    return cat([reshape(t, t.numel(), 1) if t.ndim <= 1 else t for t in ts], 1)


def unbind(input, dim=0):
    """The tuple of slices ``input.select(dim, i)``."""
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, "unbind")
    return tuple(select(x, d, i) for i in range(x.shape[d]))


def tensor_split(input, indices_or_sections, dim=0):
    """Split into ``n`` near-equal parts (the first ``size % n`` one longer) or at the listed indices."""
    x = as_tensor(input)
    (d,) = normalize_dims(dim, x.ndim, "tensor_split")
    cuts = indices_or_sections
    if isinstance(cuts, Tensor):
        if cuts.array.dtype.kind not in "iu" or cuts.ndim > 1:
            raise RuntimeError("tensor_split: expected a 0-d or 1-d int64 tensor of sections or indices")
        cuts = int(cuts.item()) if cuts.ndim == 0 else [int(c) for c in cuts.tolist()]
    n = x.shape[d]
    if isinstance(cuts, int):
        if cuts <= 0:
            raise RuntimeError(f"tensor_split: expected the number of sections > 0, got {cuts}")
        q, r = divmod(n, cuts)
        sizes = [q + 1] * r + [q] * (cuts - r)
        cuts = np.cumsum(sizes)[:-1].tolist()
    bounds = [0] + [int(c) for c in cuts] + [n]
    return tuple(x[(slice(None),) * d + (slice(a, max(a, b)),)] for a, b in zip(bounds, bounds[1:]))


def _split_along(op, x, cuts, d, need):
    x = as_tensor(x)
    if x.ndim < need:
        raise RuntimeError(f"{op}: expected a tensor of at least {need} dims, got {x.ndim}")
    if isinstance(cuts, int) and (cuts <= 0 or x.shape[d] % cuts):
        raise RuntimeError(f"{op}: dim {d} of size {x.shape[d]} cannot be split into {cuts} equal parts")
    return tensor_split(x, cuts, d)


def hsplit(input, indices_or_sections):
    """``tensor_split`` along dim 1 (dim 0 for 1-d); an int must divide the size."""
    return _split_along("hsplit", input, indices_or_sections, 0 if as_tensor(input).ndim == 1 else 1, 1)


def vsplit(input, indices_or_sections):
    """``tensor_split`` along dim 0; needs at least 2 dims."""
    return _split_along("vsplit", input, indices_or_sections, 0, 2)


def dsplit(input, indices_or_sections):
    """``tensor_split`` along dim 2; needs at least 3 dims."""
    return _split_along("dsplit", input, indices_or_sections, 2, 3)
