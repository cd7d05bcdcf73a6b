"""Devices, array modules, dtypes and random generators.

This is the only module (with the NCCL communicator) that imports CuPy, and it
does so lazily and guarded: on a machine without CuPy every CPU path works and
``cuda`` devices raise a clear error.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

_py_float, _py_int, _py_bool = builtins.float, builtins.int, builtins.bool
_cupy = None
_cupy_checked = False


def cupy():
    """Return the ``cupy`` module, or ``None`` when CuPy (or a GPU) is missing."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy as cp  # noqa: PLC0415 - optional, imported on first use
            if cp.cuda.runtime.getDeviceCount() > 0:
                _cupy = cp
        except Exception:  # ImportError, or CUDA driver missing
            _cupy = None
    return _cupy


# --------------------------------------------------------------------- dtypes
float16 = half = np.dtype(np.float16)
float32 = float = np.dtype(np.float32)
float64 = double = np.dtype(np.float64)
uint8 = np.dtype(np.uint8)
int8 = np.dtype(np.int8)
int16 = short = np.dtype(np.int16)
int32 = int = np.dtype(np.int32)
int64 = long = np.dtype(np.int64)
bool_ = np.dtype(np.bool_)

SUPPORTED_DTYPES = (float16, float32, float64, uint8, int8, int16, int32, int64, bool_)
_NAMES = {float16: "float16", float32: "float32", float64: "float64", uint8: "uint8", int8: "int8",
          int16: "int16", int32: "int32", int64: "int64", bool_: "bool"}
# PyTorch's type categories: bool < integer < floating.
_CATEGORY = {bool_: 0, uint8: 1, int8: 1, int16: 1, int32: 1, int64: 1, float16: 2, float32: 2, float64: 2}
_DEFAULT_FOR_CATEGORY = {0: bool_, 1: int64, 2: float32}


def dtype_name(dtype) -> str:
    return _NAMES.get(dtype, str(dtype))


_default_float = float32


def default_float():
    """The dtype of floating tensors made without one (``torch.get_default_dtype()``; float32 unless set)."""
    return _default_float


def set_default_float(dtype):
    global _default_float
    _default_float = np.dtype(dtype)
    _DEFAULT_FOR_CATEGORY[2] = _default_float   # Python floats in promotion and in full(), as PyTorch


def as_dtype(dtype):
    """Normalise a user dtype (``dg.float32``, ``"float32"``, ``np.float32``, ``float``, ``bool``)."""
    if dtype is None:
        return None
    if dtype is _py_bool or (isinstance(dtype, str) and dtype == "bool"):
        return bool_
    if dtype is _py_float:
        return float32
    if dtype is _py_int:
        return int64
    try:
        d = np.dtype(dtype)
    except TypeError:
        d = None
    if d not in _CATEGORY:
        names = ", ".join(_NAMES[t] for t in SUPPORTED_DTYPES)
        raise TypeError(f"unsupported dtype {dtype!r}: expected one of {names}")
    return d


def category(dtype) -> int:
    return _CATEGORY[dtype]


def is_floating(dtype) -> bool:
    return _CATEGORY.get(dtype) == 2


def promote_types(a, b):
    """PyTorch's ``promote_types``: a higher category wins outright
    (``int64`` with ``float16`` gives ``float16``); within a category the wider type
    (``uint8`` with ``int8`` gives ``int16``)."""
    if a == b:
        return a
    ca, cb = _CATEGORY[a], _CATEGORY[b]
    if ca != cb:
        return a if ca > cb else b
    # Within a category NumPy's rule is PyTorch's: the wider type, and a signed type wide
    # enough for both when signedness differs (uint8 with int8 gives int16).
    return np.promote_types(a, b)


def scalar_category(value) -> int:
    if isinstance(value, (_py_bool, np.bool_)):
        return 0
    if isinstance(value, (_py_int, np.integer)):
        return 1
    return 2


