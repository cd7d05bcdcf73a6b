"""Layers: linear, convolution, pooling, normalisation, dropout, embedding, activations."""
from __future__ import annotations

import math

from distgraph import backend
from distgraph.autograd.creation import empty, ones, zeros
from distgraph.autograd.tensor import Parameter, bump_version
from distgraph.nn import functional as F
from distgraph.nn import init
from distgraph.nn.module import Module

__all__ = ["Identity", "Linear", "Flatten", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d",
           "BatchNorm3d", "LayerNorm", "RMSNorm", "GroupNorm", "Dropout", "Embedding",
           "ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "LeakyReLU", "ELU", "Softplus"]


def _factory(device, dtype):
    return dict(device=device, dtype=backend.as_dtype(dtype) if dtype is not None else backend.default_float())


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """``y = x W^T + b``; W is (out_features, in_features), initialised U(-1/sqrt(in), 1/sqrt(in)) as PyTorch."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(empty(out_features, in_features, **_factory(device, dtype)))
        self.bias = Parameter(empty(out_features, **_factory(device, dtype))) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


# ------------------------------------------------------------- convolution
class _ConvNd(Module):
    def __init__(self, nd, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 transposed, output_padding, device, dtype, padding_mode="zeros"):
        super().__init__()
        if groups <= 0:
            raise ValueError(f"groups must be a positive integer, got {groups}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible "
                             f"by groups ({groups})")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode must be 'zeros', 'reflect', 'replicate' or 'circular', got {padding_mode!r}")
        tup = (lambda v: (v,) * nd if isinstance(v, int) else tuple(v))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = tup(kernel_size), tup(stride), tup(dilation)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"padding='same' is not supported for strided convolutions, got stride={self.stride}")
        self.padding = padding if isinstance(padding, str) else tup(padding)
        self.output_padding, self.groups, self.padding_mode = tup(output_padding), groups, padding_mode
        shape = ((in_channels, out_channels // groups) if transposed else
                 (out_channels, in_channels // groups)) + self.kernel_size
        self.weight = Parameter(empty(*shape, **_factory(device, dtype)))
        if bias:
            self.bias = Parameter(empty(out_channels, **_factory(device, dtype)))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * math.prod(self.kernel_size)
            bound = 1 / math.sqrt(fan_in) if fan_in else 0
            init.uniform_(self.bias, -bound, bound)

    def _padded_input(self, input):
        """(input, padding) to hand to the functional conv: non-zero padding modes pad here first."""
        if self.padding_mode == "zeros":
            return input, self.padding
        if self.padding == "same":
            widths = []
            for k, d in zip(reversed(self.kernel_size), reversed(self.dilation)):
                total = d * (k - 1)
                widths += [total // 2, total - total // 2]
        elif self.padding == "valid":
            widths = []
        else:
            widths = [v for p in reversed(self.padding) for v in (p, p)]
        return (F.pad(input, widths, self.padding_mode) if any(widths) else input), 0

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ((0,) * len(self.kernel_size), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.kernel_size):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv1d(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(1, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         False, 0, device, dtype, padding_mode)

    def forward(self, input):
        x, pad = self._padded_input(input)
        pad = pad if isinstance(pad, (int, str)) else pad[0]
        return F.conv1d(x, self.weight, self.bias, self.stride[0], pad, self.dilation[0], self.groups)


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W); lowered to im2col + one matrix product per group."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(2, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         False, 0, device, dtype, padding_mode)

    def forward(self, input):
        x, pad = self._padded_input(input)
        return F.conv2d(x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)


# ------------------------------------------------------------ normalisation
def _norm_affine(module, shape, fk, weight, bias):
    """A normalisation layer's scale (ones) and shift (zeros), or ``None`` where switched off."""
    module.register_parameter("weight", Parameter(ones(shape, **fk)) if weight else None)
    module.register_parameter("bias", Parameter(zeros(shape, **fk)) if bias else None)


class _BatchNorm(Module):
    _dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        fk = _factory(device, dtype)
        _norm_affine(self, num_features, fk, affine, affine)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(num_features, **fk))
            self.register_buffer("running_var", ones(num_features, **fk))
            self.register_buffer("num_batches_tracked", zeros((), dtype=backend.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, input):
        if input.ndim not in self._dims:
            raise ValueError(f"{type(self).__name__}: expected {' or '.join(f'{d}D' for d in self._dims)} input "
                             f"(got {input.ndim}D input, shape {tuple(input.shape)})")
        momentum = self.momentum
        if self.training and self.track_running_stats:
            momentum = self._count_batch()
        # Batch statistics in training, and always when no running ones are kept.
        use_batch = self.training or self.running_mean is None
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, use_batch,
                            momentum if momentum is not None else 0.0, self.eps)

    def _count_batch(self):
        """One more batch seen; the momentum for it (``1 / batches`` for the cumulative average).  A
        method of its own so that a capture records it as a call (replays count batches as eager does)."""
        self.num_batches_tracked.array += 1
        bump_version(self.num_batches_tracked)
        return self.momentum if self.momentum is not None else 1.0 / int(self.num_batches_tracked.array)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L)."""
    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W)."""
    _dims = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch norm over (N, C, D, H, W)."""
    _dims = (5,)


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        fk = _factory(device, dtype)
        _norm_affine(self, self.normalized_shape, fk, elementwise_affine, elementwise_affine and bias)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class RMSNorm(Module):
    """Root-mean-square normalisation over the trailing ``normalized_shape`` dims, with a learned scale
    (``F.rms_norm``); ``eps`` None: the input dtype's machine epsilon."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        _norm_affine(self, self.normalized_shape, _factory(device, dtype), elementwise_affine, False)
        del self._parameters["bias"]   # (RMSNorm has no shift, not even a None one)

    def forward(self, input):
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None, dtype=None):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        fk = _factory(device, dtype)
        _norm_affine(self, num_channels, fk, affine, affine)

    def forward(self, input):
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


