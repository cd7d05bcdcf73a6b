"""The scheduler base class and what several schedulers share (part of ``dg.optim.lr_scheduler``).

The scheduler modules import in one order: ``lr_base`` -> ``lr_plateau`` -> ``lr_cyclic`` ->
``lr_scheduler``, which re-exports every public name (PyTorch's ``torch.optim.lr_scheduler``).
How ``step()`` works is described in ``lr_scheduler``'s docstring.
"""
from __future__ import annotations

import warnings

from distgraph.optim.optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses implement ``get_lr()`` (and optionally ``_get_closed_form_lr()``).

    Args:
        optimizer: the optimizer whose learning rates are scheduled.
        last_epoch: index of the last epoch seen; ``-1`` (default) starts a
            schedule; other values resume one and need ``"initial_lr"`` in every group.

    Attributes:
        base_lrs: the initial lr of each group.
        last_epoch: how many times ``step()`` has run since the start (0 after construction).
    """

    _is_initial = False

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected a distgraph Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{type(self).__name__}: param 'initial_lr' is not specified in param_groups[{i}] "
                                   f"when resuming with last_epoch={last_epoch}; load the optimizer's state dict "
                                   "first, or use last_epoch=-1 for a fresh schedule")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self):
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):
        """The next lr of each group (called by ``step()`` after ``last_epoch`` was advanced)."""
        raise NotImplementedError

    def get_last_lr(self):
        """The lr of each group as last set by this scheduler."""
        return self._last_lr

    def step(self, epoch=None):
        """Advance the schedule by one (call it after ``optimizer.step()``)."""
        if self._step_count == 1 and not self._is_initial and not getattr(self.optimizer, "_opt_called", False):
            warnings.warn("Detected call of `lr_scheduler.step()` before `optimizer.step()`: call them in the "
                          "order optimizer.step(), then lr_scheduler.step(), or the first value of the "
                          "schedule is skipped", UserWarning, stacklevel=2)
        self._step_count += 1
        if epoch is not None:
            warnings.warn("passing an epoch to lr_scheduler.step() is deprecated (as in PyTorch): call step() "
                          "once per epoch instead", UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch=None):
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        self._set_lrs(values)

    def _set_lrs(self, values):
        """Write one lr per param group, and remember them for ``get_last_lr()``."""
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = self._group_lrs()

    def _group_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        """Every attribute but the optimizer."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)


def _per_group(name, optimizer, value):
    """``value`` repeated for every param group, or checked to have one entry per group."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"expected {n} values for {name} (one per param group), got {len(value)}")
        return list(value)
    return [value] * n


class _CyclesMomentum:
    """Shared by ``OneCycleLR`` and ``CyclicLR``: the momentum (SGD's ``momentum``, or Adam's
    ``beta1``) moves inversely to the lr, between ``max_momentum`` and ``base_momentum``."""

    def _init_momentum(self, name, optimizer, cycle_momentum, max_momentum, base_momentum, last_epoch):
        self.cycle_momentum = cycle_momentum
        if not cycle_momentum:
            return
        if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
            raise ValueError(f"{name}: cycle_momentum=True needs an optimizer with momentum or betas, "
                             f"{type(optimizer).__name__} has neither; pass cycle_momentum=False")
        self.use_beta1 = "betas" in optimizer.defaults
        maxes = _per_group("max_momentum", optimizer, max_momentum)
        bases = _per_group("base_momentum", optimizer, base_momentum)
        if last_epoch == -1:
            for hi, lo, group in zip(maxes, bases, optimizer.param_groups):
                self._set_momentum(group, hi)
                group["max_momentum"], group["base_momentum"] = hi, lo

    def _set_momentum(self, group, value):
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value


class _SchedulerList:
    """Shared by ``SequentialLR`` and ``ChainedScheduler``: the state of a scheduler that runs others
    (in ``_schedulers``) is its own attributes plus each inner scheduler's ``state_dict()``."""

    def state_dict(self):
        sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        saved = state_dict.pop("_schedulers")
        self.__dict__.update(state_dict)
        for s, sd in zip(self._schedulers, saved):
            s.load_state_dict(sd)
