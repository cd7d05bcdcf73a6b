"""nn.utils.parametrize, parametrizations.weight_norm / spectral_norm and the hook-based weight_norm /
spectral_norm, checked against PyTorch on the same weights (float64)."""
import numpy as np
import pytest

import distgraph as dg
from distgraph.autograd.gradcheck import gradcheck
from distgraph.func import functional_call
from distgraph.nn.utils import parametrizations as P
from distgraph.nn.utils import parametrize

torch = pytest.importorskip("torch")
TP, TZ = torch.nn.utils.parametrizations, torch.nn.utils.parametrize
TOL = dict(rtol=1e-10, atol=1e-10)
pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated:FutureWarning")


def _pair(kind):
    """The same float64 layer in distgraph and torch (same weights)."""
    torch.manual_seed(0)
    if kind == "linear":
        t, d = torch.nn.Linear(4, 3).double(), dg.nn.Linear(4, 3).double()
        x = np.random.default_rng(1).standard_normal((5, 4))
    elif kind == "conv":
        t, d = torch.nn.Conv2d(2, 3, 3).double(), dg.nn.Conv2d(2, 3, 3).double()
        x = np.random.default_rng(1).standard_normal((2, 2, 5, 5))
    else:
        t, d = torch.nn.ConvTranspose2d(2, 3, 2).double(), dg.nn.ConvTranspose2d(2, 3, 2).double()
        x = np.random.default_rng(1).standard_normal((2, 2, 4, 4))
    d.load_state_dict({k: v.detach().numpy().copy() for k, v in t.state_dict().items()})
    return t, d, x


def _copy_state(t, d):
    """torch's state (after its random u/v init) into the distgraph module."""
    d.load_state_dict({k: v.detach().numpy().copy() for k, v in t.state_dict().items()})


def _close(a, b):
    np.testing.assert_allclose(a.detach().numpy() if hasattr(a, "detach") else a,
                               b.detach().numpy() if hasattr(b, "detach") else b, **TOL)


class Symmetric(dg.nn.Module):
    def forward(self, x):
        return x.triu() + x.triu(1).mT

    def right_inverse(self, a):
        return a.triu()


class TSymmetric(torch.nn.Module):
    def forward(self, x):
        return x.triu() + x.triu(1).mT

    def right_inverse(self, a):
        return a.triu()


class Scale(dg.nn.Module):
    def forward(self, x):
        return 2 * x


# ------------------------------------------------------------------ parametrize
def test_register_parametrization_matches_torch_values_grads_and_keys():
    torch.manual_seed(0)
    t, d = torch.nn.Linear(3, 3).double(), dg.nn.Linear(3, 3).double()
    _copy_state(t, d)
    TZ.register_parametrization(t, "weight", TSymmetric())
    parametrize.register_parametrization(d, "weight", Symmetric())
    assert list(d.state_dict()) == list(t.state_dict()) == ["bias", "parametrizations.weight.original"]
    assert type(d).__name__ == "ParametrizedLinear" and isinstance(d, dg.nn.Linear)
    assert parametrize.type_before_parametrizations(d) is dg.nn.Linear
    assert parametrize.is_parametrized(d) and parametrize.is_parametrized(d, "weight")
    assert not parametrize.is_parametrized(d, "bias")
    _close(d.parametrizations.weight.original, t.parametrizations.weight.original)   # right_inverse ran
    _close(d.weight, t.weight)
    np.testing.assert_array_equal(d.weight.detach().numpy(), d.weight.detach().numpy().T)
    x = np.random.default_rng(0).standard_normal((4, 3))
    d(dg.tensor(x)).pow(2).sum().backward()
    t(torch.tensor(x)).pow(2).sum().backward()
    _close(d.parametrizations.weight.original.grad, t.parametrizations.weight.original.grad)
    _close(d.bias.grad, t.bias.grad)


def test_assignment_goes_through_right_inverse():
    d = dg.nn.Linear(3, 3).double()
    parametrize.register_parametrization(d, "weight", Symmetric())
    a = np.arange(9.0).reshape(3, 3)
    d.weight = dg.tensor(a)
    np.testing.assert_array_equal(d.parametrizations.weight.original.detach().numpy(), np.triu(a))
    np.testing.assert_array_equal(d.weight.detach().numpy(), np.triu(a) + np.triu(a, 1).T)
    with pytest.raises(KeyError):
        d.weight = dg.nn.Parameter(dg.tensor(a))


