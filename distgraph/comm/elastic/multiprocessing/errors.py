"""``@record``, as torchrun scripts decorate their ``main`` with it.

PyTorch's ``record`` writes the exception that ends the decorated function to the file named by
``TORCHELASTIC_ERROR_FILE`` (which torchrun's agent reads to say which rank failed and why) and raises
it again.  Here the same: the file is written when the variable is set (torchrun's JSON layout), and
the exception goes on to distgraph's own handler, which names the failed rank on every rank and in
``distgraph-run``'s closing line.
"""
from __future__ import annotations

import functools
import json
import os
import time
import traceback

__all__ = ["record", "ChildFailedError"]


class ChildFailedError(Exception):
    """torchrun's error for a failed child process; raised by nothing here, importable for scripts that
    catch it."""

    def __init__(self, name, failures=None):
        super().__init__(f"{name} failed: {failures or {}}")
        self.name, self.failures = name, failures or {}


def _write_error_file(path, exc):
    record = {"message": {"message": f"{type(exc).__name__}: {exc}",
                          "extraInfo": {"py_callstack": "".join(traceback.format_exception(exc)),
                                        "timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as f:
            json.dump(record, f)
    except OSError:
        pass  # the exception itself matters more than the file


def record(fn=None, error_handler=None):
    """Decorate ``fn`` so that an exception it raises is written to ``$TORCHELASTIC_ERROR_FILE`` (when
    set) and raised again; ``SystemExit(0)`` returns None, other exits and KeyboardInterrupt pass
    through.  Usable as ``@record`` and ``@record()``; ``error_handler`` is accepted and
    ignored (PyTorch's ``ErrorHandler`` object)."""
    if fn is None:
        return lambda f: record(f, error_handler)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SystemExit as exit_:
            if exit_.code == 0:     # PyTorch's: a clean exit becomes a plain return
                return None
            raise
        except Exception as exc:
            path = os.environ.get("TORCHELASTIC_ERROR_FILE")
            if path:
                _write_error_file(path, exc)
            raise
    return wrapper
