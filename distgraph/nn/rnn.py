"""Recurrent layers: RNN, LSTM, GRU and their cells, with PyTorch's parameters, names, shapes,
initialisation (U(-1/sqrt(hidden), 1/sqrt(hidden))) and gate order (LSTM: i, f, g, o; GRU: r, z, n).

Each layer projects the whole input sequence through ``weight_ih`` in one product, then steps
through time with one ``h @ weight_hh^T`` per step; gradients come from the primitives' rules.
A ``PackedSequence`` input runs padded in its sorted order, with each sequence's state frozen
once it has ended, so ``h_n`` is every sequence's state at its own last step.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from distgraph.autograd.creation import empty, tensor, zeros
from distgraph.autograd.ops import matmul, sigmoid, stack, tanh
from distgraph.autograd.ops.activation import relu
from distgraph.autograd.ops.elementwise import where
from distgraph.autograd.ops.index import index_select
from distgraph.autograd.ops.shape import cat
from distgraph.autograd.tensor import Parameter
from distgraph.nn import functional as F
from distgraph.nn import init
from distgraph.nn.layers import _factory
from distgraph.nn.module import Module
from distgraph.nn.utils_rnn import PackedSequence, _host_ints, pack_padded_sequence, pad_packed_sequence

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _step(mode, gi, h, c, w_hh, b_hh, w_hr=None):
    """One time step: ``gi`` is the input projection (with ``b_ih``) of this step."""
    gh = matmul(h, w_hh.t())
    if b_hh is not None:
        gh = gh + b_hh
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, -1)
        c = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h = sigmoid(o) * tanh(c)
        return (h if w_hr is None else matmul(h, w_hr.t())), c
    if mode == "GRU":
        ir, iz, in_ = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r, z = sigmoid(ir + hr), sigmoid(iz + hz)
        n = tanh(in_ + r * hn)
        return (1 - z) * n + z * h, None
    pre = gi + gh
    return (tanh(pre) if mode == "RNN_TANH" else relu(pre)), None


def _check_sizes(name, hidden_size, num_layers=1):
    if not isinstance(hidden_size, int) or isinstance(hidden_size, bool):
        raise TypeError(f"{name}: expected an int hidden_size, got {type(hidden_size).__name__}")
    if hidden_size <= 0:
        raise ValueError(f"{name}: expected hidden_size > 0, got {hidden_size}")
    if num_layers <= 0:
        raise ValueError(f"{name}: expected num_layers > 0, got {num_layers}")


class RNNBase(Module):
    """What RNN, LSTM and GRU share (see the module docstring).

    Inputs are ``(T, N, H_in)`` (``(N, T, H_in)`` with ``batch_first``), ``(T, H_in)`` unbatched,
    or a ``PackedSequence``; ``forward`` returns ``output, h_n`` (LSTM: ``output, (h_n, c_n)``).
    """

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: expected dropout as a number in [0, 1] (the probability of zeroing an "
                             f"element), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} applies between layers only, so it has no effect with "
                          f"num_layers=1", UserWarning, stacklevel=3)
        _check_sizes(name, hidden_size, num_layers)
        if mode not in _GATES:
            raise ValueError(f"{name}: unknown mode {mode!r}; expected one of {sorted(_GATES)}")
        if proj_size < 0:
            raise ValueError(f"{name}: expected proj_size >= 0, got {proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"{name}: expected proj_size < hidden_size ({hidden_size}), got {proj_size}")
        if proj_size and mode != "LSTM":
            raise ValueError(f"{name}: proj_size is only supported by LSTM")
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        fk = _factory(device, dtype)
        gates = _GATES[mode] * hidden_size
        real_hidden = proj_size or hidden_size
        dirs = 2 if bidirectional else 1
        self._flat_weights_names, self._all_weights = [], []
        for layer in range(num_layers):
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                n_in = input_size if layer == 0 else real_hidden * dirs
                shapes = [("weight_ih" + sfx, (gates, n_in)), ("weight_hh" + sfx, (gates, real_hidden))]
                if bias:
                    shapes += [("bias_ih" + sfx, (gates,)), ("bias_hh" + sfx, (gates,))]
                if proj_size:
                    shapes.append(("weight_hr" + sfx, (proj_size, hidden_size)))
                for pname, shape in shapes:
                    setattr(self, pname, Parameter(empty(*shape, **fk)))
                self._flat_weights_names += [n for n, _ in shapes]
                self._all_weights.append([n for n, _ in shapes])
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self):
        """Accepted (cuDNN packs its weights; distgraph keeps them as they are)."""

    @property
    def _flat_weights(self):
        return [getattr(self, n) for n in self._flat_weights_names]

    @property
    def all_weights(self):
        """The parameters per layer and direction: ``[[w_ih, w_hh, b_ih, b_hh, w_hr], ...]``."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def _layer(self, x, h, c, sfx, reverse, live):
        w_ih, w_hh = getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx)
        b_ih = getattr(self, "bias_ih" + sfx) if self.bias else None
        b_hh = getattr(self, "bias_hh" + sfx) if self.bias else None
        w_hr = getattr(self, "weight_hr" + sfx) if self.proj_size else None
        gi = F.linear(x, w_ih, b_ih)                      # (T, B, gates): all steps in one product
        outs = [None] * x.shape[0]
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        for t in steps:
            h1, c1 = _step(self.mode, gi[t], h, c, w_hh, b_hh, w_hr)
            if live is not None and live[t] is not None:  # packed input: ended sequences keep their state
                h1 = where(live[t], h1, h)
                c1 = where(live[t], c1, c) if c is not None else None
            h, c = h1, c1
            outs[t] = h
        return stack(outs), h, c

    def _initial_state(self, hx, unbatched, batch, x):
        lstm, name = self.mode == "LSTM", type(self).__name__
        dirs = 2 if self.bidirectional else 1
        h_shape = (self.num_layers * dirs, batch, self.proj_size or self.hidden_size)
        c_shape = (self.num_layers * dirs, batch, self.hidden_size)
        if hx is None:
            h0 = zeros(*h_shape, dtype=x.dtype, device=x.device)
            return h0, (zeros(*c_shape, dtype=x.dtype, device=x.device) if lstm else None)
        if lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"{name}: expected hx as a tuple (h_0, c_0), got {type(hx).__name__}")
        h0, c0 = hx if lstm else (hx, None)
        want = 2 if unbatched else 3
        for s in (h0, c0) if lstm else (h0,):
            if s.ndim != want:
                raise RuntimeError(f"{name}: for a {want}-d input hx must be {want}-d too, got {s.ndim}-d")
        if unbatched:
            h0, c0 = h0.unsqueeze(1), (c0.unsqueeze(1) if lstm else None)
        for s, shape, what in ((h0, h_shape, "hidden"), (c0, c_shape, "cell")):
            if s is not None and tuple(s.shape) != shape:
                raise RuntimeError(f"{name}: expected {what} state of shape {shape}, got {tuple(s.shape)}")
        return h0, c0

    def forward(self, input, hx=None):
        lstm, name = self.mode == "LSTM", type(self).__name__
        packed = input if isinstance(input, PackedSequence) else None
        live = None
        if packed is not None:
            # padded in the packed (longest-first) order: step t runs sequences [0, batch_sizes[t])
            x, _ = pad_packed_sequence(PackedSequence(packed.data, packed.batch_sizes))
            sizes = _host_ints(packed.batch_sizes)
            live = [None if n == x.shape[1] else tensor((np.arange(x.shape[1]) < n)[:, None], device=x.device)
                    for n in sizes]
            unbatched = False
            if hx is not None and packed.sorted_indices is not None:
                hx = tuple(index_select(s, 1, packed.sorted_indices) for s in hx) if lstm else \
                    index_select(hx, 1, packed.sorted_indices)
        else:
            if input.ndim not in (2, 3):
                raise ValueError(f"{name}: expected a 2-d (unbatched) or 3-d input, got {input.ndim}-d")
            unbatched = input.ndim == 2
            x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: expected input.size(-1) == input_size ({self.input_size}), "
                               f"got {x.shape[-1]}")
        if x.dtype != self.weight_ih_l0.dtype:
            raise ValueError(f"{name}: input dtype {x.dtype} does not match weight dtype {self.weight_ih_l0.dtype};"
                             f" convert the input (input.to({self.weight_ih_l0.dtype})) or the module")
        h0, c0 = self._initial_state(hx, unbatched, x.shape[1], x)
        dirs = 2 if self.bidirectional else 1
        hs, cs = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                out, h, c = self._layer(x, h0[k], c0[k] if lstm else None, f"_l{layer}" + ("_reverse" if d else ""),
                                        bool(d), live)
                outs.append(out)
                hs.append(h)
                cs.append(c)
            x = outs[0] if dirs == 1 else cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        h_n = stack(hs)
        c_n = stack(cs) if lstm else None
        if packed is not None:
            sizes = _host_ints(packed.batch_sizes)
            lengths = (sizes[None, :] > np.arange(x.shape[1])[:, None]).sum(1)
            data = pack_padded_sequence(x, lengths).data
            x = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
            if packed.unsorted_indices is not None:
                h_n = index_select(h_n, 1, packed.unsorted_indices)
                c_n = index_select(c_n, 1, packed.unsorted_indices) if lstm else None
        elif unbatched:
            x, h_n = x.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        elif self.batch_first:
            x = x.transpose(0, 1)
        return x, ((h_n, c_n) if lstm else h_n)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(RNNBase):
    """Elman RNN: ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)`` (or relu)."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory; returns ``output, (h_n, c_n)``. With ``proj_size > 0`` the hidden state
    is projected, ``h_t = (o_t * tanh(c_t)) W_hr^T``, and has ``proj_size`` features."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)


class GRU(RNNBase):
    """Gated recurrent unit; returns ``output, h_n``."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)


