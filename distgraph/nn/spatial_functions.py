"""Resampling, N-d convolution, im2col and channel shuffles of ``nn.functional`` (re-exported
there); padding is in ``padding_functions``, pooling in ``pooling_functions``, channel dropout and
instance/response norms in ``feature_functions``.  This module comes last of the four and
re-exports the other three, so ``nn.functional`` takes every spatial function from here.

Everything is composed from a few window/gather ops of ``autograd.ops.nn`` (``Take``,
``Im2ColNd``, ``Col2ImNd``), so gradients come from the engine.
"""
from __future__ import annotations

import math

import numpy as np

from distgraph.autograd.ops import nn as _nn
from distgraph.autograd.ops._common import as_tensor, autocast_low, xp_of
from distgraph.autograd.ops.linalg import matmul
from distgraph.autograd.tensor import wrap
from distgraph.nn import feature_functions as _ff, pooling_functions as _pf
from distgraph.nn.feature_functions import *  # noqa: F401,F403 - re-exported to nn.functional from here
from distgraph.nn.padding_functions import ntuple, pad, take  # noqa: F401 - pad is re-exported
from distgraph.nn.pooling_functions import *  # noqa: F401,F403 - re-exported to nn.functional from here
from distgraph.nn.pooling_functions import _adaptive_avg

__all__ = ["pad", "interpolate", "upsample", "upsample_nearest", "upsample_bilinear", "conv3d",
           "conv_transpose1d", "conv_transpose3d", "unfold", "fold", "pixel_shuffle", "pixel_unshuffle"]
__all__ += _pf.__all__ + _ff.__all__


# -------------------------------------------------------------- resampling
_MODE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


def _output_size(op, x, size, scale_factor, nd):
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: expected exactly one of size or scale_factor, got "
                         f"size={size!r}, scale_factor={scale_factor!r}")
    if size is not None:
        sizes = tuple(size) if isinstance(size, (list, tuple)) else (size,) * nd
        if len(sizes) != nd:
            raise ValueError(f"{op}: expected size with {nd} elements for a {x.ndim}-D input, got {size!r}")
        return tuple(int(s) for s in sizes), None
    if isinstance(scale_factor, (list, tuple)):
        if len(scale_factor) != nd:
            raise ValueError(f"{op}: expected scale_factor with {nd} elements for a {x.ndim}-D input, "
                             f"got {scale_factor!r}")
        scales = tuple(float(s) for s in scale_factor)
    else:
        scales = (float(scale_factor),) * nd
    return tuple(int(math.floor(n * s)) for n, s in zip(x.shape[2:], scales)), scales


def _linear_taps(n_in, n_out, scale, align_corners, cubic):
    """Source indices and weights of 1-d linear (2 taps) or cubic (4 taps) resampling."""
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    else:
        s = 1.0 / scale if scale is not None else n_in / n_out
        src = s * (dst + 0.5) - 0.5
        if not cubic:
            src = np.maximum(src, 0.0)
    i0 = np.floor(src).astype(np.int64)
    t = src - i0
    if not cubic:
        return [(np.minimum(i0, n_in - 1), 1 - t), (np.minimum(i0 + 1, n_in - 1), t)]
    a = -0.75

    def near(z):
        return ((a + 2) * z - (a + 3)) * z * z + 1

    def far(z):
        return ((a * z - 5 * a) * z + 8 * a) * z - 4 * a
    weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
    return [(np.clip(i0 + k - 1, 0, n_in - 1), w) for k, w in enumerate(weights)]


