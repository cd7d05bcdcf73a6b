"""The ``Distribution`` base class: shapes, argument validation, the methods every family shares.

Shapes follow torch: a distribution has a ``batch_shape`` (independent, differently
parameterised copies) and an ``event_shape`` (one draw); ``sample(sample_shape)`` has shape
``sample_shape + batch_shape + event_shape`` and ``log_prob(value)`` has shape
``sample_shape + batch_shape``.

Validation (``validate_args``, on by default as in torch; ``Distribution.set_default_validate_args``
switches the default): the constructor checks every parameter against ``arg_constraints`` and
``log_prob`` checks its value against ``support``; a failure raises ``ValueError``.
"""
from __future__ import annotations

import warnings

from distgraph.autograd import grad_mode
from distgraph.autograd.ops import exp, sqrt
from distgraph.autograd.tensor import Size, Tensor
from distgraph.distributions import constraints
from distgraph.distributions.utils import as_size, lazy_property

__all__ = ["Distribution"]


class Distribution:
    """Base class of probability distributions (torch's ``torch.distributions.Distribution``)."""

    has_rsample = False
    has_enumerate_support = False
    _validate_args = __debug__
    arg_constraints: dict = {}
    support = None

    @staticmethod
    def set_default_validate_args(value):
        """Switch argument validation on or off for distributions built later without ``validate_args``."""
        if value not in (True, False):
            raise ValueError(f"set_default_validate_args: expected True or False, got {value!r}")
        Distribution._validate_args = value

    def __init__(self, batch_shape=Size(), event_shape=Size(), validate_args=None):
        self._batch_shape = Size(batch_shape)
        self._event_shape = Size(event_shape)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:
            self._check_parameters()

    def _check_parameters(self):
        for param, constraint in self.arg_constraints.items():
            if constraints.is_dependent(constraint):
                continue
            if param not in self.__dict__ and isinstance(getattr(type(self), param, None), lazy_property):
                continue  # a parameter computed from the one given (Categorical's probs from logits)
            value = getattr(self, param)
            with grad_mode.no_grad():
                valid = constraint.check(value)
            if not bool(valid.all()):
                raise ValueError(
                    f"Expected parameter {param} ({type(value).__name__} of shape {tuple(value.shape)}) "
                    f"of distribution {self!r} to satisfy the constraint {constraint!r}, "
                    f"but found invalid values:\n{value}")

    # ------------------------------------------------------------ shapes
    @property
    def batch_shape(self):
        return self._batch_shape

    @property
    def event_shape(self):
        return self._event_shape

    def _extended_shape(self, sample_shape=Size()):
        return Size(as_size(sample_shape) + self._batch_shape + self._event_shape)

    def expand(self, batch_shape, _instance=None):
        """The same distribution with its parameters broadcast to ``batch_shape`` (no copies)."""
        raise NotImplementedError

    def _get_checked_instance(self, cls, _instance=None):
        if _instance is None and type(self).__init__ != cls.__init__:
            raise NotImplementedError(f"Subclass {type(self).__name__} of {cls.__name__} that defines a custom "
                                      f"__init__ method must also define a custom .expand() method.")
        return type(self).__new__(type(self)) if _instance is None else _instance

    # ------------------------------------------------------------ moments
    @property
    def mean(self):
        raise NotImplementedError

    @property
    def mode(self):
        raise NotImplementedError(f"{type(self)} does not implement mode")

    @property
    def variance(self):
        raise NotImplementedError

    @property
    def stddev(self):
        return sqrt(self.variance)

    # ------------------------------------------------------------ draws and densities
    def sample(self, sample_shape=Size()):
        """Draws of shape ``sample_shape + batch_shape + event_shape``, outside the graph."""
        with grad_mode.no_grad():
            return self.rsample(sample_shape)

    def rsample(self, sample_shape=Size()):
        """Reparameterised draws: gradients flow to the parameters (where ``has_rsample``)."""
        raise NotImplementedError

    def sample_n(self, n):
        warnings.warn("sample_n will be deprecated. Use .sample((n,)) instead", UserWarning, stacklevel=2)
        return self.sample(Size((n,)))

    def log_prob(self, value):
        raise NotImplementedError

    def cdf(self, value):
        raise NotImplementedError

    def icdf(self, value):
        raise NotImplementedError

    def enumerate_support(self, expand=True):
        raise NotImplementedError

    def entropy(self):
        raise NotImplementedError

    def perplexity(self):
        return exp(self.entropy())

    def _validate_sample(self, value):
        """Raise ``ValueError`` unless ``value`` is a Tensor broadcastable to ``batch_shape + event_shape``
        whose elements lie in ``support``."""
        if not isinstance(value, Tensor):
            raise ValueError("The value argument to log_prob must be a Tensor")
        event_dim_start = len(value.shape) - len(self._event_shape)
        if tuple(value.shape[event_dim_start:]) != tuple(self._event_shape):
            raise ValueError(f"The right-most size of value must match event_shape: {value.shape} vs "
                             f"{self._event_shape}.")
        actual_shape = value.shape
        expected_shape = self._batch_shape + self._event_shape
        for i, j in zip(reversed(actual_shape), reversed(expected_shape)):
            if i != 1 and j != 1 and i != j:
                raise ValueError(f"Value is not broadcastable with batch_shape+event_shape: {actual_shape} vs "
                                 f"{expected_shape}.")
        support = self.support
        if support is None or constraints.is_dependent(support):
            return
        with grad_mode.no_grad():
            valid = support.check(value)
        if not bool(valid.all()):
            raise ValueError(
                f"Expected value argument ({type(value).__name__} of shape {tuple(value.shape)}) to be within "
                f"the support ({support!r}) of the distribution {self!r}, but found invalid values:\n{value}")

    def __repr__(self):
        names = [k for k in self.arg_constraints if k in self.__dict__]
        args = ", ".join(f"{p}: {self.__dict__[p].item() if self.__dict__[p].numel() == 1 else self.__dict__[p].shape}"
                         for p in names)
        return f"{type(self).__name__}({args})"

    def _expand_params(self, cls, batch_shape, _instance, params, event_dims=None):
        """A new ``cls`` whose parameters (those of ``params`` this instance holds) are expanded views
        over ``batch_shape``; ``event_dims[name]`` rightmost dims of a parameter are kept as they are."""
        new = self._get_checked_instance(cls, _instance)
        batch_shape = Size(batch_shape)
        for name in params:
            if name in self.__dict__:
                value = self.__dict__[name]
                keep = (event_dims or {}).get(name, 0)
                new.__dict__[name] = value.expand(batch_shape + value.shape[value.ndim - keep:])
        Distribution.__init__(new, batch_shape, self._event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new
