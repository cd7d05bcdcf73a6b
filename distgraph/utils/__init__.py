"""Utilities (``dg.utils``): data loading, checkpointed training, metrics, rank-aware logging."""
from distgraph.utils import data, logging, metrics, training  # noqa: F401
