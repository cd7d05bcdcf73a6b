"""Channel-wise dropout, alpha dropout, instance norm and local response norm of
``nn.functional`` (re-exported there)."""
from __future__ import annotations

import math
import warnings

from distgraph import backend
from distgraph.autograd.ops._common import as_tensor, autocast_float32
from distgraph.autograd.tensor import wrap, bump_version
from distgraph.nn.padding_functions import pad
from distgraph.nn.pooling_functions import avg_pool2d

__all__ = ["dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout", "instance_norm",
           "local_response_norm"]


def _check_p(op, p):
    if not 0 <= p <= 1:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, got {p}")


def _keep_mask(x, shape, p):
    """A float mask of ``shape`` (1 with probability ``1 - p``) from the device's generator."""
    gen = backend.generator(x.device)
    return (gen.random(shape, dtype=backend.float32) >= p).astype(x.dtype)


def _channel_shape(x, batched):
    """Mask shape that zeroes whole channels: (N, C, 1, ...) or, unbatched, (C, 1, ...)."""
    lead = 2 if batched else 1
    return tuple(x.shape[:lead]) + (1,) * (x.ndim - lead)


def _feature_dropout(op, nd, input, p, training):
    _check_p(op, p)
    x = as_tensor(input)
    if nd == 1 and x.ndim not in (2, 3):
        raise RuntimeError(f"{op}: expected a 2-D (C, L) or 3-D (N, C, L) input, got {x.ndim}-D")
    if nd > 1 and x.ndim not in (nd + 1, nd + 2):
        warnings.warn(f"{op}: got a {x.ndim}-D input; channel-wise dropout expects {nd + 1}-D or {nd + 2}-D input")
    batched = x.ndim == nd + 2 or (nd == 2 and x.ndim == 3)     # PyTorch reads 3-D as (N, C, L) in dropout2d
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    keep = _keep_mask(x, _channel_shape(x, batched and x.ndim >= 2), p) / (1 - p)
    return x * wrap(keep)


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, L) / (C, L) with probability ``p``, scale the rest by ``1 / (1 - p)``."""
    return _feature_dropout("dropout1d", 1, input, p, training)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) / (C, H, W) with probability ``p`` (3-D input is read as (N, C, L),
    as PyTorch does today)."""
    return _feature_dropout("dropout2d", 2, input, p, training)


def dropout3d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, D, H, W) / (C, D, H, W) with probability ``p``."""
    return _feature_dropout("dropout3d", 3, input, p, training)


_SELU_ALPHA_SCALED = 1.7580993408473766       # SELU's scale * alpha: the value dropped units take (negated)


def _alpha_dropout(op, input, p, training, mask_shape):
    _check_p(op, p)
    x = as_tensor(input)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    keep = _keep_mask(x, mask_shape(x), p)
    a = 1.0 / math.sqrt((_SELU_ALPHA_SCALED ** 2 * p + 1) * (1 - p))
    shift = (keep - 1) * (_SELU_ALPHA_SCALED * a) + _SELU_ALPHA_SCALED * a * p
    return x * wrap(keep * a) + wrap(shift.astype(x.dtype))


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Dropout that keeps SELU's zero mean and unit variance: dropped units go to SELU's negative
    saturation and the result is rescaled, ``y = a * (x * m + alpha' (1 - m)) + b``."""
    return _alpha_dropout("alpha_dropout", input, p, training, lambda x: tuple(x.shape))


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    """``alpha_dropout`` of whole channels of (N, C, ...)."""
    return _alpha_dropout("feature_alpha_dropout", input, p, training,
                          lambda x: _channel_shape(x, True))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Normalise each (sample, channel) plane of (N, C, ...) over its spatial dims."""
    (x,) = autocast_float32(as_tensor(input))
    if x.ndim < 3:
        raise ValueError(f"instance_norm: expected an (N, C, ...) input with at least one spatial dim, "
                         f"got shape {tuple(x.shape)}")
    c = x.shape[1]
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        if t is not None and t.numel() != c:
            raise RuntimeError(f"instance_norm: expected {name} with {c} elements (the input's channels), "
                               f"got {t.numel()}")
    axes = tuple(range(2, x.ndim))
    shape = (1, c) + (1,) * (x.ndim - 2)
    if use_input_stats:
        mean, var = x.mean(axes, keepdim=True), x.var(axes, keepdim=True, correction=0)
        if running_mean is not None:
            n = math.prod(x.shape[2:])
            m = momentum
            running_mean.array[...] = (1 - m) * running_mean.array + m * mean.array.mean(0).reshape(-1)
            unbiased = var.array * (n / max(n - 1, 1))
            running_var.array[...] = (1 - m) * running_var.array + m * unbiased.mean(0).reshape(-1)
            bump_version(running_mean)
            bump_version(running_var)
    else:
        mean, var = running_mean.reshape(shape), running_var.reshape(shape)
    y = (x - mean) * (var + eps).rsqrt()
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """``x / (k + alpha / size * sum of x^2 over the ``size`` nearest channels) ^ beta``, the channel
    window zero padded (``size // 2`` before, ``(size - 1) // 2`` after)."""
    x = as_tensor(input)
    if x.ndim < 3:
        raise ValueError(f"local_response_norm: expected 3-D or higher input, got {x.ndim}-D")
    if x.numel() == 0:
        return x
    sq = (x * x).unsqueeze(1)                                  # (N, 1, C, ...)
    flat = sq.reshape(sq.shape[0], 1, sq.shape[2], -1)         # (N, 1, C, rest)
    flat = pad(flat, (0, 0, size // 2, (size - 1) // 2))
    div = avg_pool2d(flat, (size, 1), stride=1).reshape(x.shape)
    return x / (div * alpha + k).pow(beta)
