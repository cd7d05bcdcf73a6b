"""Utilities (``dg.utils``): data loading, gradient checkpointing, checkpointed training, metrics,
rank-aware logging."""
from distgraph.utils import checkpoint, data, logging, metrics, training  # noqa: F401
