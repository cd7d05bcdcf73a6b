"""Converters of the pooling, indexing, scan and sorting families (see ``converters.py`` for the
converter contract).

* average pooling: ``nn.AvgPool1d/2d/3d`` are exported as one ONNX ``AveragePool`` each (a module
  call, as the recurrent layers); the functional ``avg_pool*d`` runs as pad + ``Im2ColNd`` + sum +
  divide, and ``Im2ColNd`` becomes a grouped ``Conv`` with one-hot kernels (exact: each output
  is one input element times 1).
* indexing: ``gather`` -> ``GatherElements``; ``index_select`` and ``x[..., idx]`` with one integer
  tensor -> ``Gather``.
* ``cumsum`` -> ``CumSum``.
* ``sort``/``topk`` compute their order outside any ``Function`` (NumPy's argsort) and pick the
  values with ``TakeAlong``; the tracer recognises a ``TakeAlong`` whose index is the stable order
  of its input (``_as_topk``) and records it as a ``TopK`` pseudo-op with two outputs, the
  values and the indices, so both can be used downstream.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from distgraph.autograd.ops import cumulative as C
from distgraph.autograd.ops import index as I
from distgraph.autograd.ops import nn as N
from distgraph.autograd.ops.sort import order
from distgraph.nn import pooling as P
from distgraph.nn.padding_functions import ntuple
from distgraph.onnx.errors import UnsupportedOperatorError
from distgraph.onnx.graph import INT64_MAX
from distgraph.onnx.modules import register_module_converter
from distgraph.onnx.registry import REWRITES, arg, out_shape, register_converter, shape, unsupported
from distgraph.onnx.trace import Const, Val, _host


# ========================================================== average pooling
def _avg_pool_module(g, op):
    """``nn.AvgPoolNd`` -> ``AveragePool``; ``divisor_override`` as a rescaling where every window
    is whole, refused where ``ceil_mode`` makes partial windows or ONNX's ceil rule differs."""
    m, name = op.module, type(op.module).__name__
    nd = int(name[-2])
    x_ref = op.inputs[0] if op.inputs else (op.kwargs or {}).get("input")
    if not isinstance(x_ref, Val):
        raise UnsupportedOperatorError(name, op.where, "expected a tensor input")
    src = shape(g, x_ref)
    k = ntuple(m.kernel_size, nd, "kernel_size", name)
    s = ntuple(m.stride if m.stride not in (None, ()) else m.kernel_size, nd, "stride", name)
    p = ntuple(m.padding, nd, "padding", name)
    divisor = getattr(m, "divisor_override", None)
    ceil = False
    for n, kk, ss, pp in zip(src[-nd:], k, s, p):
        o = math.floor((n + 2 * pp - kk) / ss) + 1
        if m.ceil_mode:
            o_onnx = -(-(n + 2 * pp - kk) // ss) + 1
            o_torch = o_onnx - 1 if (o_onnx - 1) * ss >= n + pp else o_onnx
            if o_torch != o_onnx:
                raise UnsupportedOperatorError(name, op.where, f"ceil_mode=True where the last window starts in "
                                               f"the right padding (size {n}, kernel {kk}, stride {ss}, padding "
                                               f"{pp}): PyTorch drops it, ONNX's AveragePool shape rule keeps it")
            ceil |= o_onnx != o
            o = o_onnx
        if divisor and (o - 1) * ss + kk > n + 2 * pp:
            raise UnsupportedOperatorError(name, op.where, "divisor_override with ceil_mode windows that overhang "
                                           "the padding: ONNX AveragePool cannot express it")
    x = g.input(x_ref)
    batched = len(src) == nd + 2
    if not batched:
        x = g.unsqueeze(x, [0])
    y = g.node("AveragePool", [x], kernel_shape=list(k), strides=list(s), pads=list(p) * 2, ceil_mode=int(ceil),
               count_include_pad=int(bool(m.count_include_pad or divisor)))
    if divisor:
        y = g.node("Mul", [y, g.input(math.prod(k) / divisor, g.values[op.outputs[0]].array.dtype)])
    return [y if batched else g.squeeze(y, [0])]


for _cls in (P.AvgPool1d, P.AvgPool2d, P.AvgPool3d):
    register_module_converter(_cls, _avg_pool_module)


@register_converter(N.Im2ColNd)
def _im2col(g, op):
    """(N, C, *S) -> (N, C, K, *out): a grouped Conv whose C*K one-hot kernels pick one window
    position each."""
    src, fn = shape(g, op.inputs[0]), op.fn
    c, kernel, K = src[1], tuple(fn.kernel), math.prod(fn.kernel)
    w = np.zeros((K,) + kernel, g.values[op.outputs[0]].array.dtype)
    w.reshape(K, K)[np.arange(K), np.arange(K)] = 1
    w = np.broadcast_to(w[None], (c, K) + kernel).reshape((c * K, 1) + kernel)
    y = g.node("Conv", [arg(g, op), g.const(w)], kernel_shape=list(kernel), strides=list(fn.stride),
               dilations=list(fn.dilation), group=int(c))
    return g.node("Reshape", [y, g.ints([0, c, K] + list(out_shape(g, op)[3:]))])


# ========================================================== gather and integer indexing
def _is_arange(ref, k, ndim):
    if not isinstance(ref, Const):
        return False
    a = ref.array
    want = [1] * ndim
    want[k] = a.size
    return list(a.shape) == want and np.array_equal(a.reshape(-1), np.arange(a.size))


@register_converter(I.Gather, arrays=("idx",))
def _gather(g, op):
    """``Gather.idx`` is a full NumPy index: the index tensor at ``dim``, aranges elsewhere."""
    idx, ndim = op.arrays["idx"], len(shape(g, op.inputs[0]))
    if len(idx) != ndim or ndim == 0:
        unsupported(op, "gather on a 0-d input is not converted")
    dims = [k for k, r in enumerate(idx) if not _is_arange(r, k, ndim)] or [0]
    if len(dims) != 1:
        unsupported(op, "expected a gather along one dim")
    d = dims[0]
    return g.node("GatherElements", [arg(g, op), g.input(idx[d])], axis=d)


@register_converter(I.GetItem, arrays=("adv",))
def _getitem(g, op):
    """``x[basic]`` as Slice/Squeeze/Unsqueeze, then the advanced part (``advanced_index``)."""
    y = _basic_index(g, op)
    return y if op.fn.adv is None else advanced_index(g, op, y)


def _basic_index(g, op):
    x, src = arg(g, op), shape(g, op.inputs[0])
    items = list(op.fn.basic)
    at = items.index(Ellipsis)                      # _split_index puts one Ellipsis last
    used = sum(1 for it in items if it is not None and it is not Ellipsis)
    items[at:at + 1] = [slice(None)] * (len(src) - used)
    starts, ends, axes, steps, drop, new = [], [], [], [], [], []
    dim = out = 0
    for it in items:
        if it is None:
            new.append(out)
            out += 1
            continue
        if isinstance(it, slice):
            if it != slice(None):
                starts.append(0 if it.start is None else int(it.start))
                ends.append(INT64_MAX if it.stop is None else int(it.stop))
                steps.append(1 if it.step is None else int(it.step))
                axes.append(dim)
            out += 1
        else:                                       # an int picks one element and drops the dim
            i = int(it)
            starts.append(i)
            ends.append(i + 1 if i != -1 else INT64_MAX)
            steps.append(1)
            axes.append(dim)
            drop.append(dim)
        dim += 1
    if axes:
        x = g.node("Slice", [x, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps)])
    if drop:
        x = g.squeeze(x, drop)
    if new:
        x = g.unsqueeze(x, new)
    return x if axes or drop or new or op.fn.adv is not None else g.node("Identity", [x])


