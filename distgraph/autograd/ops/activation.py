"""Activation functions: ``relu``, ``gelu`` (erf and tanh forms), ``silu``, ``softplus``,
``leaky_relu``, ``elu`` (``sigmoid`` and ``tanh`` live with the other unary maths)."""
from __future__ import annotations

import math

from distgraph import backend
from distgraph.autograd.function import Function
from distgraph.autograd.ops._common import as_tensor, xp_of
from distgraph.autograd.ops.elementwise import _floating

__all__ = ["relu", "gelu", "silu", "softplus", "leaky_relu", "elu"]


# =============================================================== activations
class Relu(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = xp_of(x).maximum(x, 0)
        return y

    def backward(self, gy):
        return (gy * (self.out > 0),)


class Gelu(Function):
    """float16 is computed in float32 and rounded once (PyTorch's "opmath"): float16 in,
    float16 out, forward and gradient (erf's float16 loop would otherwise give float64)."""
    __slots__ = ("x", "approximate")
    saves = (0,)

    def __init__(self, approximate):
        self.approximate = approximate

    def forward(self, x):
        self.x = x
        xc = _opmath(x)
        if self.approximate == "tanh":
            y = 0.5 * xc * (1 + xp_of(x).tanh(_GELU_C * (xc + 0.044715 * xc ** 3)))
        else:
            y = 0.5 * xc * (1 + backend.erf(xc / math.sqrt(2)))
        return y.astype(x.dtype, copy=False)

    def backward(self, gy):
        x = _opmath(self.x)
        xp = xp_of(x)
        if self.approximate == "tanh":
            t = xp.tanh(_GELU_C * (x + 0.044715 * x ** 3))
            dt = (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * x * x)
            dy = 0.5 * (1 + t) + 0.5 * x * dt
        else:
            cdf = 0.5 * (1 + backend.erf(x / math.sqrt(2)))
            pdf = xp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
            dy = cdf + x * pdf
        return ((_opmath(gy) * dy).astype(gy.dtype, copy=False),)


def _opmath(x):
    """float16 widened to float32 for the arithmetic; other dtypes as they are."""
    return x.astype(backend.float32) if x.dtype == backend.float16 else x


_GELU_C = math.sqrt(2 / math.pi)


class Silu(Function):
    __slots__ = ("x", "s")
    saves = (0,)

    def forward(self, x):
        self.x = x
        self.s = s = 0.5 * (xp_of(x).tanh(0.5 * x) + 1)
        return x * s

    def backward(self, gy):
        s = self.s
        return (gy * s * (1 + self.x * (1 - s)),)


class Softplus(Function):
    __slots__ = ("x", "beta", "threshold")
    saves = (0,)

    def __init__(self, beta, threshold):
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        self.x = x
        xp = xp_of(x)
        bx = self.beta * x
        return xp.where(bx > self.threshold, x, xp.logaddexp(0, bx) / self.beta).astype(x.dtype, copy=False)

    def backward(self, gy):
        xp = xp_of(gy)
        bx = self.beta * self.x
        s = 0.5 * (xp.tanh(0.5 * bx) + 1)
        return (gy * xp.where(bx > self.threshold, 1, s).astype(gy.dtype, copy=False),)


class LeakyRelu(Function):
    __slots__ = ("x", "slope")
    saves = (0,)

    def __init__(self, slope):
        self.slope = slope

    def forward(self, x):
        self.x = x
        return xp_of(x).where(x > 0, x, x * self.slope)

    def backward(self, gy):
        return (xp_of(gy).where(self.x > 0, gy, gy * self.slope),)


class Elu(Function):
    __slots__ = ("x", "alpha")
    saves = (0,)

    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, x):
        self.x = x
        xp = xp_of(x)
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0)))

    def backward(self, gy):
        xp = xp_of(gy)
        x = self.x
        return (xp.where(x > 0, gy, gy * self.alpha * xp.exp(xp.minimum(x, 0))),)


def relu(input):
    """``max(x, 0)``; gradient 0 at 0."""
    return Relu().apply(as_tensor(input))


def gelu(input, approximate="none"):
    """``x * Phi(x)`` (``approximate="none"``, with erf) or the tanh approximation."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu(approximate).apply(_floating(input))


def silu(input):
    """``x * sigmoid(x)``."""
    return Silu().apply(_floating(input))


def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold``."""
    return Softplus(beta, threshold).apply(_floating(input))


def leaky_relu(input, negative_slope=0.01):
    """``x`` where ``x > 0`` else ``negative_slope * x``."""
    return LeakyRelu(negative_slope).apply(as_tensor(input))


def elu(input, alpha=1.0):
    """``x`` where ``x > 0`` else ``alpha (exp(x) - 1)``."""
    return Elu(alpha).apply(_floating(input))
