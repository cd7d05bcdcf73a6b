"""``torch.optim.swa_utils``: weight averaging (SWA) and exponential moving averages (EMA) of a model.

``AveragedModel(model)`` keeps a copy of ``model`` whose parameters are the running average of the
model's (``update_parameters(model)`` after each step); ``SWALR`` anneals the learning rate to a
constant SWA rate; ``update_bn`` recomputes BatchNorm's running statistics for the averaged weights
with one pass over the data.  ``get_ema_multi_avg_fn(decay)`` makes the average exponential.
"""
from __future__ import annotations

import copy
import itertools
import math

from distgraph.autograd import grad_mode
from distgraph.backend import get_array_module
from distgraph.autograd.creation import tensor
from distgraph.autograd.tensor import Tensor, bump_version
from distgraph.nn.module import Module
from distgraph.optim.lr_base import LRScheduler

__all__ = ["AveragedModel", "SWALR", "update_bn", "get_ema_multi_avg_fn", "get_swa_multi_avg_fn",
           "get_ema_avg_fn", "get_swa_avg_fn"]


def get_ema_avg_fn(decay=0.999):
    """One tensor's exponential average: ``decay * averaged + (1 - decay) * current``."""
    def ema_update(averaged, current, num_averaged):
        return averaged + (current - averaged) * (1 - decay)
    return ema_update


def get_swa_avg_fn():
    """One tensor's equal-weight average over the ``num_averaged + 1`` models seen."""
    def swa_update(averaged, current, num_averaged):
        return averaged + (current - averaged) / (num_averaged + 1)
    return swa_update


def get_ema_multi_avg_fn(decay=0.999):
    """The exponential average, for lists of tensors (updated in place)."""
    one = get_ema_avg_fn(decay)

    def ema_update(averaged, current, num_averaged):
        for a, c in zip(averaged, current):
            a.array[...] = one(a.array, c.array, num_averaged)
    return ema_update


def get_swa_multi_avg_fn():
    """The equal-weight average, for lists of tensors (updated in place)."""
    one = get_swa_avg_fn()

    def swa_update(averaged, current, num_averaged):
        n = int(num_averaged.item()) if isinstance(num_averaged, Tensor) else int(num_averaged)
        for a, c in zip(averaged, current):
            a.array[...] = one(a.array, c.array, n)
    return swa_update


class AveragedModel(Module):
    """A copy of ``model`` (``self.module``) whose parameters average the model's over the updates.

    Args:
        model: the model to average; it is deep-copied (to ``device`` when given).
        avg_fn: ``avg_fn(averaged, current, num_averaged)`` for one tensor, returning the new average.
        multi_avg_fn: the same for lists of tensors, updating the averaged ones in place.  With
            neither, the equal-weight (SWA) average.
        use_buffers: average the buffers too (BatchNorm's running statistics; integer ones by truncated
            SWA steps, as PyTorch's); otherwise the copy's buffers are the model's (copied at each
            update), and ``update_bn`` recomputes BatchNorm's for the averaged weights.

    ``n_averaged`` (a buffer, in ``state_dict()``) counts the updates.  Calling the averaged model
    calls the copy.
    """

    def __init__(self, model, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False):
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("AveragedModel: give avg_fn or multi_avg_fn, not both")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        from distgraph import int64
        self.register_buffer("n_averaged", tensor(0, dtype=int64, device=device))
        self.avg_fn, self.multi_avg_fn, self.use_buffers = avg_fn, multi_avg_fn, use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _tensors(self, model):
        return list(itertools.chain(model.parameters(), model.buffers()) if self.use_buffers
                    else model.parameters())

    def update_parameters(self, model):
        """Fold ``model``'s current parameters (and buffers, with ``use_buffers``) into the average."""
        mine, theirs = self._tensors(self.module), self._tensors(model)
        n = int(self.n_averaged.item())
        with grad_mode.no_grad():
            if n == 0:
                for a, c in zip(mine, theirs):
                    a.copy_(c.detach().to(a.device))
            else:
                current = [c.detach().to(a.device) for a, c in zip(mine, theirs)]
                floats = [(a, c) for a, c in zip(mine, current) if a.is_floating_point()]
                if self.multi_avg_fn is not None:
                    self.multi_avg_fn([a for a, _ in floats], [c for _, c in floats], self.n_averaged)
                elif self.avg_fn is not None:
                    for a, c in floats:
                        a.copy_(self.avg_fn(a.detach(), c, self.n_averaged))
                else:
                    get_swa_multi_avg_fn()([a for a, _ in floats], [c for _, c in floats], n)
                for a, _ in floats:
                    bump_version(a)
                for a, c in zip(mine, current):   # integer buffers (a batch count): the SWA step, truncated
                    if not a.is_floating_point():
                        xp = get_array_module(a.array)
                        a.array[...] = a.array + xp.trunc((c.array - a.array) / (n + 1)).astype(a.array.dtype)
                        bump_version(a)
        if not self.use_buffers:   # the copy's buffers follow the model's (as PyTorch's)
            with grad_mode.no_grad():
                for a, c in zip(self.module.buffers(), model.buffers()):
                    a.copy_(c.detach().to(a.device))
        self.n_averaged.array[...] = n + 1
        bump_version(self.n_averaged)


