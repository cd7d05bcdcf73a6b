"""The gamma family: ``Gamma``, ``Beta``, ``Dirichlet``, and the counting ``Poisson``.

Their densities and entropies need ``lgamma``/``digamma`` (distgraph's ops, SciPy on the host).
Draws come from the device generator's gamma and Poisson samplers (``dg.manual_seed``); unlike
PyTorch's, ``Gamma``/``Beta``/``Dirichlet`` have no ``rsample`` (PyTorch differentiates the gamma
sampler implicitly; here ``sample()`` carries no gradient, ``log_prob`` does).
"""
from __future__ import annotations

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.ops import digamma, lgamma, log, log1p, where, xlogy
from distgraph.autograd.tensor import Size, wrap
from distgraph.distributions import constraints
from distgraph.distributions.continuous import _batch_shape
from distgraph.distributions.distribution import Distribution
from distgraph.distributions.utils import broadcast_all

__all__ = ["Gamma", "Beta", "Dirichlet", "Poisson"]


def _standard_gamma(concentration, shape):
    """``Gamma(concentration, 1)`` draws of ``shape`` (``concentration`` broadcast to it), no graph."""
    a = concentration.detach().array
    xp = backend.get_array_module(a)
    gen = backend.generator(concentration.device)
    draws = gen.standard_gamma(xp.broadcast_to(a, tuple(shape)).astype("float64"))
    # a draw of exactly 0 (tiny concentrations) would give -inf in log_prob: the smallest positive instead
    tiny = xp.finfo(a.dtype).tiny
    return wrap(xp.maximum(draws, tiny).astype(a.dtype))


