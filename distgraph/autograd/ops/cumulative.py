"""Scans along a dimension: cumsum, cumprod, cummax, cummin, logcumsumexp."""
from __future__ import annotations

__all__ = []
