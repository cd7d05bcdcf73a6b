"""``torch.testing.assert_close`` for distgraph tensors (and numbers, arrays, nested sequences)."""
from __future__ import annotations

import numpy as np

from distgraph import backend
from distgraph.autograd.tensor import Tensor

__all__ = ["assert_close", "assert_allclose"]

# PyTorch's default tolerances per dtype (rtol, atol)
_TOL = {"float16": (1e-3, 1e-5), "float32": (1.3e-6, 1e-5), "float64": (1e-7, 1e-7)}


def _host(x):
    if isinstance(x, Tensor):
        a = x.array
        return a if isinstance(a, np.ndarray) else a.get()
    return np.asarray(x)


def assert_close(actual, expected, *, rtol=None, atol=None, equal_nan=False, check_dtype=True,
                 check_device=True, msg=None, **kwargs):
    """Raise ``AssertionError`` unless ``|actual - expected| <= atol + rtol * |expected|`` elementwise,
    with matching shapes (and dtypes/devices when checked); integers and bools must be equal."""
    if isinstance(actual, (list, tuple)) and isinstance(expected, (list, tuple)):
        if len(actual) != len(expected):
            raise AssertionError(f"assert_close: sequences of length {len(actual)} and {len(expected)}")
        for a, e in zip(actual, expected):
            assert_close(a, e, rtol=rtol, atol=atol, equal_nan=equal_nan, check_dtype=check_dtype,
                         check_device=check_device, msg=msg)
        return
    if isinstance(actual, dict) and isinstance(expected, dict):
        if actual.keys() != expected.keys():
            raise AssertionError(f"assert_close: keys differ: {sorted(actual)} vs {sorted(expected)}")
        for k in actual:
            assert_close(actual[k], expected[k], rtol=rtol, atol=atol, equal_nan=equal_nan,
                         check_dtype=check_dtype, check_device=check_device, msg=msg)
        return
    a, e = _host(actual), _host(expected)
    if a.shape != e.shape:
        raise AssertionError(msg or f"assert_close: shapes differ: {a.shape} vs {e.shape}")
    both = isinstance(actual, Tensor) and isinstance(expected, Tensor)
    if check_dtype and both and actual.dtype != expected.dtype:
        raise AssertionError(msg or f"assert_close: dtypes differ: {backend.dtype_name(actual.dtype)} vs "
                                    f"{backend.dtype_name(expected.dtype)}; pass check_dtype=False to compare values")
    if check_device and both and actual.device != expected.device:
        raise AssertionError(msg or f"assert_close: devices differ: {actual.device} vs {expected.device}")
    if rtol is None or atol is None:
        r, t = _TOL.get(str(a.dtype) if a.dtype.kind == "f" else "", (0.0, 0.0))
        rtol = r if rtol is None else rtol
        atol = t if atol is None else atol
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    ok = np.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=equal_nan)
    if not ok.all():
        bad = int((~ok).sum())
        diff = np.abs(a64 - e64)
        i = np.unravel_index(np.nanargmax(np.where(ok, -np.inf, diff)), a.shape) if a.ndim else ()
        raise AssertionError(msg or f"assert_close: {bad} of {a.size} elements differ (rtol={rtol}, atol={atol}); "
                                    f"greatest difference {diff[i]} at index {tuple(int(k) for k in i)}: "
                                    f"{a64[i]} vs {e64[i]}")


assert_allclose = assert_close
