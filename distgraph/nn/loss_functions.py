"""Loss and distance functions of ``nn.functional`` (re-exported there), composed from the engine's
ops (gradients from the primitives' rules), with PyTorch's formulas, defaults and reductions."""
from __future__ import annotations

from distgraph.autograd.ops import clamp, exp, log, sqrt, where
from distgraph.autograd.ops._common import as_tensor
from distgraph.autograd.ops.activation import softplus

__all__ = ["binary_cross_entropy", "smooth_l1_loss", "huber_loss", "kl_div", "cosine_similarity",
           "pairwise_distance", "cosine_embedding_loss", "margin_ranking_loss", "triplet_margin_loss",
           "hinge_embedding_loss", "soft_margin_loss", "multilabel_soft_margin_loss", "poisson_nll_loss",
           "gaussian_nll_loss"]


def _reduce(loss, reduction, op):
    """``reduction`` of an element-wise ``loss`` (every loss here and in nn.functional uses this)."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _legacy(reduction, size_average, reduce):
    # PyTorch's deprecated size_average/reduce arguments, still passed by old scripts
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else ("mean" if size_average else "sum")


def _same_shape(op, a, b):
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"{op}: expected target of the input's shape {tuple(a.shape)}, got {tuple(b.shape)}")


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """``-(t log x + (1 - t) log(1 - x))``, each log clamped at -100 as PyTorch does."""
    reduction = _legacy(reduction, size_average, reduce)
    _same_shape("binary_cross_entropy", input, target)
    lo, hi = float(input.detach().min()) if input.numel() else 0.0, float(input.detach().max()) if input.numel() else 1.0
    if lo < 0 or hi > 1:
        raise RuntimeError(f"binary_cross_entropy: all elements of input should be between 0 and 1, got values "
                           f"in [{lo}, {hi}]; apply sigmoid first, or use binary_cross_entropy_with_logits")
    loss = -(target * clamp(log(input), min=-100) + (1 - target) * clamp(log(1 - input), min=-100))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``."""
    _same_shape("huber_loss", input, target)
    d = abs(input - target)
    loss = where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return _reduce(loss if weight is None else loss * weight, reduction, "huber_loss")


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``beta=0``: L1)."""
    reduction = _legacy(reduction, size_average, reduce)
    _same_shape("smooth_l1_loss", input, target)
    d = abs(input - target)
    loss = d if beta == 0 else where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)
    return _reduce(loss, reduction, "smooth_l1_loss")


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """``target * (log target - input)`` (``input`` holds log-probabilities); ``'batchmean'`` divides
    the sum by the batch size (the KL divergence proper)."""
    reduction = _legacy(reduction, size_average, reduce)
    if log_target:
        loss = exp(target) * (target - input)
    else:
        safe = where(target > 0, target, 1.0 + 0 * target)
        loss = where(target > 0, target * (log(safe) - input), 0 * target)
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction, "kl_div")


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """``x1 . x2 / max(|x1| |x2|, eps)`` along ``dim`` (broadcasting)."""
    n1 = sqrt((x1 * x1).sum(dim))
    n2 = sqrt((x2 * x2).sum(dim))
    return (x1 * x2).sum(dim) / clamp(n1 * n2, min=eps)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """``|| x1 - x2 + eps ||_p`` along the last dim."""
    d = abs(x1 - x2 + eps)
    if p == float("inf"):
        return d.amax(-1, keepdim)
    if p == 1:
        return d.sum(-1, keepdim)
    return (d ** p).sum(-1, keepdim) ** (1.0 / p)


def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"):
    """``1 - cos`` for target 1, ``max(0, cos - margin)`` for target -1."""
    reduction = _legacy(reduction, size_average, reduce)
    cos = cosine_similarity(input1, input2, dim=-1, eps=1e-12)
    loss = where(target == 1, 1 - cos, clamp(cos - margin, min=0.0))
    return _reduce(loss, reduction, "cosine_embedding_loss")


def margin_ranking_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None, reduction="mean"):
    """``max(0, -y (x1 - x2) + margin)``."""
    reduction = _legacy(reduction, size_average, reduce)
    return _reduce(clamp(-target * (input1 - input2) + margin, min=0.0), reduction, "margin_ranking_loss")


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    """``max(d(a, p) - d(a, n) + margin, 0)`` with ``d`` the p-norm pairwise distance."""
    reduction = _legacy(reduction, size_average, reduce)
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        from distgraph.autograd.ops import minimum
        d_neg = minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce(clamp(d_pos - d_neg + margin, min=0.0), reduction, "triplet_margin_loss")


def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None, reduction="mean"):
    """``x`` where target is 1, ``max(0, margin - x)`` where it is -1."""
    reduction = _legacy(reduction, size_average, reduce)
    loss = where(target == 1, input, 0 * input) + where(target == -1, clamp(margin - input, min=0.0), 0 * input)
    return _reduce(loss, reduction, "hinge_embedding_loss")


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """``log(1 + exp(-y x))``."""
    reduction = _legacy(reduction, size_average, reduce)
    return _reduce(softplus(-target * input), reduction, "soft_margin_loss")


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """Per sample, the mean over classes of the binary cross-entropy of ``sigmoid(x)``."""
    reduction = _legacy(reduction, size_average, reduce)
    loss = target * softplus(-input) + (1 - target) * softplus(input)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss.mean(-1), reduction, "multilabel_soft_margin_loss")


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    """``exp(x) - t x`` (``log_input``) or ``x - t log(x + eps)``; ``full`` adds Stirling's term."""
    reduction = _legacy(reduction, size_average, reduce)
    loss = exp(input) - target * input if log_input else input - target * log(input + eps)
    if full:
        t = as_tensor(target, input)
        safe = where(t > 1, t, 2.0 + 0 * t)
        stirling = safe * log(safe) - safe + 0.5 * log(2 * 3.141592653589793 * safe)
        loss = loss + where(t > 1, stirling, 0 * t)
    return _reduce(loss, reduction, "poisson_nll_loss")


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """``0.5 (log max(var, eps) + (x - t)^2 / max(var, eps))`` (+ ``0.5 log 2 pi`` when ``full``)."""
    if var.ndim == input.ndim - 1:
        var = var.unsqueeze(-1)
    if (var.detach() < 0).any():
        raise ValueError("gaussian_nll_loss: var has negative entries")
    v = clamp(var, min=eps)
    loss = 0.5 * (log(v) + (input - target) ** 2 / v)
    if full:
        loss = loss + 0.9189385332046727
    return _reduce(loss, reduction, "gaussian_nll_loss")


