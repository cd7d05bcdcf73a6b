"""``torch._dynamo``'s names that training scripts use: ``reset()``, ``config.cache_size_limit``
(tapes per compiled function), ``disable``, ``mark_dynamic``.

distgraph has no bytecode tracer: ``dg.compile`` records ops (docs/graph.md), so these map onto it.
"""
from __future__ import annotations

from distgraph.graph.compiled import OptimizedModule, config, disable, is_compiling, reset

__all__ = ["reset", "config", "disable", "is_compiling", "mark_dynamic", "maybe_mark_dynamic", "mark_static",
           "OptimizedModule"]


def mark_dynamic(t, index, **kwargs):
    """Accepted, with no effect: a tape is kept per input shape (each new size captures anew, up to
    ``config.cache_size_limit``), so no dimension is ever traced symbolically."""


maybe_mark_dynamic = mark_dynamic
mark_static = mark_dynamic
