"""Univariate continuous distributions: ``Normal``, ``Laplace``, ``Uniform``, ``Exponential``.

Each is reparameterised (``rsample`` is a differentiable function of the parameters and of
parameter-free draws from distgraph's generator, see ``dg.manual_seed``)."""
from __future__ import annotations

import math
import numbers

from distgraph.autograd.creation import full_like
from distgraph.autograd.ops import abs, clamp, erf, erfinv, exp, expm1, log, log1p, sign, where
from distgraph.autograd.tensor import Size
from distgraph.distributions import constraints
from distgraph.distributions.distribution import Distribution
from distgraph.distributions.utils import both, broadcast_all, standard_normal, uniform01
from distgraph.types import finfo

__all__ = ["Normal", "Laplace", "Uniform", "Exponential"]

_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def _batch_shape(values, params):
    """``()`` when every parameter was a Python number (torch's rule), else the broadcast shape."""
    return Size() if all(isinstance(p, numbers.Number) for p in params) else values[0].shape


class Normal(Distribution):
    """``N(loc, scale^2)``: density ``exp(-(x - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi))``.

    Args:
        loc: mean (Tensor or number).
        scale: standard deviation, > 0.
        validate_args: check parameters and ``log_prob``'s values (default: on).
    """
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        values = broadcast_all(loc, scale)
        self.loc, self.scale = values
        super().__init__(_batch_shape(values, (loc, scale)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Normal, batch_shape, _instance, ("loc", "scale"))

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def stddev(self):
        return self.scale

    @property
    def variance(self):
        return self.scale ** 2

    def rsample(self, sample_shape=Size()):
        eps = standard_normal(self._extended_shape(sample_shape), self.loc)
        return self.loc + eps * self.scale

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return -((value - self.loc) ** 2) / (2 * self.scale ** 2) - log(self.scale) - _LOG_SQRT_2PI

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return 0.5 * (1 + erf((value - self.loc) / (self.scale * math.sqrt(2))))

    def icdf(self, value):
        return self.loc + self.scale * erfinv(2 * value - 1) * math.sqrt(2)

    def entropy(self):
        return 0.5 + 0.5 * math.log(2 * math.pi) + log(self.scale)


class Laplace(Distribution):
    """Laplace(loc, scale): density ``exp(-|x - loc| / scale) / (2 scale)``."""
    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        values = broadcast_all(loc, scale)
        self.loc, self.scale = values
        super().__init__(_batch_shape(values, (loc, scale)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Laplace, batch_shape, _instance, ("loc", "scale"))

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        return 2 * self.scale ** 2

    @property
    def stddev(self):
        return math.sqrt(2) * self.scale

    def rsample(self, sample_shape=Size()):
        # u uniform on [eps - 1, 1): the inverse cdf below stays finite
        eps = finfo(self.loc.dtype).eps
        u = uniform01(self._extended_shape(sample_shape), self.loc) * (2 - eps) + (eps - 1)
        return self.loc - self.scale * sign(u) * log1p(-abs(u))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return -log(2 * self.scale) - abs(value - self.loc) / self.scale

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return 0.5 - 0.5 * sign(value - self.loc) * expm1(-abs(value - self.loc) / self.scale)

    def icdf(self, value):
        term = value - 0.5
        return self.loc - self.scale * sign(term) * log1p(-2 * abs(term))

    def entropy(self):
        return 1 + log(2 * self.scale)


class Uniform(Distribution):
    """Uniform on ``[low, high)``: density ``1 / (high - low)``."""
    support_is_dependent = True
    has_rsample = True

    @property
    def arg_constraints(self):
        return {"low": constraints.less_than(self.high), "high": constraints.greater_than(self.low)}

    def __init__(self, low, high, validate_args=None):
        values = broadcast_all(low, high)
        self.low, self.high = values
        super().__init__(_batch_shape(values, (low, high)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Uniform, batch_shape, _instance, ("low", "high"))

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    @property
    def mean(self):
        return (self.high + self.low) / 2

    @property
    def mode(self):
        return full_like(self.high, float("nan"))

    @property
    def stddev(self):
        return (self.high - self.low) / 12 ** 0.5

    @property
    def variance(self):
        return (self.high - self.low) ** 2 / 12

    def rsample(self, sample_shape=Size()):
        u = uniform01(self._extended_shape(sample_shape), self.low)
        return self.low + u * (self.high - self.low)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        inside = both(self.low <= value, self.high > value)
        return where(inside, -log(self.high - self.low), -math.inf)  # (log of 0 outside, without a warning)

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return clamp((value - self.low) / (self.high - self.low), min=0, max=1)

    def icdf(self, value):
        return value * (self.high - self.low) + self.low

    def entropy(self):
        return log(self.high - self.low)


class Exponential(Distribution):
    """Exponential(rate): density ``rate exp(-rate x)`` on ``x >= 0``."""
    arg_constraints = {"rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, rate, validate_args=None):
        (self.rate,) = broadcast_all(rate)
        super().__init__(_batch_shape((self.rate,), (rate,)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Exponential, batch_shape, _instance, ("rate",))

    @property
    def mean(self):
        return 1 / self.rate

    @property
    def mode(self):
        return self.rate * 0

    @property
    def stddev(self):
        return 1 / self.rate

    @property
    def variance(self):
        return self.rate ** -2

    def rsample(self, sample_shape=Size()):
        u = uniform01(self._extended_shape(sample_shape), self.rate)
        return -log1p(-u) / self.rate  # u < 1: finite, >= 0

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return log(self.rate) - self.rate * value

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return 1 - exp(-self.rate * value)

    def icdf(self, value):
        return -log1p(-value) / self.rate

    def entropy(self):
        return 1 - log(self.rate)
