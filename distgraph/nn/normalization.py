"""Instance norm and local response norm layers (batch, layer and group norm are in ``layers``)."""
from __future__ import annotations

import warnings

from distgraph import backend
from distgraph.autograd.creation import ones, zeros
from distgraph.autograd.tensor import Parameter
from distgraph.nn import functional as F
from distgraph.nn.module import Module

__all__ = ["InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LocalResponseNorm"]


class _InstanceNorm(Module):
    _nd = 0

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False,
                 device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        fk = dict(device=device, dtype=backend.as_dtype(dtype) if dtype is not None else backend.default_float())
        self.register_parameter("weight", Parameter(ones(num_features, **fk)) if affine else None)
        self.register_parameter("bias", Parameter(zeros(num_features, **fk)) if affine else None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, **fk))
            self.register_buffer("running_var", ones(num_features, **fk))
            self.register_buffer("num_batches_tracked", zeros((), dtype=backend.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, input):
        nd = self._nd
        if input.ndim not in (nd + 1, nd + 2):
            raise ValueError(f"{type(self).__name__}: expected {nd + 1}D or {nd + 2}D input "
                             f"(got {input.ndim}D input)")
        batched = input.ndim == nd + 2
        c = input.shape[1 if batched else 0]
        if c != self.num_features:
            if self.affine:
                raise ValueError(f"{type(self).__name__}: expected input's size at dim={int(batched)} to match "
                                 f"num_features ({self.num_features}), got {c}")
            warnings.warn(f"{type(self).__name__}: input's size at dim={int(batched)} ({c}) does not match "
                          f"num_features ({self.num_features}); num_features is unused since affine=False")
        x = input if batched else input.unsqueeze(0)
        use_input_stats = self.training or not self.track_running_stats
        y = F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_input_stats,
                            self.momentum if self.momentum is not None else 0.1, self.eps)
        return y if batched else y.squeeze(0)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """Normalise each (sample, channel) row of (N, C, L) over L."""
    _nd = 1


class InstanceNorm2d(_InstanceNorm):
    """Normalise each (sample, channel) plane of (N, C, H, W) over (H, W)."""
    _nd = 2


class InstanceNorm3d(_InstanceNorm):
    _nd = 3


class LocalResponseNorm(Module):
    """``x / (k + alpha / size * sum of x^2 over nearby channels) ^ beta``."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, input):
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
