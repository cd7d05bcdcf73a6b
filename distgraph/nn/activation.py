"""Activation modules beyond the basic ones in ``layers.py``."""
from __future__ import annotations

__all__ = []
