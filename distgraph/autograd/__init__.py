"""The eager, define-by-run autograd engine.

Importing this package loads its modules in one order (``tensor`` -> ``function`` -> ``engine``
-> ``ops``), then hands the ops and the engine to ``tensor.bind_layers``: Tensor's methods call
them, but they import Tensor, so ``tensor.py`` cannot import them itself (see its docstring).
"""
from __future__ import annotations

from distgraph.autograd import engine as _engine, ops as _ops, tensor as _tensor
from distgraph.autograd.engine import queue_callback, run_backward
from distgraph.autograd.function import Node, RemovableHandle
from distgraph.autograd.grad_mode import (detect_anomaly, enable_grad, inference_mode, is_anomaly_enabled,
                                          is_grad_enabled, no_grad, set_detect_anomaly, set_grad_enabled)
from distgraph.autograd.tensor import Parameter, Tensor, _grad_array, _make

_tensor.bind_layers(_ops, _engine)

from distgraph.autograd.custom import Function, FunctionCtx
from distgraph.autograd.gradcheck import gradcheck
from distgraph.autograd import functional  # noqa: E402 - torch.autograd.functional (jacobian, vjp, jvp)

__all__ = ["Function", "FunctionCtx", "Node", "RemovableHandle", "Tensor", "Variable", "backward", "detect_anomaly",
           "enable_grad", "grad", "gradcheck", "inference_mode", "is_anomaly_enabled", "is_grad_enabled", "no_grad",
           "queue_callback", "set_detect_anomaly", "set_grad_enabled"]


def Variable(data, requires_grad=False, volatile=False):  # noqa: N802 - PyTorch's (legacy) name
    """PyTorch's legacy ``Variable(t)``: Tensors and Variables are one type, so this returns ``t``
    itself (with ``requires_grad`` set when asked)."""
    t = data if isinstance(data, Tensor) else Tensor(data)
    if requires_grad:
        t.requires_grad_()
    return t


def _as_list(x):
    return [x] if isinstance(x, Tensor) else list(x)


def backward(tensors, grad_tensors=None, retain_graph=False):
    """Accumulate gradients of several outputs at once (one backward pass)."""
    tensors = _as_list(tensors)
    grads = [None] * len(tensors) if grad_tensors is None else _as_list(grad_tensors)
    for t in tensors:
        if not t.requires_grad:
            raise RuntimeError("backward: an output does not require grad and has no grad_fn")
    run_backward(tensors, [_grad_array(t, g) for t, g in zip(tensors, grads)], retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Return d(outputs)/d(inputs) without touching any ``.grad``.

    Raises:
        NotImplementedError: for ``create_graph=True``; backward rules run on raw
            arrays, so higher-order gradients are not recorded.
        RuntimeError: when an input is not reached from the outputs and
            ``allow_unused`` is False.
    """
    if create_graph:
        raise NotImplementedError(
            "autograd.grad(create_graph=True): higher-order gradients are not supported by distgraph's "
            "engine (backward rules run on raw arrays); use finite differences or a first-order method")
    outputs, inputs = _as_list(outputs), _as_list(inputs)
    grads = [None] * len(outputs) if grad_outputs is None else _as_list(grad_outputs)
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("autograd.grad: an input does not require grad")
    result = run_backward(outputs, [_grad_array(o, g) for o, g in zip(outputs, grads)],
                          bool(retain_graph), inputs=inputs)
    out = []
    for i, (t, g) in enumerate(zip(inputs, result)):
        if g is None and not allow_unused:
            raise RuntimeError(f"autograd.grad: input {i} was not used to compute the outputs; "
                               "pass allow_unused=True to get None for it")
        out.append(None if g is None else _wrap(g))
    return tuple(out)


def _wrap(g):
    return _make(g.copy() if g.base is not None else g, None, False)
