"""Loss modules: thin wrappers over ``nn.functional``."""
from __future__ import annotations

from distgraph.nn import functional as F
from distgraph.nn.module import Module

__all__ = ["MSELoss", "L1Loss", "NLLLoss", "CrossEntropyLoss", "BCEWithLogitsLoss", "BCELoss", "SmoothL1Loss",
           "HuberLoss", "KLDivLoss", "CosineEmbeddingLoss", "MarginRankingLoss", "TripletMarginLoss",
           "HingeEmbeddingLoss", "SoftMarginLoss", "MultiLabelSoftMarginLoss", "PoissonNLLLoss", "GaussianNLLLoss",
           "CosineSimilarity", "PairwiseDistance"]


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction


class MSELoss(_Loss):
    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class NLLLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class CrossEntropyLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction, self.pos_weight)


def _loss(name, fn, doc, args=()):
    """A loss module calling ``fn(*inputs, **options, reduction=...)``; options by name or position."""
    def __init__(self, *a, reduction="mean", size_average=None, reduce=None, **kw):
        if size_average is not None or reduce is not None:      # PyTorch's deprecated arguments
            reduction = "none" if reduce is False else ("sum" if size_average is False else "mean")
        _Loss.__init__(self, reduction) if reduction != "batchmean" else Module.__init__(self)
        self.reduction = reduction
        for k, v in zip(args, a):
            kw.setdefault(k, v)
        self._kw = kw

    def forward(self, *inputs):
        return fn(*inputs, reduction=self.reduction, **self._kw)
    return type(name, (_Loss,), {"__init__": __init__, "forward": forward, "__doc__": doc})


BCELoss = _loss("BCELoss", F.binary_cross_entropy, "binary cross-entropy on probabilities", ("weight",))
SmoothL1Loss = _loss("SmoothL1Loss", F.smooth_l1_loss, "smooth L1 (Huber / beta)", ("beta",))
HuberLoss = _loss("HuberLoss", F.huber_loss, "Huber loss", ("delta",))
KLDivLoss = _loss("KLDivLoss", F.kl_div, "KL divergence (input: log-probabilities)", ("log_target",))
CosineEmbeddingLoss = _loss("CosineEmbeddingLoss", F.cosine_embedding_loss, "cosine embedding loss", ("margin",))
MarginRankingLoss = _loss("MarginRankingLoss", F.margin_ranking_loss, "margin ranking loss", ("margin",))
TripletMarginLoss = _loss("TripletMarginLoss", F.triplet_margin_loss, "triplet margin loss",
                          ("margin", "p", "eps", "swap"))
HingeEmbeddingLoss = _loss("HingeEmbeddingLoss", F.hinge_embedding_loss, "hinge embedding loss", ("margin",))
SoftMarginLoss = _loss("SoftMarginLoss", F.soft_margin_loss, "soft margin loss")
MultiLabelSoftMarginLoss = _loss("MultiLabelSoftMarginLoss", F.multilabel_soft_margin_loss,
                                 "multi-label soft margin loss", ("weight",))
PoissonNLLLoss = _loss("PoissonNLLLoss", F.poisson_nll_loss, "Poisson negative log-likelihood",
                       ("log_input", "full", "size_average", "eps"))
GaussianNLLLoss = _loss("GaussianNLLLoss", F.gaussian_nll_loss, "Gaussian negative log-likelihood", ("full", "eps"))


class CosineSimilarity(Module):
    def __init__(self, dim=1, eps=1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return F.cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    def __init__(self, p=2.0, eps=1e-6, keepdim=False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1, x2):
        return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)
