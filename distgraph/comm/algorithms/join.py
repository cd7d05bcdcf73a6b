"""``torch.distributed.algorithms.join``: training on uneven inputs (``Join``, ``Joinable``, ``JoinHook``).

A rank that runs out of data leaves its training loop while the others still call collectives;
without help they wait for it until the comm timeout.  Inside ``with Join([model, ...]):`` (or
``with ddp_model.join():``) a rank whose loop has ended *shadows* the others instead: each of its
joinables' ``JoinHook.main_hook`` issues the collectives one training iteration of the others
issues (for DDP: the buffer broadcast, the bucket all-reduces with zeros), until every rank has
joined; then each ``post_hook`` runs once (DDP: every rank takes the model of a rank that joined
last).  The protocol, as PyTorch's:

* each iteration, a non-joined rank's first joinable calls :meth:`Join.notify_join_context`,
  which all-reduces a 1 (and, with ``throw_on_early_termination``, a second value that is
  non-zero once some rank has joined, so that every rank raises);
* a joined rank all-reduces a 0 in the same place: the sum is the number of ranks still training
  (0: everybody has joined, the context ends).

Every collective keeps the group's order, so the periodic check and the stall report see ranks that
agree.  ``enable=False`` turns the context into a no-op (inputs known to be even).
"""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np

from distgraph.autograd.tensor import wrap
from distgraph.comm import collectives
from distgraph.comm import group as _group

__all__ = ["Join", "Joinable", "JoinHook"]

SKEW_WARNING = 1000  # shadowed iterations after which a joined rank warns (PyTorch's threshold)


class JoinHook:
    """What a joinable does once its rank has joined: ``main_hook()`` shadows one iteration of the
    others' collectives (called while any rank still trains), ``post_hook(is_last_joiner)`` runs once
    when all have joined.  Both do nothing by default."""

    def main_hook(self) -> None:
        pass

    def post_hook(self, is_last_joiner: bool) -> None:
        pass


class _JoinConfig(NamedTuple):
    enable: bool
    throw_on_early_termination: bool
    is_first_joinable: bool

    @staticmethod
    def disabled():
        return _JoinConfig(False, False, False)


class Joinable(ABC):
    """A class whose per-iteration collectives a joined rank can shadow: it gives a ``join_hook``,
    the ``join_device`` and the ``join_process_group`` of its collectives, and calls
    :meth:`Join.notify_join_context` before each iteration's collectives."""

    @abstractmethod
    def __init__(self):
        super().__init__()
        self._join_config = _JoinConfig.disabled()

    @abstractmethod
    def join_hook(self, **kwargs) -> JoinHook:
        """The hook for this joinable; ``kwargs`` are the ones given to ``Join``."""

    @property
    @abstractmethod
    def join_device(self):
        """The device of the context's own all-reduces."""

    @property
    @abstractmethod
    def join_process_group(self):
        """The process group of the context's own all-reduces."""


def _flag(value):
    return wrap(np.full(1, value, np.float32))


class Join:
    """The context manager: ``with Join([ddp_model, zero_optimizer]): for batch in my_batches: ...``.

    Args:
        joinables: the participating :class:`Joinable` objects; their hooks run in this order, and
            the first one's ``notify_join_context`` does the context's collectives.
        enable: False makes the context do nothing (every rank has as many inputs).
        throw_on_early_termination: raise ``RuntimeError`` on every rank as soon as one rank runs out
            of inputs, instead of shadowing.
        **kwargs: given to each joinable's ``join_hook`` (DDP: ``divide_by_initial_world_size``).

    Raises:
        ValueError: no joinable, or joinables of different process groups.
    """

    def __init__(self, joinables, enable=True, throw_on_early_termination=False, **kwargs):
        joinables = list(joinables)
        if not joinables:
            raise ValueError("Join: the join context manager requires at least one joinable (e.g. the "
                             "DistributedDataParallel model)")
        for j in joinables:
            if not isinstance(j, Joinable):
                raise TypeError(f"Join: expected Joinable objects (DistributedDataParallel, "
                                f"ZeroRedundancyOptimizer or a Joinable of yours), got {type(j).__name__}")
        groups = {id(j.join_process_group) for j in joinables}
        if len(groups) > 1:
            raise ValueError("Join: using the join context manager with multiple process groups; every "
                             "joinable must use the same one")
        self._joinables = joinables
        self._join_hooks = [j.join_hook(**kwargs) for j in joinables]
        self._enable, self._throw = enable, throw_on_early_termination
        for k, j in enumerate(joinables):
            j._join_config = _JoinConfig(enable, throw_on_early_termination, k == 0)
        self._process_group = joinables[0].join_process_group
        self._rank = _group.get_rank(self._process_group)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self._enable and exc_type is None:
                self._shadow_until_all_joined()
        finally:
            for j in self._joinables:        # outside the context the joinables run as before
                j._join_config = _JoinConfig.disabled()

    def _shadow_until_all_joined(self):
        is_last_joiner, shadowed = True, 0
        while True:
            still = _flag(0.0)
            collectives.all_reduce(still, group=self._process_group)
            if int(still.array[0]) == 0:
                break
            if self._throw:
                collectives.all_reduce(_flag(1.0), group=self._process_group)   # tells the others
                raise RuntimeError(f"Rank {self._rank} exhausted all inputs.")
            if shadowed == SKEW_WARNING:
                warnings.warn(f"Join: rank {self._rank} has shadowed {SKEW_WARNING} iterations of the ranks "
                              "still training: inputs this uneven slow training down", stacklevel=3)
            for hook in self._join_hooks:
                hook.main_hook()
            is_last_joiner = False
            shadowed += 1
        for hook in self._join_hooks:
            hook.post_hook(is_last_joiner)

    @staticmethod
    def notify_join_context(joinable):
        """Called by a joinable before its iteration's collectives: all-reduces a 1 (this rank still
        trains), asynchronously; with ``throw_on_early_termination``, also checks whether a rank has
        joined, and raises on every rank if one has.  Returns the all-reduce's Work (whose tensor
        ends as the number of ranks still training) for the first joinable, None otherwise."""
        config = getattr(joinable, "_join_config", None)
        if config is None:
            raise RuntimeError(f"Join.notify_join_context: {type(joinable).__name__}.__init__ must call "
                               "Joinable.__init__")
        if not config.is_first_joinable or not config.enable:
            return None
        pg = joinable.join_process_group
        ones = _flag(1.0)
        work = collectives.all_reduce(ones, group=pg, async_op=True)
        if config.throw_on_early_termination:
            joined = _flag(0.0)
            collectives.all_reduce(joined, group=pg)
            if joined.array[0] != 0:
                raise RuntimeError("Detected at least one rank that exhausted inputs. Throwing across all ranks.")
        return work
