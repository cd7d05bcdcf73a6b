"""One graph node standing for several tensors at once.

The engine's nodes have one output.  A node that must see the gradients of
several tensors *together* (a checkpointed segment with several outputs, a
module's full backward hook) produces one packed 1-d array holding them all;
each tensor handed back is a slice of it, reshaped (and cast back), so the
engine sums every slice's gradient into the packed node before it runs once.
"""
from __future__ import annotations

from distgraph import backend
from distgraph.autograd.ops.elementwise import cast
from distgraph.autograd.ops.index import getitem
from distgraph.autograd.ops.shape import reshape
from distgraph.autograd.tensor import _make


def packed_dtype(tensors):
    wide = tensors[0].dtype
    for t in tensors[1:]:
        wide = backend.promote_types(wide, t.dtype)
    return wide


def pack(node, tensors):
    """``tensors`` (floating) as slices of one array produced by ``node``.

    Returns ``(views, layout)``: ``views[i]`` stands for ``tensors[i]`` in the graph;
    ``layout[i] = (start, stop)`` locates it in the packed gradient ``node.backward`` receives.
    """
    wide = packed_dtype(tensors)
    layout, pieces, pos = [], [], 0
    for t in tensors:
        layout.append((pos, pos + t.numel()))
        pos += t.numel()
        pieces.append(t.array.reshape(-1).astype(wide, copy=False))
    xp = backend.get_array_module(pieces[0])
    packed = _make(xp.concatenate(pieces), node, True)
    views = []
    for t, (start, stop) in zip(tensors, layout):
        v = reshape(getitem(packed, slice(start, stop)), t.shape)
        views.append(v if v.dtype == t.dtype else cast(v, t.dtype))
    return views, layout


def unpack(g, layout, tensors):
    """Split a packed gradient ``g`` back into one array per tensor (shape and dtype restored)."""
    return [g[start:stop].reshape(t.shape).astype(t.dtype, copy=False) for (start, stop), t in zip(layout, tensors)]
