"""Thread-local gradient mode: ``no_grad``, ``enable_grad``, ``set_grad_enabled``.

Each works as a context manager and as a decorator, and always restores the
previous mode (``try/finally``), even when the body raises.
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

    def __enter__(self):
        self._prev = is_grad_enabled()
        _set(self.mode)
        return self

    def __exit__(self, *exc):
        _set(self._prev)
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = is_grad_enabled()
            _set(mode)
            try:
                return fn(*args, **kwargs)
            finally:
                _set(prev)
        return wrapper


class no_grad(_GradMode):
    """Disable graph recording: results have ``requires_grad=False`` and no ``grad_fn``."""
    mode = False


class enable_grad(_GradMode):
    """Enable graph recording, e.g. inside a ``no_grad`` block."""
    mode = True


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
