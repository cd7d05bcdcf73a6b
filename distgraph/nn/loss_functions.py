"""Loss functions of ``nn.functional`` (re-exported there)."""
from __future__ import annotations

__all__ = []
