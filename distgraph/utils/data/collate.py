"""Turning a list of samples into a batch: ``default_collate`` and ``default_convert`` (PyTorch's rules)."""
from __future__ import annotations

import collections.abc as abc

import numpy as np

from distgraph.autograd import Tensor

__all__ = ["default_collate", "default_convert", "wrap_array"]

_EXPECTED = "tensors, numpy arrays, numbers, strings, dicts or lists"


def wrap_array(arr) -> Tensor:
    """A Tensor around a NumPy/CuPy array, sharing it when its dtype is supported.

    Integer dtypes distgraph lacks (``uint8``, ``int16``...) become ``int64``.
    """
    from distgraph.autograd.creation import from_dlpack, from_numpy, tensor
    from distgraph.backend import SUPPORTED_DTYPES
    if isinstance(arr, np.generic):
        arr = np.asarray(arr)
    if arr.dtype in SUPPORTED_DTYPES:
        return from_numpy(arr) if isinstance(arr, np.ndarray) else from_dlpack(arr)
    return tensor(arr)


def _is_namedtuple(x):
    return isinstance(x, tuple) and hasattr(x, "_fields")


def default_collate(batch):
    """Stack a list of samples into a batch, recursing into containers.

    - Tensors and NumPy arrays are stacked along a new first dimension (one Tensor).
    - Python floats become a float64 Tensor, ints int64, bools bool; NumPy scalars keep their dtype.
    - Strings and bytes stay a list.
    - A dict gives a dict of collated fields; a namedtuple the same namedtuple;
      a tuple or list gives a *list* of collated fields (as PyTorch: ``x, y = batch`` works).

    Raises:
        RuntimeError: samples whose tensors or sequences differ in size.
        TypeError: an element of a type it can't batch.
    """
    elem = batch[0]
    if isinstance(elem, Tensor) or isinstance(elem, np.ndarray) or hasattr(elem, "__cuda_array_interface__"):
        arrays = [b.array if isinstance(b, Tensor) else b for b in batch]
        if isinstance(elem, np.ndarray) and elem.dtype.kind in "SUOV":
            raise TypeError(f"default_collate: batch must contain {_EXPECTED}; found a NumPy array of dtype "
                            f"{elem.dtype}")
        shape = arrays[0].shape
        for i, a in enumerate(arrays):
            if a.shape != shape:
                raise RuntimeError(f"default_collate: stack expects each tensor to be equal size, but got "
                                   f"{list(shape)} at entry 0 and {list(a.shape)} at entry {i}")
        from distgraph.backend import get_array_module
        return wrap_array(get_array_module(arrays[0]).stack(arrays))
    if isinstance(elem, np.generic):
        if elem.dtype.kind in "SUOV":
            return list(batch)
        return wrap_array(np.array(batch))
    if isinstance(elem, bool):
        return wrap_array(np.array(batch, dtype=np.bool_))
    if isinstance(elem, float):
        return wrap_array(np.array(batch, dtype=np.float64))
    if isinstance(elem, int):
        return wrap_array(np.array(batch, dtype=np.int64))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, abc.Mapping):
        fields = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return type(elem)(fields)
        except TypeError:
            return fields
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, abc.Sequence):
        size = len(elem)
        if any(len(s) != size for s in batch):
            raise RuntimeError("default_collate: each element in list of batch should be of equal size")
        fields = [default_collate(list(s)) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return fields
        try:
            return type(elem)(fields)
        except TypeError:
            return fields
    raise TypeError(f"default_collate: batch must contain {_EXPECTED}; found {type(elem).__name__}")


def default_convert(data):
    """Without batching (``batch_size=None``): NumPy arrays become Tensors, inside containers too."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if data.dtype.kind in "SUOV" else wrap_array(data)
    if isinstance(data, abc.Mapping):
        try:
            return type(data)({k: default_convert(v) for k, v in data.items()})
        except TypeError:
            return {k: default_convert(v) for k, v in data.items()}
    if _is_namedtuple(data):
        return type(data)(*(default_convert(v) for v in data))
    if isinstance(data, tuple):
        return [default_convert(v) for v in data]
    if isinstance(data, abc.Sequence) and not isinstance(data, (str, bytes)):
        try:
            return type(data)([default_convert(v) for v in data])
        except TypeError:
            return [default_convert(v) for v in data]
    return data