def test_assignment_without_right_inverse_raises_like_torch():
    d = dg.nn.Linear(3, 3)
    parametrize.register_parametrization(d, "weight", Scale())
    with pytest.raises(RuntimeError, match="right_inverse"):
        d.weight = dg.ones(3, 3)


def test_chained_parametrizations_apply_in_order_and_gradcheck():
    d = dg.nn.Linear(3, 3).double()
    parametrize.register_parametrization(d, "weight", Symmetric())
    parametrize.register_parametrization(d, "weight", Scale())
    assert len(d.parametrizations.weight) == 2
    orig = d.parametrizations.weight.original.detach().numpy()
    sym = np.triu(orig) + np.triu(orig, 1).T
    np.testing.assert_allclose(d.weight.detach().numpy(), 2 * sym, **TOL)
    x = dg.tensor(np.random.default_rng(2).standard_normal((2, 3)))
    assert gradcheck(lambda w: functional_call(d, {"parametrizations.weight.original": w}, x).sin(),
                     [d.parametrizations.weight.original])


def test_cached_computes_once():
    calls = []

    class Counting(dg.nn.Module):
        def forward(self, x):
            calls.append(1)
            return x * 1.0

    d = dg.nn.Linear(2, 2)
    parametrize.register_parametrization(d, "weight", Counting())
    calls.clear()
    with parametrize.cached():
        a, b = d.weight, d.weight
    assert a is b and len(calls) == 1
    d.weight, d.weight
    assert len(calls) == 3


@pytest.mark.parametrize("leave", [True, False])
def test_remove_parametrizations_matches_torch(leave):
    torch.manual_seed(0)
    t, d = torch.nn.Linear(3, 3).double(), dg.nn.Linear(3, 3).double()
    _copy_state(t, d)
    TZ.register_parametrization(t, "weight", TSymmetric())
    parametrize.register_parametrization(d, "weight", Symmetric())
    original = d.parametrizations.weight.original
    TZ.remove_parametrizations(t, "weight", leave_parametrized=leave)
    parametrize.remove_parametrizations(d, "weight", leave_parametrized=leave)
    assert type(d) is dg.nn.Linear and not hasattr(d, "parametrizations")
    assert d.weight is original   # the same Parameter object (an optimizer holding it keeps working)
    assert list(d.state_dict()) == list(t.state_dict())
    _close(d.weight, t.weight)


def test_parametrize_errors_like_torch():
    d = dg.nn.Linear(3, 3)

    class Row(dg.nn.Module):
        def forward(self, x):
            return x[0]
    with pytest.raises(ValueError, match="shape"):
        parametrize.register_parametrization(d, "weight", Row())
    assert "weight" in d._parameters   # unchanged
    with pytest.raises(ValueError):
        parametrize.register_parametrization(d, "nope", Symmetric())
    with pytest.raises(ValueError):
        parametrize.remove_parametrizations(d, "weight")
    parametrize.register_parametrization(d, "weight", Row(), unsafe=True)
    assert d.weight.shape == (3,)
    P.weight_norm(w := dg.nn.Linear(3, 2))
    with pytest.raises(ValueError, match="sequence of tensors"):
        parametrize.remove_parametrizations(w, "weight", leave_parametrized=False)


# ------------------------------------------------------------------ weight norm (parametrization)
@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("dim", [0, 1, None, -1])
def test_weight_norm_parametrization_matches_torch(kind, dim):
    t, d, x = _pair(kind)
    TP.weight_norm(t, dim=dim)
    P.weight_norm(d, dim=dim)
    sd = t.state_dict()
    assert list(d.state_dict()) == list(sd)
    for k, v in d.state_dict().items():
        assert v.shape == tuple(sd[k].shape), k
        _close(v, sd[k])
    _close(d.weight, t.weight)
    _train_step_matches(t, d, x)
    _close(d.weight, t.weight)


def test_weight_norm_gradcheck():
    d = dg.nn.Linear(3, 2).double()
    P.weight_norm(d)
    g, v = d.parametrizations.weight.original0, d.parametrizations.weight.original1
    x = dg.tensor(np.random.default_rng(3).standard_normal((4, 3)))
    keys = ["parametrizations.weight.original0", "parametrizations.weight.original1"]
    assert gradcheck(lambda a, b: functional_call(d, dict(zip(keys, (a, b))), x), [g, v])


