"""Thread-local gradient mode: ``no_grad``, ``enable_grad``, ``set_grad_enabled``, ``inference_mode``;
and the anomaly-detection switch (``autograd.detect_anomaly``).

Each works as a context manager and as a decorator (``@no_grad()`` and, as in
PyTorch, the bare ``@no_grad``), and always restores the previous mode
(``try/finally``), even when the body raises.
"""
from __future__ import annotations

import functools
import threading

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops record the graph in this thread."""
    return getattr(_state, "enabled", True)


def _set(mode: bool):
    _state.enabled = mode


class _GradMode:
    mode = True

    def __new__(cls, orig_func=None, *args, **kwargs):
        # ``@no_grad`` without parentheses passes the function itself: decorate it.
        if callable(orig_func) and cls is not set_grad_enabled:
            return cls()(orig_func)
        return super().__new__(cls)

    def _target(self) -> bool:
        return self.mode

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set(self._target())
        return self

    def __exit__(self, *exc):
        _set(self._prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = is_grad_enabled()
            _set(self._target())
            try:
                return fn(*args, **kwargs)
            finally:
                _set(prev)
        return wrapper


class no_grad(_GradMode):
    """Disable graph recording: results have ``requires_grad=False`` and no ``grad_fn``."""
    mode = False

    def __init__(self, orig_func=None):
        pass


class inference_mode(_GradMode):
    """``inference_mode(mode=True)``: PyTorch's faster ``no_grad`` for inference.

    Here it is exactly ``no_grad`` (``mode=False``: grad mode is left as it is).  Unlike
    PyTorch, tensors made inside are ordinary tensors, not "inference tensors": using them
    in autograd later is allowed instead of raising.
    """

    def __init__(self, mode=True):
        self._on = bool(mode)

    def _target(self) -> bool:
        return False if self._on else is_grad_enabled()


class enable_grad(_GradMode):
    """Enable graph recording, e.g. inside a ``no_grad`` block."""
    mode = True

    def __init__(self, orig_func=None):
        pass


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(mode)``: set the mode now (like PyTorch) and restore it when used with ``with``."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = is_grad_enabled()
        _set(self.mode)

    def __enter__(self):
        return self

    def __call__(self, fn):
        _set(self._prev)  # used as a decorator: only the decorated calls change mode
        return super().__call__(fn)


# ------------------------------------------------------------ anomaly mode
# Process-wide, as PyTorch's: read once per op (``Function.apply``) and once per
# backward pass, so it costs nothing measurable when off.
_anomaly = False
_check_nan = True


def is_anomaly_enabled() -> bool:
    """Whether ops record their forward stack (``detect_anomaly``)."""
    return _anomaly


def is_anomaly_check_nan_enabled() -> bool:
    return _anomaly and _check_nan


class detect_anomaly:
    """Context manager (and decorator): while inside, each op records the stack of its forward
    call, and a backward rule that returns NaN raises ``RuntimeError`` naming the op and showing
    where its forward was called (PyTorch's ``torch.autograd.detect_anomaly``).  Slow: for debugging."""

    def __init__(self, check_nan=True):
        self.check_nan = bool(check_nan)

    def __enter__(self):
        global _anomaly, _check_nan
        self._prev = (_anomaly, _check_nan)
        _anomaly, _check_nan = True, self.check_nan
        return self

    def __exit__(self, *exc):
        global _anomaly, _check_nan
        _anomaly, _check_nan = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)
        return wrapper


class set_detect_anomaly(detect_anomaly):
    """``set_detect_anomaly(mode, check_nan=True)``: switch anomaly detection now; restored after ``with``."""

    def __init__(self, mode: bool, check_nan=True):
        global _anomaly, _check_nan
        self.check_nan = bool(check_nan)
        self._prev = (_anomaly, _check_nan)
        _anomaly, _check_nan = bool(mode), self.check_nan

    def __enter__(self):
        return self
