"""``torch.distributed.optim``: ``ZeroRedundancyOptimizer`` (its code is in ``distgraph.optim``, beside the
optimizers it wraps)."""
from distgraph.optim.zero_redundancy import ZeroRedundancyOptimizer

__all__ = ["ZeroRedundancyOptimizer"]
