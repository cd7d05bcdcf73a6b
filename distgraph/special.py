"""``torch.special``: the special functions under SciPy's names, mapped onto distgraph's ops (each
differentiable where PyTorch's is)."""
from __future__ import annotations

import math

import numpy as np

from distgraph.autograd.function import Function
from distgraph.autograd.ops import (digamma, erf, erfc, erfinv, exp2, expm1, i0, lgamma, log1p, log_softmax,
                                    logit, logsumexp, mvlgamma, polygamma, round, sigmoid, sinc, softmax, xlogy)
from distgraph.autograd.ops._common import as_tensor, xp_of
from distgraph.autograd.ops.elementwise import log, where

__all__ = ["digamma", "psi", "polygamma", "gammaln", "multigammaln", "erf", "erfc", "erfinv", "expit", "logit",
           "exp2", "expm1", "log1p", "i0", "sinc", "logsumexp", "softmax", "log_softmax", "round", "xlogy",
           "xlog1py", "entr", "ndtr", "ndtri", "log_ndtr"]

psi = digamma
gammaln = lgamma
expit = sigmoid


def multigammaln(input, p):
    """The multivariate log-gamma of dimension ``p`` (``torch.mvlgamma``)."""
    return mvlgamma(input, p)


def xlog1py(input, other):
    """``x * log1p(y)``, 0 where ``x`` is 0."""
    x, y = as_tensor(input), as_tensor(other)
    return where(x == 0, x * 0, x * log1p(y))


class Entr(Function):
    """``-x log x``: 0 at 0, -inf below; d/dx = ``-(1 + log x)`` (inf at 0, NaN below, as PyTorch's)."""
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        xp = xp_of(x)
        self.x = x
        with np.errstate(divide="ignore", invalid="ignore"):
            return xp.where(x > 0, -x * xp.log(xp.where(x > 0, x, 1)), xp.where(x == 0, 0.0, -xp.inf)).astype(x.dtype)

    def backward(self, gy):
        xp = xp_of(self.x)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (gy * -(1 + xp.log(self.x)),)


def entr(input):
    """``-x log x`` elementwise: 0 at 0, -inf for negative ``x``."""
    return Entr().apply(as_tensor(input))


def ndtr(input):
    """The standard normal CDF: ``(1 + erf(x / sqrt 2)) / 2``."""
    return 0.5 * erfc(-as_tensor(input) / math.sqrt(2))


def ndtri(input):
    """The inverse of ``ndtr``: ``sqrt 2 * erfinv(2p - 1)``."""
    return math.sqrt(2) * erfinv(2 * as_tensor(input) - 1)


def log_ndtr(input):
    """``log(ndtr(x))``."""
    return log(ndtr(input))
