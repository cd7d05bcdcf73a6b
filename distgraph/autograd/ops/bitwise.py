"""Bitwise ops on integer and bool tensors (``& | ^ ~ << >>``)."""
from __future__ import annotations

__all__ = []
