"""``MultivariateNormal`` and ``Independent`` (batch dims reinterpreted as event dims)."""
from __future__ import annotations

import math

from distgraph.autograd.creation import eye
from distgraph.autograd.ops import broadcast_shapes, log, matmul
from distgraph.autograd.tensor import Size, Tensor
from distgraph.distributions import constraints
from distgraph.distributions.utils import cholesky, solve_tril
from distgraph.distributions.distribution import Distribution
from distgraph.distributions.utils import lazy_property, standard_normal, sum_rightmost

__all__ = ["MultivariateNormal", "Independent"]


def _half_log_det(scale_tril):
    """``log det(L) = sum(log diag L)``: half the log-determinant of ``L L^T``."""
    return log(scale_tril.diagonal(dim1=-2, dim2=-1)).sum(-1)


def batch_mahalanobis(scale_tril, x):
    """``x^T (L L^T)^{-1} x = |L^{-1} x|^2`` over the last dim, the batch dims broadcast."""
    batch = broadcast_shapes(scale_tril.shape[:-2], x.shape[:-1])
    n = x.shape[-1]
    y = solve_tril(scale_tril.expand(batch + (n, n)), x.expand(batch + (n,)).unsqueeze(-1))
    return (y.squeeze(-1) ** 2).sum(-1)


def _inverse_from_tril(scale_tril):
    """``(L L^T)^{-1} = L^{-T} L^{-1}``."""
    n = scale_tril.shape[-1]
    inv = solve_tril(scale_tril, eye(n, dtype=scale_tril.dtype, device=scale_tril.device))
    return inv.mT @ inv