# ---------------------------------------------------------- dropout, embedding
class Dropout(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: probability has to be between 0 and 1, got {p}")
        self.p = p

    def forward(self, input):
        return F.dropout(input, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Embedding(Module):
    """A lookup table of ``num_embeddings`` rows, initialised N(0, 1); the ``padding_idx`` row is zero
    and gets no gradient."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, device=None, dtype=None):
        super().__init__()
        if padding_idx is not None and not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(f"Embedding: padding_idx must be within num_embeddings ({num_embeddings}), got {padding_idx}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx % num_embeddings if padding_idx is not None else None
        self.weight = Parameter(empty(num_embeddings, embedding_dim, **_factory(device, dtype)))
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.array[self.padding_idx] = 0

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


# --------------------------------------------------------------- activations
def _activation(name, fn, doc, args=()):
    def __init__(self, *a, **kw):
        Module.__init__(self)
        for k, v in zip(args, a):
            kw.setdefault(k, v)
        self._kw = kw

    def forward(self, input):
        return fn(input, **self._kw)

    def extra_repr(self):
        return ", ".join(f"{k}={v}" for k, v in self._kw.items())
    return type(name, (Module,), {"__init__": __init__, "forward": forward, "extra_repr": extra_repr,
                                  "__doc__": doc})


def _no_inplace(fn):
    def call(input, inplace=False, **kw):
        return fn(input, **kw)
    return call


ReLU = _activation("ReLU", _no_inplace(F.relu), "``max(x, 0)``", ("inplace",))
GELU = _activation("GELU", F.gelu, "``x * Phi(x)`` (``approximate='tanh'`` for the tanh form)", ("approximate",))
SiLU = _activation("SiLU", _no_inplace(F.silu), "``x * sigmoid(x)``", ("inplace",))
Tanh = _activation("Tanh", F.tanh, "``tanh(x)``")
Sigmoid = _activation("Sigmoid", F.sigmoid, "``1 / (1 + exp(-x))``")
Softmax = _activation("Softmax", F.softmax, "softmax along ``dim``", ("dim",))
LogSoftmax = _activation("LogSoftmax", F.log_softmax, "log-softmax along ``dim``", ("dim",))
LeakyReLU = _activation("LeakyReLU", _no_inplace(F.leaky_relu), "leaky ReLU", ("negative_slope", "inplace"))
ELU = _activation("ELU", _no_inplace(F.elu), "ELU", ("alpha", "inplace"))
Softplus = _activation("Softplus", F.softplus, "softplus", ("beta", "threshold"))