def _train_step_matches(t, d, x, steps=2):
    topt = torch.optim.SGD(t.parameters(), lr=0.1)
    dopt = dg.optim.SGD(d.parameters(), lr=0.1)
    for _ in range(steps):
        tl = t(torch.tensor(x)).tanh().pow(2).sum()
        dl = d(dg.tensor(x)).tanh().pow(2).sum()
        np.testing.assert_allclose(dl.item(), tl.item(), **TOL)
        topt.zero_grad()
        dopt.zero_grad()
        tl.backward()
        dl.backward()
        for (kt, pt), (kd, pd) in zip(t.named_parameters(), d.named_parameters()):
            assert kt == kd
            _close(pd.grad, pt.grad)
        topt.step()
        dopt.step()
    for k, v in t.state_dict().items():
        _close(d.state_dict()[k], v)


# ------------------------------------------------------------------ spectral norm (parametrization)
@pytest.mark.parametrize("kind", ["linear", "conv", "convT"])
def test_spectral_norm_parametrization_matches_torch(kind):
    t, d, x = _pair(kind)
    TP.spectral_norm(t)
    P.spectral_norm(d)
    assert list(d.state_dict()) == list(t.state_dict())
    _copy_state(t, d)   # the random starting u, v: torch's
    t.eval(), d.eval()
    _close(d.weight, t.weight)
    t.train(), d.train()
    _train_step_matches(t, d, x, steps=3)   # power iteration in training mode, buffers updated in place
    t.eval(), d.eval()
    _close(d.weight, t.weight)
    w = d.weight.detach().numpy()
    w = np.moveaxis(w, 1, 0) if kind == "convT" else w
    s = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)
    assert s[0] == pytest.approx(1.0, rel=2e-2)   # a power-iteration estimate


def test_spectral_norm_errors_like_torch():
    with pytest.raises(ValueError):
        P.spectral_norm(dg.nn.Linear(2, 2), n_power_iterations=0)
    with pytest.raises(IndexError):
        P.spectral_norm(dg.nn.Linear(2, 2), dim=2)
    with pytest.raises(ValueError):
        P.spectral_norm(dg.nn.Linear(2, 2), name="nope")


# ------------------------------------------------------------------ hook-based (old) forms
@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("dim", [0, None])
def test_old_weight_norm_matches_torch(kind, dim):
    t, d, x = _pair(kind)
    torch.nn.utils.weight_norm(t, dim=dim)
    dg.nn.utils.weight_norm(d, dim=dim)
    assert list(d.state_dict()) == list(t.state_dict()) == ["bias", "weight_g", "weight_v"]
    for k, v in t.state_dict().items():
        assert d.state_dict()[k].shape == tuple(v.shape)
    _train_step_matches(t, d, x)
    torch.nn.utils.remove_weight_norm(t)
    dg.nn.utils.remove_weight_norm(d)
    assert list(d.state_dict()) == list(t.state_dict())
    _close(d.weight, t.weight)


def test_old_weight_norm_errors_like_torch():
    d = dg.nn.Linear(2, 2)
    with pytest.raises(ValueError):
        dg.nn.utils.remove_weight_norm(d)
    dg.nn.utils.weight_norm(d)
    with pytest.raises(RuntimeError):
        dg.nn.utils.weight_norm(d)


@pytest.mark.parametrize("kind", ["linear", "conv", "convT"])
def test_old_spectral_norm_matches_torch(kind):
    t, d, x = _pair(kind)
    torch.nn.utils.spectral_norm(t)
    dg.nn.utils.spectral_norm(d)
    assert list(d.state_dict()) == list(t.state_dict()) == ["bias", "weight_orig", "weight_u", "weight_v"]
    assert [tuple(v.shape) for v in t.state_dict().values()] == [v.shape for v in d.state_dict().values()]
    _copy_state(t, d)
    _train_step_matches(t, d, x, steps=3)
    t.eval(), d.eval()
    yt, yd = t(torch.tensor(x)), d(dg.tensor(x))
    _close(yd, yt)
    torch.nn.utils.remove_spectral_norm(t)
    dg.nn.utils.remove_spectral_norm(d)
    assert list(d.state_dict()) == list(t.state_dict())
    _close(d.weight, t.weight)


def test_old_spectral_norm_errors_like_torch():
    d = dg.nn.Linear(2, 2)
    with pytest.raises(ValueError):
        dg.nn.utils.remove_spectral_norm(d)
    dg.nn.utils.spectral_norm(d)
    with pytest.raises(RuntimeError):
        dg.nn.utils.spectral_norm(d)
    with pytest.raises(ValueError):
        dg.nn.utils.spectral_norm(dg.nn.Linear(2, 2), n_power_iterations=0)
