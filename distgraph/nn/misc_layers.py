"""Layers outside the main families: ``Bilinear``, ``EmbeddingBag``, ``Unflatten`` (and ``F.bilinear``,
``F.embedding_bag``), composed from the engine's ops."""
from __future__ import annotations

import math

import numpy as np

from distgraph import backend
from distgraph.autograd.creation import empty, zeros
from distgraph.autograd.ops import amax, matmul, reshape, stack, unsqueeze
from distgraph.autograd.tensor import Parameter, Tensor
from distgraph.nn import functional as F
from distgraph.nn import init
from distgraph.nn.module import Module

__all__ = ["Bilinear", "EmbeddingBag", "Unflatten", "bilinear", "embedding_bag"]


def bilinear(input1, input2, weight, bias=None):
    """``y[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]``."""
    out, n1, n2 = weight.shape
    if input1.shape[-1] != n1 or input2.shape[-1] != n2 or input1.shape[:-1] != input2.shape[:-1]:
        raise RuntimeError(f"bilinear: expected inputs of shapes (..., {n1}) and (..., {n2}) with the same leading "
                           f"dims, got {input1.shape} and {input2.shape}")
    lead = input1.shape[:-1]
    w = reshape(weight.permute(1, 0, 2), (n1, out * n2))
    t = reshape(matmul(input1, w), (*lead, out, n2))
    y = (t * unsqueeze(input2, -2)).sum(-1)
    return y if bias is None else y + bias


class Bilinear(Module):
    """``y = x1^T W x2 + b``; W is (out_features, in1_features, in2_features), initialised
    U(-1/sqrt(in1), 1/sqrt(in1)) as PyTorch."""

    def __init__(self, in1_features, in2_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=backend.as_dtype(dtype) if dtype is not None else backend.default_float())
        self.in1_features, self.in2_features, self.out_features = in1_features, in2_features, out_features
        self.weight = Parameter(empty(out_features, in1_features, in2_features, **kw))
        self.bias = Parameter(empty(out_features, **kw)) if bias else None
        bound = 1 / math.sqrt(in1_features)
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1, input2):
        return bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self):
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


def _reduce_bag(rows, mode, weights):
    if mode == "sum":
        return (rows * unsqueeze(weights, -1)).sum(0) if weights is not None else rows.sum(0)
    if mode == "mean":
        return rows.mean(0)
    return amax(rows, 0)


def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False, mode="mean",
                  sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    """Sums, means or maxima of bags of embeddings: the rows of a 2-d ``input``, or the slices of a
    1-d ``input`` that ``offsets`` start; empty bags give zeros; ``padding_idx`` entries are left out."""
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"embedding_bag: mode must be 'sum', 'mean' or 'max', got {mode!r}")
    if per_sample_weights is not None and mode != "sum":
        raise NotImplementedError("embedding_bag: per_sample_weights is only supported with mode='sum'")
    if max_norm is not None:
        raise NotImplementedError("embedding_bag: max_norm is not supported")
    idx = input.array if isinstance(input, Tensor) else np.asarray(input)
    host = idx if isinstance(idx, np.ndarray) else idx.get()
    if host.ndim == 2:
        if offsets is not None:
            raise ValueError("embedding_bag: offsets must be None when input is 2-d (each row is a bag)")
        n = host.shape[1]
        bounds = [(r * n, (r + 1) * n) for r in range(host.shape[0])]
    elif host.ndim == 1:
        if offsets is None:
            raise ValueError("embedding_bag: a 1-d input needs offsets (where each bag starts)")
        offs = [int(v) for v in (offsets.tolist() if hasattr(offsets, "tolist") else offsets)]
        ends = offs[1:] if include_last_offset else offs[1:] + [host.size]
        bounds = list(zip(offs, ends))
    else:
        raise ValueError(f"embedding_bag: expected a 1-d or 2-d input, got {host.ndim} dims")
    flat = host.reshape(-1)
    w_flat = None if per_sample_weights is None else reshape(per_sample_weights, (-1,))
    pad = None if padding_idx is None else padding_idx % weight.shape[0]
    bags = []
    for s, e in bounds:
        keep = np.asarray([i for i in range(s, e) if pad is None or int(flat[i]) != pad], dtype=np.int64)
        if not keep.size:
            bags.append(zeros(weight.shape[1], dtype=weight.dtype, device=weight.device))
            continue
        rows = F.embedding(Tensor(flat[keep], device=weight.device), weight)
        w = None if w_flat is None else w_flat[Tensor(keep, device=weight.device)]
        bags.append(_reduce_bag(rows, mode, w))
    if not bags:
        return zeros(0, weight.shape[1], dtype=weight.dtype, device=weight.device)
    return stack(bags)


class EmbeddingBag(Module):
    """``EmbeddingBag(num_embeddings, embedding_dim, mode='mean')``: one reduced embedding per bag."""

    def __init__(self, num_embeddings, embedding_dim, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
                 mode="mean", sparse=False, _weight=None, include_last_offset=False, padding_idx=None,
                 device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.mode = num_embeddings, embedding_dim, mode
        self.max_norm, self.include_last_offset, self.padding_idx = max_norm, include_last_offset, padding_idx
        kw = dict(device=device, dtype=backend.as_dtype(dtype) if dtype is not None else backend.default_float())
        self.weight = Parameter(_weight if _weight is not None else empty(num_embeddings, embedding_dim, **kw))
        if _weight is None:
            init.normal_(self.weight)
            if padding_idx is not None:
                self.weight.array[padding_idx] = 0

    def forward(self, input, offsets=None, per_sample_weights=None):
        return embedding_bag(input, self.weight, offsets, self.max_norm, mode=self.mode,
                             per_sample_weights=per_sample_weights, include_last_offset=self.include_last_offset,
                             padding_idx=self.padding_idx)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"


class Unflatten(Module):
    """Expand dim ``dim`` into ``unflattened_size`` (the inverse of ``Flatten``)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):
        return input.unflatten(self.dim, self.unflattened_size)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
