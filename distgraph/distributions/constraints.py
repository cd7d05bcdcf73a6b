"""Constraints: the sets a parameter or a sample must lie in (``torch.distributions.constraints``'s names).

``c.check(value)`` returns a bool Tensor, one element per batch element: ``event_dim``
rightmost dims are reduced (a ``simplex`` checks whole vectors).  Distributions use them in
``arg_constraints`` (checked in the constructor) and ``support`` (checked by ``log_prob``).
"""
from __future__ import annotations

import numpy as np

from distgraph.autograd.tensor import Tensor, tensor
from distgraph.distributions.utils import both

__all__ = ["Constraint", "dependent", "dependent_property", "is_dependent", "independent", "boolean", "one_hot",
           "real", "real_vector", "positive", "nonnegative", "greater_than", "greater_than_eq", "less_than",
           "interval", "half_open_interval", "unit_interval", "integer_interval", "nonnegative_integer",
           "positive_integer", "simplex", "lower_triangular", "lower_cholesky", "positive_definite",
           "symmetric"]


def _all_rightmost(x, n):
    """``x.all()`` over its ``n`` rightmost dims."""
    for _ in range(n):
        x = x.all(-1)
    return x


def _fmt(bound):
    return bound.item() if isinstance(bound, Tensor) and bound.numel() == 1 else bound


class Constraint:
    """A region of values; ``is_discrete`` and ``event_dim`` as in torch."""
    is_discrete = False
    event_dim = 0

    def check(self, value):
        raise NotImplementedError

    def __repr__(self):
        return type(self).__name__.lstrip("_") + "()"


class _Dependent(Constraint):
    """A placeholder whose region depends on other parameters: never checked."""

    def __init__(self, *, is_discrete=False, event_dim=0):
        self.is_discrete, self.event_dim = is_discrete, event_dim

    def __call__(self, *, is_discrete=False, event_dim=0):
        return _Dependent(is_discrete=is_discrete, event_dim=event_dim)

    def check(self, value):
        raise ValueError("Cannot determine validity of dependent constraint")


def is_dependent(constraint):
    return isinstance(constraint, _Dependent)


class _DependentProperty(property, _Dependent):
    """``@constraints.dependent_property``: a property on the class that is a dependent constraint."""

    def __init__(self, fn=None, *, is_discrete=False, event_dim=0):
        property.__init__(self, fn)
        _Dependent.__init__(self, is_discrete=is_discrete, event_dim=event_dim)

    def __call__(self, fn):
        return _DependentProperty(fn, is_discrete=self.is_discrete, event_dim=self.event_dim)


class _IndependentConstraint(Constraint):
    """``base`` with ``reinterpreted_batch_ndims`` more dims reduced."""

    def __init__(self, base_constraint, reinterpreted_batch_ndims):
        self.base_constraint = base_constraint
        self.reinterpreted_batch_ndims = reinterpreted_batch_ndims

    @property
    def is_discrete(self):
        return self.base_constraint.is_discrete

    @property
    def event_dim(self):
        return self.base_constraint.event_dim + self.reinterpreted_batch_ndims

    def check(self, value):
        return _all_rightmost(self.base_constraint.check(value), self.reinterpreted_batch_ndims)

    def __repr__(self):
        return f"IndependentConstraint({self.base_constraint!r}, {self.reinterpreted_batch_ndims})"


class _Boolean(Constraint):
    is_discrete = True

    def check(self, value):
        return (value == 0) | (value == 1)  # (| is safe: both sides come from one value)


class _OneHot(Constraint):
    is_discrete = True
    event_dim = 1

    def check(self, value):
        return both(((value == 0) | (value == 1)).all(-1), value.sum(-1) == 1)


class _IntegerInterval(Constraint):
    is_discrete = True

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound, self.upper_bound = lower_bound, upper_bound

    def check(self, value):
        return both(value % 1 == 0, value >= self.lower_bound, value <= self.upper_bound)

    def __repr__(self):
        return f"IntegerInterval(lower_bound={_fmt(self.lower_bound)}, upper_bound={_fmt(self.upper_bound)})"


