"""The converter registry and the helpers every converter uses (``converters.py`` documents the
contract).  Kept apart from the converter families so that each family imports only this module."""
from __future__ import annotations

from distgraph.onnx.errors import UnsupportedOperatorError
from distgraph.onnx.trace import Const, Val

CONVERTERS: dict = {}      # Function class -> converter
ARRAY_SLOTS: dict = {}     # Function class -> names of attributes holding input arrays
REWRITES: dict = {}        # Function class -> fn(op, inputs, out) -> pseudo-op or None (see Tracer)


def register_converter(cls, fn=None, *, arrays=()):
    """Register ``fn(g, op) -> onnx_name`` as the converter of the op class ``cls``
    (usable as a decorator: ``@register_converter(MyOp)``)."""
    if fn is None:
        return lambda f: register_converter(cls, f, arrays=arrays)
    CONVERTERS[cls] = fn
    if arrays:
        ARRAY_SLOTS[cls] = tuple(arrays)
    return fn


def shape(g, ref) -> tuple:
    if isinstance(ref, Val):
        return tuple(g.values[ref].array.shape)
    if isinstance(ref, Const):
        return tuple(ref.array.shape)
    return ()


def out_shape(g, op) -> tuple:
    return tuple(g.values[op.outputs[0]].array.shape)


def out_dtype(g, op):
    return g.values[op.outputs[0]].array.dtype


def arg(g, op, i=0) -> str:
    """Input ``i``; a Python scalar becomes a constant of the output's dtype (as distgraph computes)."""
    return g.input(op.inputs[i], out_dtype(g, op))


def unsupported(op, reason):
    raise UnsupportedOperatorError(op.name, op.where, reason)