# -------------------------------------------------------------------- devices
class Device:
    """A device: ``Device("cpu")``, ``Device("cuda")``, ``Device("cuda:1")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if isinstance(spec, _py_int):
            spec, index = "cuda", spec
        kind, _, idx = str(spec).partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        if idx:
            index = _py_int(idx)
        if kind == "cuda" and index is None:
            cp = cupy()
            index = cp.cuda.runtime.getDevice() if cp is not None else 0
        self.type = kind
        self.index = index if kind == "cuda" else None

    def __eq__(self, other):
        if isinstance(other, str):
            other = Device(other)
        return isinstance(other, Device) and self.type == other.type and self.index == other.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        return f"device(type='{self.type}'" + (f", index={self.index})" if self.index is not None else ")")

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"


CPU = Device("cpu")


def device_of(array) -> Device:
    if isinstance(array, (np.ndarray, np.generic)):
        return CPU
    return Device("cuda", array.device.id)


def get_array_module(array):
    """NumPy for host arrays, CuPy for device arrays (Chainer's ``xp`` pattern)."""
    if isinstance(array, np.ndarray):
        return np
    cp = cupy()
    if cp is not None:
        return cp.get_array_module(array)
    return np


def require_cuda(device: Device):
    cp = cupy()
    if cp is None:
        raise RuntimeError(
            f"device {device} needs CuPy and a CUDA GPU, but none was found: "
            "install distgraph[cuda12] or distgraph[cuda13] on a GPU machine, or use device='cpu'")
    return cp


def xp_for(device: Device):
    return np if device.type == "cpu" else require_cuda(device)


def to_device(array, device: Device):
    """Move (or keep) ``array`` on ``device``; no copy when it is already there."""
    if device.type == "cpu":
        if isinstance(array, (np.ndarray, np.generic)):
            return array
        return array.get()
    cp = require_cuda(device)
    with cp.cuda.Device(device.index):
        if not isinstance(array, np.ndarray) and array.device.id == device.index:
            return array
        return cp.asarray(array)


def erf(x):
    """The error function, elementwise, for NumPy (SciPy when present) and CuPy arrays.

    A floating input keeps its dtype: SciPy has no float16 loop (it answers float64)
    and CuPy's may answer float32."""
    if not isinstance(x, (np.ndarray, np.generic)):
        from cupyx.scipy.special import erf as cupy_erf  # noqa: PLC0415
        return _keep_dtype(cupy_erf(x), x)
    try:
        from scipy.special import erf as scipy_erf  # noqa: PLC0415
    except ImportError:
        return _np_erf(x).astype(x.dtype)
    return _keep_dtype(scipy_erf(x), x)


_np_erf = np.vectorize(math.erf, otypes=[np.float64])


def _keep_dtype(y, x):
    return y.astype(x.dtype, copy=False) if x.dtype.kind == "f" and y.dtype != x.dtype else y


def special(name: str, *args):
    """``scipy.special.<name>(*args)`` (``cupyx.scipy.special`` for CuPy arrays), e.g. ``erfinv``, or
    ``polygamma`` with its order first; the last argument is the array, and a floating one keeps its
    dtype (see :func:`erf`)."""
    x = args[-1]
    if not isinstance(x, (np.ndarray, np.generic)):
        import cupyx.scipy.special as cupy_special  # noqa: PLC0415
        return _keep_dtype(getattr(cupy_special, name)(*args), x)
    try:
        import scipy.special as scipy_special  # noqa: PLC0415
    except ImportError:
        raise RuntimeError(f"{name} needs SciPy on the host: pip install scipy") from None
    return _keep_dtype(getattr(scipy_special, name)(*args), x)


def wrap_int(value, dtype):
    """A Python int as a value of integer ``dtype``, wrapping around as C (and PyTorch) do:
    ``uint8`` tensor ``+ 300`` adds 44, ``- 1`` adds 255 (NumPy raises instead)."""
    info = np.iinfo(dtype)
    if info.min <= value <= info.max:
        return value
    span = 1 << (8 * dtype.itemsize)
    v = (value - info.min) % span + info.min
    return dtype.type(v)


# ------------------------------------------------------------------------ RNG
_generators: dict = {}
_seed = None


def generator(device: Device):
    """The random generator of ``device`` (NumPy ``Generator`` or CuPy ``Generator``)."""
    key = str(device)
    gen = _generators.get(key)
    if gen is None:
        gen = _generators[key] = new_generator(device, _seed)
    return gen


def new_generator(device: Device, seed):
    """A fresh generator for ``device`` seeded with ``seed`` (not installed as its generator)."""
    if device.type == "cpu":
        return np.random.default_rng(seed)
    cp = require_cuda(device)
    with cp.cuda.Device(device.index):
        return cp.random.default_rng(seed)


def set_generator(device: Device, gen):
    """Make ``gen`` the random generator of ``device`` (what ``generator(device)`` returns)."""
    _generators[str(device)] = gen


# CuPy's ``Generator`` (CuPy 14) has ``random``, ``uniform``, ``integers``, ``standard_normal``
# (float32/float64 only), ``exponential``, ``geometric``, ``binomial``, ``poisson``, ``gamma``...
# but no ``normal``, ``lognormal``, ``standard_cauchy``, ``permutation``, ``shuffle`` or
# ``choice``.  Every draw of those goes through the functions below, which use the
# generator's own method when it has one (NumPy: the same stream as before) and build
# it from ``random``/``standard_normal`` otherwise.
def normal(gen, mean, std, size):
    """``N(mean, std^2)`` samples of shape ``size`` (float64) from any generator."""
    if hasattr(gen, "normal"):
        return gen.normal(mean, std, size)
    return gen.standard_normal(size) * std + mean


def lognormal(gen, mean, std, size):
    """``exp(N(mean, std^2))`` samples of shape ``size`` from any generator."""
    if hasattr(gen, "lognormal"):
        return gen.lognormal(mean, std, size)
    y = normal(gen, mean, std, size)
    return get_array_module(y).exp(y)


def standard_cauchy(gen, size):
    """Standard Cauchy samples: ``tan(pi (u - 1/2))`` for ``u`` uniform on ``[0, 1)``."""
    if hasattr(gen, "standard_cauchy"):
        return gen.standard_cauchy(size)
    u = gen.random(size)
    return get_array_module(u).tan(math.pi * (u - 0.5))


def permutation(gen, n):
    """A random permutation of ``range(n)`` (int64) from any generator: the argsort of
    ``n`` uniform draws when the generator has no ``permutation`` (ties have probability
    about ``n^2 / 2^53``)."""
    if hasattr(gen, "permutation"):
        return gen.permutation(n)
    u = gen.random(n)
    return get_array_module(u).argsort(u).astype(np.int64, copy=False)


def manual_seed(seed: int):
    """Seed the generator of every device (existing ones and those made later)."""
    global _seed
    _seed = _py_int(seed)
    _generators.clear()
