"""``DistributedSampler``: each rank's disjoint shard of a dataset (PyTorch's partitioning rules)."""
from __future__ import annotations

import math

import numpy as np

from distgraph.utils.data.sampler import Sampler

__all__ = ["DistributedSampler"]


def _world():
    """``(world_size, rank)`` of the default process group, or ``(1, 0)`` when there is none."""
    try:
        from distgraph import comm
        if comm.is_initialized():
            return comm.get_world_size(), comm.get_rank()
    except (ImportError, AttributeError):
        pass
    return 1, 0


class DistributedSampler(Sampler):
    """Restrict loading to this rank's shard of ``dataset``.

    Every rank must build it with the same arguments and call ``set_epoch(epoch)``
    with the same epoch before each epoch: the permutation is drawn from
    ``seed + epoch``, so all ranks agree on it and each sees a different, disjoint
    part of it, and a new epoch reshuffles.

    Partitioning (PyTorch's): each rank gets ``num_samples`` indices, with
    ``num_samples = ceil(N / R)``, or ``ceil((N - R) / R)`` when ``drop_last`` and
    ``N % R != 0``. Without ``drop_last`` the (shuffled) index list is padded by
    repeating its head up to ``num_samples * R``; with it, the tail is dropped.
    Rank ``r`` takes ``indices[r : num_samples * R : R]``.

    Difference from PyTorch: the permutation is
    ``numpy.random.default_rng(seed + epoch).permutation(N)``, not torch's
    ``randperm``, so the order differs from PyTorch's (the partitioning does not).

    Args:
        dataset: a map-style dataset (only its length is used).
        num_replicas: number of ranks; default: the process group's world size (1 without one).
        rank: this rank; default: the process group's rank (0 without one).
        shuffle: shuffle the indices each epoch.
        seed: the base random seed; must be the same on every rank.
        drop_last: drop the tail so that shards split evenly, instead of padding.

    Raises:
        ValueError: ``rank`` outside ``[0, num_replicas - 1]``, or ``num_replicas < 1``.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if num_replicas is None or rank is None:
            world, me = _world()
            num_replicas = world if num_replicas is None else num_replicas
            rank = me if rank is None else rank
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: invalid num_replicas {num_replicas} (expected >= 1)")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0
        n = len(dataset)
        if drop_last and n % self.num_replicas != 0:
            self.num_samples = math.ceil((n - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            pad = self.total_size - len(indices)
            if pad <= len(indices):
                indices += indices[:pad]
            else:
                indices += (indices * math.ceil(pad / len(indices)))[:pad]
        else:
            indices = indices[:self.total_size]
        assert len(indices) == self.total_size
        mine = indices[self.rank:self.total_size:self.num_replicas]
        assert len(mine) == self.num_samples
        return iter(mine)

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch: int):
        """Set the epoch (on every rank, before each epoch's iterator) so that shuffling changes per epoch."""
        self.epoch = int(epoch)
