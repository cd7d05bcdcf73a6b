"""RMSprop (PyTorch's ``torch.optim.RMSprop``)."""
from __future__ import annotations

from distgraph import backend
from distgraph.optim.optimizer import Optimizer, as_state_tensor, axpy_, check_option

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop: divide the gradient by a running root-mean-square of its history.

    For each parameter :math:`p` with gradient :math:`g`::

        g = -g                                      if maximize
        g = g + weight_decay * p                    if weight_decay != 0
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            a = alpha * a + (1 - alpha) * g
            d = sqrt(v - a * a) + eps
        else:
            d = sqrt(v) + eps
        if momentum > 0:
            b = momentum * b + g / d
            p = p - lr * b
        else:
            p = p - lr * g / d

    State: ``step`` (int), ``square_avg`` (v), ``grad_avg`` (a, if centered),
    ``momentum_buffer`` (b, if momentum > 0).

    Args:
        params: parameters or param groups (see ``Optimizer``).
        lr: learning rate (default 1e-2).
        alpha: smoothing constant (default 0.99).
        eps: added to the denominator for stability (default 1e-8).
        weight_decay: L2 penalty (default 0).
        momentum: momentum factor (default 0).
        centered: normalise by an estimate of the gradient's variance.
        maximize: maximize the objective instead of minimizing it.
        capturable, foreach, differentiable: accepted for PyTorch compatibility;
            ignored (``differentiable=True`` is refused).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        if differentiable:
            raise NotImplementedError("RMSprop: differentiable=True is not supported (updates build no graph)")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach, maximize=maximize,
                        differentiable=False)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        for key in ("lr", "eps", "momentum", "weight_decay", "alpha"):
            check_option("RMSprop", key, group[key])

    def _update(self, p, g, state, group):
        x = p.array
        xp = backend.get_array_module(x)
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        momentum, wd = group["momentum"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["square_avg"] = as_state_tensor(xp.zeros_like(x))
        if momentum > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = as_state_tensor(xp.zeros_like(x))
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = as_state_tensor(xp.zeros_like(x))
        state["step"] += 1
        if group["maximize"]:
            g = -g
        if wd != 0:
            g = axpy_(g.copy(), wd, x)  # never modify the .grad array itself
        v = state["square_avg"].array
        v *= alpha
        axpy_(v, 1 - alpha, g * g)
        if group["centered"]:
            a = state["grad_avg"].array
            a *= alpha
            axpy_(a, 1 - alpha, g)
            d = xp.sqrt(v - a * a)
        else:
            d = xp.sqrt(v)
        d += eps
        ratio = g / d
        if momentum > 0:
            b = state["momentum_buffer"].array
            b *= momentum
            b += ratio
            ratio = b
        axpy_(x, -lr, ratio)
