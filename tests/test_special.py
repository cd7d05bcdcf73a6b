"""``torch.special`` names and the new elementwise ops (lgamma, digamma, polygamma, mvlgamma, logit, i0)
against torch on the same inputs (float64): values, gradients, finite differences, errors."""
import numpy as np
import pytest

import distgraph as dg
from distgraph.autograd.gradcheck import gradcheck

torch = pytest.importorskip("torch")
TOL = 1e-10

POS = np.array([0.05, 0.3, 1.0, 1.5, 4.0, 12.5])          # gamma-family inputs
UNIT = np.array([0.01, 0.2, 0.5, 0.77, 0.99])              # probabilities
ANY = np.array([-3.0, -0.5, 0.0, 0.4, 2.5])


def _both(name_dg, name_torch, x, *args, grad=True, grad_rtol=1e-10):
    d, t = dg.tensor(x, requires_grad=grad), torch.tensor(x, requires_grad=grad)
    fd, ft = eval(f"dg.{name_dg}"), eval(f"torch.{name_torch}")  # noqa: S307 - names of this file
    yd, yt = fd(d, *args), ft(t, *args)
    assert np.allclose(yd.detach().numpy(), yt.detach().numpy(), atol=TOL, rtol=1e-12, equal_nan=True), \
        (name_dg, yd, yt)
    if grad:
        w = np.linspace(0.5, 1.5, x.size).reshape(x.shape)
        (yd * dg.tensor(w)).sum().backward()
        (yt * torch.tensor(w)).sum().backward()
        assert np.allclose(d.grad.numpy(), t.grad.numpy(), atol=TOL, rtol=grad_rtol, equal_nan=True), \
            (name_dg, d.grad, t.grad)


@pytest.mark.parametrize("name,x", [("lgamma", POS), ("digamma", POS), ("i0", ANY), ("logit", UNIT),
                                    ("special.gammaln", POS), ("special.psi", POS), ("special.expit", ANY),
                                    ("special.ndtr", ANY), ("special.ndtri", UNIT), ("special.log_ndtr", ANY),
                                    ("special.entr", np.abs(ANY)), ("special.erfinv", UNIT - 0.5),
                                    ("special.i0", ANY), ("special.logit", UNIT), ("special.sinc", ANY)])
def test_unary_matches_torch(name, x):
    # digamma's gradient is trigamma: torch's own series is 1e-10 off SciPy's (at 4.0: 0.2838229557697 against
    # 0.2838229557371, the sum of 1/(4+k)^2 being 0.28382295573698), so that one is compared at 1e-9
    _both(name, name, x, grad_rtol=1e-9 if name in ("digamma", "special.psi") else 1e-10)


def test_polygamma_mvlgamma_logit_eps_xlog1py_match_torch():
    for n in (1, 2, 3):
        d, t = dg.tensor(POS, requires_grad=True), torch.tensor(POS, requires_grad=True)
        yd, yt = dg.polygamma(n, d), torch.polygamma(n, t)
        assert np.allclose(yd.detach().numpy(), yt.detach().numpy(), rtol=1e-9), n
        yd.sum().backward()
        yt.sum().backward()
        assert np.allclose(d.grad.numpy(), t.grad.numpy(), rtol=1e-9), n
    _both("mvlgamma", "mvlgamma", POS + 2, 3)
    _both("special.multigammaln", "special.multigammaln", POS + 2, 2)
    _both("logit", "logit", np.array([0.0, 0.05, 0.5, 0.97, 1.0]), 0.1)
    d, t = dg.tensor(ANY), torch.tensor(ANY)
    assert np.allclose(dg.special.xlog1py(d, dg.abs(d)).numpy(), torch.special.xlog1py(t, t.abs()).numpy())
    assert np.allclose(dg.special.entr(d).numpy(), torch.special.entr(t).numpy(), equal_nan=True)
    # below (p - 1) / 2 torch 2.13 no longer raises: log |gamma| of the shifted arguments, as here
    _both("mvlgamma", "mvlgamma", np.array([0.2, 3.0]), 3)
    with pytest.raises(RuntimeError, match="p has to be"):
        dg.mvlgamma(dg.tensor([2.0]), 0)


def test_tensor_methods_and_finite_differences():
    x = dg.tensor(POS, requires_grad=True)
    assert np.allclose(x.lgamma().detach().numpy(), torch.tensor(POS).lgamma().numpy())
    assert np.allclose(x.polygamma(1).detach().numpy(), torch.tensor(POS).polygamma(1).numpy())
    for fn in (dg.lgamma, dg.digamma, lambda t: dg.polygamma(1, t), dg.i0):
        assert gradcheck(fn, (dg.tensor(POS, requires_grad=True),))
    assert gradcheck(dg.logit, (dg.tensor(UNIT, requires_grad=True),))
