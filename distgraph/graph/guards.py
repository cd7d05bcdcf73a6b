"""Guards: what must be the same for a recorded tape to be replayed.

A call's *key* holds everything the Python code of a captured function may branch on
without reading a tensor's value:

* the call's arguments: every tensor's shape, strides, dtype, device and ``requires_grad``; every
  other argument's value (numbers, strings, ``None``, nested tuples/lists/dicts) or, for
  objects, their identity;
* grad mode and the autocast dtype;
* for the modules the function uses (itself, the object of a bound method, modules among its
  arguments, closure cells and globals it names): each sub-module's ``training`` flag and
  the identity of every parameter and buffer (a replaced parameter gives a new key).

A new key captures anew (a small cache of tapes per function).  Values read from tensors
during a capture (``loss.item()``, ``if (x > 0).all():``) are the other guard: they are
re-checked during each replay, before any side effect (see ``tape.py``).
"""
from __future__ import annotations

import numpy as np

from distgraph.autograd import grad_mode
from distgraph.autograd.ops._common import autocast_dtype
from distgraph.autograd.tensor import Tensor

_SCALARS = (int, float, bool, str, bytes, complex, type(None))


def flatten(obj, tensors: list):
    """A hashable description of ``obj``; its tensors are appended to ``tensors`` in order."""
    if isinstance(obj, Tensor):
        tensors.append(obj)
        a = obj.array
        dev = "cpu" if isinstance(a, np.ndarray) else f"cuda:{a.device.id}"
        # strides: a replay writes into buffers laid out as the capture's arrays were (see fuse.py)
        return ("T", a.shape, a.strides, a.dtype.str, dev, obj.requires_grad)
    t = type(obj)
    if t in _SCALARS:
        return (t.__name__, obj)
    if t is tuple or t is list:
        return (t.__name__, tuple(flatten(x, tensors) for x in obj))
    if t is dict:
        return ("dict", tuple((k, flatten(v, tensors)) for k, v in obj.items()))
    if isinstance(obj, np.generic):
        return ("np", obj.dtype.str, obj.item())
    if isinstance(obj, np.ndarray) or hasattr(obj, "__cuda_array_interface__"):
        raise TypeError("compile: a raw array was passed to a compiled function; wrap it with dg.tensor(...) "
                        "(a raw array's values are invisible to the tape)")
    return ("obj", id(obj))


def find_modules(fn, args, kwargs):
    """The modules a function uses, as far as can be seen without running it: ``fn`` itself, the
    object of a bound method, modules among the arguments, closure cells and globals it names."""
    from distgraph.nn.module import Module
    found, seen = [], set()

    def add(obj):
        if isinstance(obj, Module) and id(obj) not in seen:
            for m in obj.modules():
                if id(m) not in seen:
                    seen.add(id(m))
                    found.append(m)

    add(fn)
    add(getattr(fn, "__self__", None))
    for a in list(args) + list(kwargs.values()):
        add(a)
    code = getattr(fn, "__code__", None)
    if code is None and hasattr(fn, "__call__"):
        code = getattr(getattr(fn, "__call__"), "__code__", None)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            add(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    g = getattr(fn, "__globals__", {})
    for name in getattr(code, "co_names", ()):
        add(g.get(name))
    return found


def module_state(modules):
    """``training`` flags and parameter/buffer identities of ``modules`` (part of the key)."""
    flags = tuple(m.training for m in modules)
    ids = tuple(id(v) for m in modules for d in (m._parameters, m._buffers) for v in d.values())
    return flags, ids


def module_tensors(modules):
    """Every parameter and buffer of ``modules`` (watched for raw in-place writes during a capture)."""
    out, seen = [], set()
    for m in modules:
        for d in (m._parameters, m._buffers):
            for v in d.values():
                if isinstance(v, Tensor) and id(v) not in seen:
                    seen.add(id(v))
                    out.append(v)
    return out


def key(args, kwargs, modules, tensors: list):
    spec = flatten((args, kwargs), tensors)
    return spec, grad_mode.is_grad_enabled(), str(autocast_dtype()), module_state(modules)
