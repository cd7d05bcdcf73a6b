"""Datasets, samplers, collation and loaders; partitioning and lengths checked against torch.utils.data."""
import collections
import os
import signal

import numpy as np
import pytest

import distgraph as dg
from distgraph.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, DistributedSampler,
                                  IterableDataset, RandomSampler, SequentialSampler, Subset, TensorDataset,
                                  default_collate, get_worker_info, random_split)

torch = pytest.importorskip("torch")
tud = torch.utils.data


class Squares(Dataset):
    """A plain map-style dataset (not a TensorDataset, so samples go through default_collate)."""

    def __init__(self, n, fail_at=None, kill_at=None):
        self.n, self.fail_at, self.kill_at = n, fail_at, kill_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise ValueError(f"bad sample {i}")
        if i == self.kill_at and get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"x": np.full(2, i, dtype=np.float32), "y": i, "w": float(i) / 2}


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))


# --------------------------------------------------------------------- datasets
def test_tensor_dataset_and_errors():
    x, y = dg.randn(6, 3), dg.arange(6)
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[4]
    np.testing.assert_array_equal(xi.array, x.array[4])
    assert yi.item() == 4
    with pytest.raises(ValueError, match=r"size mismatch.*\(6, 3\), \(5,\)"):
        TensorDataset(x, dg.arange(5))


def test_subset_concat():
    ds = Squares(5)
    assert Subset(ds, [4, 0])[0]["y"] == 4
    cat = ds + Squares(3)
    assert isinstance(cat, ConcatDataset) and len(cat) == 8 and cat[6]["y"] == 1 and cat[-1]["y"] == 2


@pytest.mark.parametrize("n,lengths", [(10, [3, 7]), (10, [0.3, 0.3, 0.4]), (11, [0.5, 0.5]),
                                       (7, [0.1, 0.2, 0.7]), (5, [1.0])])
def test_random_split_lengths_match_torch(n, lengths):
    ours = random_split(range(n), lengths, generator=0)
    theirs = tud.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in ours] == [len(s) for s in theirs]
    seen = [i for s in ours for i in s.indices]
    assert sorted(seen) == list(range(n))
    assert [s.indices for s in random_split(range(n), lengths, generator=0)] == [s.indices for s in ours]


def test_random_split_errors():
    with pytest.raises(ValueError, match=r"sum of input lengths \(9\) does not equal.*\(10\)"):
        random_split(range(10), [4, 5])
    with pytest.raises(TypeError, match="generator"):
        random_split(range(10), [5, 5], generator="seed")


# --------------------------------------------------------------------- samplers
def test_sequential_and_batch_sampler_match_torch():
    for n, bs, drop in [(10, 3, False), (10, 3, True), (9, 3, True), (2, 5, False), (2, 5, True)]:
        ours = BatchSampler(SequentialSampler(range(n)), bs, drop)
        theirs = tud.BatchSampler(tud.SequentialSampler(range(n)), bs, drop)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
    with pytest.raises(ValueError, match="positive integer"):
        BatchSampler(range(3), 0, False)


def test_random_sampler():
    s = RandomSampler(range(10), generator=0)
    a, b = list(s), list(s)
    assert sorted(a) == list(range(10)) and a != b  # a permutation, reshuffled each epoch
    assert list(RandomSampler(range(10), generator=0)) == a  # seeded: repeatable
    over = list(RandomSampler(range(4), num_samples=10, generator=1))
    assert len(over) == 10 and collections.Counter(over[:8]) == collections.Counter(list(range(4)) * 2)
    rep = list(RandomSampler(range(3), replacement=True, num_samples=50, generator=2))
    assert len(rep) == 50 and set(rep) <= {0, 1, 2}
    dg.manual_seed(5)
    first = list(RandomSampler(range(20)))
    dg.manual_seed(5)
    assert list(RandomSampler(range(20))) == first  # generator=None follows dg.manual_seed
    with pytest.raises(ValueError, match="num_samples"):
        RandomSampler(range(3), num_samples=0)


