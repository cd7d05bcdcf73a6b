"""Functional forms of the layers (``import distgraph.nn.functional as F``).

Everything here is composed from the engine's ops, so gradients come for
free; convolution and pooling lower to im2col windows plus one large matrix
product (or reduction), never Python loops over pixels.
"""
from __future__ import annotations

import math

import numpy as np

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.function import Function
from distgraph.autograd.ops import nn as _nn
from distgraph.autograd.ops._common import as_tensor, autocast_float32, autocast_low, xp_of
from distgraph.autograd.ops.activation import elu, gelu, leaky_relu, relu, silu, softplus
from distgraph.autograd.ops.elementwise import clamp, sigmoid, tanh, where
from distgraph.autograd.ops.index import gather_in_range
from distgraph.autograd.ops.linalg import matmul
from distgraph.autograd.ops.nn import log_softmax, softmax
from distgraph.autograd.tensor import bump_version, wrap
from distgraph.nn.loss_functions import _reduce

__all__ = ["relu", "gelu", "silu", "tanh", "sigmoid", "softplus", "leaky_relu", "elu", "softmax", "log_softmax",
           "linear", "conv1d", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
           "batch_norm", "layer_norm", "group_norm", "dropout", "embedding", "cross_entropy", "nll_loss",
           "mse_loss", "l1_loss", "binary_cross_entropy_with_logits", "scaled_dot_product_attention", "pad",
           "one_hot", "normalize", "rms_norm"]


def _pair(v, name="argument"):
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"expected an int or a pair for {name}, got {v!r}")
    return v


