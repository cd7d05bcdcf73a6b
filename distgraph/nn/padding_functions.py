"""Padding of ``nn.functional`` (re-exported there through ``spatial_functions``), and the two
helpers every spatial family shares: ``ntuple`` (argument parsing) and ``take`` (a
differentiable gather along one dim).

The spatial families import in one order: ``padding_functions`` -> ``pooling_functions`` ->
``feature_functions`` -> ``spatial_functions``, which re-exports them all to ``nn.functional``.
"""
from __future__ import annotations

import numpy as np

from distgraph.autograd.ops import nn as _nn
from distgraph.autograd.ops._common import as_tensor, xp_of

__all__ = ["pad"]


def ntuple(v, n, name="argument", op="op"):
    """``v`` as an n-tuple of ints (an int is repeated)."""
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    v = tuple(v)
    if len(v) == 1 and n > 1:
        v = v * n
    if len(v) != n:
        raise RuntimeError(f"{op}: expected {name} to be an int or a tuple of {n} ints, got {v!r}")
    return v


def take(x, idx, axis):
    """``x`` re-indexed along ``axis`` by the integer array ``idx`` (differentiable)."""
    return _nn.Take(xp_of(x.array).asarray(idx, dtype=np.int64), axis).apply(x)


# ------------------------------------------------------------------ padding
def _pad_index(mode, n, before, after, op):
    """Source positions, along one dim of size ``n``, of the ``n + before + after`` padded ones."""
    j = np.arange(-before, n + after)
    if mode == "reflect":
        if before >= n or after >= n:
            raise RuntimeError(f"{op}: reflect padding must be smaller than the padded dim (size {n}), "
                               f"got ({before}, {after})")
        period = 2 * (n - 1) if n > 1 else 1
        j = np.abs(j) % period
        return np.where(j > n - 1, period - j, j)
    if mode == "replicate":
        if n == 0:
            raise RuntimeError(f"{op}: replicate padding needs a non-empty dim, got size 0")
        return np.clip(j, 0, n - 1)
    if before > n or after > n:
        raise RuntimeError(f"{op}: circular padding must be at most the padded dim (size {n}), got ({before}, {after})")
    return j % n


def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dims; ``pad = (left, right, top, bottom, front, back)``,
    last dim first, as PyTorch.  Modes ``constant`` (fill ``value``, default 0), ``reflect``
    (mirror without repeating the edge), ``replicate`` (repeat the edge), ``circular`` (wrap).
    Negative pads crop.  Non-constant modes pad 1 to 3 trailing dims of a 2-D to 5-D input.
    """
    x = as_tensor(input)
    pad = tuple(int(p) for p in pad)
    nd = len(pad) // 2
    if len(pad) % 2 or nd > x.ndim:
        raise RuntimeError(f"pad: expected an even number of pads for at most {x.ndim} dims, got {pad}")
    if mode == "constant":
        widths = [(0, 0)] * x.ndim
        for i in range(nd):
            widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
        for (b, a), n in zip(widths, x.shape):
            if n + b + a < 0:
                raise RuntimeError(f"pad: padding {pad} makes a dim of size {n} negative")
        if all(w == (0, 0) for w in widths):
            return x
        return _nn.Pad(tuple(widths), 0 if value is None else value).apply(x)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    if value not in (None, 0):
        raise ValueError(f"pad: padding mode {mode!r} doesn't take a value (got value={value})")
    if not 1 <= nd <= 3 or x.ndim not in (nd + 1, nd + 2):
        raise NotImplementedError(f"pad: {mode} padding of {nd} dims takes a {nd + 1}-D or {nd + 2}-D input, "
                                  f"got {x.ndim}-D (shape {tuple(x.shape)})")
    crop = tuple(slice(max(-pad[2 * i], 0), x.shape[x.ndim - 1 - i] - max(-pad[2 * i + 1], 0))
                 for i in reversed(range(nd)))
    if any(p < 0 for p in pad):                        # negative pads crop first, as PyTorch
        x = x[(slice(None),) * (x.ndim - nd) + crop]
    for i in range(nd):
        axis, before, after = x.ndim - 1 - i, max(pad[2 * i], 0), max(pad[2 * i + 1], 0)
        if before or after:
            x = take(x, _pad_index(mode, x.shape[axis], before, after, f"pad ({mode})"), axis)
    return x
