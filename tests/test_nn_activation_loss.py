"""The activations and losses of nn.functional (and their modules) against torch: values and
input gradients in float64 on the same inputs, reductions, module defaults and errors."""
import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph.autograd import gradcheck

torch = pytest.importorskip("torch")
TF = torch.nn.functional

ACTS = [("relu6", {}), ("hardtanh", {"min_val": -0.5, "max_val": 1.5}), ("celu", {"alpha": 0.7}), ("selu", {}),
        ("mish", {}), ("hardsigmoid", {}), ("hardswish", {}), ("logsigmoid", {}), ("softsign", {}),
        ("tanhshrink", {}), ("softshrink", {"lambd": 0.3}), ("hardshrink", {"lambd": 0.3}),
        ("threshold", {"threshold": 0.2, "value": -1.0}), ("elu", {"alpha": 1.3}), ("leaky_relu", {}),
        ("silu", {}), ("relu", {})]


def _x(shape=(4, 6), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-4, 4, shape)
    x[np.abs(x) < 0.05] = 0.5                     # away from kinks
    for k in (0.2, 0.3, -0.3, 0.5, -0.5, 1.5, 3.0, -3.0):
        x[np.abs(np.abs(x) - abs(k)) < 0.02] += 0.07
    return x


@pytest.mark.parametrize("name, kw", ACTS)
def test_activation_matches_torch(name, kw):
    x = _x()
    xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yd, yt = getattr(F, name)(xd, **kw), getattr(TF, name)(xt, **kw)
    np.testing.assert_allclose(yd.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    (yd * yd).sum().backward()
    (yt * yt).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-7, atol=1e-8)
    assert gradcheck(lambda a: getattr(F, name)(a, **kw), (dg.tensor(x[:2, :3], requires_grad=True),))


@pytest.mark.parametrize("name", ["relu6", "hardtanh", "celu", "selu", "mish", "hardswish", "hardsigmoid", "elu",
                                  "leaky_relu", "relu", "silu"])
def test_inplace_activation_equals_out_of_place(name):
    x = _x()
    a, b = dg.tensor(x), dg.tensor(x)
    out = getattr(F, name)(a, inplace=True)
    assert out is a and np.allclose(a.numpy(), getattr(F, name)(b).numpy())


