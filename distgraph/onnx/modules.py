"""Modules exported as one ONNX op each: ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` -> ONNX LSTM / GRU / RNN.

distgraph runs a recurrent layer as a Python loop over time steps; traced op by op, that loop
would freeze the sequence length into the graph.  ONNX's recurrent ops take any length, so the
tracer records these modules as one call (``Op.module``) and the converter here writes one ONNX
op per layer.  A converter is ``fn(g, op) -> [name, ...]``, one name per output tensor of the
module's forward, in order (``output, h_n, c_n`` for an LSTM).

Gate order: PyTorch's LSTM weights hold (i, f, g, o) blocks, ONNX's (i, o, f, c); GRU (r, z, n)
against ONNX's (z, r, h), with ``linear_before_reset=1`` (PyTorch applies ``r`` after the
hidden product).
"""
from __future__ import annotations

import numpy as np

from distgraph.nn.rnn import RNNBase
from distgraph.onnx.errors import UnsupportedOperatorError
from distgraph.onnx.trace import Val, _host

MODULE_CONVERTERS: dict = {}   # module class -> converter (subclasses match too)

_ONNX_OP = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}
_GATE_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN_TANH": [0], "RNN_RELU": [0]}


def register_module_converter(cls, fn):
    """Export every ``cls`` module (and subclass) with ``fn(g, op)`` instead of tracing its forward."""
    MODULE_CONVERTERS[cls] = fn


def find_module_converter(module):
    for cls in type(module).__mro__:
        if cls in MODULE_CONVERTERS:
            return MODULE_CONVERTERS[cls]
    return None


def _gates(w, mode):
    """Reorder the stacked gate blocks (dim 0) of a PyTorch weight or bias into ONNX's order."""
    blocks = np.split(_host(w.array), len(_GATE_ORDER[mode]), axis=0)
    return np.concatenate([blocks[i] for i in _GATE_ORDER[mode]], axis=0)


def _rnn(g, op):
    m, mode = op.module, op.module.mode
    where = op.where
    if m.proj_size:
        raise UnsupportedOperatorError(type(m).__name__, where, "proj_size > 0 has no ONNX equivalent")
    args = list(op.inputs) + [None] * 2
    x_ref, hx = args[0], (op.kwargs or {}).get("hx", args[1])
    if not isinstance(x_ref, Val):
        raise UnsupportedOperatorError(type(m).__name__, where,
                                       "expected a tensor input; PackedSequence inputs are not exported")
    lstm = mode == "LSTM"
    h0_ref, c0_ref = (hx if lstm else (hx, None)) if hx is not None else (None, None)
    x = g.input(x_ref)
    unbatched = g.values[x_ref].array.ndim == 2
    if unbatched:
        x = g.unsqueeze(x, [1])
    elif m.batch_first:
        x = g.node("Transpose", [x], perm=[1, 0, 2])
    h0, c0 = (g.input(r) if r is not None else None for r in (h0_ref, c0_ref))
    if unbatched:
        h0, c0 = (g.unsqueeze(s, [1]) if s is not None else None for s in (h0, c0))
    dirs = 2 if m.bidirectional else 1
    prefix = g.module_names.get(id(m), type(m).__name__)
    hs, cs = [], []
    for layer in range(m.num_layers):
        sfx = [f"_l{layer}" + ("_reverse" if d else "") for d in range(dirs)]
        w = np.stack([_gates(getattr(m, "weight_ih" + s), mode) for s in sfx])
        r = np.stack([_gates(getattr(m, "weight_hh" + s), mode) for s in sfx])
        names = [f"{prefix}.onnx_W_l{layer}", f"{prefix}.onnx_R_l{layer}"]
        g.add_initializer(names[0], w)
        g.add_initializer(names[1], r)
        ins = [x] + names
        if m.bias:
            b = np.stack([np.concatenate([_gates(getattr(m, "bias_ih" + s), mode),
                                          _gates(getattr(m, "bias_hh" + s), mode)]) for s in sfx])
            g.add_initializer(f"{prefix}.onnx_B_l{layer}", b)
            ins.append(f"{prefix}.onnx_B_l{layer}")
        else:
            ins.append("")
        ins.append("")                                        # sequence_lens: every sequence is full length
        span = [g.ints([layer * dirs]), g.ints([(layer + 1) * dirs]), g.ints([0])]
        ins.append(g.node("Slice", [h0] + span) if h0 is not None else "")
        if lstm:
            ins.append(g.node("Slice", [c0] + span) if c0 is not None else "")
        attrs = dict(hidden_size=m.hidden_size, direction="bidirectional" if dirs == 2 else "forward")
        if mode == "GRU":
            attrs["linear_before_reset"] = 1
        if mode.startswith("RNN"):
            attrs["activations"] = ["Tanh" if mode == "RNN_TANH" else "Relu"] * dirs
        outs = g.node(_ONNX_OP[mode], ins, n_out=3 if lstm else 2, **attrs)
        y = outs[0]                                           # (T, dirs, N, H)
        hs.append(outs[1])
        if lstm:
            cs.append(outs[2])
        if dirs == 1:
            x = g.squeeze(y, [1])
        else:
            x = g.node("Reshape", [g.node("Transpose", [y], perm=[0, 2, 1, 3]), g.ints([0, 0, -1])])
    h_n = g.node("Concat", hs, axis=0) if len(hs) > 1 else hs[0]
    c_n = (g.node("Concat", cs, axis=0) if len(cs) > 1 else cs[0]) if lstm else None
    if unbatched:
        x, h_n = g.squeeze(x, [1]), g.squeeze(h_n, [1])
        c_n = g.squeeze(c_n, [1]) if lstm else None
    elif m.batch_first:
        x = g.node("Transpose", [x], perm=[1, 0, 2])
    return [x, h_n, c_n] if lstm else [x, h_n]


register_module_converter(RNNBase, _rnn)
