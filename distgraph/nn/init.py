"""Initialisers (``dg.nn.init``): in place, under ``no_grad``, drawing from the tensor's device generator."""
from __future__ import annotations

import math

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.tensor import bump_version

__all__ = ["calculate_gain", "uniform_", "normal_", "zeros_", "ones_", "constant_", "xavier_uniform_",
           "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "orthogonal_", "eye_", "dirac_",
           "sparse_", "xavier_uniform", "kaiming_normal"]


def calculate_gain(nonlinearity, param=None):
    """PyTorch's recommended gains: relu sqrt(2), tanh 5/3, selu 3/4, leaky_relu sqrt(2/(1+slope^2)), else 1."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fill(tensor, draw):
    """Write ``draw(generator, shape)`` (float64 on the tensor's device) into ``tensor``."""
    with grad_mode.no_grad():
        gen = backend.generator(tensor.device)
        tensor.array[...] = draw(gen, tensor.shape).astype(tensor.dtype, copy=False)
        bump_version(tensor)
    return tensor


def _fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor with at least 2 dims, got shape {tensor.shape}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def uniform_(tensor, a=0.0, b=1.0):
    return _fill(tensor, lambda g, s: g.uniform(a, b, s))


def normal_(tensor, mean=0.0, std=1.0):
    return _fill(tensor, lambda g, s: backend.normal(g, mean, std, s))


def constant_(tensor, val):
    with grad_mode.no_grad():
        return tensor.fill_(val)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    """U(-a, a), ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    fi, fo = _fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fi + fo))
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor, gain=1.0):
    """N(0, std^2), ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fi, fo = _fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fi + fo)))


def _kaiming_std(tensor, a, mode, nonlinearity):
    fi, fo = _fan_in_and_fan_out(tensor)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return calculate_gain(nonlinearity, a) / math.sqrt(fi if mode == "fan_in" else fo)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-b, b), ``b = gain * sqrt(3 / fan)``."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, std^2), ``std = gain / sqrt(fan)``."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """N(mean, std^2) restricted to [a, b] (redrawing out-of-range values)."""
    def draw(g, shape):
        xp = backend.xp_for(tensor.device)
        out = backend.normal(g, mean, std, shape)
        bad = (out < a) | (out > b)
        while bool(bad.any()):  # a host read per round: initialisation, not the training step
            out = xp.where(bad, backend.normal(g, mean, std, shape), out)
            bad = (out < a) | (out > b)
        return out
    return _fill(tensor, draw)


def orthogonal_(tensor, gain=1.0):
    """A (semi-)orthogonal matrix from the QR of a normal draw, sign-corrected as PyTorch does."""
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: expected at least 2 dims, got shape {tensor.shape}")
    rows, cols = tensor.shape[0], tensor.numel() // tensor.shape[0]

    def draw(g, shape):
        xp = backend.xp_for(tensor.device)
        flat = g.standard_normal((rows, cols))
        if rows < cols:
            flat = flat.T
        q, r = xp.linalg.qr(flat)
        q = q * xp.sign(xp.diagonal(r))
        if rows < cols:
            q = q.T
        return (gain * q).reshape(shape)
    return _fill(tensor, draw)


def eye_(tensor):
    """The identity matrix (a 2-d tensor), as PyTorch's ``eye_``."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: expected a 2-d tensor, got shape {tensor.shape}")
    return _fill(tensor, lambda g, s: backend.xp_for(tensor.device).eye(s[0], s[1]))


def dirac_(tensor, groups=1):
    """Dirac delta kernels for a 3-, 4- or 5-d conv weight: the convolution keeps its input channels."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: expected a 3-, 4- or 5-d tensor, got shape {tensor.shape}")
    out_per = tensor.shape[0] // groups
    if tensor.shape[0] % groups:
        raise ValueError(f"dirac_: dim 0 ({tensor.shape[0]}) must be divisible by groups ({groups})")

    def draw(g, shape):
        xp = backend.xp_for(tensor.device)
        w = xp.zeros(shape)
        centre = tuple(k // 2 for k in shape[2:])
        for grp in range(groups):
            for d in range(min(out_per, shape[1])):
                w[(grp * out_per + d, d) + centre] = 1
        return w
    return _fill(tensor, draw)


def sparse_(tensor, sparsity, std=0.01):
    """A 2-d tensor drawn from N(0, std^2) with a fraction ``sparsity`` of each column set to zero."""
    if tensor.ndim != 2:
        raise ValueError(f"sparse_: expected a 2-d tensor, got shape {tensor.shape}")
    rows, cols = tensor.shape
    zeros = int(math.ceil(sparsity * rows))

    def draw(g, shape):
        w = backend.normal(g, 0, std, shape)
        for c in range(cols):
            w[backend.permutation(g, rows)[:zeros], c] = 0
        return w
    return _fill(tensor, draw)


def xavier_uniform(tensor, gain=1.0):  # PyTorch's deprecated spellings, still in old scripts
    return xavier_uniform_(tensor, gain)


def kaiming_normal(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    return kaiming_normal_(tensor, a, mode, nonlinearity)
