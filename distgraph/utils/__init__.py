"""Utilities (``dg.utils``)."""
from distgraph.utils import data  # noqa: F401
