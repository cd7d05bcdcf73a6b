"""Adam and AdamW (PyTorch's ``torch.optim.Adam`` / ``torch.optim.AdamW``)."""
from __future__ import annotations

import math

from distgraph import backend
from distgraph.optim.optimizer import Optimizer, as_state_tensor, axpy_, check_option

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam: adaptive moment estimation.

    For each parameter :math:`p` with gradient :math:`g`, at step :math:`t` (from 1)::

        g = -g                                   if maximize
        p = p * (1 - lr * weight_decay)          if decoupled_weight_decay (AdamW)
        g = g + weight_decay * p                 otherwise, if weight_decay != 0
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)                    if amsgrad (and v below is v_max)
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    State: ``step`` (int), ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with
    ``amsgrad``, ``max_exp_avg_sq``.

    Args:
        params: parameters or param groups (see ``Optimizer``).
        lr: learning rate (default 1e-3).
        betas: coefficients of the running averages of g and g² (default (0.9, 0.999)).
        eps: added to the denominator for stability (default 1e-8).
        weight_decay: L2 penalty (default 0), or decoupled decay with ``decoupled_weight_decay``.
        amsgrad: use the AMSGrad variant (the running maximum of v).
        maximize: maximize the objective instead of minimizing it.
        decoupled_weight_decay: decay the weights directly (this makes it AdamW).
        foreach, fused, capturable, differentiable: accepted for PyTorch
            compatibility; ignored (``differentiable=True`` is refused).
    """

    _name = "Adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        if differentiable:
            raise NotImplementedError(f"{self._name}: differentiable=True is not supported "
                                      "(updates build no graph)")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable, differentiable=False,
                        fused=fused, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        name = self._name
        for key in ("lr", "eps", "weight_decay"):
            check_option(name, key, group[key])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: invalid betas {betas!r} (expected a pair (beta1, beta2))")
        group["betas"] = tuple(betas)
        for i, b in enumerate(betas):
            check_option(name, f"beta parameter at index {i}", b, 0.0, 1.0, high_open=True)

    def _update(self, p, g, state, group):
        x = p.array
        xp = backend.get_array_module(x)
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = as_state_tensor(xp.zeros_like(x))
            state["exp_avg_sq"] = as_state_tensor(xp.zeros_like(x))
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = as_state_tensor(xp.zeros_like(x))
        state["step"] = t = state["step"] + 1
        if group["maximize"]:
            g = -g
        if wd != 0:
            if group["decoupled_weight_decay"]:
                x *= 1 - lr * wd
            else:
                g = axpy_(g.copy(), wd, x)  # never modify the .grad array itself
        m, v = state["exp_avg"].array, state["exp_avg_sq"].array
        m *= beta1
        axpy_(m, 1 - beta1, g)
        v *= beta2
        axpy_(v, 1 - beta2, g * g)
        if group["amsgrad"]:
            v_max = state.get("max_exp_avg_sq")
            if v_max is None:  # amsgrad turned on after loading a state without it
                v_max = state["max_exp_avg_sq"] = as_state_tensor(xp.zeros_like(x))
            v = xp.maximum(v_max.array, v, out=v_max.array)
        # lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), with sqrt(bc2) moved to the numerator: one pass fewer
        bc2_sqrt = math.sqrt(1 - beta2 ** t)
        denom = xp.sqrt(v)
        denom += eps * bc2_sqrt
        update = m / denom  # (0-d parameters give NumPy scalars here: no `out=` on temporaries)
        axpy_(x, -lr / (1 - beta1 ** t) * bc2_sqrt, update)

class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter).

    The update is Adam's with ``decoupled_weight_decay=True``: before the moment
    updates, ``p = p * (1 - lr * weight_decay)``; the gradient itself is not
    decayed. Default ``weight_decay`` is 1e-2, as PyTorch.
    """

    _name = "AdamW"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