def _nearest_index(n_in, n_out, scale, exact):
    s = np.float32(1.0 / scale if scale is not None else n_in / n_out)
    dst = np.arange(n_out, dtype=np.float32)
    src = np.floor((dst + np.float32(0.5)) * s if exact else dst * s).astype(np.int64)
    return np.minimum(src, n_in - 1)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resample the spatial dims of an (N, C, *S) input to ``size`` (or ``S * scale_factor``,
    floored).  Modes: ``nearest`` (``src = floor(dst * in / out)``), ``nearest-exact``
    (``floor((dst + 0.5) * in / out)``), ``linear`` / ``bilinear`` / ``trilinear`` / ``bicubic``
    (separable; ``align_corners`` maps corner pixel centres onto each other), ``area``
    (adaptive average pooling).  With ``scale_factor`` given and ``recompute_scale_factor`` not
    set, coordinates use ``1 / scale_factor`` as PyTorch does."""
    x = as_tensor(input)
    if x.ndim not in (3, 4, 5):
        raise NotImplementedError(f"interpolate: expected a 3-D, 4-D or 5-D (N, C, ...) input, "
                                  f"got shape {tuple(x.shape)}")
    nd = x.ndim - 2
    modes = ("nearest", "nearest-exact", "area", "linear", "bilinear", "bicubic", "trilinear")
    if mode not in modes:
        raise NotImplementedError(f"interpolate: mode must be one of {modes}, got {mode!r}")
    if mode in _MODE_DIMS and _MODE_DIMS[mode] != nd:
        raise NotImplementedError(f"interpolate: mode {mode!r} needs a {_MODE_DIMS[mode] + 2}-D input, "
                                  f"got {x.ndim}-D")
    if align_corners is not None and mode not in _MODE_DIMS:
        raise ValueError(f"interpolate: align_corners only applies to linear modes, got mode={mode!r}")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    out, scales = _output_size("interpolate", x, size, scale_factor, nd)
    if recompute_scale_factor:
        scales = None
    if any(o <= 0 for o in out):
        raise RuntimeError(f"interpolate: output size {out} must be positive (input {tuple(x.shape)})")
    if mode == "area":
        return _adaptive_avg(x, out)
    for d in range(nd):
        axis, n_in, s = 2 + d, x.shape[2 + d], scales[d] if scales else None
        if mode in ("nearest", "nearest-exact"):
            x = take(x, _nearest_index(n_in, out[d], s, mode == "nearest-exact"), axis)
            continue
        y = None
        for idx, w in _linear_taps(n_in, out[d], s, bool(align_corners), mode == "bicubic"):
            shape = [1] * x.ndim
            shape[axis] = out[d]
            term = take(x, idx, axis) * wrap(xp_of(x.array).asarray(w.reshape(shape), dtype=x.dtype))
            y = term if y is None else y + term
        x = y
    return x


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Old name of ``interpolate``."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    return interpolate(input, size, scale_factor, "nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """Bilinear resampling with ``align_corners=True`` (as ``nn.UpsamplingBilinear2d``)."""
    return interpolate(input, size, scale_factor, "bilinear", align_corners=True)


# ------------------------------------------------------------ convolution
def conv_pad_same(op, x, kernel, dilation, stride, mode="constant"):
    """Pad ``x`` so a stride-1 convolution keeps its size (the odd extra element on the right)."""
    if any(s != 1 for s in stride):
        raise RuntimeError(f"{op}: padding='same' is not supported for strided convolutions, got stride={stride}")
    widths = []
    for k, d in zip(reversed(kernel), reversed(dilation)):
        total = d * (k - 1)
        widths += [total // 2, total - total // 2]
    return pad(x, widths, mode) if any(widths) else x


def convnd(op, nd, input, weight, bias, stride, padding, dilation, groups):
    """N-d convolution (cross-correlation) as windows (``Im2ColNd``) and one batched product."""
    x = as_tensor(input)
    if x.ndim == nd + 1:                                 # unbatched (C, *S)
        return convnd(op, nd, x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if x.ndim != nd + 2:
        raise RuntimeError(f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, "
                           f"got shape {tuple(x.shape)}")
    w = weight
    o, cg = w.shape[:2]
    kernel = tuple(w.shape[2:])
    if groups < 1 or o % groups:
        raise RuntimeError(f"{op}: expected out_channels ({o}) divisible by groups ({groups})")
    if x.shape[1] != cg * groups:
        raise RuntimeError(f"{op}: expected input with {cg * groups} channels (weight {tuple(w.shape)}, "
                           f"groups={groups}), got {x.shape[1]} channels (input {tuple(x.shape)})")
    stride, dilation = ntuple(stride, nd, "stride", op), ntuple(dilation, nd, "dilation", op)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"{op}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
        if padding == "same":
            x = conv_pad_same(op, x, kernel, dilation, stride)
    else:
        p = ntuple(padding, nd, "padding", op)
        if any(p):
            x = pad(x, [v for q in reversed(p) for v in (q, q)])
    out = _nn.window_counts(x.shape[2:], kernel, stride, dilation)
    if any(v <= 0 for v in out):
        raise RuntimeError(f"{op}: input {tuple(input.shape)} (padded {tuple(x.shape)}) is smaller than the "
                           f"(dilated) kernel {kernel}")
    x, w = autocast_low(x, w)
    if x.dtype != w.dtype:
        raise RuntimeError(f"{op}: input and weight dtypes differ ({x.dtype} and {w.dtype}); cast one of them")
    n, k = x.shape[0], math.prod(kernel)
    cols = _nn.Im2ColNd(kernel, stride, dilation).apply(x).reshape(n, groups, cg * k, math.prod(out))
    y = matmul(w.reshape(groups, o // groups, cg * k), cols).reshape(n, o, *out)
    return y if bias is None else y + autocast_low(bias)[0].reshape(1, -1, *(1,) * nd)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-D convolution of (N, C, D, H, W) with (O, C/groups, kd, kh, kw)."""
    return convnd("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def conv_transposend(op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation):
    """The input-gradient of ``convnd``: per-pixel products ``W^T x`` summed into windows (``Col2ImNd``)."""
    x = as_tensor(input)
    if x.ndim == nd + 1:
        return conv_transposend(op, nd, x.unsqueeze(0), weight, bias, stride, padding, output_padding, groups,
                                dilation).squeeze(0)
    w = weight
    if x.ndim != nd + 2 or x.shape[1] != w.shape[0]:
        raise RuntimeError(f"{op}: expected a (N, {w.shape[0]}, ...) {nd + 2}-D input for weight {tuple(w.shape)}, "
                           f"got {tuple(x.shape)}")
    stride, dilation = ntuple(stride, nd, "stride", op), ntuple(dilation, nd, "dilation", op)
    padding, output_padding = ntuple(padding, nd, "padding", op), ntuple(output_padding, nd, "output_padding", op)
    if any(op_ >= max(s, d) for op_, s, d in zip(output_padding, stride, dilation)):
        raise RuntimeError(f"{op}: output_padding {output_padding} must be smaller than stride or dilation")
    n, c = x.shape[:2]
    cg, og, kernel = c // groups, w.shape[1], tuple(w.shape[2:])
    size = x.shape[2:]
    full = [(i - 1) * s + d * (k - 1) + 1 + q for i, s, d, k, q in zip(size, stride, dilation, kernel, output_padding)]
    x, w = autocast_low(x, w)
    xm = x.reshape(n, groups, cg, math.prod(size))
    wm = w.reshape(groups, cg, og * math.prod(kernel)).transpose(1, 2)
    cols = matmul(wm, xm).reshape(n, groups * og, math.prod(kernel), *size)
    y = _nn.Col2ImNd(full, kernel, stride, dilation).apply(cols)
    if any(padding):
        y = y[(slice(None), slice(None)) + tuple(slice(p, f - p) for p, f in zip(padding, full))]
    return y if bias is None else y + autocast_low(bias)[0].reshape(1, -1, *(1,) * nd)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 1-d convolution of (N, C, L) with (C, O/groups, k)."""
    return conv_transposend("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups,
                            dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 3-d convolution of (N, C, D, H, W) with (C, O/groups, kd, kh, kw)."""
    return conv_transposend("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding, groups,
                            dilation)


# ------------------------------------------------------------ im2col, shuffles
def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding windows of an (N, C, H, W) input as (N, C * kh * kw, L) columns (im2col)."""
    x = as_tensor(input)
    if x.ndim == 3:
        return unfold(x.unsqueeze(0), kernel_size, dilation, padding, stride).squeeze(0)
    if x.ndim != 4:
        raise RuntimeError(f"unfold: expected a 3-D or 4-D input, got shape {tuple(x.shape)}")
    k, d = ntuple(kernel_size, 2, "kernel_size", "unfold"), ntuple(dilation, 2, "dilation", "unfold")
    p, s = ntuple(padding, 2, "padding", "unfold"), ntuple(stride, 2, "stride", "unfold")
    if any(p):
        x = pad(x, (p[1], p[1], p[0], p[0]))
    out = _nn.window_counts(x.shape[2:], k, s, d)
    if any(v <= 0 for v in out):
        raise RuntimeError(f"unfold: input {tuple(input.shape)} (padded {tuple(x.shape)}) is smaller than "
                           f"the kernel {k}")
    cols = _nn.Im2ColNd(k, s, d).apply(x)
    return cols.reshape(x.shape[0], x.shape[1] * k[0] * k[1], out[0] * out[1])


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Sum (N, C * kh * kw, L) columns back into an (N, C, *output_size) image (col2im)."""
    x = as_tensor(input)
    if x.ndim == 2:
        return fold(x.unsqueeze(0), output_size, kernel_size, dilation, padding, stride).squeeze(0)
    if x.ndim != 3:
        raise RuntimeError(f"fold: expected a 2-D or 3-D input, got shape {tuple(x.shape)}")
    size = ntuple(output_size, 2, "output_size", "fold")
    k, d = ntuple(kernel_size, 2, "kernel_size", "fold"), ntuple(dilation, 2, "dilation", "fold")
    p, s = ntuple(padding, 2, "padding", "fold"), ntuple(stride, 2, "stride", "fold")
    full = [n + 2 * q for n, q in zip(size, p)]
    out = _nn.window_counts(full, k, s, d)
    kk = k[0] * k[1]
    if x.shape[1] % kk or x.shape[2] != out[0] * out[1]:
        raise RuntimeError(f"fold: expected input of shape (N, C * {kk}, {out[0] * out[1]}) for output_size {size}, "
                           f"kernel {k}, got {tuple(x.shape)}")
    cols = x.reshape(x.shape[0], x.shape[1] // kk, kk, *out)
    y = _nn.Col2ImNd(full, k, s, d).apply(cols)
    return y[:, :, p[0]:p[0] + size[0], p[1]:p[1] + size[1]] if any(p) else y


def pixel_shuffle(input, upscale_factor):
    """(*, C * r^2, H, W) -> (*, C, H * r, W * r)."""
    x, r = as_tensor(input), int(upscale_factor)
    if x.ndim < 3 or x.shape[-3] % (r * r):
        raise RuntimeError(f"pixel_shuffle: expected a (*, C * {r * r}, H, W) input, got shape {tuple(x.shape)}")
    *lead, c, h, w = x.shape
    y = x.reshape(*lead, c // (r * r), r, r, h, w)
    n = len(lead)
    y = y.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return y.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H * r, W * r) -> (*, C * r^2, H, W)."""
    x, r = as_tensor(input), int(downscale_factor)
    if x.ndim < 3 or x.shape[-1] % r or x.shape[-2] % r:
        raise RuntimeError(f"pixel_unshuffle: expected a (*, C, H, W) input with H and W divisible by {r}, "
                           f"got shape {tuple(x.shape)}")
    *lead, c, h, w = x.shape
    y = x.reshape(*lead, c, h // r, r, w // r, r)
    n = len(lead)
    y = y.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return y.reshape(*lead, c * r * r, h // r, w // r)

