"""Bitwise ops on integer and bool tensors (``& | ^ ~ << >>``), and ``view(dtype)`` (bits reinterpreted).

Integer tensors give integer results of the promoted dtype; bool tensors stay bool
(``&`` of two masks is their logical and); floating tensors raise
``NotImplementedError`` as PyTorch does.  None of these ops has a gradient.
"""
from __future__ import annotations

from distgraph import backend
from distgraph.autograd.ops._common import as_tensor, promote, xp_of
from distgraph.autograd.tensor import Tensor, _make

__all__ = ["bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "bitwise_left_shift",
           "bitwise_right_shift"]


def _integer_operands(op, input, other, bools=True):
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        raise TypeError(f"{op}: expected at least one Tensor argument, got {type(input).__name__} and "
                        f"{type(other).__name__}")
    (a, b), dt = promote(op, input, other)
    if backend.is_floating(dt) or (dt == backend.bool_ and not bools):
        raise NotImplementedError(f"{op}: not implemented for {backend.dtype_name(dt)} tensors; it needs "
                                  f"integer{' or bool' if bools else ''} tensors")
    arrays = []
    for x in (a, b):
        if isinstance(x, Tensor):
            x = x.array
        elif type(x) is int:
            x = backend.wrap_int(x, dt)
        arrays.append(x)
    like = a.array if isinstance(a, Tensor) else b.array
    return arrays, dt, xp_of(like)


def _result(xp, values, dtype):
    return _make(xp.asarray(values).astype(dtype, copy=False), None, False)


def bitwise_and(input, other):
    """``input & other`` bit by bit (logical and for bool tensors)."""
    (a, b), dt, xp = _integer_operands("bitwise_and", input, other)
    return _result(xp, xp.bitwise_and(a, b), dt)


def bitwise_or(input, other):
    """``input | other`` bit by bit (logical or for bool tensors)."""
    (a, b), dt, xp = _integer_operands("bitwise_or", input, other)
    return _result(xp, xp.bitwise_or(a, b), dt)


def bitwise_xor(input, other):
    """``input ^ other`` bit by bit (logical xor for bool tensors)."""
    (a, b), dt, xp = _integer_operands("bitwise_xor", input, other)
    return _result(xp, xp.bitwise_xor(a, b), dt)


def bitwise_not(input):
    """``~input``: every bit flipped (logical not for bool tensors)."""
    x = as_tensor(input).array
    if backend.is_floating(x.dtype):
        raise NotImplementedError(f"bitwise_not: not implemented for {backend.dtype_name(x.dtype)} tensors; "
                                  "it needs integer or bool tensors")
    return _result(xp_of(x), xp_of(x).invert(x), x.dtype)


def _shift_parts(op, input, other):
    (a, s), dt, xp = _integer_operands(op, input, other, bools=False)
    bits = 8 * dt.itemsize
    in_range = xp.logical_and(xp.greater_equal(s, 0), xp.less(s, bits))
    return a, xp.where(in_range, s, 0).astype(dt, copy=False), in_range, dt, xp


def bitwise_left_shift(input, other):
    """``input << other``; shifts by a negative amount or by the bit width or more give 0 (as PyTorch)."""
    a, s, ok, dt, xp = _shift_parts("bitwise_left_shift", input, other)
    return _result(xp, xp.where(ok, xp.left_shift(a, s), 0), dt)


def bitwise_right_shift(input, other):
    """``input >> other`` (arithmetic for signed dtypes); out-of-range shifts give 0, or -1 for negatives."""
    a, s, ok, dt, xp = _shift_parts("bitwise_right_shift", input, other)
    return _result(xp, xp.where(ok, xp.right_shift(a, s), xp.where(xp.less(a, 0), -1, 0)), dt)


def _view_dtype(input, dtype):
    """``t.view(dtype)``: the same memory read as ``dtype``, outside the graph.

    With a different element size the last dim scales by the size ratio (float32 ``(4,)``
    viewed as int64 is ``(2,)``), as in PyTorch; the result shares memory and version.
    """
    dt = backend.as_dtype(dtype)
    x = input.array
    src = x.dtype
    if dt.itemsize != src.itemsize:
        name = f"view {backend.dtype_name(src)} as {backend.dtype_name(dt)}"
        if x.ndim == 0:
            raise RuntimeError(f"view(dtype): can't {name} on a 0-dim tensor (element sizes differ); "
                               "unsqueeze it first")
        last = x.shape[-1] * src.itemsize
        if last % dt.itemsize:
            raise RuntimeError(f"view(dtype): to {name}, expected the last dim's size ({x.shape[-1]}) times "
                               f"{src.itemsize} to be divisible by {dt.itemsize}")
        if x.shape[-1] != 1 and x.strides[-1] != src.itemsize:
            raise RuntimeError(f"view(dtype): to {name}, expected the last dim to be contiguous; call "
                               ".clone() first")
    try:
        arr = x.view(dt)
    except ValueError as e:   # non-contiguous layouts NumPy can't reinterpret
        raise RuntimeError(f"view(dtype): can't view this tensor's memory as {backend.dtype_name(dt)}: {e}; "
                           "call .clone() first") from None
    out = _make(arr, None, False)
    out._version, out._base = input._version, input
    return out

