"""``MultiheadAttention`` with PyTorch's parameter names (``in_proj_weight``, ``out_proj.weight`` ...)."""
from __future__ import annotations

import math

from distgraph.autograd.creation import empty
from distgraph.autograd.ops._common import as_tensor
from distgraph.autograd.ops.elementwise import where
from distgraph.autograd.tensor import Parameter
from distgraph.nn import functional as F
from distgraph.nn import init
from distgraph.nn.layers import Linear, _factory
from distgraph.nn.module import Module


class MultiheadAttention(Module):
    """Multi-head attention: ``softmax(Q K^T / sqrt(d)) V`` per head, then ``out_proj``.

    Returns ``(output, weights)``; ``weights`` (averaged over heads unless
    ``average_attn_weights=False``) is ``None`` when ``need_weights=False``.
    A bool ``key_padding_mask`` / ``attn_mask`` marks positions to *ignore*
    (True = masked), as PyTorch's module does.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False, device=None, dtype=None):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.batch_first, self.head_dim = batch_first, embed_dim // num_heads
        fk = _factory(device, dtype)
        self.in_proj_weight = Parameter(empty(3 * embed_dim, embed_dim, **fk))
        if bias:
            self.in_proj_bias = Parameter(empty(3 * embed_dim, **fk))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, **fk)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, L, e = query.shape
        S = key.shape[1]
        w, bias = self.in_proj_weight, self.in_proj_bias
        wq, wk, wv = w.chunk(3)
        bq, bk, bv = bias.chunk(3) if bias is not None else (None, None, None)
        h, d = self.num_heads, self.head_dim
        q = F.linear(query, wq, bq).reshape(b, L, h, d).transpose(1, 2)
        k = F.linear(key, wk, bk).reshape(b, S, h, d).transpose(1, 2)
        v = F.linear(value, wv, bv).reshape(b, S, h, d).transpose(1, 2)
        s = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(d))          # (b, h, L, S)
        masked = None
        if is_causal and attn_mask is None:
            from distgraph.autograd.creation import ones
            attn_mask = ones(L, S, dtype="bool", device=query.device).triu(1)
        if attn_mask is not None:
            m = as_tensor(attn_mask, s)
            if m.dtype.kind == "b":
                masked = m if m.ndim == 2 else m.reshape(b, h, L, S)
            else:
                s = s + (m if m.ndim == 2 else m.reshape(b, h, L, S))
        if key_padding_mask is not None:
            kp = as_tensor(key_padding_mask, s).reshape(b, 1, 1, S)
            masked = kp if masked is None else (masked | kp)
        if masked is not None:
            s = where(masked, -math.inf, s)
        p = F.softmax(s, -1)
        p_drop = F.dropout(p, self.dropout, self.training) if self.dropout else p
        out = (p_drop @ v).transpose(1, 2).reshape(b, L, e)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, (p.mean(1) if average_attn_weights else p)
