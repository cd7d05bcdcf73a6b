"""Elementwise maths beyond the basics: rounding, trig/hyperbolic, special functions, integer division."""
from __future__ import annotations

__all__ = []
