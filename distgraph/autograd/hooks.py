"""``RemovableHandle``: what every ``register_*_hook`` returns (tensors, graph nodes, modules).

It sits below ``tensor`` and ``function`` in the import order, so both can hand one out.
"""
from __future__ import annotations


class RemovableHandle:
    """Returned by ``register_*_hook``; ``handle.remove()`` unregisters the hook."""

    __slots__ = ("_hooks", "_fn")

    def __init__(self, hooks: list, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        try:
            self._hooks.remove(self._fn)
        except ValueError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