@pytest.mark.parametrize("n", [1, 3, 10, 11, 13])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("drop_last", [False, True])
def test_distributed_sampler_partition_matches_torch(n, replicas, drop_last):
    if drop_last and n < replicas:
        return  # torch gives every rank 0 samples; same here (checked below for one case)
    ours = [list(DistributedSampler(range(n), replicas, r, shuffle=False, drop_last=drop_last))
            for r in range(replicas)]
    theirs = [list(tud.DistributedSampler(range(n), replicas, r, shuffle=False, drop_last=drop_last))
              for r in range(replicas)]
    assert ours == theirs
    # shuffled: same lengths as torch, equal on every rank, and the padding / dropping rule holds
    for epoch in (0, 1):
        shards = []
        for r in range(replicas):
            s = DistributedSampler(range(n), replicas, r, shuffle=True, seed=3, drop_last=drop_last)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert len(s) == len(tud.DistributedSampler(range(n), replicas, r, drop_last=drop_last))
        assert len({len(sh) for sh in shards}) == 1
        perm = np.random.default_rng(3 + epoch).permutation(n).tolist()
        total = len(shards[0]) * replicas
        expected = (perm * (total // n + 1))[:total]
        merged = [shards[i % replicas][i // replicas] for i in range(total)]
        assert merged == expected
        if drop_last or n % replicas == 0:
            assert len(set(merged)) == len(merged)  # disjoint
        if not drop_last:
            assert set(merged) == set(range(n))  # covering


def test_distributed_sampler_epochs_and_defaults():
    a = DistributedSampler(range(100), num_replicas=4, rank=1, seed=7)
    b = DistributedSampler(range(100), num_replicas=4, rank=1, seed=7)
    assert list(a) == list(b)  # every rank computes the same permutation
    e0 = list(a)
    a.set_epoch(1)
    assert list(a) != e0 and sorted(a) != sorted(e0)  # a new epoch reshuffles the shards
    assert len(DistributedSampler(range(3), 5, 0, drop_last=True)) == 0
    s = DistributedSampler(range(10))  # no process group: a world of one
    assert (s.num_replicas, s.rank) == (1, 0) and sorted(s) == list(range(10))
    with pytest.raises(ValueError, match=r"invalid rank 4, rank should be in the interval \[0, 3\]"):
        DistributedSampler(range(10), num_replicas=4, rank=4)


# ---------------------------------------------------------------------- collate
def test_default_collate_types():
    Point = collections.namedtuple("Point", "a b")
    batch = [(dg.tensor([1.0, 2.0]), np.int32(3), 1.5, 2, True, "s", {"k": np.zeros(2, np.float32)}, Point(1, 2.0))
             for _ in range(4)]
    t, npint, f, i, b, s, d, p = default_collate(batch)
    assert t.shape == (4, 2) and t.dtype == dg.float32
    assert npint.dtype == dg.int32 and f.dtype == dg.float64 and i.dtype == dg.int64 and b.dtype == dg.bool
    assert s == ["s"] * 4 and d["k"].shape == (4, 2) and isinstance(p, Point) and p.b.dtype == dg.float64
    ours = default_collate([(np.ones(2), 1.0, 1)] * 3)
    theirs = tud.default_collate([(np.ones(2), 1.0, 1)] * 3)
    assert type(ours) is type(theirs) is list
    assert [str(o.dtype) for o in ours] == [str(x.dtype).replace("torch.", "") for x in theirs]
    with pytest.raises(RuntimeError, match=r"equal size, but got \[2\] at entry 0 and \[3\] at entry 1"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([[1, 2], [1]])
    with pytest.raises(TypeError, match="found object"):
        default_collate([object(), object()])


# ------------------------------------------------------------------- DataLoader
def test_loader_order_batches_and_len_match_torch():
    ds = Squares(10)
    for kw in [dict(batch_size=3), dict(batch_size=3, drop_last=True), dict(batch_size=5), dict(batch_size=None)]:
        ours, theirs = DataLoader(ds, **kw), tud.DataLoader(ds, **kw)
        assert len(ours) == len(theirs)
        got, want = list(ours), list(theirs)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.asarray(g["y"]), np.asarray(w["y"]))
            np.testing.assert_array_equal(g["x"].array, w["x"].numpy())


def test_loader_tensor_dataset_shuffle_seeded():
    x = dg.arange(20).reshape(10, 2)
    ds = TensorDataset(x, dg.arange(10))
    epochs = [[yb.tolist() for _, yb in loader] for loader in [DataLoader(ds, 4, shuffle=True, generator=3)] * 2]
    assert sorted(sum(epochs[0], [])) == list(range(10)) and epochs[0] != epochs[1]
    again = DataLoader(ds, 4, shuffle=True, generator=3)
    assert [yb.tolist() for _, yb in again] == epochs[0]
    xb, yb = next(iter(DataLoader(ds, 4, shuffle=True, generator=np.random.default_rng(1))))
    np.testing.assert_array_equal(xb.array, x.array[yb.array])  # features stay with their labels


def test_loader_sampler_options():
    ds = Squares(8)
    batches = list(DataLoader(ds, batch_sampler=[[0, 1], [7]]))
    assert [b["y"].tolist() for b in batches] == [[0, 1], [7]]
    shard = DataLoader(ds, batch_size=2, sampler=DistributedSampler(ds, 2, 1, shuffle=False))
    assert [b["y"].tolist() for b in shard] == [[1, 3], [5, 7]]
    with pytest.raises(ValueError, match="mutually exclusive with batch_size"):
        DataLoader(ds, batch_size=4, batch_sampler=[[0]])
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="prefetch_factor"):
        DataLoader(ds, prefetch_factor=2)
    with pytest.raises(ValueError, match="IterableDataset: expected unspecified shuffle"):
        DataLoader(Stream(3), shuffle=True)


def test_iterable_dataset_single_process():
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]


# ---------------------------------------------------------------- worker processes
def test_workers_give_the_same_batches_in_order():
    ds = Squares(23)
    single = [b["y"].tolist() for b in DataLoader(ds, batch_size=4, shuffle=True, generator=5)]
    multi = [b["y"].tolist() for b in DataLoader(ds, batch_size=4, shuffle=True, generator=5, num_workers=2)]
    assert multi == single
    tds = TensorDataset(dg.arange(12))
    assert [b[0].tolist() for b in DataLoader(tds, batch_size=5, num_workers=3)] == \
        [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]


def _record_init(worker_id):
    np.random.seed(100 + worker_id)


class WorkerIds(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        info = get_worker_info()
        return np.array([info.id, info.num_workers, np.random.randint(1000)])


def test_worker_info_and_init_fn():
    rows = [b for b in DataLoader(WorkerIds(), batch_size=None, num_workers=2, worker_init_fn=_record_init)]
    ids = [int(r.array[0]) for r in rows]
    assert ids == [0, 1, 0, 1, 0, 1] and all(int(r.array[1]) == 2 for r in rows)
    assert int(rows[0].array[2]) == np.random.RandomState(100).randint(1000)


def test_worker_errors_are_raised_not_hung():
    with pytest.raises(RuntimeError, match=r"(?s)in DataLoader worker \d.*ValueError: bad sample 5"):
        list(DataLoader(Squares(10, fail_at=5), batch_size=2, num_workers=2))
    with pytest.raises(RuntimeError, match=r"exited unexpectedly \(pid \d+ exit code -9\)"):
        list(DataLoader(Squares(10, kill_at=3), batch_size=2, num_workers=2))


def test_iterable_dataset_with_workers_shards():
    got = sorted(x for b in DataLoader(Stream(11), batch_size=2, num_workers=3) for x in b.tolist())
    assert got == list(range(11))