class _IntegerGreaterThan(Constraint):
    is_discrete = True

    def __init__(self, lower_bound):
        self.lower_bound = lower_bound

    def check(self, value):
        return both(value % 1 == 0, value >= self.lower_bound)

    def __repr__(self):
        return f"IntegerGreaterThan(lower_bound={_fmt(self.lower_bound)})"


class _Real(Constraint):
    def check(self, value):
        return value == value  # False only for NaN


class _GreaterThan(Constraint):
    def __init__(self, lower_bound):
        self.lower_bound = lower_bound

    def check(self, value):
        return value > self.lower_bound

    def __repr__(self):
        return f"GreaterThan(lower_bound={_fmt(self.lower_bound)})"


class _GreaterThanEq(_GreaterThan):
    def check(self, value):
        return value >= self.lower_bound

    def __repr__(self):
        return f"GreaterThanEq(lower_bound={_fmt(self.lower_bound)})"


class _LessThan(Constraint):
    def __init__(self, upper_bound):
        self.upper_bound = upper_bound

    def check(self, value):
        return value < self.upper_bound

    def __repr__(self):
        return f"LessThan(upper_bound={_fmt(self.upper_bound)})"


class _Interval(Constraint):
    """The closed interval ``[lower_bound, upper_bound]``."""

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound, self.upper_bound = lower_bound, upper_bound

    def check(self, value):
        return both(value >= self.lower_bound, value <= self.upper_bound)

    def __repr__(self):
        return (f"{type(self).__name__.lstrip('_')}(lower_bound={_fmt(self.lower_bound)}, "
                f"upper_bound={_fmt(self.upper_bound)})")


class _HalfOpenInterval(_Interval):
    """``[lower_bound, upper_bound)``."""

    def check(self, value):
        return both(value >= self.lower_bound, value < self.upper_bound)


class _Simplex(Constraint):
    """Nonnegative vectors summing to one (to within 1e-6)."""
    event_dim = 1

    def check(self, value):
        return both((value >= 0).all(-1), (value.sum(-1) - 1).abs() < 1e-6)


class _LowerTriangular(Constraint):
    event_dim = 2

    def check(self, value):
        return (value.tril() == value).flatten(-2).all(-1)


class _LowerCholesky(Constraint):
    """Lower triangular with a positive diagonal."""
    event_dim = 2

    def check(self, value):
        lower = (value.tril() == value).flatten(-2).all(-1)
        return both(lower, (value.diagonal(dim1=-2, dim2=-1) > 0).all(-1))


class _Symmetric(Constraint):
    event_dim = 2

    def check(self, value):
        a = value.detach().numpy() if value.device.type == "cpu" else value.detach().cpu().numpy()
        ok = np.isclose(a, np.swapaxes(a, -1, -2), atol=1e-6).all(axis=(-1, -2))
        return tensor(ok, device=value.device)


class _PositiveDefinite(_Symmetric):
    """Symmetric with positive eigenvalues (a Cholesky factorisation exists)."""

    def check(self, value):
        sym = _Symmetric.check(self, value)
        a = value.detach().numpy() if value.device.type == "cpu" else value.detach().cpu().numpy()
        flat = a.reshape((-1,) + a.shape[-2:])
        ok = np.array([_has_cholesky(m) for m in flat], dtype=bool).reshape(a.shape[:-2])
        return both(sym, tensor(ok, device=value.device))


def _has_cholesky(m):
    try:
        np.linalg.cholesky(m)
        return True
    except np.linalg.LinAlgError:
        return False


dependent = _Dependent()
dependent_property = _DependentProperty
independent = _IndependentConstraint
boolean = _Boolean()
one_hot = _OneHot()
real = _Real()
real_vector = independent(real, 1)
positive = _GreaterThan(0.0)
nonnegative = _GreaterThanEq(0.0)
greater_than = _GreaterThan
greater_than_eq = _GreaterThanEq
less_than = _LessThan
interval = _Interval
half_open_interval = _HalfOpenInterval
unit_interval = _Interval(0.0, 1.0)
integer_interval = _IntegerInterval
nonnegative_integer = _IntegerGreaterThan(0)
positive_integer = _IntegerGreaterThan(1)
simplex = _Simplex()
lower_triangular = _LowerTriangular()
lower_cholesky = _LowerCholesky()
symmetric = _Symmetric()
positive_definite = _PositiveDefinite()
