"""Datasets, samplers and loaders (``dg.utils.data``), with PyTorch's names and rules.

    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=0)
    for xb, yb in loader: ...
"""
from distgraph.utils.data.collate import default_collate, default_convert
from distgraph.utils.data.dataloader import DataLoader
from distgraph.utils.data.dataset import (ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset,
                                          random_split)
from distgraph.utils.data.distributed import DistributedSampler
from distgraph.utils.data.sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler,
                                          SubsetRandomSampler, WeightedRandomSampler)
from distgraph.utils.data.worker import WorkerInfo, get_worker_info

__all__ = ["BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "DistributedSampler", "IterableDataset",
           "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler", "TensorDataset",
           "WeightedRandomSampler", "WorkerInfo", "default_collate", "default_convert", "get_worker_info", "random_split"]
