"""Index-driven ops: gather/scatter families, index_add, masked_select, nonzero, take_along_dim."""
from __future__ import annotations

__all__ = []
