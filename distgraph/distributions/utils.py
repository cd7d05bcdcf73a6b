"""Helpers shared by the distributions: parameter broadcasting, probs/logits conversion, draws."""
from __future__ import annotations

import numbers

from distgraph import backend, linalg
from distgraph.autograd import grad_mode
from distgraph.autograd.creation import rand, randn
from distgraph.autograd.ops import broadcast_tensors, clamp, log, log1p, sigmoid, softmax
from distgraph.autograd.tensor import Size, Tensor, tensor
from distgraph.types import finfo

__all__ = ["broadcast_all", "lazy_property", "probs_to_logits", "logits_to_probs", "clamp_probs",
           "sum_rightmost", "as_size", "both", "either", "cholesky", "solve_tril"]


def broadcast_all(*values):
    """Tensors broadcast to one shape; numbers become tensors of the tensors' dtype and device
    (the default float dtype when every value is a number).

    Raises:
        ValueError: a value is neither a Tensor nor a number.
    """
    like = next((v for v in values if isinstance(v, Tensor)), None)
    out = []
    for v in values:
        if isinstance(v, Tensor):
            out.append(v)
        elif isinstance(v, numbers.Number):
            dtype = like.dtype if like is not None and backend.is_floating(like.dtype) else None
            out.append(tensor(float(v), dtype=dtype, device=None if like is None else like.device))
        else:
            raise ValueError(f"Input arguments must all be instances of numbers.Number or Tensor, "
                             f"got {type(v).__name__}")
    return tuple(broadcast_tensors(*out)) if len(out) > 1 else tuple(out)


class lazy_property:  # noqa: N801 - torch's name
    """A property computed on first access and then kept in the instance's ``__dict__``
    (``Categorical(logits=...)`` computes ``probs`` only when asked)."""

    def __init__(self, fn):
        self.wrapped = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        with grad_mode.enable_grad():
            value = self.wrapped(instance)
        instance.__dict__[self.wrapped.__name__] = value
        return value


def clamp_probs(probs):
    """Probabilities kept inside ``[eps, 1 - eps]`` so that their logs stay finite."""
    eps = finfo(probs.dtype).eps
    return clamp(probs, min=eps, max=1 - eps)


def probs_to_logits(probs, is_binary=False):
    """``log p`` (categorical) or ``log p - log(1 - p)`` (binary), with ``p`` clamped."""
    p = clamp_probs(probs)
    return log(p) - log1p(-p) if is_binary else log(p)


def logits_to_probs(logits, is_binary=False):
    """``sigmoid(logits)`` (binary) or ``softmax(logits, -1)``."""
    return sigmoid(logits) if is_binary else softmax(logits, -1)


def sum_rightmost(x, dim):
    """``x`` summed over its ``dim`` rightmost dims."""
    return x.reshape(tuple(x.shape[:x.ndim - dim]) + (-1,)).sum(-1) if dim > 0 else x


def as_size(sample_shape):
    """``sample_shape`` as a ``Size`` (an int is one dim)."""
    if isinstance(sample_shape, numbers.Integral):
        return Size((int(sample_shape),))
    return Size(tuple(int(n) for n in sample_shape))


def standard_normal(shape, like):
    """``N(0, 1)`` draws of ``like``'s dtype and device, from the device's generator."""
    return randn(*shape, dtype=like.dtype, device=like.device) if shape else randn(
        (), dtype=like.dtype, device=like.device)


def uniform01(shape, like):
    """Uniform ``[0, 1)`` draws of ``like``'s dtype and device, from the device's generator."""
    return rand(*shape, dtype=like.dtype, device=like.device) if shape else rand(
        (), dtype=like.dtype, device=like.device)


def both(*masks):
    """The elementwise AND of bool tensors."""
    out = masks[0]
    for m in masks[1:]:
        out = out & m
    return out


def either(*masks):
    """The elementwise OR of bool tensors."""
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out


def cholesky(a):
    """The lower Cholesky factor (``dg.linalg.cholesky``), with ``ValueError`` where ``a`` is not positive
    definite (what a distribution's parameter check raises)."""
    try:
        return linalg.cholesky(a)
    except RuntimeError as e:
        if "positive-definite" not in str(e):
            raise
        raise ValueError(f"cholesky: expected a positive-definite matrix, got one of shape {tuple(a.shape)} "
                         "that is not") from None


def solve_tril(low, b):
    """``low^{-1} b`` for lower-triangular ``low`` (batch dims broadcast)."""
    return linalg.solve_triangular(low, b, upper=False)
