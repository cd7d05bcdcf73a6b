"""``MultiheadAttention`` with PyTorch's parameters, names and mask conventions.

Parameters: ``in_proj_weight`` (3E, E) when keys and values have the query's width, else
``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim); then
``in_proj_bias`` (3E), ``bias_k`` / ``bias_v`` (1, 1, E) with ``add_bias_kv``, and ``out_proj``.
Masks: a bool mask marks positions to *ignore* (True = masked out); a float mask is added to the
scores. ``attn_mask`` is (L, S) or (N * num_heads, L, S); ``key_padding_mask`` is (N, S).
"""
from __future__ import annotations

import math

from distgraph import backend
from distgraph.autograd.creation import empty, zeros
from distgraph.autograd.ops._common import as_tensor
from distgraph.autograd.ops.elementwise import where
from distgraph.autograd.ops.shape import cat
from distgraph.autograd.tensor import Parameter
from distgraph.nn import functional as F
from distgraph.nn import init
from distgraph.nn.layers import Linear, _factory
from distgraph.nn.module import Module

__all__ = ["MultiheadAttention"]


class NonDynamicallyQuantizableLinear(Linear):
    """``out_proj``'s class, named as PyTorch's (a plain ``Linear``)."""


def _check_mask(name, m):
    """A mask must be bool or floating (PyTorch asserts the same)."""
    if m.dtype != backend.bool_ and m.dtype.kind != "f":
        raise AssertionError(f"MultiheadAttention: expected a bool or floating {name}, got {m.dtype}")
    return m


def _pad_last(m):
    """Append one un-masked column (False, or 0.0) to a mask's last dim."""
    return cat([m, zeros(*m.shape[:-1], 1, dtype=m.dtype, device=m.device)], -1)


def _apply_mask(s, m):
    return where(m, -math.inf, s) if m.dtype == backend.bool_ else s + m


class MultiheadAttention(Module):
    """Multi-head attention: per head ``softmax(Q K^T / sqrt(head_dim) + mask) V``, then ``out_proj``.

    Args:
        embed_dim: width E of queries and of the output; split over ``num_heads`` heads.
        num_heads: number of heads; must divide ``embed_dim``.
        dropout: dropout on the attention weights (training only).
        bias: biases on the input and output projections.
        add_bias_kv: append a learnt key and value (``bias_k``, ``bias_v``) to the sequence.
        add_zero_attn: append an all-zero key and value to the sequence (after the heads split).
        kdim, vdim: widths of keys and values (default ``embed_dim``).
        batch_first: inputs and outputs are (N, L, E) instead of (L, N, E).

    ``forward`` returns ``(output, weights)``; ``weights`` (after dropout, averaged over heads
    unless ``average_attn_weights=False``) is ``None`` when ``need_weights=False``.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: expected embed_dim > 0 and num_heads > 0, got embed_dim="
                             f"{embed_dim} and num_heads={num_heads}")
        if embed_dim % num_heads:
            raise AssertionError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                                 f"({num_heads}); choose a num_heads that divides it")
        self.embed_dim, self.num_heads, self.dropout, self.batch_first = embed_dim, num_heads, dropout, batch_first
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        fk = _factory(device, dtype)
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, **fk))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(empty(embed_dim, embed_dim, **fk))
            self.k_proj_weight = Parameter(empty(embed_dim, self.kdim, **fk))
            self.v_proj_weight = Parameter(empty(embed_dim, self.vdim, **fk))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(empty(3 * embed_dim, **fk))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **fk)
        if add_bias_kv:
            self.bias_k = Parameter(empty(1, 1, embed_dim, **fk))
            self.bias_v = Parameter(empty(1, 1, embed_dim, **fk))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)

    def _project(self, query, key, value):
        if self._qkv_same_embed_dim:
            wq, wk, wv = self.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b = self.in_proj_bias
        bq, bk, bv = b.chunk(3) if b is not None else (None, None, None)
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        unbatched = query.ndim == 2
        if unbatched:                                   # (L, E): a batch of one, sequence first
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = as_tensor(key_padding_mask, query).unsqueeze(0)
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        L, N, E = query.shape
        S = key.shape[0]
        if E != self.embed_dim:
            raise AssertionError(f"MultiheadAttention: expected query embedding dim {self.embed_dim}, got {E}")
        if tuple(key.shape[:2]) != tuple(value.shape[:2]):
            raise AssertionError(f"MultiheadAttention: key shape {tuple(key.shape)} does not match value shape "
                                 f"{tuple(value.shape)} in (sequence, batch)")
        if is_causal and attn_mask is None:
            raise RuntimeError("MultiheadAttention: is_causal=True is a hint that needs attn_mask too; pass "
                               "attn_mask=Transformer.generate_square_subsequent_mask(L)")
        h, d = self.num_heads, self.head_dim
        if attn_mask is not None:
            attn_mask = _check_mask("attn_mask", as_tensor(attn_mask, query))
            want = (L, S) if attn_mask.ndim == 2 else (N * h, L, S)
            if tuple(attn_mask.shape) != want:
                raise RuntimeError(f"MultiheadAttention: expected a {len(want)}-d attn_mask of shape {want}, "
                                   f"got {tuple(attn_mask.shape)}")
        if key_padding_mask is not None:
            key_padding_mask = _check_mask("key_padding_mask", as_tensor(key_padding_mask, query))
            if tuple(key_padding_mask.shape) != (N, S):
                raise AssertionError(f"MultiheadAttention: expected key_padding_mask of shape {(N, S)}, got "
                                     f"{tuple(key_padding_mask.shape)}")
        q, k, v = self._project(query, key, value)                    # (L|S, N, E)
        if self.bias_k is not None:
            k = cat([k, self.bias_k.expand(1, N, E)], 0)
            v = cat([v, self.bias_v.expand(1, N, E)], 0)
            attn_mask = _pad_last(attn_mask) if attn_mask is not None else None
            key_padding_mask = _pad_last(key_padding_mask) if key_padding_mask is not None else None
        # heads: (T, N, E) -> (N, h, T, d); head n*h + j of PyTorch's (N*h, T, d) layout is [n, j]
        q, k, v = (t.reshape(t.shape[0], N, h, d).permute(1, 2, 0, 3) for t in (q, k, v))
        if self.add_zero_attn:
            k = cat([k, zeros(N, h, 1, d, dtype=k.dtype, device=k.device)], 2)
            v = cat([v, zeros(N, h, 1, d, dtype=v.dtype, device=v.device)], 2)
            attn_mask = _pad_last(attn_mask) if attn_mask is not None else None
            key_padding_mask = _pad_last(key_padding_mask) if key_padding_mask is not None else None
        S = k.shape[2]
        s = (q * math.sqrt(1.0 / d)) @ k.transpose(-2, -1)           # (N, h, L, S)
        if attn_mask is not None:
            s = _apply_mask(s, attn_mask if attn_mask.ndim == 2 else attn_mask.reshape(N, h, L, S))
        if key_padding_mask is not None:
            s = _apply_mask(s, key_padding_mask.reshape(N, 1, 1, S))
        p = F.softmax(s, -1)
        if self.dropout and self.training:
            p = F.dropout(p, self.dropout, True)
        out = self.out_proj((p @ v).permute(2, 0, 1, 3).reshape(L, N, E))
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        w = p.mean(1) if average_attn_weights else p
        return out, (w.squeeze(0) if unbatched else w)
