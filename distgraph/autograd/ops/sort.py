"""Sorting and selection: sort, argsort, topk, kthvalue."""
from __future__ import annotations

__all__ = []
