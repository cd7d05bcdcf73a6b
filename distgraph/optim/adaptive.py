"""Adagrad, Adadelta and Adamax (PyTorch's ``torch.optim`` classes of the same names)."""
from __future__ import annotations

from distgraph import backend
from distgraph.optim.optimizer import Optimizer, as_state_tensor, axpy_, check_option

__all__ = ["Adadelta", "Adagrad", "Adamax"]


def _refuse_differentiable(name, differentiable):
    if differentiable:
        raise NotImplementedError(f"{name}: differentiable=True is not supported (updates build no graph)")


def _prepare_grad(g, x, group):
    """``-g`` if maximize, plus ``weight_decay * x`` (L2); never modifies the ``.grad`` array itself."""
    if group["maximize"]:
        g = -g
    wd = group["weight_decay"]
    if wd != 0:
        g = axpy_(g.copy(), wd, x)
    return g


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler): an lr-free rule scaling steps by running RMS of updates and gradients.

    For each parameter :math:`p` with gradient :math:`g`::

        g = -g; g = g + weight_decay * p         (maximize; weight decay)
        v = rho * v + (1 - rho) * g * g
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta * delta
        p = p - lr * delta

    State: ``step``, ``square_avg`` (v), ``acc_delta`` (u).

    Args:
        lr: scale of the update (default 1.0); rho: decay of the averages (0.9);
        eps: added inside the square roots (1e-6); weight_decay: L2 penalty (0);
        maximize: ascend instead. ``foreach``, ``capturable`` are ignored.
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        _refuse_differentiable("Adadelta", differentiable)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                        capturable=capturable, foreach=foreach, differentiable=False)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        for key in ("lr", "eps", "weight_decay"):
            check_option("Adadelta", key, group[key])
        check_option("Adadelta", "rho", group["rho"], 0.0, 1.0)

    def _update(self, p, g, state, group):
        x = p.array
        xp = backend.get_array_module(x)
        if not state:
            state["step"] = 0
            state["square_avg"] = as_state_tensor(xp.zeros_like(x))
            state["acc_delta"] = as_state_tensor(xp.zeros_like(x))
        state["step"] += 1
        rho, eps = group["rho"], group["eps"]
        g = _prepare_grad(g, x, group)
        v, u = state["square_avg"].array, state["acc_delta"].array
        v *= rho
        axpy_(v, 1 - rho, g * g)
        delta = xp.sqrt(u + eps) / xp.sqrt(v + eps) * g
        u *= rho
        axpy_(u, 1 - rho, delta * delta)
        axpy_(x, -group["lr"], delta)


class Adagrad(Optimizer):
    r"""Adagrad: per-coordinate steps shrinking with the accumulated squared gradient.

    At step :math:`t` (from 1)::

        g = -g; g = g + weight_decay * p         (maximize; weight decay)
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g * g
        p = p - clr * g / (sqrt(s) + eps)

    State (created in ``__init__``, as PyTorch): ``step`` and ``sum`` (s, starting
    at ``initial_accumulator_value``).

    Args:
        lr (1e-2), lr_decay (0), weight_decay (0), initial_accumulator_value (0),
        eps (1e-10), maximize. ``foreach``, ``fused`` are ignored.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        _refuse_differentiable("Adagrad", differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=False, fused=fused)
        super().__init__(params, defaults)  # add_param_group creates every parameter's state

    def _validate_group(self, group):
        for key in ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            check_option("Adagrad", key, group[key])

    def _update(self, p, g, state, group):
        x = p.array
        xp = backend.get_array_module(x)
        if "sum" not in state:  # a parameter added with add_param_group after __init__
            state["step"] = 0
            state["sum"] = as_state_tensor(xp.full_like(x, group["initial_accumulator_value"]))
        state["step"] = t = state["step"] + 1
        g = _prepare_grad(g, x, group)
        clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        s = state["sum"].array
        s += g * g
        std = xp.sqrt(s)
        std += group["eps"]
        axpy_(x, -clr, g / std)

    def add_param_group(self, param_group):
        """Add a group; its parameters' state starts at once (PyTorch fills Adagrad's state eagerly)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            if "sum" not in self.state[p]:
                xp = backend.get_array_module(p.array)
                self.state[p]["step"] = 0
                self.state[p]["sum"] = as_state_tensor(xp.full_like(p.array, group["initial_accumulator_value"]))


class Adamax(Optimizer):
    r"""Adamax: Adam with the infinity norm in place of the second moment.

    At step :math:`t` (from 1)::

        g = -g; g = g + weight_decay * p         (maximize; weight decay)
        m = beta1 * m + (1 - beta1) * g
        u = max(beta2 * u, |g| + eps)
        p = p - lr / (1 - beta1**t) * m / u

    State: ``step``, ``exp_avg`` (m), ``exp_inf`` (u).

    Args:
        lr (2e-3), betas ((0.9, 0.999)), eps (1e-8), weight_decay (0), maximize.
        ``foreach``, ``capturable`` are ignored.
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        _refuse_differentiable("Adamax", differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach,
                        maximize=maximize, differentiable=False, capturable=capturable)
        super().__init__(params, defaults)

    def _validate_group(self, group):
        check_betas("Adamax", group)
        for key in ("lr", "eps", "weight_decay"):
            check_option("Adamax", key, group[key])

    def _update(self, p, g, state, group):
        x = p.array
        xp = backend.get_array_module(x)
        if not state:
            state["step"] = 0
            state["exp_avg"] = as_state_tensor(xp.zeros_like(x))
            state["exp_inf"] = as_state_tensor(xp.zeros_like(x))
        state["step"] = t = state["step"] + 1
        beta1, beta2 = group["betas"]
        g = _prepare_grad(g, x, group)
        m, u = state["exp_avg"].array, state["exp_inf"].array
        m *= beta1
        axpy_(m, 1 - beta1, g)
        u *= beta2
        xp.maximum(u, xp.abs(g) + group["eps"], out=u)
        axpy_(x, -group["lr"] / (1 - beta1 ** t), m / u)


def check_betas(name, group):
    """Check ``group["betas"]`` is a pair in [0, 1) and store it as a tuple."""
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{name}: invalid betas {betas!r} (expected a pair (beta1, beta2))")
    group["betas"] = tuple(betas)
    for i, b in enumerate(betas):
        check_option(name, f"beta parameter at index {i}", b, 0.0, 1.0, high_open=True)
