"""NAdam and RAdam (PyTorch's ``torch.optim.NAdam`` / ``torch.optim.RAdam``)."""
from __future__ import annotations

import math

from distgraph import backend
from distgraph.optim.adaptive import _refuse_differentiable, check_betas
from distgraph.optim.optimizer import Optimizer, as_state_tensor, axpy_, check_option

__all__ = ["NAdam", "RAdam"]


def _moments(x, g, state, group):
    """Start the state if needed, apply weight decay, update ``m`` and ``v``; returns ``(t, g, m, v)``."""
    xp = backend.get_array_module(x)
    if "exp_avg" not in state:
        state.setdefault("step", 0)
        state["exp_avg"] = as_state_tensor(xp.zeros_like(x))
        state["exp_avg_sq"] = as_state_tensor(xp.zeros_like(x))
    state["step"] = t = state["step"] + 1
    if group["maximize"]:
        g = -g
    wd = group["weight_decay"]
    if wd != 0:
        if group["decoupled_weight_decay"]:
            x *= 1 - group["lr"] * wd
        else:
            g = axpy_(g.copy(), wd, x)
    beta1, beta2 = group["betas"]
    m, v = state["exp_avg"].array, state["exp_avg_sq"].array
    m *= beta1
    axpy_(m, 1 - beta1, g)
    v *= beta2
    axpy_(v, 1 - beta2, g * g)
    return t, g, m, v


class NAdam(Optimizer):
    r"""NAdam: Adam with Nesterov momentum (Dozat), with PyTorch's momentum schedule.

    At step :math:`t`, with ``mu_t = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))``
    and ``P_t = mu_1 * ... * mu_t``::

        (maximize; weight decay: L2, or p *= 1 - lr * wd if decoupled_weight_decay)
        m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
        d = sqrt(v / (1 - beta2**t)) + eps
        p = p - lr * (1 - mu_t) / (1 - P_t) * g / d
              - lr * mu_{t+1} / (1 - P_t * mu_{t+1}) * m / d

    State: ``step``, ``mu_product`` (P_t, a Python float), ``exp_avg``, ``exp_avg_sq``.

    Args:
        lr (2e-3), betas ((0.9, 0.999)), eps (1e-8), weight_decay (0),
        momentum_decay (4e-3), decoupled_weight_decay (False), maximize.
        ``foreach``, ``capturable`` are ignored.
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        _refuse_differentiable("NAdam", differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                        maximize=maximize, foreach=foreach, capturable=capturable, differentiable=False)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        check_betas("NAdam", group)
        for key in ("lr", "eps", "weight_decay", "momentum_decay"):
            check_option("NAdam", key, group[key])

    def _update(self, p, g, state, group):
        x = p.array
        xp = backend.get_array_module(x)
        if "mu_product" not in state:
            state["mu_product"] = 1.0
        t, g, m, v = _moments(x, g, state, group)
        beta1, beta2 = group["betas"]
        lr, psi = group["lr"], group["momentum_decay"]
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        state["mu_product"] = prod = float(state["mu_product"]) * mu
        denom = xp.sqrt(v / (1 - beta2 ** t))
        denom += group["eps"]
        axpy_(x, -lr * (1.0 - mu) / (1.0 - prod), g / denom)
        axpy_(x, -lr * mu_next / (1.0 - prod * mu_next), m / denom)


class RAdam(Optimizer):
    r"""RAdam: Adam with a rectified (variance-corrected) adaptive step (Liu et al.).

    At step :math:`t`, with ``rho_inf = 2 / (1 - beta2) - 1`` and
    ``rho_t = rho_inf - 2 t beta2**t / (1 - beta2**t)``::

        (maximize; weight decay: L2, or p *= 1 - lr * wd if decoupled_weight_decay)
        m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        if rho_t > 5:
            r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
            p = p - lr * m_hat * r * sqrt(1 - beta2**t) / (sqrt(v) + eps)
        else:
            p = p - lr * m_hat

    Args:
        lr (1e-3), betas ((0.9, 0.999)), eps (1e-8), weight_decay (0),
        decoupled_weight_decay (False), maximize. ``foreach``, ``capturable`` are ignored.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        _refuse_differentiable("RAdam", differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize,
                        foreach=foreach, capturable=capturable, decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=False)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        check_betas("RAdam", group)
        for key in ("lr", "eps", "weight_decay"):
            check_option("RAdam", key, group[key])

    def _update(self, p, g, state, group):
        x = p.array
        xp = backend.get_array_module(x)
        t, g, m, v = _moments(x, g, state, group)
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        bc1, bc2 = 1 - beta1 ** t, 1 - beta2 ** t
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2 ** t / bc2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            denom = xp.sqrt(v)
            denom += group["eps"]
            axpy_(x, -lr * rect * math.sqrt(bc2) / bc1, m / denom)
        else:
            axpy_(x, -lr / bc1, m)
