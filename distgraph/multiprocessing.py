"""``torch.multiprocessing``'s launch idioms for distgraph (``mp.spawn``)."""
from __future__ import annotations

__all__ = []
