"""Utilities (``dg.utils``): data loading, gradient checkpointing, checkpointed training, metrics,
rank-aware logging.

The submodules load when first used (``dg.utils.data``, ``from distgraph.utils.training import
...``): ``logging`` sits below everything, ``training`` above the comm layer, and importing one must
not import the others.
"""
import importlib as _importlib

_SUBMODULES = ("checkpoint", "data", "logging", "metrics", "tensorboard", "training")
__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
