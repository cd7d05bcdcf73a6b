"""``GraphBuilder``: the ONNX nodes, initializers and names that converters write into."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from distgraph.onnx.trace import Const, Val

INT64_MAX = np.iinfo(np.int64).max


class GraphBuilder:
    """Names values, makes constants and nodes; one per export.

    Converters see it as ``g``: ``g.input(ref)`` turns an op input (a value id, a ``Const`` or a
    Python scalar) into an ONNX name, ``g.node(op_type, inputs, **attrs)`` adds a node and returns
    its output name(s), ``g.const(array)`` adds a constant, ``g.opset`` is the target opset.
    """

    def __init__(self, opset: int, values, names: dict):
        self.opset, self.values = opset, values
        self.names = dict(names)            # value id -> ONNX name (inputs, parameters, bound outputs)
        self.nodes: list = []
        self.initializers: dict = {}        # name -> TensorProto
        self._count = 0
        self._const_cache = {}              # (dtype, shape, bytes) -> name, so equal constants are shared
        self.module_names = {}              # id(module) -> its path in the model (names module initializers)

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"/{hint}_{self._count}"

    # ------------------------------------------------------------ inputs and constants
    def input(self, ref, dtype=None) -> str:
        """The ONNX name of an op input; Python scalars become constants of ``dtype``."""
        if isinstance(ref, Val):
            return self.names[ref]
        if isinstance(ref, Const):
            return self.const(ref.array)
        if dtype is None:
            raise AssertionError(f"a scalar input ({ref!r}) needs a dtype")
        return self.const(np.asarray(ref, dtype=dtype))

    def const(self, array, hint: str = "Constant") -> str:
        a = np.ascontiguousarray(array)
        key = (a.dtype.str, a.shape, a.tobytes())
        name = self._const_cache.get(key)
        if name is None:
            name = self._const_cache[key] = self.fresh(hint)
            self.initializers[name] = numpy_helper.from_array(a, name)
        return name

    def ints(self, values) -> str:
        """A 1-D int64 constant (shapes, axes, pads)."""
        return self.const(np.asarray(list(values), dtype=np.int64))

    def add_initializer(self, name: str, array):
        self.initializers[name] = numpy_helper.from_array(np.ascontiguousarray(array), name)

    # ------------------------------------------------------------ nodes
    def node(self, op_type: str, inputs, n_out: int = 1, **attrs):
        """Add a node; returns its output name (a list of names when ``n_out > 1``)."""
        outs = [self.fresh(op_type) for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=outs[0].replace("/", "/n_", 1), **attrs))
        return outs[0] if n_out == 1 else outs

    def reduce(self, op_type: str, x: str, axes, keepdims: bool) -> str:
        """A Reduce* node; ``axes`` is an attribute before opset 18 (13 for ReduceSum), an input since."""
        axes = list(axes)
        as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if as_input:
            return self.node(op_type, [x, self.ints(axes)], keepdims=int(keepdims))
        return self.node(op_type, [x], axes=axes, keepdims=int(keepdims))

    def unsqueeze(self, x: str, axes) -> str:
        return self.node("Unsqueeze", [x, self.ints(axes)])

    def squeeze(self, x: str, axes) -> str:
        return self.node("Squeeze", [x, self.ints(axes)])


def tensor_type(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def value_info(name: str, dtype, shape) -> onnx.ValueInfoProto:
    """``shape`` holds ints (fixed) and strings (symbolic dims)."""
    return helper.make_tensor_value_info(name, tensor_type(dtype), list(shape))