class Gamma(Distribution):
    """Gamma(concentration, rate): density ``rate^a x^(a-1) exp(-rate x) / Gamma(a)`` on ``x > 0``."""
    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = False

    def __init__(self, concentration, rate, validate_args=None):
        values = broadcast_all(concentration, rate)
        self.concentration, self.rate = values
        super().__init__(_batch_shape(values, (concentration, rate)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Gamma, batch_shape, _instance, ("concentration", "rate"))

    @property
    def mean(self):
        return self.concentration / self.rate

    @property
    def mode(self):
        return ((self.concentration - 1) / self.rate).clamp(min=0)

    @property
    def variance(self):
        return self.concentration / self.rate ** 2

    def sample(self, sample_shape=Size()):
        with grad_mode.no_grad():
            shape = self._extended_shape(sample_shape)
            return _standard_gamma(self.concentration, shape) / self.rate.expand(shape)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration, self.rate
        return xlogy(a, b) + xlogy(a - 1, value) - b * value - lgamma(a)

    def cdf(self, value):
        raise NotImplementedError("Gamma.cdf needs the regularized incomplete gamma function, which distgraph "
                                  "has no op for yet")

    def entropy(self):
        a = self.concentration
        return a - log(self.rate) + lgamma(a) + (1 - a) * digamma(a)


class Beta(Distribution):
    """Beta(concentration1, concentration0) on ``(0, 1)``: density ``x^(a-1) (1-x)^(b-1) / B(a, b)``."""
    arg_constraints = {"concentration1": constraints.positive, "concentration0": constraints.positive}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, concentration1, concentration0, validate_args=None):
        values = broadcast_all(concentration1, concentration0)
        self.concentration1, self.concentration0 = values
        super().__init__(_batch_shape(values, (concentration1, concentration0)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Beta, batch_shape, _instance, ("concentration1", "concentration0"))

    @property
    def mean(self):
        return self.concentration1 / (self.concentration1 + self.concentration0)

    @property
    def mode(self):
        from distgraph.autograd.ops import stack
        return Dirichlet(stack([self.concentration1, self.concentration0], -1), validate_args=False).mode[..., 0]

    @property
    def variance(self):
        total = self.concentration1 + self.concentration0
        return self.concentration1 * self.concentration0 / (total ** 2 * (total + 1))

    def sample(self, sample_shape=Size()):
        with grad_mode.no_grad():
            shape = self._extended_shape(sample_shape)
            x, y = _standard_gamma(self.concentration1, shape), _standard_gamma(self.concentration0, shape)
            return x / (x + y)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        a, b = self.concentration1, self.concentration0
        return xlogy(a - 1, value) + (b - 1) * log1p(-value) - _log_beta(a, b)

    def entropy(self):
        a, b = self.concentration1, self.concentration0
        total = a + b
        return (_log_beta(a, b) - (a - 1) * digamma(a) - (b - 1) * digamma(b)
                + (total - 2) * digamma(total))


def _log_beta(a, b):
    return lgamma(a) + lgamma(b) - lgamma(a + b)


class Dirichlet(Distribution):
    """Dirichlet(concentration) over the simplex (the last dim of ``concentration`` is the event)."""
    arg_constraints = {"concentration": constraints.independent(constraints.positive, 1)}
    support = constraints.simplex
    has_rsample = False

    def __init__(self, concentration, validate_args=None):
        if concentration.ndim < 1:
            raise ValueError("`concentration` parameter must be at least one-dimensional.")
        self.concentration = concentration
        super().__init__(concentration.shape[:-1], concentration.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Dirichlet, batch_shape, _instance, ("concentration",), {"concentration": 1})

    @property
    def mean(self):
        return self.concentration / self.concentration.sum(-1, keepdim=True)

    @property
    def mode(self):
        """``(c - 1)+ / sum (c - 1)+``; where every concentration is below 1, the corner of the largest."""
        from distgraph.nn.functional import one_hot
        c = self.concentration
        above = (c - 1).clamp(min=0)
        total = above.sum(-1, keepdim=True)
        mode = above / where(total > 0, total, total * 0 + 1)
        corner = one_hot(c.argmax(-1), c.shape[-1]).to(c.dtype)
        return where((c < 1).all(-1, keepdim=True), corner, mode)

    @property
    def variance(self):
        total = self.concentration.sum(-1, keepdim=True)
        return self.concentration * (total - self.concentration) / (total ** 2 * (total + 1))

    def sample(self, sample_shape=Size()):
        with grad_mode.no_grad():
            g = _standard_gamma(self.concentration, self._extended_shape(sample_shape))
            return g / g.sum(-1, keepdim=True)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        c = self.concentration
        return xlogy(c - 1, value).sum(-1) + lgamma(c.sum(-1)) - lgamma(c).sum(-1)

    def entropy(self):
        c = self.concentration
        k = c.shape[-1]
        total = c.sum(-1)
        return (lgamma(c).sum(-1) - lgamma(total) - (k - total) * digamma(total)
                - ((c - 1) * digamma(c)).sum(-1))


class Poisson(Distribution):
    """Poisson(rate) over the counts 0, 1, 2, ...: ``P(k) = rate^k exp(-rate) / k!``."""
    arg_constraints = {"rate": constraints.nonnegative}
    support = constraints.nonnegative_integer

    def __init__(self, rate, validate_args=None):
        (self.rate,) = broadcast_all(rate)
        super().__init__(_batch_shape((self.rate,), (rate,)), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Poisson, batch_shape, _instance, ("rate",))

    @property
    def mean(self):
        return self.rate

    @property
    def mode(self):
        return self.rate.floor()

    @property
    def variance(self):
        return self.rate

    def sample(self, sample_shape=Size()):
        with grad_mode.no_grad():
            shape = tuple(self._extended_shape(sample_shape))
            lam = self.rate.detach().array
            xp = backend.get_array_module(lam)
            draws = backend.generator(self.rate.device).poisson(xp.broadcast_to(lam, shape))
            return wrap(draws.astype(lam.dtype))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        rate = self.rate
        return xlogy(value, rate) - rate - lgamma(value + 1)
