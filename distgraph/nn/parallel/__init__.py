"""Data parallelism: ``DistributedDataParallel`` and its communication hooks."""
from distgraph.nn.parallel import comm_hooks  # noqa: F401
from distgraph.nn.parallel.data_parallel import DataParallel
from distgraph.nn.parallel.distributed import DistributedDataParallel

__all__ = ["DataParallel", "DistributedDataParallel", "comm_hooks"]
