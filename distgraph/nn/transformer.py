"""Transformer, TransformerEncoder/Decoder and their layers."""
from __future__ import annotations

__all__ = []
