"""The gamma family of ``dg.distributions`` (Gamma, Beta, Dirichlet, Poisson) against
``torch.distributions`` on the same parameters (float64): moments, mode, log_prob, entropy, KL, their
gradients, validation errors, sample statistics and reproducibility."""
import numpy as np
import pytest

import distgraph as dg
from distgraph.autograd.gradcheck import gradcheck

torch = pytest.importorskip("torch")
D, T = dg.distributions, torch.distributions
TOL = 1e-10

A = np.array([0.5, 2.0, 3.3, 0.9])
B = np.array([1.5, 0.7, 2.0, 0.4])
CASES = {   # name -> (parameters, a value in the support of each batch element)
    "Gamma": ((A, B), np.array([0.3, 1.2, 4.0, 0.01])),
    "Beta": ((A, B), np.array([0.2, 0.5, 0.9, 0.999])),
    "Dirichlet": ((np.stack([A, B, A[::-1]], -1),), np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8],
                                                              [0.6, 0.2, 0.2], [1 / 3, 1 / 3, 1 / 3]])),
    "Poisson": ((B,), np.array([0.0, 2.0, 5.0, 1.0])),
}


def _make(name, lib, params):
    ts = [(dg.tensor(p, requires_grad=True) if lib is D else torch.tensor(p, requires_grad=True)) for p in params]
    return getattr(lib, name)(*ts), ts


def _close(d, t, what, tol=TOL):
    d = d.detach().numpy() if hasattr(d, "detach") else np.asarray(d)
    t = t.detach().numpy()
    assert d.shape == t.shape, f"{what}: shape {d.shape} vs torch's {t.shape}"
    assert np.allclose(d, t, atol=tol, rtol=tol, equal_nan=True), f"{what}: {d} vs torch's {t}"


@pytest.mark.parametrize("name", list(CASES))
def test_values_and_gradients_match_torch(name):
    params, value = CASES[name]
    dd, dps = _make(name, D, params)
    td, tps = _make(name, T, params)
    assert tuple(dd.batch_shape) == tuple(td.batch_shape) and tuple(dd.event_shape) == tuple(td.event_shape)
    assert repr(dd).split("(")[0] == repr(td).split("(")[0]
    for attr in ("mean", "variance", "mode"):
        _close(getattr(dd, attr), getattr(td, attr), f"{name}.{attr}")
    lp_d, lp_t = dd.log_prob(dg.tensor(value)), td.log_prob(torch.tensor(value))
    _close(lp_d, lp_t, f"{name}.log_prob")
    loss_d, loss_t = lp_d.sum(), lp_t.sum()
    if name != "Poisson":               # (torch's Poisson has no entropy either)
        _close(dd.entropy(), td.entropy(), f"{name}.entropy")
        loss_d, loss_t = loss_d + dd.entropy().sum(), loss_t + td.entropy().sum()
    else:
        with pytest.raises(NotImplementedError):
            dd.entropy()
    loss_d.backward()
    loss_t.backward()
    for i, (p, q) in enumerate(zip(dps, tps)):
        _close(p.grad, q.grad, f"{name}: gradient of parameter {i}", tol=1e-9)   # (trigamma: see test_special)


@pytest.mark.parametrize("name", list(CASES))
def test_kl_divergence_and_its_gradient_match_torch(name):
    params, _ = CASES[name]
    other = [p[::-1].copy() + 0.3 for p in params]
    (dp, dps), (dq, _) = _make(name, D, params), _make(name, D, other)
    (tp, tps), (tq, _) = _make(name, T, params), _make(name, T, other)
    kd, kt = D.kl_divergence(dp, dq), T.kl_divergence(tp, tq)
    _close(kd, kt, f"KL({name}, {name})")
    kd.sum().backward()
    kt.sum().backward()
    for p, q in zip(dps, tps):
        _close(p.grad, q.grad, f"KL({name}) gradient", tol=1e-9)
    assert np.allclose(D.kl_divergence(dp, dp).detach().numpy(), 0, atol=1e-12)


def test_log_prob_passes_finite_differences():
    v = dg.tensor(CASES["Beta"][1])
    assert gradcheck(lambda a, b: D.Beta(a, b).log_prob(v), tuple(dg.tensor(p, requires_grad=True)
                                                                 for p in CASES["Beta"][0]))
    assert gradcheck(lambda c: D.Dirichlet(c).entropy(), (dg.tensor(CASES["Dirichlet"][0][0], requires_grad=True),))
    assert gradcheck(lambda a, b: D.Gamma(a, b).log_prob(dg.tensor(CASES["Gamma"][1])),
                     tuple(dg.tensor(p, requires_grad=True) for p in CASES["Gamma"][0]))


def test_samples_have_the_right_moments_and_repeat_under_the_seed():
    n = 40000
    for name in CASES:
        params, _ = CASES[name]
        dist = getattr(D, name)(*[dg.tensor(p) for p in params])
        dg.manual_seed(5)
        s = dist.sample((n,))
        dg.manual_seed(5)
        assert np.array_equal(s.numpy(), dist.sample((n,)).numpy()), name
        assert tuple(s.shape) == (n,) + tuple(dist.batch_shape) + tuple(dist.event_shape) and not s.requires_grad
        sd = np.sqrt(dist.variance.numpy() / n)
        err = np.abs(s.numpy().mean(0) - dist.mean.numpy())
        assert (err < 6 * sd + 1e-12).all(), (name, err, sd)
        assert bool(dist.support.check(s).all()), name
    assert not D.Gamma(1.0, 1.0).has_rsample          # (torch's has one; see the module docstring)


def test_validation_errors_match_torch():
    bad = [("Gamma", (-1.0, 1.0)), ("Beta", (1.0, 0.0)), ("Poisson", (-0.5,))]
    for name, args in bad:
        with pytest.raises(ValueError):
            getattr(D, name)(*[dg.tensor(a) for a in args])
        with pytest.raises(ValueError):
            getattr(T, name)(*[torch.tensor(a) for a in args])
    for name, value in (("Beta", 1.5), ("Poisson", 0.5), ("Gamma", -1.0)):
        params, _ = CASES[name]
        with pytest.raises(ValueError):
            getattr(D, name)(*[dg.tensor(p) for p in params]).log_prob(dg.tensor(np.full(4, value)))
        with pytest.raises(ValueError):
            getattr(T, name)(*[torch.tensor(p) for p in params]).log_prob(torch.tensor(np.full(4, value)))
    with pytest.raises(ValueError):
        D.Dirichlet(dg.tensor(2.0))
