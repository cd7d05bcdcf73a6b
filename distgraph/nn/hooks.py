"""Module backward hooks (``register_full_backward_hook`` / ``register_full_backward_pre_hook``).

When a module has backward hooks, its call routes the tensors that enter and leave ``forward``
through two identity nodes (``autograd.packing``): the output node sees ``grad_output`` (and runs
the pre-hooks, which may replace it); the input node sees ``grad_input`` and runs the hooks with
both, which may replace ``grad_input``.  A module none of whose inputs require grad gets its hooks
called from the output node with ``grad_input`` all ``None``, as in PyTorch.
"""
from __future__ import annotations

from distgraph import backend
from distgraph.autograd.function import Node
from distgraph.autograd.packing import pack, unpack
from distgraph.autograd.tensor import Tensor, wrap


def _wrap(a):
    return None if a is None else wrap(a)


def _arrays(gs, what, n):
    gs = gs if isinstance(gs, tuple) else (gs,)
    if len(gs) != n:
        raise RuntimeError(f"backward hook returned {len(gs)} gradients for {what}, expected {n}")
    return [g.array if isinstance(g, Tensor) else g for g in gs]


class _HookCall:
    """The state one module call shares between its two nodes."""

    def __init__(self, module, n_inputs):
        self.module, self.n_inputs, self.grad_output = module, n_inputs, None


class _IdentityNode(Node):
    __slots__ = ("call", "tensors", "layout", "is_output", "positions")

    def name(self):
        return "BackwardHookFunctionBackward"

    def backward(self, gy):
        call, m = self.call, self.call.module
        grads = unpack(gy, self.layout, self.tensors)
        if self.is_output:
            go = tuple(_wrap(g) for g in grads)
            for hook in list(m._backward_pre_hooks.values()):
                r = hook(m, go)
                if r is not None:
                    go = tuple(_wrap(a) for a in _arrays(r, "grad_output", len(go)))
            call.grad_output = go
            if call.n_inputs == 0:                   # no input needs grad: hooks run now
                for hook in list(m._backward_hooks.values()):
                    hook(m, (None,), go)
            grads = [g.array for g in go]
        else:
            gi = [None] * call.n_inputs
            for pos, g in zip(self.positions, grads):
                gi[pos] = _wrap(g)
            gi = tuple(gi)
            for hook in list(m._backward_hooks.values()):
                r = hook(m, gi, call.grad_output)
                if r is not None:
                    gi = tuple(_wrap(a) for a in _arrays(r, "grad_input", len(gi)))
            grads = [gi[pos].array if gi[pos] is not None else None for pos in self.positions]
        return grads


def _route(call, tensors, is_output, positions=None):
    node = _IdentityNode()
    node.call, node.tensors, node.is_output, node.positions = call, tensors, is_output, positions
    node.link([t.grad_fn or t for t in tensors])
    views, node.layout = pack(node, tensors)
    return views


def hooked_inputs(module, args):
    """Route ``args``' grad-requiring floating tensors through the input node; returns (call, args)."""
    idx = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad
           and backend.is_floating(a.dtype)]
    tensor_pos = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
    call = _HookCall(module, len(tensor_pos) if idx else 0)
    if not idx:
        return call, args
    views = _route(call, [args[i] for i in idx], False, [tensor_pos.index(i) for i in idx])
    args = list(args)
    for i, v in zip(idx, views):
        args[i] = v
    return call, tuple(args)


def hooked_outputs(call, out):
    single = isinstance(out, Tensor)
    outs = (out,) if single else tuple(out) if isinstance(out, (tuple, list)) else None
    if outs is None:
        return out
    idx = [i for i, o in enumerate(outs) if isinstance(o, Tensor) and o.requires_grad]
    if not idx:
        return out
    views = _route(call, [outs[i] for i in idx], True)
    outs = list(outs)
    for i, v in zip(idx, views):
        outs[i] = v
    return outs[0] if single else type(out)(outs)
