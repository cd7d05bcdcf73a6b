"""Samplers: which dataset indices a loader visits, and in what order.

Random samplers take ``generator=``: a ``dg.Generator`` or ``numpy.random.Generator`` (used as is),
an ``int`` seed (a Generator made from it once, so each epoch differs but the
whole run repeats), or ``None`` (a fresh seed drawn from distgraph's CPU
generator at every epoch, so ``dg.manual_seed`` makes runs repeatable).
PyTorch's permutations come from torch's own generator and cannot be matched
bit for bit; the rules (lengths, replacement, batching) are PyTorch's.
"""
from __future__ import annotations

import numpy as np

from distgraph import backend

__all__ = ["Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler", "as_generator"]


def as_generator(generator):
    """A ``numpy.random.Generator`` from a Generator, an int seed or ``None`` (see the module docstring)."""
    if generator is None:
        seed = int(backend.generator(backend.CPU).integers(0, 2 ** 63 - 1))
        return np.random.default_rng(seed)
    if isinstance(generator, np.random.Generator):
        return generator
    from distgraph.random import Generator
    if isinstance(generator, Generator):       # dg.Generator().manual_seed(42), as torch scripts pass
        return generator.numpy_generator()
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    raise TypeError(f"generator: expected a dg.Generator, a numpy.random.Generator, an int seed or None, "
                    f"got {type(generator).__name__}")


class Sampler:
    """Base class: implement ``__iter__`` (yielding indices) and, where known, ``__len__``."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """``0, 1, ..., len(data_source) - 1``."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """Indices in random order; with ``replacement``, ``num_samples`` independent draws.

    Without replacement and ``num_samples > len(data_source)``, whole permutations
    follow one another (PyTorch's rule).
    """

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = bool(replacement)
        self._num_samples = num_samples
        self._rng = None if generator is None else as_generator(generator)
        if not isinstance(replacement, bool):
            raise TypeError(f"RandomSampler: replacement should be a bool, got {replacement!r}")
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"RandomSampler: num_samples should be a positive integer, got {self.num_samples!r}")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        rng = self._rng if self._rng is not None else as_generator(None)
        if self.replacement:
            yield from rng.integers(0, n, size=self.num_samples).tolist()
            return
        for _ in range(self.num_samples // n):
            yield from rng.permutation(n).tolist()
        yield from rng.permutation(n)[:self.num_samples % n].tolist()

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given ``indices``, in a random order each epoch."""

    def __init__(self, indices, generator=None):
        self.indices = list(indices)
        self._rng = None if generator is None else as_generator(generator)

    def __iter__(self):
        rng = self._rng if self._rng is not None else as_generator(None)
        for i in rng.permutation(len(self.indices)).tolist():
            yield self.indices[i]

    def __len__(self):
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``num_samples`` indices drawn with probabilities proportional to ``weights``
    (with ``replacement``, or without it: then ``num_samples <= len(weights)``), as PyTorch's."""

    def __init__(self, weights, num_samples, replacement=True, generator=None):
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples <= 0:
            raise ValueError(f"WeightedRandomSampler: num_samples should be a positive integer, got {num_samples!r}")
        if not isinstance(replacement, bool):
            raise ValueError(f"WeightedRandomSampler: replacement should be a boolean, got {replacement!r}")
        w = np.asarray(weights.tolist() if hasattr(weights, "tolist") else weights, dtype=np.float64)
        if w.ndim != 1 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise RuntimeError("WeightedRandomSampler: weights must be a 1-d sequence of finite, non-negative "
                               "numbers with a positive sum")
        if not replacement and num_samples > int((w > 0).sum()):
            raise RuntimeError(f"WeightedRandomSampler: can't draw {num_samples} samples without replacement "
                               f"from {int((w > 0).sum())} non-zero weights")
        self.weights, self.num_samples, self.replacement = w, int(num_samples), replacement
        self._rng = None if generator is None else as_generator(generator)

    def __iter__(self):
        rng = self._rng if self._rng is not None else as_generator(None)
        yield from rng.choice(len(self.weights), self.num_samples, replace=self.replacement,
                              p=self.weights / self.weights.sum()).tolist()

    def __len__(self):
        return self.num_samples


class BatchSampler(Sampler):
    """Group another sampler's indices into lists of ``batch_size`` (the last one shorter unless ``drop_last``)."""

    def __init__(self, sampler, batch_size, drop_last):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"BatchSampler: batch_size should be a positive integer, got {batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"BatchSampler: drop_last should be a bool, got {drop_last!r}")
        self.sampler, self.batch_size, self.drop_last = sampler, int(batch_size), drop_last

    def __iter__(self):
        batch = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size
