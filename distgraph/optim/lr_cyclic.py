"""More schedulers: PolynomialLR, CosineAnnealingWarmRestarts, CyclicLR, ChainedScheduler.

Part of ``dg.optim.lr_scheduler`` (which re-exports every name here); the rules
are PyTorch's, including the "chainable" recursive forms used by ``step()``.
"""
from __future__ import annotations

import math
import types

from distgraph.optim.lr_base import LRScheduler, _CyclesMomentum, _per_group, _SchedulerList
from distgraph.optim.lr_plateau import ReduceLROnPlateau
from distgraph.optim.optimizer import Optimizer

__all__ = ["PolynomialLR", "CosineAnnealingWarmRestarts", "CyclicLR", "ChainedScheduler"]


class PolynomialLR(LRScheduler):
    """Decay the lr polynomially to 0 over ``total_iters`` epochs, then keep it there.

    Closed form: ``initial_lr * (1 - min(epoch, total_iters) / total_iters) ** power``.
    """

    def __init__(self, optimizer, total_iters=5, power=1.0, last_epoch=-1):
        self.total_iters, self.power = total_iters, power
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        e, n = self.last_epoch, self.total_iters
        if e == 0 or e > n:
            return self._group_lrs()
        factor = ((1.0 - e / n) / (1.0 - (e - 1) / n)) ** self.power
        return [lr * factor for lr in self._group_lrs()]

    def _get_closed_form_lr(self):
        f = (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
        return [base * f for base in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter).

    ``lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``,
    where ``T_cur`` counts epochs since the last restart and the i-th period
    lasts ``T_i = T_0 * T_mult**i`` epochs. ``step(epoch)`` accepts fractional
    epochs (call it per batch with ``epoch + i / iters``); unlike the other
    schedulers it warns neither about the epoch argument nor about the call order (as PyTorch).

    Raises:
        ValueError: ``T_0`` not a positive integer, ``T_mult`` not an integer >= 1,
            ``eta_min`` not a number, or a negative ``epoch``.
    """

    def __init__(self, optimizer, T_0, T_mult=1, eta_min=0.0, last_epoch=-1):
        if T_0 <= 0 or not isinstance(T_0, int):
            raise ValueError(f"CosineAnnealingWarmRestarts: expected a positive integer T_0, got {T_0!r}")
        if T_mult < 1 or not isinstance(T_mult, int):
            raise ValueError(f"CosineAnnealingWarmRestarts: expected an integer T_mult >= 1, got {T_mult!r}")
        if not isinstance(eta_min, (float, int)):
            raise ValueError(f"CosineAnnealingWarmRestarts: expected a number for eta_min, got {eta_min!r} "
                             f"of type {type(eta_min).__name__}")
        self.T_0, self.T_i, self.T_mult, self.eta_min = T_0, T_0, T_mult, eta_min
        self.T_cur = last_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        c = (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]

    def step(self, epoch=None):
        """Advance one epoch, or jump to ``epoch`` (a float allowed)."""
        self._step_count += 1
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur += 1
            if self.T_cur >= self.T_i:
                self.T_cur -= self.T_i
                self.T_i *= self.T_mult
        else:
            if epoch < 0:
                raise ValueError(f"CosineAnnealingWarmRestarts.step: expected a non-negative epoch, got {epoch}")
            if epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:  # the restart n with T_0 (T_mult**n - 1) / (T_mult - 1) <= epoch
                    n = int(math.log(epoch / self.T_0 * (self.T_mult - 1) + 1, self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult ** n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult ** n
            else:
                self.T_i, self.T_cur = self.T_0, epoch
        self.last_epoch = math.floor(epoch)
        self._set_lrs(self.get_lr())


class CyclicLR(_CyclesMomentum, LRScheduler):
    """Cyclical learning rates (Smith): the lr moves between ``base_lr`` and ``max_lr`` each cycle.

    Steps once per *batch*. A cycle is ``step_size_up`` steps up and
    ``step_size_down`` (default: the same) down; the amplitude is scaled by
    ``scale_fn`` of the cycle number (or of the step, ``scale_mode="iterations"``):
    ``"triangular"`` 1, ``"triangular2"`` ``1 / 2**(cycle - 1)``,
    ``"exp_range"`` ``gamma**step``. With ``cycle_momentum`` the momentum (SGD's
    ``momentum`` or Adam's ``beta1``) moves inversely between ``max_momentum`` and ``base_momentum``.

    Raises:
        ValueError: an unknown ``mode`` without ``scale_fn``, or ``cycle_momentum``
            with an optimizer that has neither momentum nor betas.
    """

    def __init__(self, optimizer, base_lr, max_lr, step_size_up=2000, step_size_down=None, mode="triangular",
                 gamma=1.0, scale_fn=None, scale_mode="cycle", cycle_momentum=True, base_momentum=0.8,
                 max_momentum=0.9, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"CyclicLR: expected a distgraph Optimizer, got {type(optimizer).__name__}")
        base_lrs = _per_group("base_lr", optimizer, base_lr)
        if last_epoch == -1:
            for lr, group in zip(base_lrs, optimizer.param_groups):
                group["lr"] = lr
        self.max_lrs = _per_group("max_lr", optimizer, max_lr)
        up = float(step_size_up)
        down = float(step_size_down) if step_size_down is not None else up
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
            raise ValueError(f"CyclicLR: mode must be 'triangular', 'triangular2' or 'exp_range' when no "
                             f"scale_fn is given, got {mode!r}")
        self.mode, self.gamma = mode, gamma
        self._scale_fn_custom = scale_fn
        self.scale_mode = scale_mode if scale_fn is not None else ("iterations" if mode == "exp_range" else "cycle")
        self._init_momentum("CyclicLR", optimizer, cycle_momentum, max_momentum, base_momentum, last_epoch)
        if cycle_momentum:
            self.base_momentums = [g["base_momentum"] for g in optimizer.param_groups]
            self.max_momentums = [g["max_momentum"] for g in optimizer.param_groups]
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def scale_fn(self, x):
        """The amplitude scale at cycle (or step) ``x``."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma ** x

    def get_lr(self):
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        factor = x / self.step_ratio if x <= self.step_ratio else (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else self.last_epoch)
        lrs = [lo + (hi - lo) * factor * scale for lo, hi in zip(self.base_lrs, self.max_lrs)]
        if self.cycle_momentum:
            for group, lo, hi in zip(self.optimizer.param_groups, self.base_momentums, self.max_momentums):
                self._set_momentum(group, hi - (hi - lo) * factor * scale)
        return lrs

    def state_dict(self):
        """Every attribute but the optimizer; a custom ``scale_fn`` is kept only as an object's ``__dict__``."""
        sd = super().state_dict()
        fn = sd.pop("_scale_fn_custom")
        sd["_scale_fn_custom"] = None if fn is None or isinstance(fn, types.FunctionType) else dict(fn.__dict__)
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        saved_fn = state_dict.pop("_scale_fn_custom", None)
        self.__dict__.update(state_dict)
        if saved_fn is not None and self._scale_fn_custom is not None:
            self._scale_fn_custom.__dict__.update(saved_fn)


class ChainedScheduler(_SchedulerList, LRScheduler):
    """Step several schedulers of one optimizer together: each ``step()`` steps them all, in order.

    Raises:
        ValueError: no schedulers, schedulers of different optimizers, or a ``ReduceLROnPlateau``.
    """

    def __init__(self, schedulers, optimizer=None):
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError("ChainedScheduler: expected at least one scheduler, got none")
        optimizer = optimizer or schedulers[0].optimizer
        for i, s in enumerate(schedulers):
            if not hasattr(s, "optimizer"):
                raise TypeError(f"ChainedScheduler: expected LR schedulers, item {i} is a {type(s).__name__}")
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(f"ChainedScheduler: ReduceLROnPlateau (item {i}) needs a metric in step(); "
                                 "step it separately")
            if s.optimizer is not optimizer:
                raise ValueError(f"ChainedScheduler: every scheduler must belong to the same optimizer; "
                                 f"scheduler {i} ({type(s).__name__}) has another one")
        self._schedulers, self.optimizer = schedulers, optimizer
        self._last_lr = self._group_lrs()

    def step(self):
        for s in self._schedulers:
            s.step()
        self._last_lr = self._group_lrs()
