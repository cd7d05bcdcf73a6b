"""Stochastic gradient descent with momentum (PyTorch's ``torch.optim.SGD``)."""
from __future__ import annotations

from distgraph.optim.optimizer import Optimizer, as_state_tensor, axpy_, check_option

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    For each parameter :math:`p` with gradient :math:`g`, at step :math:`t`::

        g = -g                                  if maximize
        g = g + weight_decay * p                if weight_decay != 0
        if momentum != 0:
            b = g                               at the first step (t = 1)
            b = momentum * b + (1 - dampening) * g   afterwards
            g = g + momentum * b                if nesterov
            g = b                               otherwise
        p = p - lr * g

    The buffer ``b`` is ``state[p]["momentum_buffer"]``.

    Args:
        params: parameters or param groups (see ``Optimizer``).
        lr: learning rate (default 1e-3, as PyTorch 2.x).
        momentum: momentum factor (default 0).
        dampening: dampening of the momentum (default 0).
        weight_decay: L2 penalty (default 0).
        nesterov: use Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        maximize: maximize the objective instead of minimizing it.
        foreach, fused, differentiable: accepted for PyTorch compatibility; ignored
            (``differentiable=True`` is refused: updates never build a graph).
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        if differentiable:
            raise NotImplementedError("SGD: differentiable=True is not supported (updates build no graph)")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=False, fused=fused)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        for key in ("lr", "momentum", "weight_decay"):
            check_option("SGD", key, group[key])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _update(self, p, g, state, group):
        x = p.array
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        if group["maximize"]:
            g = -g
        if wd != 0:
            g = axpy_(g.copy(), wd, x)  # never modify the .grad array itself
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:  # the first step starts the buffer at g itself (no dampening), as PyTorch
                b = state["momentum_buffer"] = as_state_tensor(g.copy())
                b = b.array
            else:
                b = buf.array
                b *= momentum
                axpy_(b, 1 - group["dampening"], g)
            g = g + momentum * b if group["nesterov"] else b
        axpy_(x, -lr, g)
