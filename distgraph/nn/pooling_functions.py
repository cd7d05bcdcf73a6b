"""Pooling of ``nn.functional`` (re-exported there): max / average / power-average over
1-, 2- and 3-d windows, adaptive pooling, and max-unpooling.

Window sizes follow PyTorch: ``out = floor_or_ceil((L + 2p - d(k - 1) - 1) / s) + 1``, and with
``ceil_mode`` a last window that would start in the right padding is dropped.  ``return_indices``
gives, per output, the flat index of the maximum within its input plane (the trailing dims).
"""
from __future__ import annotations

import math

import numpy as np

from distgraph import backend
from distgraph.autograd.ops import nn as _nn
from distgraph.autograd.ops._common import as_tensor, xp_of
from distgraph.autograd.ops.linalg import matmul
from distgraph.autograd.tensor import wrap
from distgraph.nn.padding_functions import ntuple, pad, take

__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
           "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
           "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
           "adaptive_max_pool3d_with_indices", "max_unpool1d", "max_unpool2d", "max_unpool3d",
           "lp_pool1d", "lp_pool2d", "lp_pool3d"]


def _pool_args(op, x, nd, kernel_size, stride, padding, dilation):
    if x.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, "
                           f"got shape {tuple(x.shape)}")
    k = ntuple(kernel_size, nd, "kernel_size", op)
    s = k if stride is None or (not isinstance(stride, int) and len(tuple(stride)) == 0) else \
        ntuple(stride, nd, "stride", op)
    p, d = ntuple(padding, nd, "padding", op), ntuple(dilation, nd, "dilation", op)
    if any(v <= 0 for v in k + s + d):
        raise RuntimeError(f"{op}: kernel_size, stride and dilation must be positive, got {k}, {s}, {d}")
    if any(pp < 0 or pp > kk // 2 for pp, kk in zip(p, k)):
        raise RuntimeError(f"{op}: padding should be at most half of the kernel size, got padding={p} "
                           f"for kernel_size={k}")
    return k, s, p, d


def _out_size(op, n, k, s, p, d, ceil_mode):
    span = n + 2 * p - d * (k - 1) - 1
    o = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (o - 1) * s >= n + p:         # the last window must start inside input or left padding
        o -= 1
    if o <= 0:
        raise RuntimeError(f"{op}: output size is too small: input size {n} with kernel {k}, stride {s}, "
                           f"padding {p}, dilation {d} gives {o}")
    return o


def _padded(op, x, nd, k, s, p, d, ceil_mode, fill):
    """``x`` padded by ``p`` (and on the right as far as ceil-mode windows reach), and the output size."""
    out = [_out_size(op, n, kk, ss, pp, dd, ceil_mode) for n, kk, ss, pp, dd in zip(x.shape[-nd:], k, s, p, d)]
    widths = []
    for n, o, kk, ss, pp, dd in reversed(list(zip(x.shape[-nd:], out, k, s, p, d))):
        need = (o - 1) * ss + dd * (kk - 1) + 1
        widths += [pp, max(need - n - pp, 0)]
    return (pad(x, widths, value=fill) if any(widths) else x), out


def _lowest(dtype):
    return -math.inf if np.dtype(dtype).kind == "f" else int(np.iinfo(dtype).min)


def _max_pool(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    x = as_tensor(input)
    k, s, p, d = _pool_args(op, x, nd, kernel_size, stride, padding, dilation)
    xpad, out = _padded(op, x, nd, k, s, p, d, ceil_mode, _lowest(x.dtype))
    node = _nn.MaxPoolNd(k, s, d)
    y = node.apply(xpad)
    if not return_indices:
        return y
    xp = xp_of(x.array)
    flat = xp.zeros(y.shape, dtype=np.int64)
    rest = node.argpos.astype(np.int64)
    for i in range(nd):
        inner = math.prod(k[i + 1:])
        kpos = (rest // inner) % k[i]
        shape = [1] * y.ndim
        shape[y.ndim - nd + i] = out[i]
        coord = xp.arange(out[i], dtype=np.int64).reshape(shape) * s[i] - p[i] + kpos * d[i]
        flat = flat * x.shape[x.ndim - nd + i] + coord
    return y, wrap(flat)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over windows of the last dim of (N, C, L) or (C, L)."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over (kh, kw) windows of (N, C, H, W) or (C, H, W); the gradient goes to the first maximum."""
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over (kd, kh, kw) windows of (N, C, D, H, W) or (C, D, H, W)."""
    return _max_pool("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool1d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=True):
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=True):
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool3d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                            return_indices=True):
    return max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def _divisor(xp, dtype, sizes, out, k, s, p, count_include_pad):
    """Per-output window element counts: the window clipped to the padded input (or to the input)."""
    div = None
    for i, (n, o, kk, ss, pp) in enumerate(zip(sizes, out, k, s, p)):
        start = np.arange(o) * ss - pp
        end = np.minimum(start + kk, n + pp)
        cnt = end - start if count_include_pad else np.minimum(end, n) - np.maximum(start, 0)
        shape = [1] * len(out)
        shape[i] = o
        cnt = cnt.reshape(shape)
        div = cnt if div is None else div * cnt
    return xp.asarray(div, dtype=dtype)


def _avg_pool(op, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x = as_tensor(input)
    k, s, p, d = _pool_args(op, x, nd, kernel_size, stride, padding, 1)
    if x.ndim == nd + 1:
        return _avg_pool(op, nd, x.unsqueeze(0), k, s, p, ceil_mode, count_include_pad,
                         divisor_override).squeeze(0)
    if x.dtype.kind != "f":
        raise RuntimeError(f"{op}: expected a floating-point input, got {backend.dtype_name(x.dtype)}")
    xpad, out = _padded(op, x, nd, k, s, p, d, ceil_mode, 0.0)
    total = _nn.Im2ColNd(k, s, d).apply(xpad).sum(2)
    if divisor_override:
        return total / divisor_override
    div = _divisor(xp_of(x.array), x.dtype, x.shape[2:], out, k, s, p, count_include_pad)
    return total / wrap(div)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over windows of the last dim (zero padding counted unless ``count_include_pad=False``)."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over (kh, kw) windows; ``divisor_override`` replaces the window size as divisor."""
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over (kd, kh, kw) windows."""
    return _avg_pool("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


# ---------------------------------------------------------------- adaptive
def _adaptive_sizes(op, x, nd, output_size):
    if x.ndim not in (nd + 1, nd + 2) or any(n == 0 for n in x.shape[-nd:]):
        raise RuntimeError(f"{op}: expected a non-empty {nd + 1}-D or {nd + 2}-D input, got shape {tuple(x.shape)}")
    sizes = (output_size,) * nd if output_size is None or isinstance(output_size, int) else tuple(output_size)
    if len(sizes) != nd:
        raise RuntimeError(f"{op}: expected output_size with {nd} elements, got {output_size!r}")
    return [n if o is None else int(o) for n, o in zip(x.shape[-nd:], sizes)]


def _bounds(n, o):
    """PyTorch's adaptive cells: cell ``i`` covers ``[floor(i n / o), ceil((i + 1) n / o))``."""
    i = np.arange(o)
    return (i * n) // o, -(-((i + 1) * n) // o)


def _adaptive_avg(x, out):
    """Adaptive average as one (out x in) averaging matrix per dim (the mean over a box is separable)."""
    nd = len(out)
    for i, o in enumerate(out):
        axis = x.ndim - nd + i
        n = x.shape[axis]
        if o == n:
            continue
        start, end = _bounds(n, o)
        cols = np.arange(n)
        a = ((cols >= start[:, None]) & (cols < end[:, None])) / (end - start)[:, None]
        m = wrap(xp_of(x.array).asarray(a.T, dtype=x.dtype))
        x = matmul(x.movedim(axis, -1), m).movedim(-1, axis)
    return x


def _adaptive_avg_pool(op, nd, input, output_size):
    x = as_tensor(input)
    return _adaptive_avg(x, _adaptive_sizes(op, x, nd, output_size))


def adaptive_avg_pool1d(input, output_size):
    """Average over PyTorch's adaptive windows of the last dim."""
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input, output_size):
    """Average over adaptive windows: cell ``i`` covers ``[floor(i*H/oh), ceil((i+1)*H/oh))``."""
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


def adaptive_avg_pool3d(input, output_size):
    return _adaptive_avg_pool("adaptive_avg_pool3d", 3, input, output_size)


def _adaptive_max(op, nd, input, output_size, return_indices):
    """Gather every cell padded to the longest cell (repeating its last element, which leaves
    the first maximum in place), then one max over the gathered window."""
    x = as_tensor(input)
    out = _adaptive_sizes(op, x, nd, output_size)
    sizes = x.shape[-nd:]
    gathers, lens = [], []
    for i, (n, o) in enumerate(zip(sizes, out)):
        start, end = _bounds(n, o)
        kmax = int((end - start).max())
        idx = np.minimum(start[:, None] + np.arange(kmax), end[:, None] - 1)   # (o, kmax)
        x = take(x, idx.reshape(-1), x.ndim - nd + i)
        gathers.append(idx)
        lens.append(kmax)
    lead = x.shape[:x.ndim - nd]
    b = len(lead)
    x = x.reshape(*lead, *[v for o, kk in zip(out, lens) for v in (o, kk)])
    x = x.permute(*range(b), *[b + 2 * i for i in range(nd)], *[b + 2 * i + 1 for i in range(nd)])
    values, local = x.reshape(*lead, *out, math.prod(lens)).max(-1)
    if not return_indices:
        return values
    xp = xp_of(local.array)
    rest, flat = local.array, xp.zeros(local.shape, dtype=np.int64)
    for i in range(nd):
        j = (rest // math.prod(lens[i + 1:])) % lens[i]
        shape = [1] * local.ndim
        shape[local.ndim - nd + i] = out[i]
        o = xp.arange(out[i]).reshape(shape)
        flat = flat * sizes[i] + xp.asarray(gathers[i])[o, j]
    return values, wrap(flat)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    return _adaptive_max("adaptive_max_pool1d", 1, input, output_size, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Max over PyTorch's adaptive windows (see ``adaptive_avg_pool2d``)."""
    return _adaptive_max("adaptive_max_pool2d", 2, input, output_size, return_indices)


def adaptive_max_pool3d(input, output_size, return_indices=False):
    return _adaptive_max("adaptive_max_pool3d", 3, input, output_size, return_indices)


def adaptive_max_pool1d_with_indices(input, output_size, return_indices=True):
    return adaptive_max_pool1d(input, output_size, True)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=True):
    return adaptive_max_pool2d(input, output_size, True)


def adaptive_max_pool3d_with_indices(input, output_size, return_indices=True):
    return adaptive_max_pool3d(input, output_size, True)


# ------------------------------------------------------------- unpooling
def _max_unpool(op, nd, input, indices, kernel_size, stride, padding, output_size):
    x = as_tensor(input)
    if x.ndim == nd + 1:
        return _max_unpool(op, nd, x.unsqueeze(0), as_tensor(indices).unsqueeze(0), kernel_size, stride, padding,
                           output_size).squeeze(0)
    if x.ndim != nd + 2 or tuple(indices.shape) != tuple(x.shape):
        raise RuntimeError(f"{op}: expected a {nd + 2}-D input and indices of the same shape, got "
                           f"{tuple(x.shape)} and {tuple(indices.shape)}")
    k = ntuple(kernel_size, nd, "kernel_size", op)
    s = k if stride is None else ntuple(stride, nd, "stride", op)
    p = ntuple(padding, nd, "padding", op)
    if output_size is None:
        size = [(n - 1) * ss - 2 * pp + kk for n, kk, ss, pp in zip(x.shape[2:], k, s, p)]
    else:
        size = list(output_size)[-nd:]
        if len(size) != nd:
            raise ValueError(f"{op}: expected output_size with {nd} or {nd + 2} elements, got {output_size!r}")
    total = math.prod(size)
    idx = indices.array
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= total):
        raise RuntimeError(f"{op}: found an invalid max index {int(idx.max())} (output planes have {total} "
                           f"elements, size {tuple(size)})")
    return _nn.MaxUnpool(idx, total).apply(x).reshape(*x.shape[:2], *size)


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of ``max_pool1d``: values go back to their ``indices``, zeros elsewhere."""
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of ``max_pool2d``: values go back to their ``indices``, zeros elsewhere."""
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool("max_unpool3d", 3, input, indices, kernel_size, stride, padding, output_size)


# -------------------------------------------------------- power averages
def _lp_pool(nd, input, norm_type, kernel_size, stride, ceil_mode):
    """``(sum over window of x^p)^(1/p)``, as PyTorch (via the average times the window size)."""
    x = as_tensor(input)
    k = ntuple(kernel_size, nd, "kernel_size", f"lp_pool{nd}d")
    pool = (avg_pool1d, avg_pool2d, avg_pool3d)[nd - 1]
    out = pool(x.pow(norm_type), k, stride, 0, ceil_mode)
    return (out.sign() * out.abs().relu()).mul(math.prod(k)).pow(1.0 / norm_type)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool(1, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool(2, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool(3, input, norm_type, kernel_size, stride, ceil_mode)
