"""ASGD and Rprop (PyTorch's ``torch.optim.ASGD`` / ``torch.optim.Rprop``)."""
from __future__ import annotations

from distgraph import backend
from distgraph.optim.adaptive import _prepare_grad, _refuse_differentiable
from distgraph.optim.optimizer import Optimizer, as_state_tensor, axpy_, check_option

__all__ = ["ASGD", "Rprop"]


class ASGD(Optimizer):
    r"""Averaged SGD (Polyak & Juditsky), with PyTorch's step-size schedule.

    At step :math:`t` (from 1), with ``eta`` and ``mu`` from the previous step
    (initially ``lr`` and 1)::

        (maximize; L2 weight decay)
        p = p * (1 - lambd * eta) - eta * g
        ax = ax + mu * (p - ax)        (ax = p while mu == 1)
        eta = lr / (1 + lambd * lr * t) ** alpha
        mu = 1 / max(1, t - t0)

    State: ``step``, ``eta``, ``mu`` (Python floats) and ``ax``, the averaged parameter.

    Args:
        lr (1e-2), lambd (1e-4), alpha (0.75), t0 (1e6), weight_decay (0), maximize.
        ``foreach``, ``capturable`` are ignored.
    """

    def __init__(self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0.0, foreach=None,
                 maximize=False, differentiable=False, capturable=False):
        _refuse_differentiable("ASGD", differentiable)
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=False, capturable=capturable)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        for key in ("lr", "weight_decay"):
            check_option("ASGD", key, group[key])

    def _update(self, p, g, state, group):
        x = p.array
        xp = backend.get_array_module(x)
        if not state:
            state.update(step=0, eta=float(group["lr"]), mu=1.0, ax=as_state_tensor(xp.zeros_like(x)))
        state["step"] = t = state["step"] + 1
        g = _prepare_grad(g, x, group)
        eta, mu = float(state["eta"]), float(state["mu"])
        lr, lambd = group["lr"], group["lambd"]
        x *= 1 - lambd * eta
        axpy_(x, -eta, g)
        ax = state["ax"].array
        if mu != 1:
            axpy_(ax, mu, x - ax)
        else:
            ax[...] = x
        state["eta"] = lr / (1 + lambd * lr * t) ** group["alpha"]
        state["mu"] = 1 / max(1, t - group["t0"])


class Rprop(Optimizer):
    r"""Rprop: resilient backpropagation, steps of a per-coordinate size adapted by gradient signs.

    Per coordinate, with ``s`` the sign of ``g * g_prev``::

        (maximize)
        step_size = clip(step_size * (etaplus if s > 0, etaminus if s < 0, 1 if s == 0),
                         step_size_min, step_size_max)
        g = 0 where s < 0 (no move, and no sign memory, after a sign change)
        p = p - sign(g) * step_size;  g_prev = g

    State: ``step``, ``prev`` (g_prev), ``step_size`` (starting at ``lr``).

    Args:
        lr (1e-2), etas ((0.5, 1.2): etaminus, etaplus), step_sizes ((1e-6, 50)), maximize.
        ``foreach``, ``capturable`` are ignored.
    """

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *, capturable=False,
                 foreach=None, maximize=False, differentiable=False):
        _refuse_differentiable("Rprop", differentiable)
        defaults = dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), foreach=foreach,
                        maximize=maximize, differentiable=False, capturable=capturable)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        check_option("Rprop", "lr", group["lr"])
        etaminus, etaplus = group["etas"]
        if not 0.0 < etaminus < 1.0 < etaplus:
            raise ValueError(f"Rprop: invalid eta values {etaminus}, {etaplus} "
                             "(expected 0 < etaminus < 1 < etaplus)")
        group["etas"], group["step_sizes"] = tuple(group["etas"]), tuple(group["step_sizes"])

    def _update(self, p, g, state, group):
        x = p.array
        xp = backend.get_array_module(x)
        if not state:
            state["step"] = 0
            state["prev"] = as_state_tensor(xp.zeros_like(x))
            state["step_size"] = as_state_tensor(xp.full_like(x, group["lr"]))
        state["step"] += 1
        if group["maximize"]:
            g = -g
        etaminus, etaplus = group["etas"]
        lo, hi = group["step_sizes"]
        prev, size = state["prev"].array, state["step_size"].array
        s = xp.sign(g * prev)
        factor = xp.where(s > 0, etaplus, xp.where(s < 0, etaminus, 1.0)).astype(x.dtype, copy=False)
        size *= factor
        xp.clip(size, lo, hi, out=size)
        g = xp.where(s < 0, 0, g).astype(x.dtype, copy=False)
        x -= xp.sign(g) * size
        prev[...] = g