class RNNCellBase(Module):
    """One step of a recurrent layer on ``(N, H_in)`` (or unbatched ``(H_in,)``) input."""

    def __init__(self, mode, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__()
        _check_sizes(type(self).__name__, hidden_size)
        self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, hidden_size, bias
        fk = _factory(device, dtype)
        gates = _GATES[mode] * hidden_size
        self.weight_ih = Parameter(empty(gates, input_size, **fk))
        self.weight_hh = Parameter(empty(gates, hidden_size, **fk))
        if bias:
            self.bias_ih, self.bias_hh = Parameter(empty(gates, **fk)), Parameter(empty(gates, **fk))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _run(self, input, h, c):
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: expected a 1-d (unbatched) or 2-d input, got {input.ndim}-d")
        unbatched = input.ndim == 1
        x = input.unsqueeze(0) if unbatched else input
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"{name}: expected input.size(-1) == input_size ({self.input_size}), "
                               f"got {x.shape[-1]}")
        if h is None:
            h = zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            c = zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device) if self.mode == "LSTM" else None
        else:
            for s in (h, c) if c is not None else (h,):
                if s.ndim != input.ndim:
                    raise (ValueError if s.ndim not in (1, 2) else RuntimeError)(
                        f"{name}: expected a {input.ndim}-d hidden state for a {input.ndim}-d input, got {s.ndim}-d")
            if unbatched:
                h, c = h.unsqueeze(0), (c.unsqueeze(0) if c is not None else None)
            for s in (h, c) if c is not None else (h,):
                if tuple(s.shape) != (x.shape[0], self.hidden_size):
                    raise RuntimeError(f"{name}: expected a hidden state of shape {(x.shape[0], self.hidden_size)}"
                                       f" (batch, hidden_size), got {tuple(s.shape)}")
        h, c = _step(self.mode, F.linear(x, self.weight_ih, self.bias_ih), h, c, self.weight_hh, self.bias_hh)
        if unbatched:
            h = h.squeeze(0)
            c = c.squeeze(0) if c is not None else None
        return h, c

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class RNNCell(RNNCellBase):
    """``h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (or relu)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        super().__init__("RNN_RELU" if nonlinearity == "relu" else "RNN_TANH", input_size, hidden_size, bias,
                         device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        if self.nonlinearity not in ("tanh", "relu"):      # PyTorch, too, only refuses it here
            raise RuntimeError(f"RNNCell: unknown nonlinearity {self.nonlinearity!r}; expected 'tanh' or 'relu'")
        return self._run(input, hx, None)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step; returns ``(h', c')``."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        h, c = (None, None) if hx is None else hx
        return self._run(input, h, c)


class GRUCell(RNNCellBase):
    """One GRU step; returns ``h'``."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype)

    def forward(self, input, hx=None):
        return self._run(input, hx, None)[0]