def update_bn(loader, model, device=None):
    """Recompute the BatchNorm running statistics of ``model`` with one pass over ``loader`` (each item a
    batch, or a tuple/list whose first element is the input): the statistics are reset and then
    averaged over the batches (momentum None for the pass), as PyTorch's."""
    from distgraph.nn.layers import _BatchNorm
    momenta = {}
    for m in model.modules():
        if isinstance(m, _BatchNorm) and m.running_mean is not None:
            with grad_mode.no_grad():
                m.running_mean.zero_()
                m.running_var.fill_(1)
                m.num_batches_tracked.zero_()
            momenta[m] = m.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for m in momenta:
        m.momentum = None
    try:
        with grad_mode.no_grad():
            for batch in loader:
                x = batch[0] if isinstance(batch, (list, tuple)) else batch
                if device is not None:
                    x = x.to(device)
                model(x)
    finally:
        for m, mom in momenta.items():
            m.momentum = mom
        model.train(was_training)


class SWALR(LRScheduler):
    """Anneal each group's lr from its value to ``swa_lr`` over ``anneal_epochs`` steps (``"cos"`` or
    ``"linear"``), then keep it there: the SWA phase's schedule.

    Args:
        optimizer: the optimizer.
        swa_lr: the final lr, one number or one per group (kept as ``group["swa_lr"]``).
        anneal_epochs: steps of annealing (0: jump to ``swa_lr`` at the first step).
        anneal_strategy: ``"cos"`` (default) or ``"linear"``.
    """

    def __init__(self, optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos", last_epoch=-1):
        lrs = list(swa_lr) if isinstance(swa_lr, (list, tuple)) else [swa_lr] * len(optimizer.param_groups)
        if len(lrs) != len(optimizer.param_groups):
            raise ValueError(f"SWALR: swa_lr must have one value per param group ({len(optimizer.param_groups)}), "
                             f"got {len(lrs)}")
        for lr, group in zip(lrs, optimizer.param_groups):
            group["swa_lr"] = lr
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must by one of 'cos' or 'linear', instead got {anneal_strategy}")
        self.anneal_func = self._cosine_anneal if anneal_strategy == "cos" else self._linear_anneal
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _linear_anneal(t):
        return t

    @staticmethod
    def _cosine_anneal(t):
        return (1 - math.cos(math.pi * t)) / 2

    @staticmethod
    def _start_lr(lr, swa_lr, alpha):
        """The lr the annealing started from, given the lr reached at ``alpha``."""
        return swa_lr if alpha == 1 else (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self):
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        span = max(1, self.anneal_epochs)
        prev_alpha = self.anneal_func(max(0.0, min(1.0, (step - 1) / span)))
        alpha = self.anneal_func(max(0.0, min(1.0, step / span)))
        groups = self.optimizer.param_groups
        starts = [self._start_lr(g["lr"], g["swa_lr"], prev_alpha) for g in groups]
        return [g["swa_lr"] * alpha + lr * (1 - alpha) for g, lr in zip(groups, starts)]
