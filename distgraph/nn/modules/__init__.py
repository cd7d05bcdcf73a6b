"""PyTorch's import paths under ``torch.nn.modules`` (``from torch.nn.modules.loss import _Loss``).

distgraph keeps its layers in files by family (``nn/layers.py``, ``nn/loss.py``...);
each ``distgraph.nn.modules.<name>`` below is a module object registered under
PyTorch's path holding every public ``dg.nn`` name, plus the private base
classes scripts subclass (``_Loss``, ``_WeightedLoss``, ``_BatchNorm``, ``_ConvNd``...).
"""
from __future__ import annotations

import sys
import types

from distgraph import nn as _nn

# torch's submodule -> private names scripts import from it (looked up in dg.nn's files)
_PRIVATE = {
    "activation": (), "adaptive": (), "batchnorm": ("_BatchNorm", "_NormBase"), "channelshuffle": (),
    "container": (), "conv": ("_ConvNd", "_ConvTransposeNd"), "distance": (), "dropout": ("_DropoutNd",),
    "flatten": (), "fold": (), "instancenorm": ("_InstanceNorm",), "linear": (), "loss": ("_Loss", "_WeightedLoss"),
    "module": (), "normalization": (), "padding": (), "pixelshuffle": (), "pooling": ("_MaxPoolNd", "_AvgPoolNd"),
    "rnn": ("RNNBase",), "sparse": (), "transformer": (), "upsampling": (), "utils": ("_pair", "_single", "_triple"),
}
_SOURCES = ("layers", "activation", "loss", "rnn", "transformer", "module", "container", "attention", "pooling",
            "conv", "dropout", "normalization", "padding")

__all__ = list(_nn.__all__)


def _find(name):
    for src in _SOURCES:
        mod = sys.modules.get(f"distgraph.nn.{src}")
        if mod is not None and hasattr(mod, name):
            return getattr(mod, name)
    return None


for _sub, _privates in _PRIVATE.items():
    _mod = types.ModuleType(f"{__name__}.{_sub}", f"PyTorch's torch.nn.modules.{_sub} path (see distgraph.nn).")
    for _name in _nn.__all__:
        setattr(_mod, _name, getattr(_nn, _name))
    for _name in _privates:
        _obj = _find(_name)
        if _obj is not None:
            setattr(_mod, _name, _obj)
    sys.modules[_mod.__name__] = _mod
    globals()[_sub] = _mod

from distgraph.nn import *  # noqa: E402,F401,F403