def advanced_index(g, op, x):
    """``y[adv]`` for the advanced part of ``GetItem`` on ``y = x[basic]``: one integer tensor at one
    dim (``index_select``, ``x[:, idx]``) is a Gather there; several tensors, or a bool mask (whose
    result's size depends on the values), are refused."""
    adv = op.arrays["adv"]
    at = [k for k, r in enumerate(adv) if not isinstance(r, slice)]
    if len(at) != 1 or any(r != slice(None) for k, r in enumerate(adv) if k != at[0]):
        unsupported(op, "indexing with several tensors, a bool mask or x[False] (advanced indexing) is not "
                        "converted; use one integer tensor index (x[:, idx]), index_select or gather")
    return g.node("Gather", [x, g.input(adv[at[0]])], axis=at[0])


# ========================================================== scans
@register_converter(C.Cumsum)
def _cumsum(g, op):
    return g.node("CumSum", [arg(g, op), g.const(np.asarray(op.fn.axis, np.int64))])


# ========================================================== sort / topk
@dataclasses.dataclass
class TopK:
    """Pseudo-op: the first ``k`` of the stable order along ``axis`` (``largest``: descending);
    outputs the values and the int64 indices (``extra_outputs``)."""
    axis: int
    k: int
    largest: bool
    extra_outputs: tuple

    @property
    def trace_key(self):       # two traces must agree on these, not only on the op's name
        return self.axis, self.k, self.largest


def _as_topk(fn, inputs, out):
    """``TakeAlong`` at the first ``k`` of ``order(x)`` along its axis is ``sort``/``topk``; None otherwise
    (and when both directions fit, as on ties, which only a second trace could tell apart)."""
    x, idx, axis = _host(inputs[0].array), _host(fn.idx), fn.axis
    if idx.ndim != x.ndim or idx.dtype != np.int64 or \
            np.delete(idx.shape, axis).tolist() != np.delete(x.shape, axis).tolist():
        return None
    k, n = idx.shape[axis], x.shape[axis]
    fits = [largest for largest in (True, False)
            if np.array_equal(np.take(order(x, axis, largest), np.arange(k), axis=axis), idx)]
    if len(fits) != 1 and not (fits and n == 1):
        return None
    return TopK(axis, k, fits[0], (fn.idx,))


REWRITES[C.TakeAlong] = _as_topk


@register_converter(TopK)
def _topk(g, op):
    x, fn = arg(g, op), op.fn
    if fn.k == shape(g, op.inputs[0])[fn.axis]:      # a full sort: K follows the input's (maybe dynamic) dim
        k = g.node("Gather", [g.node("Shape", [x]), g.ints([fn.axis])], axis=0)
    else:
        k = g.ints([fn.k])
    return g.node("TopK", [x, k], n_out=2, axis=fn.axis, largest=int(fn.largest), sorted=1)
