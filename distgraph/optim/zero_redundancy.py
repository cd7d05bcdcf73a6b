"""``ZeroRedundancyOptimizer`` (PyTorch's ``torch.distributed.optim``; ZeRO stage 1): each rank keeps the
optimizer state of only its share of the parameters.

The parameters are cut into one shard per rank as PyTorch cuts them: group by group, largest first,
each to the rank with the fewest elements so far (ties to the lowest rank).  ``step()`` runs the
wrapped optimizer over this rank's shard, then every parameter is broadcast from the rank that owns
it, so all ranks end with the same parameters.  Gradients must already agree (DDP), as in PyTorch.
Imported as ``distgraph.distributed.optim.ZeroRedundancyOptimizer``.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from distgraph.autograd import grad_mode
from distgraph.autograd.tensor import Tensor, tensor
from distgraph.comm import collectives
from distgraph.comm import group as _group
from distgraph.comm.algorithms.join import Join, Joinable, JoinHook
from distgraph.optim.optimizer import Optimizer

__all__ = ["ZeroRedundancyOptimizer"]


class ZeroRedundancyOptimizer(Optimizer, Joinable):
    """Wrap ``optimizer_class`` so that its state is sharded across the ranks of ``process_group``.

    Args:
        params: parameters or param groups, as for any optimizer.
        optimizer_class: the optimizer to run on this rank's shard (``dg.optim.Adam``, ...).
        process_group: the group to shard over (default: the world).
        parameters_as_bucket_view: accepted; parameters are broadcast one by one.
        overlap_with_ddp: must be False (the DDP-hook overlap of PyTorch is not there).
        **defaults: the wrapped optimizer's options (``lr=...``).

    ``param_groups`` lists every parameter (PyTorch's layout); options changed there (an LR
    scheduler) reach the wrapped optimizer at the next ``step()``.
    """

    def __init__(self, params, optimizer_class, process_group=None, parameters_as_bucket_view=False,
                 overlap_with_ddp=False, **defaults):
        if overlap_with_ddp:
            raise NotImplementedError("ZeroRedundancyOptimizer(overlap_with_ddp=True) is not supported in "
                                      "distgraph; use overlap_with_ddp=False (step() after backward)")
        self._ready = False
        Optimizer.__init__(self, params, defaults)
        Joinable.__init__(self)
        self.process_group = process_group
        self.rank = _group.get_rank(process_group)
        self.world_size = _group.get_world_size(process_group)
        self._global_ranks = _group.get_process_group_ranks(process_group)
        self._optim_class, self._optim_defaults = optimizer_class, dict(defaults)
        self._consolidated = None
        self._shards = self._partition()   # the same until a group is added
        self.optim = optimizer_class(self._shards[self.rank], **defaults)
        self._sync_param_groups(self.optim.param_groups, self.param_groups)
        self._ready = True

    # ------------------------------------------------------------ partition
    def _partition(self):
        """``[rank][group] -> that group's options with the rank's parameters`` (PyTorch's algorithm)."""
        sizes = [0] * self.world_size
        shards = [[] for _ in range(self.world_size)]
        for g in self.param_groups:
            mine = [[] for _ in range(self.world_size)]
            for p in sorted(g["params"], key=lambda t: t.numel(), reverse=True):   # (a stable sort)
                r = min(range(self.world_size), key=lambda k: (sizes[k], k))
                mine[r].append(p)
                sizes[r] += p.numel()
            for r in range(self.world_size):
                shards[r].append({**{k: v for k, v in g.items() if k != "params"}, "params": mine[r]})
        return shards

    def add_param_group(self, param_group):
        """Add a group (to every rank's list; its parameters are shared out as the others were)."""
        Optimizer.add_param_group(self, param_group)
        if getattr(self, "_ready", False):
            self._shards = self._partition()   # (the earlier groups keep their shares)
            self.optim.add_param_group(self._shards[self.rank][-1])

    @staticmethod
    def _sync_param_groups(src, dst):
        for s, d in zip(src, dst):
            for k, v in s.items():
                if k != "params":
                    d[k] = v

    # ------------------------------------------------------------- stepping
    def step(self, closure=None):
        """Step this rank's shard, then broadcast every parameter from its owner. Returns the loss."""
        Join.notify_join_context(self)
        self._opt_called = True   # (an LR scheduler checks that the optimizer stepped first)
        return self._step(closure)

    def _step(self, closure=None):
        self._sync_param_groups(self.param_groups, self.optim.param_groups)
        loss = self.optim.step(closure)
        self._sync_param_groups(self.optim.param_groups, self.param_groups)
        self._sync_params()
        return loss

    def _sync_params(self):
        works = []
        with grad_mode.no_grad():
            for r, shard in enumerate(self._shards):
                for g in shard:
                    for p in g["params"]:
                        works.append(collectives.broadcast(p, src=self._global_ranks[r], group=self.process_group,
                                                           async_op=True))
        for w in works:
            if w is not None:
                w.wait()

    # ------------------------------------------------------------ state dicts
    def consolidate_state_dict(self, to=0):
        """Collect every rank's shard of the optimizer state on rank ``to`` (every rank must call it);
        then ``state_dict()`` works there."""
        mine = self.optim.state_dict()
        mine = {"state": {k: {n: (v.detach().cpu().numpy() if isinstance(v, Tensor) else v) for n, v in s.items()}
                          for k, s in mine["state"].items()},
                "param_groups": mine["param_groups"]}
        shards = [None] * self.world_size if self.rank == _group.get_group_rank(self.process_group, to) else None
        collectives.gather_object(mine, shards, dst=to, group=self.process_group)
        self._consolidated = shards

    def state_dict(self):
        """The whole optimizer's state in an unsharded optimizer's layout (PyTorch's).

        Raises:
            RuntimeError: ``consolidate_state_dict(to=this rank)`` was not called first."""
        if self._consolidated is None:
            raise RuntimeError("Optimizer state has not been consolidated on this rank. Please call "
                               "`consolidate_state_dict(to=...)` on all ranks beforehand if you meant to save "
                               "the global state.")
        index = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in g["params"]]
            groups.append(packed)
        state = {}
        for r, shard in enumerate(self._shards):
            local = [p for g in shard for p in g["params"]]
            for k, s in self._consolidated[r]["state"].items():
                state[index[id(local[int(k)])]] = {n: (tensor(v) if isinstance(v, np.ndarray) and v.ndim else
                                                       (v.item() if isinstance(v, np.ndarray) else v))
                                                   for n, v in s.items()}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Load an unsharded layout (``state_dict()``'s, or a plain optimizer's): each rank keeps the
        state of its own shard."""
        Optimizer.load_state_dict(self, state_dict)
        local = {id(p) for g in self._shards[self.rank] for p in g["params"]}
        self.optim.state = defaultdict(dict, {p: s for p, s in self.state.items()
                                              if isinstance(p, Tensor) and id(p) in local})
        self.state = defaultdict(dict)
        self._sync_param_groups(self.param_groups, self.optim.param_groups)

    # ---------------------------------------------------------------- join
    def join_hook(self, **kwargs):
        return _ZeROJoinHook(self)

    @property
    def join_device(self):
        return self.param_groups[0]["params"][0].device

    @property
    def join_process_group(self):
        return self.process_group


class _ZeROJoinHook(JoinHook):
    """A joined rank steps its shard with the gradients the others' iteration averaged (DDP's join hook,
    running first, put them in ``.grad``) and broadcasts it, as PyTorch's hook steps."""

    def __init__(self, zero):
        self.zero = zero

    def main_hook(self):
        self.zero._step()
