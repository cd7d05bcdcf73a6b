"""User-defined differentiable functions, PyTorch's ``torch.autograd.Function`` API::

    class Exp(dg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, gy):
            (y,) = ctx.saved_tensors
            return gy * y

    y = Exp.apply(x)

``forward`` runs without recording (as in PyTorch) on the Tensors it is given;
``backward`` receives and returns Tensors, one gradient (or ``None``) per
forward argument.  The library's own ops use the array-level base class in
``distgraph.autograd.function`` instead.

Differences from PyTorch: a ``forward`` that returns several tensors gets one
graph node per output, so ``backward`` runs once per output that receives a
gradient (with zeros for the others) — the same sum by linearity, at the cost
of extra calls; ``mark_dirty`` and double backward are not supported.
"""
from __future__ import annotations

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.function import Node
from distgraph.autograd.tensor import Tensor, _make


class FunctionCtx:
    """The ``ctx`` passed to ``forward`` and ``backward``; any attribute may be set on it."""

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()
        self.materialize_grads = True
        self._non_differentiable = set()

    def save_for_backward(self, *tensors):
        self.saved_tensors = tuple(tensors)

    def mark_non_differentiable(self, *tensors):
        self._non_differentiable.update(id(t) for t in tensors)

    def set_materialize_grads(self, value: bool):
        self.materialize_grads = bool(value)

    def mark_dirty(self, *tensors):
        raise NotImplementedError("autograd.Function: mark_dirty (in-place custom functions) is not supported; "
                                  "return a new tensor from forward instead")


class _CustomNode(Node):
    """The graph node of one output of a custom Function."""

    __slots__ = ("fn", "ctx", "index", "outputs", "n_inputs")

    def name(self):
        return self.fn.__name__ + "Backward"

    def backward(self, gy):
        grads = []
        for i, o in enumerate(self.outputs):
            if i == self.index:
                grads.append(_make(gy, None, False))
            elif o is not None and self.ctx.materialize_grads:
                grads.append(_make(backend.get_array_module(gy).zeros(o[0], o[1]), None, False))
            else:
                grads.append(None)
        with grad_mode.no_grad():
            out = self.fn.backward(self.ctx, *grads)
        out = out if isinstance(out, tuple) else (out,)
        if len(out) < self.n_inputs:
            raise RuntimeError(f"{self.fn.__name__}.backward: expected {self.n_inputs} gradients (one per forward "
                               f"argument, None for non-tensors), got {len(out)}")
        result = []
        for g, need in zip(out, self.needs_input_grad):
            result.append(g.array if isinstance(g, Tensor) and need else None)
        return result


class Function:
    """Base class of user-defined differentiable functions (see the module docstring)."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("autograd.Function subclasses define a static forward(ctx, *args)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("autograd.Function subclasses define a static backward(ctx, *grads)")

    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        with grad_mode.no_grad():
            out = cls.forward(ctx, *args, **kwargs)
        record = grad_mode.is_grad_enabled() and any(ctx.needs_input_grad)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        if not record:
            return out
        nxt = [(a.grad_fn or a) if isinstance(a, Tensor) and a.requires_grad else None for a in args]
        shapes = [(o.array.shape, o.array.dtype) if isinstance(o, Tensor) else None for o in outs]
        results = []
        for i, o in enumerate(outs):
            if not isinstance(o, Tensor) or id(o) in ctx._non_differentiable or not backend.is_floating(o.dtype):
                results.append(o)
                continue
            node = _CustomNode()
            node.fn, node.ctx, node.index, node.outputs, node.n_inputs = cls, ctx, i, shapes, len(args)
            node.link(nxt)
            node.needs_input_grad = list(ctx.needs_input_grad)
            results.append(_make(o.array, node, True))
        return results[0] if single else tuple(results)
