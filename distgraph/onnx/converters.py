"""One converter per op family: a recorded distgraph op -> ONNX nodes.

A converter is ``fn(g, op) -> name``: it reads the op's inputs through ``g.input(ref)`` (see
``GraphBuilder``), the op's attributes from ``op.fn`` (the ``Function`` instance that ran), shapes
from the traced arrays (``shape(g, ref)``), and returns the ONNX name of the op's output.
``register_converter(FunctionClass, fn, arrays=(...))`` (``registry.py``) adds one; ``arrays`` names
attributes of the op that hold input arrays (``Where.cond``), which the tracer resolves like inputs.
The pooling, indexing, scan and sort families are in ``converters_select.py``.

Shapes are only baked into the graph where ONNX needs them (reshape targets); there a dim that
the input keeps in place is written ``0`` (copy the input's dim), so a dynamic batch axis stays
dynamic.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from distgraph.autograd.ops import activation as A
from distgraph.autograd.ops import elementwise as E
from distgraph.autograd.ops import index as I
from distgraph.autograd.ops import linalg as L
from distgraph.autograd.ops import math as M
from distgraph.autograd.ops import nn as N
from distgraph.autograd.ops import reduce as R
from distgraph.autograd.ops import shape as S
from distgraph.onnx.graph import tensor_type
from distgraph.onnx.registry import arg, out_dtype, out_shape, register_converter, shape, unsupported
from distgraph.onnx.trace import Const, Val

# ========================================================== elementwise
def _simple(op_type, g, op):
    return g.node(op_type, [arg(g, op, i) for i in range(len(op.inputs))])


for _cls, _t in {E.Add: "Add", E.Sub: "Sub", E.Mul: "Mul", E.Div: "Div", E.Neg: "Neg", E.Abs: "Abs",
                 E.Exp: "Exp", E.Log: "Log", E.Sqrt: "Sqrt", E.Sin: "Sin", E.Cos: "Cos", E.Tanh: "Tanh",
                 E.Sigmoid: "Sigmoid", A.Relu: "Relu", M.Reciprocal: "Reciprocal", M.Tan: "Tan",
                 M.Atan: "Atan", M.Sinh: "Sinh", M.Cosh: "Cosh",
                 E.Clone: "Identity", E.ToDevice: "Identity", L.MatMul: "MatMul"}.items():
    register_converter(_cls, functools.partial(_simple, _t))


@register_converter(E.Pow)
def _pow(g, op):
    x = arg(g, op, 0)
    p = op.inputs[1]
    return g.node("Pow", [x, g.input(p, np.float32 if isinstance(p, float) else out_dtype(g, op))])


@register_converter(E.Maximum)
def _maximum(g, op):
    return g.node("Min" if op.fn.lesser else "Max", [arg(g, op, 0), arg(g, op, 1)])


@register_converter(E.Rsqrt)
def _rsqrt(g, op):
    return g.node("Reciprocal", [g.node("Sqrt", [arg(g, op)])])


@register_converter(E.Log1p)
def _log1p(g, op):
    return g.node("Log", [g.node("Add", [arg(g, op), g.input(1.0, out_dtype(g, op))])])


@register_converter(M.Asin)
def _asin(g, op):
    return g.node("Asin" if op.fn.sign == 1 else "Acos", [arg(g, op)])


@register_converter(M.Erf)
def _erf(g, op):
    y = g.node("Erf", [arg(g, op)])
    return g.node("Sub", [g.input(1.0, out_dtype(g, op)), y]) if op.fn.complement else y


@register_converter(E.Cast)
def _cast(g, op):
    return g.node("Cast", [arg(g, op)], to=tensor_type(out_dtype(g, op)))


@register_converter(E.Where, arrays=("cond",))
def _where(g, op):
    return g.node("Where", [g.input(op.arrays["cond"]), arg(g, op, 0), arg(g, op, 1)])


# ========================================================== activations
@register_converter(A.Gelu)
def _gelu(g, op):
    x, dt = arg(g, op), out_dtype(g, op)
    c = functools.partial(g.input, dtype=dt)
    if op.fn.approximate == "tanh":   # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.node("Mul", [g.node("Mul", [x, x]), x])
        inner = g.node("Mul", [g.node("Add", [x, g.node("Mul", [cube, c(0.044715)])]), c(math.sqrt(2 / math.pi))])
        t = g.node("Tanh", [inner])
    else:                             # 0.5 x (1 + erf(x / sqrt(2)))
        t = g.node("Erf", [g.node("Div", [x, c(math.sqrt(2))])])
    return g.node("Mul", [g.node("Mul", [x, c(0.5)]), g.node("Add", [t, c(1.0)])])


@register_converter(A.Silu)
def _silu(g, op):
    x = arg(g, op)
    return g.node("Mul", [x, g.node("Sigmoid", [x])])


@register_converter(A.LeakyRelu)
def _leaky_relu(g, op):
    return g.node("LeakyRelu", [arg(g, op)], alpha=float(op.fn.slope))


@register_converter(A.Elu)
def _elu(g, op):
    return g.node("Elu", [arg(g, op)], alpha=float(op.fn.alpha))


@register_converter(N.Softmax)
def _softmax(g, op):
    return g.node("Softmax", [arg(g, op)], axis=int(op.fn.dim))


@register_converter(N.LogSoftmax)
def _log_softmax(g, op):
    return g.node("LogSoftmax", [arg(g, op)], axis=int(op.fn.dim))


# ========================================================== nn: linear, conv, pooling, embedding
@register_converter(N.Linear)
def _linear(g, op):
    x, w = arg(g, op, 0), arg(g, op, 1)
    b = arg(g, op, 2) if len(op.inputs) > 2 else None
    if len(shape(g, op.inputs[0])) == 2:
        return g.node("Gemm", [x, w] + ([b] if b else []), transB=1)
    y = g.node("MatMul", [x, g.node("Transpose", [w], perm=[1, 0])])
    return g.node("Add", [y, b]) if b else y


@register_converter(N.Conv2d)
def _conv2d(g, op):
    w = shape(g, op.inputs[1])
    return g.node("Conv", [arg(g, op, 0), arg(g, op, 1)], kernel_shape=list(w[2:]), strides=list(op.fn.stride),
                  dilations=list(op.fn.dilation), group=int(op.fn.groups))


@register_converter(N.Pad)
def _pad(g, op):
    widths = op.fn.widths
    pads = [int(b) for b, _ in widths] + [int(a) for _, a in widths]
    value = g.input(op.fn.value, out_dtype(g, op))
    return g.node("Pad", [arg(g, op), g.ints(pads), value], mode="constant")


@register_converter(N.MaxPoolNd)
def _max_pool(g, op):
    k = list(op.fn.kernel)
    if len(shape(g, op.inputs[0])) != len(k) + 2:
        unsupported(op, f"ONNX MaxPool needs an (N, C, *spatial) input, got shape {shape(g, op.inputs[0])}; "
                        "pass a batched input")
    return g.node("MaxPool", [arg(g, op)], kernel_shape=k, strides=list(op.fn.stride),
                  dilations=list(op.fn.dilation))


@register_converter(N.EmbeddingLookup, arrays=("idx",))
def _embedding(g, op):
    return g.node("Gather", [arg(g, op), g.input(op.arrays["idx"])], axis=0)


@register_converter(N.Take, arrays=("idx",))
def _take(g, op):
    return g.node("Gather", [arg(g, op), g.input(op.arrays["idx"])], axis=int(op.fn.axis))


# ========================================================== shapes
def _inserted_ones(small, big):
    """Positions of the 1s that turn ``small`` into ``big`` when inserted, or None."""
    pos, i = [], 0
    for j, n in enumerate(big):
        if i < len(small) and small[i] == n:
            i += 1
        elif n == 1:
            pos.append(j)
        else:
            return None
    return pos if i == len(small) else None


def reshape_target(src, dst) -> list:
    """``dst`` written so that it also holds for other sizes of the dims it keeps from ``src``:
    the leading dims kept in place become 0 (ONNX: copy the input's dim), and one of the others
    -1 (inferred).  Exact for the traced sizes; for other sizes, exact when the dims that vary
    are kept in place or merged into the first new dim (a batch axis, in practice)."""
    dst = [int(n) for n in dst]
    k = 0
    while k < min(len(src), len(dst)) and src[k] == dst[k]:
        k += 1
    rest = dst[k:]
    if rest and -1 not in rest:
        rest[0] = -1
    return [0] * k + rest


@register_converter(S.Reshape)
def _reshape(g, op):
    src, dst = shape(g, op.inputs[0]), out_shape(g, op)
    x = arg(g, op)
    if src == dst:
        return g.node("Identity", [x])
    ones = _inserted_ones(src, dst)
    if ones:
        return g.unsqueeze(x, ones)
    ones = _inserted_ones(dst, src)
    if ones:
        return g.squeeze(x, ones)
    return g.node("Reshape", [x, g.ints(reshape_target(src, dst))])


@register_converter(S.Permute)
def _permute(g, op):
    return g.node("Transpose", [arg(g, op)], perm=[int(d) for d in op.fn.dims])


@register_converter(S.Expand)
def _expand(g, op):
    src, dst = shape(g, op.inputs[0]), out_shape(g, op)
    lead = len(dst) - len(src)
    target = [1 if i >= lead and src[i - lead] == n else n for i, n in enumerate(dst)]
    return g.node("Expand", [arg(g, op), g.ints(target)])


@register_converter(S.Cat)
def _cat(g, op):
    return g.node("Concat", [arg(g, op, i) for i in range(len(op.inputs))], axis=int(op.fn.dim))


@register_converter(S.Tri)
def _tri(g, op):
    return g.node("Trilu", [arg(g, op), g.const(np.asarray(op.fn.k, np.int64))], upper=int(op.fn.upper))


# ========================================================== reductions
def _reduce(op_type, g, op):
    return g.reduce(op_type, arg(g, op), op.fn.axes, op.fn.keepdim)


register_converter(R.Sum, functools.partial(_reduce, "ReduceSum"))
register_converter(R.Mean, functools.partial(_reduce, "ReduceMean"))


@register_converter(R.Amax)
def _amax(g, op):
    return _reduce("ReduceMin" if op.fn.lesser else "ReduceMax", g, op)


@register_converter(R.Var)
def _var(g, op):
    """``mean((x - mean(x))^2) * n / (n - correction)``."""
    x, fn = arg(g, op), op.fn
    d = g.node("Sub", [x, g.reduce("ReduceMean", x, fn.axes, True)])
    v = g.reduce("ReduceMean", g.node("Mul", [d, d]), fn.axes, fn.keepdim)
    if not fn.correction:
        return v
    n = math.prod(shape(g, op.inputs[0])[a] for a in fn.axes)
    return g.node("Mul", [v, g.input(n / max(n - fn.correction, 0), out_dtype(g, op))])

