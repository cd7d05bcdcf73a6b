"""Lazy modules: ``nn.LazyLinear(out_features)`` and the like infer their input size on the first call.

Until then their parameters are ``UninitializedParameter``s (no storage).  The first forward (or a
``load_state_dict``) builds the real module with the inferred size -- so the initialisation draws the
same random numbers as ``nn.Linear(in, out)`` would -- moves its arrays into the *same* parameter
objects (an optimizer made before still holds them), and the module becomes that class
(``cls_to_become``), as PyTorch's do.
"""
from __future__ import annotations

import numpy as np

from distgraph import backend
from distgraph.autograd.tensor import Parameter, Tensor
from distgraph.nn import conv, layers
from distgraph.nn.module import Module

__all__ = ["UninitializedParameter", "LazyModuleMixin", "LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConv3d",
           "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d"]


class UninitializedParameter(Parameter):
    """A parameter whose shape is not known yet; ``materialize(shape)`` gives it storage and makes it a
    plain ``Parameter`` (the same object)."""
    __slots__ = ()

    def __init__(self, requires_grad=True, device=None, dtype=None):
        super().__init__(None, requires_grad)
        dtype = backend.as_dtype(dtype) if dtype is not None else backend.default_float()
        self.array = backend.to_device(np.empty((0,), dtype), backend.Device(device or "cpu"))

    def materialize(self, shape, device=None, dtype=None):
        arr = self.array
        dev = backend.Device(device) if device is not None else backend.device_of(arr)
        self.array = backend.to_device(np.empty(tuple(shape), dtype or arr.dtype), dev)
        self.__class__ = Parameter

    def __repr__(self):
        return "<UninitializedParameter>"


class LazyModuleMixin:
    """The first call (or ``load_state_dict``) infers the real module's arguments and turns this module
    into it.  Subclasses give ``cls_to_become``, ``_lazy_args`` (the constructor's other arguments), and
    ``_infer_from_input`` / ``_infer_from_state`` (the inferred keyword arguments)."""

    cls_to_become = None

    def has_uninitialized_params(self) -> bool:
        return any(isinstance(p, UninitializedParameter) for p in self._parameters.values() if p is not None)

    def initialize_parameters(self, **inferred):
        """Build ``cls_to_become`` with the inferred sizes and take over its state, keeping our parameters."""
        real = self.cls_to_become(**self._lazy_args, **inferred)
        params = dict(self._parameters)
        for name, p in real._parameters.items():
            mine = params.get(name)
            if isinstance(mine, UninitializedParameter) and p is not None:
                mine.materialize(p.shape, backend.device_of(p.array), p.array.dtype)
                mine.array[...] = p.array
                real._parameters[name] = mine
        d = self.__dict__
        for key, value in real.__dict__.items():
            if key not in ("training", "_forward_pre_hooks", "_forward_hooks", "_backward_hooks", "_backward_pre_hooks"):
                d[key] = value
        self.__class__ = self.cls_to_become

    def __call__(self, *args, **kwargs):
        if self.has_uninitialized_params():   # (the parameters' dtype and device are the constructor's, as PyTorch)
            self.initialize_parameters(**self._infer_from_input(args[0] if args else next(iter(kwargs.values()))))
        return Module.__call__(self, *args, **kwargs)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        if self.has_uninitialized_params():
            weight = state_dict.get("weight")
            if isinstance(weight, Tensor) or hasattr(weight, "shape"):
                self.initialize_parameters(**self._infer_from_state(state_dict))
        return Module.load_state_dict(self, state_dict, strict, assign)


class LazyLinear(LazyModuleMixin, Module):
    """``nn.Linear`` whose ``in_features`` is the last dim of its first input."""
    cls_to_become = layers.Linear

    def __init__(self, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = 0, out_features
        self._lazy_args = dict(out_features=out_features, bias=bias, device=device, dtype=dtype)
        self.weight = UninitializedParameter(device=device, dtype=dtype)
        self.bias = UninitializedParameter(device=device, dtype=dtype) if bias else None

    def _infer_from_input(self, x):
        return {"in_features": x.shape[-1]}

    def _infer_from_state(self, sd):
        return {"in_features": sd["weight"].shape[1]}

    def extra_repr(self):
        return f"in_features=0, out_features={self.out_features}, bias={self.bias is not None}"


class _LazyConvNd(LazyModuleMixin, Module):
    """``nn.ConvNd`` whose ``in_channels`` is the channel dim of its first input."""
    _nd = 0

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = 0, out_channels
        self._lazy_args = dict(out_channels=out_channels, kernel_size=kernel_size, stride=stride, padding=padding,
                               dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                               device=device, dtype=dtype)
        self.weight = UninitializedParameter(device=device, dtype=dtype)
        self.bias = UninitializedParameter(device=device, dtype=dtype) if bias else None

    def _infer_from_input(self, x):
        return {"in_channels": x.shape[0 if x.ndim == self._nd + 1 else 1]}

    def _infer_from_state(self, sd):
        return {"in_channels": sd["weight"].shape[1] * self._lazy_args["groups"]}

    def extra_repr(self):
        a = self._lazy_args
        return f"0, {self.out_channels}, kernel_size={a['kernel_size']}, stride={a['stride']}"


class LazyConv1d(_LazyConvNd):
    cls_to_become, _nd = layers.Conv1d, 1


class LazyConv2d(_LazyConvNd):
    cls_to_become, _nd = layers.Conv2d, 2


class LazyConv3d(_LazyConvNd):
    cls_to_become, _nd = conv.Conv3d, 3


class _LazyBatchNorm(LazyModuleMixin, Module):
    """``nn.BatchNormNd`` whose ``num_features`` is the channel dim of its first input."""

    def __init__(self, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None, dtype=None):
        super().__init__()
        self.num_features = 0
        self._lazy_args = dict(eps=eps, momentum=momentum, affine=affine, track_running_stats=track_running_stats,
                               device=device, dtype=dtype)
        self.weight = UninitializedParameter(device=device, dtype=dtype) if affine else None
        self.bias = UninitializedParameter(device=device, dtype=dtype) if affine else None
        if not affine:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def has_uninitialized_params(self) -> bool:
        return self.num_features == 0

    def _infer_from_input(self, x):
        return {"num_features": x.shape[1]}

    def _infer_from_state(self, sd):
        return {"num_features": (sd.get("running_mean") if sd.get("weight") is None else sd["weight"]).shape[0]}

    def load_state_dict(self, state_dict, strict=True, assign=False):
        if self.has_uninitialized_params():
            self.initialize_parameters(**self._infer_from_state(state_dict))
        return Module.load_state_dict(self, state_dict, strict, assign)

    def extra_repr(self):
        a = self._lazy_args
        return f"0, eps={a['eps']}, momentum={a['momentum']}, affine={a['affine']}, " \
               f"track_running_stats={a['track_running_stats']}"


class LazyBatchNorm1d(_LazyBatchNorm):
    cls_to_become = layers.BatchNorm1d


class LazyBatchNorm2d(_LazyBatchNorm):
    cls_to_become = layers.BatchNorm2d


class LazyBatchNorm3d(_LazyBatchNorm):
    cls_to_become = layers.BatchNorm3d
