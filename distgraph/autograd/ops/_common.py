"""Operand handling shared by every op family: conversion, devices, dtype promotion."""
from __future__ import annotations

import numbers
import threading

import numpy as np

from distgraph import backend
from distgraph.autograd.tensor import Tensor, _make

SCALARS = (int, float, bool)


def as_operand(x, like: Tensor | None = None):
    """Tensors pass through; Python scalars stay raw (the op sees them as-is);
    NumPy arrays, NumPy scalars and lists become tensors on ``like``'s device."""
    if isinstance(x, Tensor) or type(x) in SCALARS:
        return x
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.generic) and x.ndim == 0:
        return x.item()
    if isinstance(x, numbers.Number):
        return x
    arr = x if isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__") else np.asarray(x)
    if arr.dtype == np.float64 and not isinstance(x, np.ndarray) and not hasattr(x, "__cuda_array_interface__"):
        arr = arr.astype(backend.default_float())  # a list of Python floats, as in dg.tensor
    if arr.dtype not in backend.SUPPORTED_DTYPES:
        arr = arr.astype(backend.as_dtype(arr.dtype) if arr.dtype.kind not in "iu" else np.int64)
    if like is not None:
        arr = backend.to_device(arr, like.device)
    return _make(arr, None, False)


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Like ``as_operand`` but scalars become 0-dim tensors too."""
    x = as_operand(x, like)
    if isinstance(x, Tensor):
        return x
    dtype = backend._DEFAULT_FOR_CATEGORY[backend.scalar_category(x)]
    arr = np.asarray(x, dtype=dtype)
    if like is not None:
        arr = backend.to_device(arr, like.device)
    return _make(arr, None, False)


def result_type(*operands):
    """PyTorch's promotion: dimensioned tensors, then 0-dim tensors, then Python
    scalars; a later group only counts when its category is higher."""
    dims = zeros = None
    scalar_cat = -1
    for o in operands:
        if isinstance(o, Tensor):
            d = o.array.dtype
            if o.array.ndim:
                dims = d if dims is None else backend.promote_types(dims, d)
            else:
                zeros = d if zeros is None else backend.promote_types(zeros, d)
        elif o is not None:
            scalar_cat = max(scalar_cat, backend.scalar_category(o))
    res = dims
    if zeros is not None and (res is None or backend.category(zeros) > backend.category(res)):
        res = zeros
    if scalar_cat >= 0 and (res is None or scalar_cat > backend.category(res)):
        res = backend._DEFAULT_FOR_CATEGORY[scalar_cat]
    return res


_HOST = (np.ndarray, np.generic)


def check_devices(op: str, *tensors):
    """Every tensor operand of one op must live on the same device."""
    first = None
    for t in tensors:
        if not isinstance(t, Tensor):
            continue
        if first is None:
            first = t
        elif type(t.array) is not type(first.array) or (
                not isinstance(t.array, np.ndarray) and t.array.device != first.array.device):
            if isinstance(t.array, _HOST) and isinstance(first.array, _HOST):
                continue   # a NumPy scalar (what a 0-d reduction can hold) and an array: both on the host
            raise RuntimeError(
                f"{op}: expected all tensors on the same device, got {first.device} and {t.device}; "
                "move one with .to(device)")


def promote(op: str, *operands, dtype=None):
    """Convert and cast ``operands`` to one dtype (a tensor cast is recorded in the graph).

    Returns the operands and the common dtype.
    """
    like = next((o for o in operands if isinstance(o, Tensor)), None)
    ops = [as_operand(o, like) if o is not None else None for o in operands]
    check_devices(op, *ops)
    target = dtype or result_type(*ops)
    out = []
    for o in ops:
        if isinstance(o, Tensor) and o.array.dtype != target:
            o = cast(o, target)
        out.append(o)
    return out, target


def cast(x: Tensor, dtype) -> Tensor:
    from distgraph.autograd.ops.elementwise import Cast
    return Cast(dtype).apply(x)


def normalize_dims(dim, ndim: int, op: str):
    """``None`` -> all axes; an int or a tuple -> a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"{op}: dimension {d} is out of range for a tensor with {ndim} dims "
                             f"(expected {-max(ndim, 1)} to {max(ndim, 1) - 1})")
        out.append(d % ndim if ndim else 0)
    return tuple(sorted(set(out)))


def xp_of(x):
    return backend.get_array_module(x)


# ------------------------------------------------------------------ autocast
# The state of ``dg.amp.autocast`` lives here, low in the stack, so the ops
# that autocast (matrix products to low precision, softmax/norms/losses to
# float32) can read it without importing the amp module.
_autocast = threading.local()


def autocast_dtype():
    """The low-precision dtype of the enclosing ``autocast`` region, or None."""
    return getattr(_autocast, "dtype", None)


def set_autocast_dtype(dtype):
    _autocast.dtype = dtype


def autocast_low(*tensors):
    """Inside autocast: floating tensors cast to the region's low-precision dtype."""
    d = autocast_dtype()
    if d is None:
        return tensors
    return tuple(cast(t, d) if isinstance(t, Tensor) and backend.is_floating(t.array.dtype) and t.array.dtype != d
                 else t for t in tensors)


def autocast_float32(*tensors):
    """Inside autocast: low-precision floating tensors cast up to float32."""
    if autocast_dtype() is None:
        return tensors
    return tuple(cast(t, backend.float32) if isinstance(t, Tensor) and t.array.dtype == backend.float16
                 else t for t in tensors)
