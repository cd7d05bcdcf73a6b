"""Datasets: ``Dataset``, ``IterableDataset``, ``TensorDataset``, ``Subset``, ``ConcatDataset``, ``random_split``."""
from __future__ import annotations

import bisect
import math
import numbers

import numpy as np

from distgraph.autograd import Tensor
from distgraph.utils.data.sampler import as_generator

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "random_split"]


class Dataset:
    """A map-style dataset: implement ``__getitem__(index)`` and ``__len__()``.

    ``ds1 + ds2`` concatenates.
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A stream of samples: implement ``__iter__()``.

    With ``num_workers > 0`` every worker iterates its own copy: shard inside
    ``__iter__`` with ``get_worker_info()`` to avoid duplicates (as in PyTorch).
    """

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __iter__")


def _as_tensor(x):
    if isinstance(x, Tensor):
        return x
    from distgraph.autograd.creation import as_tensor
    return as_tensor(x)


class TensorDataset(Dataset):
    """Samples are ``(t0[i], t1[i], ...)`` for tensors (or arrays) sharing their first dimension.

    Raises:
        ValueError: no tensors, or first dimensions that differ.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        self.tensors = tuple(_as_tensor(t) for t in tensors)
        sizes = [t.shape[0] if t.ndim else None for t in self.tensors]
        if None in sizes or len(set(sizes)) != 1:
            shapes = ", ".join(str(t.shape) for t in self.tensors)
            raise ValueError(f"TensorDataset: size mismatch between tensors: expected the same first "
                             f"dimension, got shapes {shapes}")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def _get_batch(self, indices):
        """The batch at ``indices`` as ``default_collate`` would build it, with one fancy-index per tensor."""
        from distgraph.utils.data.collate import wrap_array
        xp_idx = np.asarray(indices, dtype=np.int64)
        out = []
        for t in self.tensors:
            idx = xp_idx if isinstance(t.array, np.ndarray) else _to_device_index(xp_idx, t)
            out.append(wrap_array(t.array[idx]))
        return out

    def __len__(self):
        return self.tensors[0].shape[0]


def _to_device_index(idx, t):
    from distgraph import backend
    return backend.to_device(idx, t.device)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    def __getitem__(self, index):
        if isinstance(index, (list, tuple)):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """Several map-style datasets, one after the other."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: expected at least one dataset")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise TypeError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]).tolist())

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, index):
        if index < 0:
            if -index > len(self):
                raise IndexError(f"ConcatDataset: index {index} out of range for length {len(self)}")
            index += len(self)
        d = bisect.bisect_right(self.cumulative_sizes, index)
        start = self.cumulative_sizes[d - 1] if d > 0 else 0
        return self.datasets[d][index - start]


def random_split(dataset, lengths, generator=None):
    """Split ``dataset`` into non-overlapping random ``Subset``s.

    Args:
        dataset: a map-style dataset.
        lengths: the sizes of the splits, or fractions summing to 1. Fractions
            are floored and the remainder handed out one by one, round-robin from
            the first split (PyTorch's rule).
        generator: a ``numpy.random.Generator``, an int seed, or ``None`` (drawn
            from distgraph's CPU generator, see ``dg.manual_seed``).

    Raises:
        ValueError: lengths that don't sum to ``len(dataset)`` (or fractions to 1).
    """
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral) for x in lengths) \
            and math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise ValueError(f"random_split: fraction at index {i} is {frac}, expected in [0, 1]")
        sizes = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
        lengths = sizes
    if sum(lengths) != n:
        raise ValueError(f"random_split: sum of input lengths ({sum(lengths)}) does not equal the length "
                         f"of the input dataset ({n}); pass sizes summing to {n}, or fractions summing to 1")
    perm = as_generator(generator).permutation(n).tolist()
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, perm[start:start + length]))
        start += length
    return out