class MultivariateNormal(Distribution):
    """``N(loc, Σ)`` over vectors of length ``D = loc.shape[-1]``, with ``Σ`` given as exactly one of
    ``covariance_matrix``, ``precision_matrix`` (``Σ^{-1}``) or ``scale_tril`` (``L`` lower with a
    positive diagonal, ``Σ = L L^T``).  Everything is computed from ``L``:
    ``log_prob(x) = -(D log(2π) + |L^{-1}(x - loc)|^2) / 2 - sum(log diag L)``, ``rsample = loc + L ε``.

    Raises:
        ValueError: ``loc`` is 0-dim, not exactly one matrix is given, a matrix is not at least 2-dim,
            or (validating) a matrix is not positive definite / lower Cholesky.
    """
    arg_constraints = {"loc": constraints.real_vector, "covariance_matrix": constraints.positive_definite,
                       "precision_matrix": constraints.positive_definite, "scale_tril": constraints.lower_cholesky}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, covariance_matrix=None, precision_matrix=None, scale_tril=None, validate_args=None):
        if not isinstance(loc, Tensor) or loc.ndim < 1:
            raise ValueError("loc must be at least one-dimensional.")
        given = [m for m in (covariance_matrix, precision_matrix, scale_tril) if m is not None]
        if len(given) != 1:
            raise ValueError("Exactly one of covariance_matrix or precision_matrix or scale_tril may be specified.")
        names = {id(covariance_matrix): "covariance_matrix", id(precision_matrix): "precision_matrix",
                 id(scale_tril): "scale_tril"}
        matrix = given[0]
        name = names[id(matrix)]
        if matrix.ndim < 2:
            what = "scale_tril matrix" if name == "scale_tril" else name
            raise ValueError(f"{what} must be at least two-dimensional, with optional leading batch dimensions")
        batch_shape = Size(broadcast_shapes(matrix.shape[:-2], loc.shape[:-1]))
        self.__dict__[name] = matrix.expand(batch_shape + (-1, -1))
        self.loc = loc.expand(batch_shape + (-1,))
        super().__init__(batch_shape, self.loc.shape[-1:], validate_args=validate_args)
        if name == "scale_tril":
            self._unbroadcasted_scale_tril = matrix
        elif name == "covariance_matrix":
            self._unbroadcasted_scale_tril = cholesky(matrix)
        else:  # Σ = P^{-1}; its Cholesky factor from P's
            self._unbroadcasted_scale_tril = cholesky(_inverse_from_tril(cholesky(matrix)))

    def expand(self, batch_shape, _instance=None):
        new = self._expand_params(MultivariateNormal, batch_shape, _instance,
                                  ("loc", "covariance_matrix", "precision_matrix", "scale_tril"),
                                  event_dims={"loc": 1, "covariance_matrix": 2, "precision_matrix": 2,
                                              "scale_tril": 2})
        new._unbroadcasted_scale_tril = self._unbroadcasted_scale_tril
        return new

    def _full(self, matrix):
        return matrix.expand(self._batch_shape + self._event_shape + self._event_shape)

    @lazy_property
    def scale_tril(self):
        return self._full(self._unbroadcasted_scale_tril)

    @lazy_property
    def covariance_matrix(self):
        low = self._unbroadcasted_scale_tril
        return self._full(low @ low.mT)

    @lazy_property
    def precision_matrix(self):
        return self._full(_inverse_from_tril(self._unbroadcasted_scale_tril))

    @property
    def mean(self):
        return self.loc

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        return (self._unbroadcasted_scale_tril ** 2).sum(-1).expand(self._batch_shape + self._event_shape)

    def rsample(self, sample_shape=Size()):
        eps = standard_normal(self._extended_shape(sample_shape), self.loc)
        return self.loc + matmul(self._unbroadcasted_scale_tril, eps.unsqueeze(-1)).squeeze(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        m = batch_mahalanobis(self._unbroadcasted_scale_tril, value - self.loc)
        d = self._event_shape[0]
        return -0.5 * (d * math.log(2 * math.pi) + m) - _half_log_det(self._unbroadcasted_scale_tril)

    def entropy(self):
        d = self._event_shape[0]
        h = 0.5 * d * (1.0 + math.log(2 * math.pi)) + _half_log_det(self._unbroadcasted_scale_tril)
        return h.expand(self._batch_shape) if len(self._batch_shape) else h


class Independent(Distribution):
    """``base_distribution`` with its ``reinterpreted_batch_ndims`` rightmost batch dims made event dims:
    ``log_prob`` and ``entropy`` are summed over them (a diagonal Gaussian as one event).

    Raises:
        ValueError: more dims asked for than the base has batch dims.
    """
    arg_constraints: dict = {}

    def __init__(self, base_distribution, reinterpreted_batch_ndims, validate_args=None):
        n = len(base_distribution.batch_shape)
        if reinterpreted_batch_ndims > n:
            raise ValueError(f"Expected reinterpreted_batch_ndims <= len(base_distribution.batch_shape), "
                             f"actual {reinterpreted_batch_ndims} vs {n}")
        shape = base_distribution.batch_shape + base_distribution.event_shape
        event_dim = reinterpreted_batch_ndims + len(base_distribution.event_shape)
        self.base_dist = base_distribution
        self.reinterpreted_batch_ndims = reinterpreted_batch_ndims
        super().__init__(shape[:len(shape) - event_dim], shape[len(shape) - event_dim:],
                         validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Independent, _instance)
        batch_shape = Size(batch_shape)
        new.base_dist = self.base_dist.expand(batch_shape + self._event_shape[:self.reinterpreted_batch_ndims])
        new.reinterpreted_batch_ndims = self.reinterpreted_batch_ndims
        Distribution.__init__(new, batch_shape, self._event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def has_rsample(self):
        return self.base_dist.has_rsample

    @property
    def has_enumerate_support(self):
        return False if self.reinterpreted_batch_ndims > 0 else self.base_dist.has_enumerate_support

    @constraints.dependent_property
    def support(self):
        base = self.base_dist.support
        return constraints.independent(base, self.reinterpreted_batch_ndims) if self.reinterpreted_batch_ndims \
            else base

    @property
    def mean(self):
        return self.base_dist.mean

    @property
    def mode(self):
        return self.base_dist.mode

    @property
    def variance(self):
        return self.base_dist.variance

    def sample(self, sample_shape=Size()):
        return self.base_dist.sample(sample_shape)

    def rsample(self, sample_shape=Size()):
        return self.base_dist.rsample(sample_shape)

    def log_prob(self, value):
        return sum_rightmost(self.base_dist.log_prob(value), self.reinterpreted_batch_ndims)

    def entropy(self):
        return sum_rightmost(self.base_dist.entropy(), self.reinterpreted_batch_ndims)

    def enumerate_support(self, expand=True):
        if self.reinterpreted_batch_ndims > 0:
            raise NotImplementedError("Enumeration over cartesian product is not implemented")
        return self.base_dist.enumerate_support(expand=expand)

    def __repr__(self):
        return f"{type(self).__name__}({self.base_dist!r}, {self.reinterpreted_batch_ndims})"