# ------------------------------------------------------------------ linear
def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` over the last dim of ``input``."""
    from distgraph.autograd.ops._common import promote
    ops, _ = promote("linear", input, weight, bias)
    x, w, b = autocast_low(*ops)
    if x.ndim < 1 or x.shape[-1] != w.shape[-1]:
        raise RuntimeError(f"linear: expected input with last dim {w.shape[-1]} (weight {w.shape}), got {x.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise RuntimeError(f"linear: expected bias of shape ({w.shape[0]},), got {b.shape}")
    return _nn.Linear().apply(x, w) if b is None else _nn.Linear().apply(x, w, b)


# ------------------------------------------------------------- convolution
def _check_conv(op, x, w, groups, nd):
    if x.ndim != nd + 2:
        raise RuntimeError(f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, "
                           f"got shape {tuple(x.shape)}")
    if groups < 1 or w.shape[0] % groups:
        raise RuntimeError(f"{op}: expected out_channels ({w.shape[0]}) divisible by groups ({groups})")
    if x.shape[1] != w.shape[1] * groups:
        raise RuntimeError(f"{op}: expected input with {w.shape[1] * groups} channels (weight {tuple(w.shape)}, "
                           f"groups={groups}), got {x.shape[1]} channels (input {tuple(x.shape)})")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as PyTorch) of (N, C, H, W) or (C, H, W) with (O, C/groups, kh, kw)."""
    x, w = as_tensor(input), weight
    if x.ndim == 3:
        return conv2d(x.unsqueeze(0), w, bias, stride, padding, dilation, groups).squeeze(0)
    _check_conv("conv2d", x, w, groups, 2)
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if padding == "same":
            x = conv_pad_same("conv2d", x, tuple(w.shape[2:]), dilation, stride)
        padding = 0
    ph, pw = _pair(padding, "padding")
    if ph or pw:
        x = pad(x, (pw, pw, ph, ph))
    o, cg, kh, kw = w.shape
    if any((size - d * (k - 1) - 1) // s + 1 <= 0 for size, k, s, d in zip(x.shape[2:], (kh, kw), stride, dilation)):
        raise RuntimeError(f"conv2d: input {tuple(input.shape)} (padded {tuple(x.shape)}) is smaller than the "
                           f"(dilated) kernel {(kh, kw)}")
    x, w = autocast_low(x, w)
    if x.dtype != w.dtype:
        raise RuntimeError(f"conv2d: input and weight dtypes differ ({x.dtype} and {w.dtype}); cast one of them")
    y = _nn.Conv2d(stride, dilation, groups).apply(x, w)
    return y if bias is None else y + autocast_low(bias)[0].reshape(1, -1, 1, 1)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of (N, C, L) or (C, L) with (O, C/groups, k)."""
    x = as_tensor(input)
    if x.ndim == 2:
        return conv1d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if x.ndim != 3:
        raise RuntimeError(f"conv1d: expected a 2-D (unbatched) or 3-D (batched) input, got shape {tuple(x.shape)}")
    one = (lambda v: v if isinstance(v, (int, str)) else tuple(v)[0])
    stride, padding, dilation = one(stride), one(padding), one(dilation)
    if isinstance(padding, int):
        padding = (0, padding)
    y = conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, stride), padding, (1, dilation), groups)
    return y.squeeze(2)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution of (N, C, H, W) with (C, O/groups, kh, kw): the input-gradient of conv2d."""
    x, w = as_tensor(input), weight
    if x.ndim != 4 or x.shape[1] != w.shape[0]:
        if x.ndim == 3:
            return conv_transpose2d(x.unsqueeze(0), w, bias, stride, padding, output_padding, groups,
                                    dilation).squeeze(0)
        raise RuntimeError(f"conv_transpose2d: expected (N, {w.shape[0]}, H, W) input for weight {tuple(w.shape)}, "
                           f"got {tuple(x.shape)}")
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    (oph, opw), (dh, dw) = _pair(output_padding), _pair(dilation)
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    full = ((h - 1) * sh + dh * (kh - 1) + 1 + oph, (wd - 1) * sw + dw * (kw - 1) + 1 + opw)
    xm = x.reshape(n, groups, cg, h * wd).permute(1, 0, 3, 2).reshape(groups, n * h * wd, cg)
    wm = w.reshape(groups, cg, og * kh * kw)
    cols = matmul(xm, wm)                                  # (g, N*H*W, O/g*kh*kw)
    cols = cols.reshape(groups, n, h, wd, og, kh, kw).permute(1, 0, 4, 5, 6, 2, 3).reshape(
        n, groups * og, kh, kw, h, wd)
    y = _nn.Col2Im(full, (sh, sw), (dh, dw)).apply(cols)
    if ph or pw:
        y = y[:, :, ph:full[0] - ph, pw:full[1] - pw]
    return y if bias is None else y + autocast_low(bias)[0].reshape(1, -1, 1, 1)


# ------------------------------------------------------------ normalisation
def _check_channels(op, c, **tensors):
    """Per-channel parameters and statistics must have one element per input channel."""
    for name, t in tensors.items():
        if t is not None and t.numel() != c:
            raise RuntimeError(f"{op}: expected {name} with {c} elements (the input's channels, dim 1), "
                               f"got {t.numel()} (shape {tuple(t.shape)}); check num_features/num_channels")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise over every dim but the channel dim (1), with running statistics.

    In training the batch statistics are used and the running ones updated in
    place (``running = (1 - momentum) * running + momentum * batch``, with the
    unbiased batch variance); in eval the running ones are used.
    """
    (x,) = autocast_float32(as_tensor(input))
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an (N, C, ...) input of at least 2 dims, got shape {tuple(x.shape)}")
    _check_channels("batch_norm", x.shape[1], running_mean=running_mean, running_var=running_var,
                    weight=weight, bias=bias)
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError("batch_norm: running_mean and running_var are needed when training=False")
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        n = x.numel() // x.shape[1]
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input {x.shape}")
        mean = x.mean(axes)
        var = x.var(axes, correction=0)
        if running_mean is not None:
            _update_running_stats(running_mean, running_var, mean, var, momentum, n)
    else:
        mean, var = running_mean, running_var
    y = (x - mean.reshape(shape)) * (var.reshape(shape) + eps).rsqrt()
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def _update_running_stats(running_mean, running_var, mean, var, momentum, n):
    """``running = (1 - momentum) * running + momentum * batch`` in place (the variance unbiased over ``n``
    values).  One function, so that a capture (distgraph/graph/intercept.py) records it as a call and a
    replay updates the statistics as eager does."""
    with grad_mode.no_grad():
        m = momentum
        running_mean.array[...] = (1 - m) * running_mean.array + m * mean.array
        running_var.array[...] = (1 - m) * running_var.array + m * var.array * (n / (n - 1))
        bump_version(running_mean)
        bump_version(running_var)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last ``len(normalized_shape)`` dims."""
    (x,) = autocast_float32(as_tensor(input))
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise RuntimeError(f"layer_norm: expected input with trailing shape {normalized_shape}, got {x.shape}")
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = x.mean(axes, keepdim=True)
    y = (x - mean) * (x.var(axes, keepdim=True, correction=0) + eps).rsqrt()
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """``x / sqrt(mean(x**2) + eps) * weight`` over the last ``len(normalized_shape)`` dims; ``eps`` None:
    the machine epsilon of the input's dtype (as PyTorch)."""
    (x,) = autocast_float32(as_tensor(input))
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(normalized_shape):] != normalized_shape:
        raise RuntimeError(f"rms_norm: expected input with trailing shape {normalized_shape}, got {x.shape}")
    if eps is None:
        eps = float(np.finfo(x.dtype).eps)
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    y = x * ((x * x).mean(axes, keepdim=True) + eps).rsqrt()
    return y * weight if weight is not None else y


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise (N, C, ...) over groups of ``C / num_groups`` channels."""
    (x,) = autocast_float32(as_tensor(input))
    if x.ndim < 2:
        raise RuntimeError(f"group_norm: expected an (N, C, ...) input, got shape {tuple(x.shape)}")
    n, c = x.shape[:2]
    if c % num_groups:
        raise RuntimeError(f"group_norm: expected input channels divisible by num_groups ({num_groups}), "
                           f"got {c} channels (input {tuple(x.shape)})")
    _check_channels("group_norm", c, weight=weight, bias=bias)
    g = x.reshape(n, num_groups, -1)
    g = (g - g.mean(2, keepdim=True)) * (g.var(2, keepdim=True, correction=0) + eps).rsqrt()
    y = g.reshape(x.shape)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """``x / max(||x||_p, eps)`` along ``dim``."""
    x = as_tensor(input)
    return x / clamp(x.norm(p, dim, keepdim=True), min=eps)


# --------------------------------------------------------- dropout, embedding
def dropout(input, p=0.5, training=True, inplace=False):
    """Zero elements with probability ``p`` and scale the rest by ``1 / (1 - p)`` (training only)."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: probability has to be between 0 and 1, got {p}")
    x = as_tensor(input)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    gen = backend.generator(x.device)
    keep = (gen.random(x.shape, dtype=backend.float32) >= p).astype(x.dtype) / (1 - p)
    return x * wrap(keep)


def embedding(input, weight, padding_idx=None, max_norm=None):
    """Rows of ``weight`` picked by the integer tensor ``input``."""
    if max_norm is not None:
        raise NotImplementedError("embedding: max_norm is not supported")
    idx = as_tensor(input, weight).array
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: expected an integer index tensor, got {backend.dtype_name(idx.dtype)}")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= weight.shape[0]):
        raise IndexError(f"embedding: index out of range: values must lie in [0, {weight.shape[0]}), "
                         f"got min {int(idx.min())} max {int(idx.max())}")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += weight.shape[0]
    return _nn.EmbeddingLookup(idx, padding_idx).apply(weight)


def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding with a new last dim of size ``num_classes``."""
    idx = as_tensor(tensor).array
    if idx.dtype.kind not in "iu":
        raise TypeError("one_hot: expected an integer (int64) tensor")
    xp = xp_of(idx)
    if num_classes < 0:
        num_classes = int(idx.max()) + 1 if idx.size else 0
    return wrap((idx[..., None] == xp.arange(num_classes)).astype(backend.int64))


# ------------------------------------------------------------------ losses
def _check_same_shape(op, a, b):
    if a.shape != b.shape:
        raise RuntimeError(f"{op}: input shape {a.shape} and target shape {b.shape} differ; "
                           "broadcasting here is almost always a bug: reshape one of them")


def mse_loss(input, target, reduction="mean"):
    """Mean squared error ``(x - y)^2``."""
    input, target = autocast_float32(as_tensor(input), as_tensor(target, input))
    _check_same_shape("mse_loss", input, target)
    d = input - target
    return _reduce(d * d, reduction, "mse_loss")


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error ``|x - y|``."""
    input, target = autocast_float32(as_tensor(input), as_tensor(target, input))
    _check_same_shape("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction, "l1_loss")


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """``-w [p y log s(x) + (1 - y) log(1 - s(x))]``, computed stably from logits."""
    input, target = autocast_float32(as_tensor(input), as_tensor(target, input))
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    log_sig = -softplus(-input)          # log s(x)
    log_one_minus = -softplus(input)     # log(1 - s(x))
    if pos_weight is not None:
        loss = -(pos_weight * target * log_sig + (1 - target) * log_one_minus)
    else:
        loss = -(target * log_sig + (1 - target) * log_one_minus)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


class _TargetIndex(Function):
    """nll_loss's class index: ``target`` with ``ignore_index`` replaced by 0; checked to lie in
    ``[0, C)`` on the CPU (IndexError), clipped to it on a GPU (a check would stop the host once per
    loss; those targets get a NaN weight instead, see ``_TargetWeight``). No gradient."""
    __slots__ = ("ignore_index", "c")

    def __init__(self, ignore_index, c):
        self.ignore_index, self.c = ignore_index, c

    def forward(self, t):
        xp = xp_of(t)
        safe = xp.where(t != self.ignore_index, t, 0)
        if backend.device_of(safe) != backend.CPU:
            return xp.clip(safe, 0, self.c - 1)
        if safe.size and (int(safe.min()) < 0 or int(safe.max()) >= self.c):
            raise IndexError(f"nll_loss: target values must lie in [0, {self.c}) or equal ignore_index, "
                             f"got min {int(safe.min())} max {int(safe.max())}")
        return safe


class _TargetWeight(Function):
    """Each target's weight: 0 at ``ignore_index``, else 1 or ``weight[safe]``; with ``nan_bad``, NaN where
    the target is out of ``[0, C)`` (only possible on a GPU, see ``_TargetIndex``). No gradient."""
    __slots__ = ("ignore_index", "c", "dtype", "nan_bad")

    def __init__(self, ignore_index, c, dtype, nan_bad):
        self.ignore_index, self.c, self.dtype, self.nan_bad = ignore_index, c, dtype, nan_bad

    def forward(self, t, safe=None, weight=None):
        xp = xp_of(t)
        valid = t != self.ignore_index
        w = valid.astype(self.dtype)
        if weight is not None:
            w = w * weight[safe]
        if self.nan_bad and backend.device_of(t) != backend.CPU:
            raw = xp.where(valid, t, 0)
            w = xp.where((raw < 0) | (raw >= self.c), xp.asarray(math.nan, dtype=w.dtype), w)
        return w


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """``-input[n, target[n]]`` (weighted); ``mean`` divides by the total weight of non-ignored targets.

    Targets outside ``[0, C)`` raise IndexError on the CPU; on a GPU they give a NaN loss
    (checking would cost a host synchronisation per call; PyTorch raises a device-side assert)."""
    (x,) = autocast_float32(as_tensor(input))
    t = as_tensor(target, x)
    if t.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: expected int64 class indices as target, got {backend.dtype_name(t.dtype)}")
    if x.ndim < 1 or t.shape != (x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()):
        raise RuntimeError(f"nll_loss: expected target shape {x.shape[:1] + x.shape[2:]} for input {x.shape}, "
                           f"got {t.shape}")
    c = x.shape[1] if x.ndim > 1 else x.shape[0]
    # The index and the weights are ops on the target, so that a compiled step (dg.compile)
    # recomputes them from each call's target instead of baking one call's.
    safe = _TargetIndex(ignore_index, c).apply(t)
    d = 1 if x.ndim > 1 else 0          # (no host check of the index: ``safe`` is in range by construction)
    picked = gather_in_range(x, d, safe.unsqueeze(d)).squeeze(d)
    wt = _TargetWeight(ignore_index, c, x.dtype, True).apply(t, safe, None if weight is None else weight.array)
    loss = -picked * wt
    if reduction == "mean":
        return loss.sum() / wt.sum()  # on the device: no host read
    return _reduce(loss, reduction, "nll_loss")


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross entropy of logits ``input`` (N, C, ...) against class indices (N, ...) or
    class probabilities (N, C, ...), with ``label_smoothing`` as PyTorch defines it."""
    x = as_tensor(input)
    t = as_tensor(target, x)
    logp = log_softmax(x, 1 if x.ndim > 1 else 0)
    c = x.shape[1] if x.ndim > 1 else x.shape[0]
    if backend.is_floating(t.dtype):            # probabilities
        _check_same_shape("cross_entropy", x, t)
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / c
        w = 1 if weight is None else weight.reshape((1, -1) + (1,) * (x.ndim - 2))
        return _reduce(-(logp * t * w).sum(1), reduction, "cross_entropy")
    nll = nll_loss(logp, t, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    valid = _TargetWeight(ignore_index, c, x.dtype, False).apply(t)
    w = 1 if weight is None else weight.reshape((1, -1) + (1,) * (x.ndim - 2))
    smooth = -(logp * w).sum(1) * valid / c
    if reduction == "mean":
        if weight is None:
            denom = valid.sum()
        else:
            safe = _TargetIndex(ignore_index, c).apply(t)
            denom = _TargetWeight(ignore_index, c, x.dtype, False).apply(t, safe, weight.array).sum()
        smooth = smooth.sum() / denom
    else:
        smooth = _reduce(smooth, reduction, "cross_entropy")
    return nll * (1 - label_smoothing) + smooth * label_smoothing


# --------------------------------------------------------------- attention
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    """``softmax(q k^T * scale + mask) v``; a bool mask marks positions that *take part*."""
    q, k, v = as_tensor(query), as_tensor(key), as_tensor(value)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = matmul(q, k.transpose(-2, -1)) * scale
    xp = xp_of(q.array)
    if is_causal:
        L, S = q.shape[-2], k.shape[-2]
        allowed = xp.tril(xp.ones((L, S), dtype=bool))
        s = where(wrap(allowed), s, -math.inf)
    if attn_mask is not None:
        m = as_tensor(attn_mask, q)
        s = where(m, s, -math.inf) if m.dtype == backend.bool_ else s + m
    p = softmax(s, -1)
    if dropout_p:
        p = dropout(p, dropout_p)
    return matmul(p, v)


# Families kept in their own files, re-exported here (a later definition of a name wins).
from distgraph.nn.activation_functions import *  # noqa: E402,F401,F403
from distgraph.nn.loss_functions import *  # noqa: E402,F401,F403
from distgraph.nn.spatial_functions import *  # noqa: E402,F401,F403
from distgraph.nn.spatial_functions import conv_pad_same  # noqa: E402
from distgraph.nn import activation_functions as _af, loss_functions as _lf, spatial_functions as _sf  # noqa: E402

__all__ = list(dict.fromkeys(__all__ + _af.__all__ + _lf.__all__ + _sf.__all__))
