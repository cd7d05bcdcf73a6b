"""``DataLoader``: batches from a dataset, in order or shuffled, in this process or in worker processes."""
from __future__ import annotations

import itertools

from distgraph.utils.data.collate import default_collate, default_convert
from distgraph.utils.data.dataset import IterableDataset
from distgraph.utils.data.sampler import BatchSampler, RandomSampler, SequentialSampler, as_generator
from distgraph.utils.data.worker import MultiProcessIter, get_worker_info

__all__ = ["DataLoader", "get_worker_info"]


class _MapFetch:
    """Build one batch of a map-style dataset from its indices (picklable, for workers)."""

    def __init__(self, dataset, collate_fn, batched):
        self.dataset, self.collate_fn, self.batched = dataset, collate_fn, batched
        # TensorDataset can fancy-index a whole batch at once; same result as collating its samples
        self.whole = batched and collate_fn is default_collate and hasattr(dataset, "_get_batch")

    def __call__(self, index):
        if not self.batched:
            return self.collate_fn(self.dataset[index])
        if self.whole:
            return self.dataset._get_batch(index)
        return self.collate_fn([self.dataset[i] for i in index])


class _IterFetch:
    """Take the next batch from an iterator over an iterable dataset."""

    def __init__(self, collate_fn, batch_size, drop_last):
        self.collate_fn, self.batch_size, self.drop_last = collate_fn, batch_size, drop_last

    def __call__(self, iterator):
        if self.batch_size is None:
            return self.collate_fn(next(iterator))
        items = list(itertools.islice(iterator, self.batch_size))
        if not items or (self.drop_last and len(items) < self.batch_size):
            raise StopIteration
        return self.collate_fn(items)


class DataLoader:
    """Iterate over ``dataset`` in batches.

    Args:
        dataset: a map-style ``Dataset`` (``__getitem__``/``__len__``) or an ``IterableDataset``.
        batch_size: samples per batch; ``None`` disables batching (samples are only converted).
        shuffle: reshuffle the indices every epoch (a ``RandomSampler``).
        sampler: the indices to visit (exclusive with ``shuffle``), e.g. a ``DistributedSampler``.
        batch_sampler: yields whole lists of indices (exclusive with ``batch_size``,
            ``shuffle``, ``sampler`` and ``drop_last``).
        num_workers: worker processes loading batches (0: load in this process). Batches
            arrive in the same order either way. Workers start at every epoch (through
            ``multiprocessing_context``, default: the platform's start method); each is
            seeded with ``base_seed + worker_id`` (Python's, NumPy's and distgraph's
            generators), where ``base_seed`` is drawn from ``generator``.
        collate_fn: merges a list of samples into a batch (default: ``default_collate``).
        drop_last: drop the last, incomplete batch.
        timeout: seconds to wait for a batch from the workers (0: forever); a worker that
            dies is always detected. With 0, a wait longer than
            ``DISTGRAPH_DATALOADER_STALL_SECONDS`` (default 60; 0: never) logs a warning
            naming the batch and the silent workers, repeated at doubling intervals.
        worker_init_fn: called as ``worker_init_fn(worker_id)`` in each worker before loading.
        generator: a ``numpy.random.Generator`` or an int seed for shuffling and worker
            seeds (an int makes a Generator once: every epoch differs, the run repeats);
            ``None`` draws from distgraph's CPU generator (``dg.manual_seed``).
        prefetch_factor: batches loaded ahead per worker (default 2 with workers).
        pin_memory, pin_memory_device, persistent_workers: accepted for PyTorch
            compatibility and ignored (batches are CPU arrays; workers restart each epoch).

    Raises:
        ValueError: options PyTorch also refuses together, or negative counts.
    """

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device=""):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers option should be a non-negative integer, got {num_workers!r}")
        if timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout!r}")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("DataLoader: prefetch_factor option could only be specified in multiprocessing; "
                             "let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None")
        if prefetch_factor is not None and prefetch_factor < 1:
            raise ValueError(f"DataLoader: prefetch_factor should be >= 1, got {prefetch_factor!r}")
        self.dataset = dataset
        self.num_workers, self.timeout, self.worker_init_fn = num_workers, timeout, worker_init_fn
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers > 0 else prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.generator = generator
        self._rng = None if generator is None else as_generator(generator)
        self._iterable = isinstance(dataset, IterableDataset)

        if self._iterable:
            for name, value in (("shuffle", shuffle), ("sampler", sampler), ("batch_sampler", batch_sampler)):
                if value not in (None, False):
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified {name} option, "
                                     f"but got {name}={value!r}")
        elif batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("DataLoader: batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("DataLoader: batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")

        if not self._iterable:
            if sampler is None:
                sampler = RandomSampler(dataset, generator=self._rng) if shuffle else SequentialSampler(dataset)
            if batch_size is not None and batch_sampler is None:
                batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        batched = batch_sampler is not None or (self._iterable and batch_size is not None)
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if batched else default_convert)
        self._batched = batched

    @property
    def _index_sampler(self):
        return self.batch_sampler if self.batch_sampler is not None else self.sampler

    def _fetcher(self):
        if self._iterable:
            return _IterFetch(self.collate_fn, self.batch_size, self.drop_last)
        return _MapFetch(self.dataset, self.collate_fn, self._batched)

    def _base_seed(self):
        return (self._rng if self._rng is not None else as_generator(None)).integers(0, 2 ** 62)

    def __iter__(self):
        fetch = self._fetcher()
        # drawn with or without workers, so that the shuffle order does not depend on num_workers
        base_seed = int(self._base_seed())
        if self.num_workers > 0:
            return MultiProcessIter(self, fetch, self._iterable, base_seed)
        return self._single_process(fetch)

    def _single_process(self, fetch):
        if self._iterable:
            iterator = iter(self.dataset)
            while True:
                try:
                    batch = fetch(iterator)
                except StopIteration:
                    return
                yield batch
        else:
            for index in self._index_sampler:
                yield fetch(index)

    def __len__(self):
        if self._iterable:
            n = len(self.dataset)  # TypeError when the dataset has no length, as in PyTorch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return len(self._index_sampler)
