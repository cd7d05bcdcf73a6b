"""Type-level names of PyTorch: ``Size``, ``finfo``/``iinfo``, ``is_tensor``, and the legacy
typed constructors (``FloatTensor([1, 2])``, ``t.type(torch.LongTensor)``, ``isinstance(t, LongTensor)``)."""
from __future__ import annotations

import numpy as np

from distgraph import backend
from distgraph.autograd.tensor import Size, Tensor

__all__ = ["Size", "finfo", "iinfo", "is_tensor", "is_storage", "numel", "is_floating_point", "is_nonzero",
           "FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor", "ShortTensor", "CharTensor",
           "ByteTensor", "BoolTensor", "memory_format", "contiguous_format", "channels_last", "channels_last_3d",
           "preserve_format"]


class memory_format:  # noqa: N801 - torch's name
    """``torch.memory_format``: accepted wherever PyTorch takes one (``.to(memory_format=)``,
    ``.contiguous(memory_format=)``); distgraph's arrays keep NumPy/CuPy's own layout."""
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name}"


contiguous_format = memory_format("contiguous_format")
channels_last = memory_format("channels_last")
channels_last_3d = memory_format("channels_last_3d")
preserve_format = memory_format("preserve_format")


class finfo:
    """``finfo(dtype)``: limits of a floating dtype (``bits, eps, max, min, tiny, smallest_normal, resolution``)."""

    def __init__(self, type=None):
        dt = backend.as_dtype(type) if type is not None else backend.float32
        if not backend.is_floating(dt):
            raise TypeError(f"finfo: expected a floating dtype, got {backend.dtype_name(dt)}; use iinfo for integers")
        f = np.finfo(dt)
        self.dtype, self.bits = backend.dtype_name(dt), f.bits
        self.eps, self.max, self.min = float(f.eps), float(f.max), float(f.min)
        self.tiny = self.smallest_normal = float(f.tiny)
        self.resolution = float(f.resolution)

    def __repr__(self):
        return (f"finfo(resolution={self.resolution}, min={self.min}, max={self.max}, eps={self.eps}, "
                f"smallest_normal={self.smallest_normal}, tiny={self.tiny}, dtype={self.dtype})")


class iinfo:
    """``iinfo(dtype)``: limits of an integer dtype (``bits, max, min``)."""

    def __init__(self, type):
        dt = backend.as_dtype(type)
        if dt == backend.bool_ or backend.is_floating(dt):
            raise TypeError(f"iinfo: expected an integer dtype, got {backend.dtype_name(dt)}; use finfo for floats")
        i = np.iinfo(dt)
        self.dtype, self.bits, self.max, self.min = backend.dtype_name(dt), i.bits, int(i.max), int(i.min)

    def __repr__(self):
        return f"iinfo(min={self.min}, max={self.max}, dtype={self.dtype})"


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def is_storage(obj) -> bool:
    return False


def numel(input) -> int:
    return input.numel()


def is_floating_point(input) -> bool:
    return input.is_floating_point()


def is_nonzero(input) -> bool:
    if input.numel() != 1:
        raise RuntimeError(f"is_nonzero: expected a tensor with one element, got {input.numel()} elements")
    return bool(input.item())


class _TypedTensorMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.dtype == cls.dtype and not obj.is_cuda


def _typed(name, dtype_name):
    def __new__(cls, *args, **kwargs):
        if "dtype" in kwargs:
            raise TypeError(f"{name}: takes no dtype (it is {dtype_name}); use dg.tensor(..., dtype=)")
        return Tensor(*args, dtype=cls.dtype, **kwargs)
    doc = f"PyTorch's legacy ``{name}``: builds a {dtype_name} CPU tensor; ``isinstance`` checks that dtype."
    return _TypedTensorMeta(name, (), {"__new__": __new__, "dtype": np.dtype(dtype_name), "__doc__": doc,
                                       "type_name": f"torch.{name}"})


FloatTensor = _typed("FloatTensor", "float32")
DoubleTensor = _typed("DoubleTensor", "float64")
HalfTensor = _typed("HalfTensor", "float16")
LongTensor = _typed("LongTensor", "int64")
IntTensor = _typed("IntTensor", "int32")
ShortTensor = _typed("ShortTensor", "int16")
CharTensor = _typed("CharTensor", "int8")
ByteTensor = _typed("ByteTensor", "uint8")
BoolTensor = _typed("BoolTensor", "bool")
