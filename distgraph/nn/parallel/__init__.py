"""Data parallelism: ``DistributedDataParallel`` and its communication hooks."""
from distgraph.nn.parallel import comm_hooks  # noqa: F401
from distgraph.nn.parallel.distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel", "comm_hooks"]
