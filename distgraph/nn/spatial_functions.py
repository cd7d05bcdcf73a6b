"""Padding, resampling, 3-d convolution and pooling variants of ``nn.functional`` (re-exported there)."""
from __future__ import annotations

__all__ = []