def test_glu_prelu_softmin_rrelu_softmax2d_match_torch():
    x = _x((2, 4, 3, 3))
    cases = [(lambda F_, a: F_.glu(a, 1), None), (lambda F_, a: F_.softmin(a, dim=1), None),
             (lambda F_, a: F_.rrelu(a, training=False), None)]
    for fn, _ in cases:
        xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        fn(F, xd).sum().backward(), (fn(TF, xt) ** 1).sum().backward()
        np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    for n in (1, 4):
        md, mt = nn.PReLU(n).double(), torch.nn.PReLU(n).double()
        xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        (md(xd) ** 2).sum().backward(), (mt(xt) ** 2).sum().backward()
        np.testing.assert_allclose(md.weight.grad.numpy(), mt.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(nn.Softmax2d()(dg.tensor(x)).numpy(), torch.nn.Softmax2d()(torch.tensor(x)).numpy())
    r = nn.RReLU()(dg.tensor(-np.ones((200,))))            # training: slopes within [lower, upper]
    assert (-r.numpy() >= 1 / 8).all() and (-r.numpy() <= 1 / 3).all() and r.numpy().std() > 0
    with pytest.raises(RuntimeError):
        F.glu(dg.ones(3))


def _pos(shape, seed):
    return np.random.default_rng(seed).uniform(0.05, 0.95, shape)


LOSSES = [
    ("binary_cross_entropy", lambda: (_pos((4, 3), 0), (_pos((4, 3), 1) > 0.5).astype(float)), {}),
    ("smooth_l1_loss", lambda: (_x((4, 3), 0), _x((4, 3), 1)), {"beta": 0.7}),
    ("huber_loss", lambda: (_x((4, 3), 0), _x((4, 3), 1)), {"delta": 0.8}),
    ("kl_div", lambda: (np.log(_pos((4, 3), 0)), _pos((4, 3), 1)), {}),
    ("soft_margin_loss", lambda: (_x((5,), 0), np.sign(_x((5,), 1))), {}),
    ("multilabel_soft_margin_loss", lambda: (_x((4, 3), 0), (_x((4, 3), 1) > 0).astype(float)), {}),
    ("poisson_nll_loss", lambda: (_x((4, 3), 0) / 4, np.round(_pos((4, 3), 1) * 5)), {"full": True}),
    ("hinge_embedding_loss", lambda: (_x((6,), 0), np.sign(_x((6,), 1))), {"margin": 1.5}),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, make, kw", LOSSES)
def test_loss_matches_torch(name, make, kw, reduction):
    x, t = make()
    xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ld = getattr(F, name)(xd, dg.tensor(t), reduction=reduction, **kw)
    lt = getattr(TF, name)(xt, torch.tensor(t), reduction=reduction, **kw)
    np.testing.assert_allclose(ld.detach().numpy(), lt.detach().numpy(), rtol=1e-10, atol=1e-12)
    ld.sum().backward(), lt.sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_three_input_losses_and_distances_match_torch():
    a, p, n = _x((4, 5), 0), _x((4, 5), 1), _x((4, 5), 2)
    y = np.array([1.0, -1.0, 1.0, -1.0])
    fns = [lambda L, A, P, N, Y: L.triplet_margin_loss(A, P, N, margin=0.5, swap=True),
           lambda L, A, P, N, Y: L.cosine_embedding_loss(A, P, Y, margin=0.2),
           lambda L, A, P, N, Y: L.margin_ranking_loss(A[:, 0], P[:, 0], Y, margin=0.3),
           lambda L, A, P, N, Y: L.pairwise_distance(A, P).sum() + L.pairwise_distance(A, P, p=1).sum(),
           lambda L, A, P, N, Y: L.cosine_similarity(A, P).sum() + L.cosine_similarity(A, N, dim=0).sum(),
           lambda L, A, P, N, Y: L.kl_div(A.log_softmax(1), P.log_softmax(1), reduction="batchmean", log_target=True),
           lambda L, A, P, N, Y: L.gaussian_nll_loss(A, P, N.abs() + 0.1, full=True)]
    for fn in fns:
        grads = []
        for lib, L in ((dg, F), (torch, TF)):
            A, P, N = (lib.tensor(v, requires_grad=True) for v in (a, p, n))
            out = fn(L, A, P, N, lib.tensor(y))
            out.backward()
            grads.append([out.detach().numpy()] + [v.grad.numpy() for v in (A, P)])
        for g, h in zip(*grads):
            np.testing.assert_allclose(g, h, rtol=1e-9, atol=1e-12)


def test_loss_modules_and_errors_as_torch():
    x, t = _pos((4, 3), 0), (_pos((4, 3), 1) > 0.5).astype(float)
    for md, mt in [(nn.BCELoss(), torch.nn.BCELoss()), (nn.SmoothL1Loss(beta=0.5), torch.nn.SmoothL1Loss(beta=0.5)),
                   (nn.HuberLoss(reduction="sum"), torch.nn.HuberLoss(reduction="sum")),
                   (nn.KLDivLoss(reduction="batchmean"), torch.nn.KLDivLoss(reduction="batchmean")),
                   (nn.BCELoss(size_average=False), torch.nn.BCELoss(size_average=False))]:
        np.testing.assert_allclose(md(dg.tensor(x), dg.tensor(t)).item(), mt(torch.tensor(x), torch.tensor(t)).item(),
                                   rtol=1e-10)
    for lib, L in ((dg, F), (torch, TF)):
        with pytest.raises(RuntimeError):
            L.binary_cross_entropy(lib.tensor([1.5]), lib.tensor([1.0]))
        with pytest.raises(ValueError):
            L.binary_cross_entropy(lib.tensor([0.5, 0.5]), lib.tensor([[1.0, 0.0]]))
    d = nn.PairwiseDistance()(dg.ones(2, 3), dg.zeros(2, 3))
    np.testing.assert_allclose(d.numpy(), torch.nn.PairwiseDistance()(torch.ones(2, 3), torch.zeros(2, 3)).numpy(),
                               rtol=1e-6)


def test_gumbel_softmax_hard_is_one_hot_with_soft_gradient():
    logits = dg.tensor(np.random.default_rng(0).standard_normal((5, 4)), requires_grad=True)
    y = F.gumbel_softmax(logits, tau=0.5, hard=True)
    assert (y.detach().numpy().sum(1) == 1).all() and set(np.unique(y.detach().numpy())) <= {0.0, 1.0}
    (y * dg.arange(4.0)).sum().backward()
    assert logits.grad is not None and np.abs(logits.grad.numpy()).sum() > 0
