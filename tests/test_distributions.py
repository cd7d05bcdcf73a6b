"""distgraph.distributions checked against torch.distributions on the same float64 parameters:
values (log_prob, entropy, moments, cdf/icdf, kl) to 1e-10, shapes, gradients (against torch and
central finite differences), validation errors, sample statistics with bounds from the sample
size, reproducibility under dg.manual_seed, and two small training scripts run both ways."""
import math
import re

import numpy as np
import pytest

import distgraph as dg
import distgraph.distributions as D
from distgraph.autograd.gradcheck import gradcheck

torch = pytest.importorskip("torch")
T = torch.distributions

RNG = np.random.default_rng(1234)


def _spd(n, batch=()):
    b = RNG.standard_normal(batch + (n, n))
    return b @ np.swapaxes(b, -1, -2) + n * np.eye(n)


def _tril(n, batch=()):
    low = np.tril(RNG.standard_normal(batch + (n, n)) * 0.5)
    idx = np.arange(n)
    low[..., idx, idx] = RNG.uniform(0.5, 1.5, batch + (n,))
    return low


def _onehot(index, n):
    return np.eye(n)[index]


LOW = RNG.standard_normal(3)
HIGH = LOW + RNG.uniform(0.5, 2.0, 3)
# name -> (build(M, p) with M the module and p the dict of parameters, parameters as arrays or floats,
#          a value for log_prob/cdf, whether the family has cdf/icdf)
CASES = {
    "normal": (lambda M, p: M.Normal(p["loc"], p["scale"]),
               {"loc": RNG.standard_normal((3, 2)), "scale": RNG.uniform(0.5, 2, (3, 2))},
               RNG.standard_normal((4, 3, 2)), True),
    "normal_numbers": (lambda M, p: M.Normal(0.3, 1.7), {}, RNG.standard_normal(5), True),
    "normal_broadcast": (lambda M, p: M.Normal(p["loc"], 1.5), {"loc": RNG.standard_normal(2)},
                         RNG.standard_normal((3, 1)), True),
    "laplace": (lambda M, p: M.Laplace(p["loc"], p["scale"]),
                {"loc": RNG.standard_normal(3), "scale": RNG.uniform(0.5, 2, 3)}, RNG.standard_normal((4, 3)), True),
    "uniform": (lambda M, p: M.Uniform(p["low"], p["high"]), {"low": LOW, "high": HIGH},
                LOW + RNG.uniform(0.05, 0.95, (4, 3)) * (HIGH - LOW), True),
    "exponential": (lambda M, p: M.Exponential(p["rate"]), {"rate": RNG.uniform(0.5, 2, 3)},
                    RNG.exponential(1.0, (4, 3)), True),
    "bernoulli_probs": (lambda M, p: M.Bernoulli(probs=p["probs"]), {"probs": RNG.uniform(0.1, 0.9, 3)},
                        RNG.integers(0, 2, (4, 3)).astype(float), False),
    "bernoulli_logits": (lambda M, p: M.Bernoulli(logits=p["logits"]), {"logits": RNG.standard_normal(3) * 2},
                         RNG.integers(0, 2, (4, 3)).astype(float), False),
    "categorical_probs": (lambda M, p: M.Categorical(probs=p["probs"]), {"probs": RNG.uniform(0.1, 1, (2, 4))},
                          RNG.integers(0, 4, (5, 2)), False),
    "categorical_logits": (lambda M, p: M.Categorical(logits=p["logits"]), {"logits": RNG.standard_normal((2, 4))},
                           RNG.integers(0, 4, (5, 2)), False),
    "onehot_logits": (lambda M, p: M.OneHotCategorical(logits=p["logits"]), {"logits": RNG.standard_normal((2, 4))},
                      _onehot(RNG.integers(0, 4, (5, 2)), 4), False),
    "mvn_cov": (lambda M, p: M.MultivariateNormal(p["loc"], covariance_matrix=p["cov"]),
                {"loc": RNG.standard_normal((2, 3)), "cov": _spd(3)}, RNG.standard_normal((4, 2, 3)), False),
    "mvn_tril": (lambda M, p: M.MultivariateNormal(p["loc"], scale_tril=p["tril"]),
                 {"loc": RNG.standard_normal(3), "tril": _tril(3, (2,))}, RNG.standard_normal((4, 2, 3)), False),
    "mvn_precision": (lambda M, p: M.MultivariateNormal(p["loc"], precision_matrix=p["prec"]),
                      {"loc": RNG.standard_normal(3), "prec": _spd(3)}, RNG.standard_normal((4, 1, 3)), False),
    "independent": (lambda M, p: M.Independent(M.Normal(p["loc"], p["scale"]), 1),
                    {"loc": RNG.standard_normal((3, 2)), "scale": RNG.uniform(0.5, 2, (3, 2))},
                    RNG.standard_normal((4, 3, 2)), False),
}
RSAMPLE = ["normal", "normal_broadcast", "laplace", "uniform", "exponential", "mvn_tril", "mvn_cov", "independent"]


def _params(params, lib, grad=False):
    out = {}
    for k, v in params.items():
        if lib == "dg":
            out[k] = dg.tensor(np.asarray(v, dtype=np.float64), requires_grad=grad)
        else:
            out[k] = torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=grad)
    return out


def _value(value, lib):
    if np.issubdtype(np.asarray(value).dtype, np.integer):
        return dg.tensor(value) if lib == "dg" else torch.tensor(value)
    return dg.tensor(np.asarray(value, dtype=np.float64)) if lib == "dg" else torch.tensor(value)


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return x.detach().numpy()


def _close(got, want, what, float32=False):
    """Equal to 1e-10 (1e-6 where the parameters are float32: given as Python numbers, whose float32
    intermediates torch and distgraph round at different steps)."""
    got, want = _np(got), _np(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs torch {want.shape}"
    tol = 1e-6 if float32 or want.dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True, err_msg=what)


def _pair(name, grad=False):
    build, params, _, _ = CASES[name]
    pd, pt = _params(params, "dg", grad), _params(params, "torch", grad)
    return build(D, pd), build(T, pt), pd, pt


# ================================================================ values and shapes
@pytest.mark.parametrize("name", list(CASES))
def test_values_and_shapes_match_torch(name):
    d, t, _, _ = _pair(name)
    value = CASES[name][2]
    assert tuple(d.batch_shape) == tuple(t.batch_shape) and tuple(d.event_shape) == tuple(t.event_shape)
    _close(d.log_prob(_value(value, "dg")), t.log_prob(_value(value, "torch")), "log_prob")
    for attr in ("mean", "variance", "stddev", "mode"):
        _close(getattr(d, attr), getattr(t, attr), attr)
    _close(d.entropy(), t.entropy(), "entropy")
    _close(d.perplexity(), t.perplexity(), "perplexity")
    for shape in [(), (5,), (2, 3)]:
        assert tuple(d.sample(shape).shape) == tuple(t.sample(shape).shape)
        assert d.sample(shape).dtype.name == str(t.sample(shape).dtype).replace("torch.", "")
        if t.has_rsample:
            assert d.has_rsample and tuple(d.rsample(shape).shape) == tuple(t.rsample(shape).shape)
    assert d.has_rsample == t.has_rsample and d.has_enumerate_support == t.has_enumerate_support
    if CASES[name][3]:
        f32 = d.mean.dtype == dg.float32
        _close(d.cdf(_value(value, "dg")), t.cdf(_value(value, "torch")), "cdf", f32)
        q = np.linspace(0.05, 0.95, 6).reshape((6,) + (1,) * len(d.batch_shape)) * np.ones(d.batch_shape)
        _close(d.icdf(dg.tensor(q)), t.icdf(torch.tensor(q)), "icdf")


@pytest.mark.parametrize("name", list(CASES))
def test_expand_and_repr_match_torch(name):
    d, t, _, _ = _pair(name)
    shape = (2,) + tuple(t.batch_shape)
    de, te = d.expand(shape), t.expand(shape)
    assert type(de) is type(d) and tuple(de.batch_shape) == shape == tuple(te.batch_shape)
    assert tuple(de.event_shape) == tuple(te.event_shape)
    value = CASES[name][2]
    _close(de.log_prob(_value(value[:1], "dg")), te.log_prob(_value(value[:1], "torch")), "expanded log_prob")
    _close(de.entropy(), te.entropy(), "expanded entropy")
    # torch prints shapes as torch.Size([3, 2]), distgraph as (3, 2)
    want = re.sub(r"torch\.Size\(\[([^\]]*)\]\)",
                  lambda m: str(tuple(int(n) for n in m.group(1).split(",") if n.strip())), repr(t))
    assert repr(d) == want


@pytest.mark.parametrize("name", ["bernoulli_probs", "categorical_logits", "onehot_logits"])
def test_enumerate_support_matches_torch(name):
    d, t, _, _ = _pair(name)
    for expand in (True, False):
        _close(d.enumerate_support(expand).double(), t.enumerate_support(expand).double(), "enumerate_support")


def test_categorical_normalises_logits_and_probs_as_torch():
    logits = RNG.standard_normal((2, 5)) * 3
    d, t = D.Categorical(logits=dg.tensor(logits)), T.Categorical(logits=torch.tensor(logits))
    _close(d.logits, t.logits, "logits")
    _close(d.probs, t.probs, "probs")
    probs = RNG.uniform(0, 1, (2, 5))
    d, t = D.Categorical(probs=dg.tensor(probs)), T.Categorical(probs=torch.tensor(probs))
    _close(d.probs, t.probs, "probs")
    _close(d.logits, t.logits, "logits")
    # a zero probability: finite entropy, -inf log_prob, like torch
    probs = np.array([0.0, 0.3, 0.7])
    d, t = D.Categorical(probs=dg.tensor(probs)), T.Categorical(probs=torch.tensor(probs))
    _close(d.entropy(), t.entropy(), "entropy with a zero probability")
    _close(d.log_prob(dg.tensor([0, 2])), t.log_prob(torch.tensor([0, 2])), "log_prob with a zero probability")


def test_bernoulli_log_prob_from_extreme_logits_matches_torch():
    logits = np.array([-40.0, -5.0, 0.0, 5.0, 40.0])
    d, t = D.Bernoulli(logits=dg.tensor(logits)), T.Bernoulli(logits=torch.tensor(logits))
    for v in (0.0, 1.0):
        _close(d.log_prob(dg.tensor(np.full(5, v))), t.log_prob(torch.tensor(np.full(5, v))), f"log_prob({v})")
    _close(d.entropy(), t.entropy(), "entropy")


def test_constraints_names_and_support():
    assert repr(D.Normal.arg_constraints["scale"]) == repr(T.Normal.arg_constraints["scale"])
    for name in ["normal", "uniform", "exponential", "bernoulli_probs", "categorical_logits", "onehot_logits",
                 "mvn_cov", "independent"]:
        d, t, _, _ = _pair(name)
        assert repr(d.support).split("(")[0] == repr(t.support).split("(")[0]
        assert set(type(d).arg_constraints if isinstance(type(d).arg_constraints, dict) else d.arg_constraints) \
            == set(type(t).arg_constraints if isinstance(type(t).arg_constraints, dict) else t.arg_constraints)
    c = D.constraints
    assert bool(c.simplex.check(dg.tensor([0.2, 0.8]))) and not bool(c.simplex.check(dg.tensor([0.2, 0.9])))
    assert bool(c.positive_definite.check(dg.tensor(_spd(3))))
    assert not bool(c.positive_definite.check(dg.tensor(np.array([[1.0, 2.0], [2.0, 1.0]]))))


# ================================================================ gradients
@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][1]])
def test_log_prob_entropy_cdf_gradients_match_torch(name):
    d, t, pd, pt = _pair(name, grad=True)
    value = CASES[name][2]
    ld = d.log_prob(_value(value, "dg")).sum() + d.entropy().sum()
    lt = t.log_prob(_value(value, "torch")).sum() + t.entropy().sum()
    if CASES[name][3]:
        ld = ld + d.cdf(_value(value, "dg")).sum()
        lt = lt + t.cdf(_value(value, "torch")).sum()
    ld.backward()
    lt.backward()
    for k in pd:
        _close(pd[k].grad, pt[k].grad, f"d/d{k}")


def _fd_inputs(name):
    """Parameters for finite differences: matrices that must stay symmetric positive definite are
    built inside the function from a free factor (so every entry can be perturbed)."""
    build, params, _, _ = CASES[name]
    p = _params(params, "dg", grad=True)
    wrap = {"cov": lambda b: b @ b.mT + 3 * dg.eye(3, dtype=dg.float64),
            "prec": lambda b: b @ b.mT + 3 * dg.eye(3, dtype=dg.float64)}
    for k in wrap:
        if k in p:
            p[k] = dg.tensor(np.linalg.cholesky(params[k] - 3 * np.eye(3)), requires_grad=True)
    keys = list(p)

    def make(*xs):  # perturbed matrices leave the support: no validation
        q = {k: (wrap[k](x) if k in wrap else x) for k, x in zip(keys, xs)}
        D.Distribution.set_default_validate_args(False)
        try:
            return build(D, q)
        finally:
            D.Distribution.set_default_validate_args(True)
    return make, [p[k] for k in keys]


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][1]])
def test_log_prob_gradients_pass_finite_differences(name):
    make, inputs = _fd_inputs(name)
    value = _value(CASES[name][2], "dg")
    assert gradcheck(lambda *xs: make(*xs).log_prob(value), inputs)
    if make(*inputs).entropy().requires_grad:  # (not when it depends on constants only)
        assert gradcheck(lambda *xs: make(*xs).entropy(), inputs)


@pytest.mark.parametrize("name", RSAMPLE)
def test_rsample_gradients_pass_finite_differences(name):
    make, inputs = _fd_inputs(name)

    def draw(*xs):
        dg.manual_seed(7)  # the same noise at every evaluation
        return make(*xs).rsample((3,))
    assert gradcheck(draw, inputs)


def test_normal_rsample_gradient_is_the_pathwise_one():
    loc = dg.tensor(np.array([0.5, -1.0]), requires_grad=True)
    scale = dg.tensor(np.array([2.0, 0.3]), requires_grad=True)
    x = D.Normal(loc, scale).rsample((1000,))
    x.sum().backward()
    eps = (x.detach().numpy() - loc.detach().numpy()) / scale.detach().numpy()
    np.testing.assert_allclose(loc.grad.numpy(), [1000.0, 1000.0])
    np.testing.assert_allclose(scale.grad.numpy(), eps.sum(0), rtol=1e-10)


# ================================================================ kl divergence
def _mvn(M, p, a, b):
    return M.MultivariateNormal(p[a], scale_tril=p[b]) if b.startswith("tril") else M.MultivariateNormal(
        p[a], covariance_matrix=p[b])


KL_CASES = {
    "normal": (lambda M, p: (M.Normal(p["a"], p["b"]), M.Normal(p["c"], p["d"])),
               {"a": RNG.standard_normal((2, 3)), "b": RNG.uniform(0.5, 2, (2, 3)), "c": RNG.standard_normal(3),
                "d": RNG.uniform(0.5, 2, 3)}),
    "laplace": (lambda M, p: (M.Laplace(p["a"], p["b"]), M.Laplace(p["c"], p["d"])),
                {"a": RNG.standard_normal(3), "b": RNG.uniform(0.5, 2, 3), "c": RNG.standard_normal(3),
                 "d": RNG.uniform(0.5, 2, 3)}),
    "exponential": (lambda M, p: (M.Exponential(p["a"]), M.Exponential(p["b"])),
                    {"a": RNG.uniform(0.5, 2, 3), "b": RNG.uniform(0.5, 2, 3)}),
    "uniform": (lambda M, p: (M.Uniform(p["a"], p["b"]), M.Uniform(p["c"], p["d"])),
                {"a": np.array([0.0, 0.0, -1.0]), "b": np.array([1.0, 2.0, 1.0]),
                 "c": np.array([-1.0, 0.5, -2.0]), "d": np.array([2.0, 3.0, 0.5])}),
    "bernoulli": (lambda M, p: (M.Bernoulli(p["a"]), M.Bernoulli(logits=p["b"])),
                  {"a": RNG.uniform(0.1, 0.9, 4), "b": RNG.standard_normal(4)}),
    "categorical": (lambda M, p: (M.Categorical(logits=p["a"]), M.Categorical(probs=p["b"])),
                    {"a": RNG.standard_normal((2, 4)), "b": RNG.uniform(0.1, 1, 4)}),
    "onehot": (lambda M, p: (M.OneHotCategorical(logits=p["a"]), M.OneHotCategorical(logits=p["b"])),
               {"a": RNG.standard_normal((2, 4)), "b": RNG.standard_normal((2, 4))}),
    "mvn": (lambda M, p: (_mvn(M, p, "a", "cov"), _mvn(M, p, "c", "tril")),
            {"a": RNG.standard_normal((2, 3)), "cov": _spd(3), "c": RNG.standard_normal(3), "tril": _tril(3, (2,))}),
    "mvn_tril_cov": (lambda M, p: (_mvn(M, p, "a", "tril"), _mvn(M, p, "c", "cov")),
                     {"a": RNG.standard_normal(3), "tril": _tril(3), "c": RNG.standard_normal((4, 3)),
                      "cov": _spd(3, (4,))}),
    "independent": (lambda M, p: (M.Independent(M.Normal(p["a"], p["b"]), 1),
                                  M.Independent(M.Normal(p["c"], p["d"]), 1)),
                    {"a": RNG.standard_normal((2, 3)), "b": RNG.uniform(0.5, 2, (2, 3)),
                     "c": RNG.standard_normal(3), "d": RNG.uniform(0.5, 2, 3)}),
}


@pytest.mark.parametrize("name", list(KL_CASES))
def test_kl_values_and_gradients_match_torch(name):
    build, params = KL_CASES[name]
    pd, pt = _params(params, "dg", True), _params(params, "torch", True)
    kd, kt = D.kl_divergence(*build(D, pd)), T.kl_divergence(*build(T, pt))
    _close(kd, kt, "kl")
    finite_d, finite_t = kd[dg.isfinite(kd)], kt[torch.isfinite(kt)]
    finite_d.sum().backward()
    finite_t.sum().backward()
    for k in pd:
        _close(pd[k].grad, pt[k].grad, f"dkl/d{k}")


@pytest.mark.parametrize("name", ["normal", "bernoulli", "categorical", "independent", "laplace"])
def test_kl_gradients_pass_finite_differences(name):
    build, params = KL_CASES[name]
    p = _params(params, "dg", True)
    keys = list(p)
    assert gradcheck(lambda *xs: D.kl_divergence(*build(D, dict(zip(keys, xs)))), [p[k] for k in keys])


def test_kl_mvn_gradients_pass_finite_differences():
    a, c = (dg.tensor(RNG.standard_normal(3), requires_grad=True) for _ in range(2))
    b, d = (dg.tensor(RNG.standard_normal((3, 3)), requires_grad=True) for _ in range(2))

    def kl(a, b, c, d):
        eye = 3 * dg.eye(3, dtype=dg.float64)
        return D.kl_divergence(D.MultivariateNormal(a, b @ b.mT + eye, validate_args=False),
                               D.MultivariateNormal(c, d @ d.mT + eye, validate_args=False))
    assert gradcheck(kl, [a, b, c, d])


def test_register_kl_dispatches_to_the_most_specific_rule():
    class MyNormal(D.Normal):
        pass

    p, q = MyNormal(0.0, 1.0), D.Normal(1.0, 2.0)
    base = float(D.kl_divergence(p, q))
    assert base == pytest.approx(float(T.kl_divergence(T.Normal(0.0, 1.0), T.Normal(1.0, 2.0))), rel=1e-6)

    @D.register_kl(MyNormal, D.Normal)
    def _kl(p, q):
        return dg.tensor(-1.0)
    assert float(D.kl_divergence(p, q)) == -1.0
    assert float(D.kl_divergence(D.Normal(0.0, 1.0), q)) == pytest.approx(base)
    with pytest.raises(NotImplementedError):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Bernoulli(0.5))
    with pytest.raises(TypeError):
        D.register_kl(int, D.Normal)


# ================================================================ validation
def _raises_like_torch(fn):
    """Run ``fn(M, t)`` with distgraph and with torch (``t`` builds a float64 tensor); both must raise
    the same type of error."""
    errors = []
    for M, t in ((D, lambda x: dg.tensor(np.asarray(x, dtype=np.float64))),
                 (T, lambda x: torch.tensor(np.asarray(x, dtype=np.float64)))):
        with pytest.raises(Exception) as info:
            fn(M, t)
        errors.append(type(info.value))
    assert errors[0] is errors[1], f"distgraph raised {errors[0].__name__}, torch {errors[1].__name__}"
    return errors[0]


INVALID = {
    "normal_scale": lambda M, t: M.Normal(t(0.0), t(-1.0)),
    "normal_nan_loc": lambda M, t: M.Normal(t(float("nan")), t(1.0)),
    "normal_value_not_tensor": lambda M, t: M.Normal(t(0.0), t(1.0)).log_prob(0.5),
    "normal_value_shape": lambda M, t: M.Normal(t([0.0, 0.0]), t(1.0)).log_prob(t([0.0, 0.0, 0.0])),
    "laplace_scale": lambda M, t: M.Laplace(t(0.0), t(0.0)),
    "uniform_order": lambda M, t: M.Uniform(t(1.0), t(0.0)),
    "uniform_outside": lambda M, t: M.Uniform(t(0.0), t(1.0)).log_prob(t(2.0)),
    "exponential_rate": lambda M, t: M.Exponential(t(-1.0)),
    "exponential_negative_value": lambda M, t: M.Exponential(t(1.0)).log_prob(t(-1.0)),
    "bernoulli_neither": lambda M, t: M.Bernoulli(),
    "bernoulli_both": lambda M, t: M.Bernoulli(t(0.5), logits=t(0.0)),
    "bernoulli_probs": lambda M, t: M.Bernoulli(t(1.5)),
    "bernoulli_value": lambda M, t: M.Bernoulli(t(0.3)).log_prob(t(0.5)),
    "categorical_probs": lambda M, t: M.Categorical(t([0.5, -0.1])),
    "categorical_0d": lambda M, t: M.Categorical(t(1.0)),
    "categorical_value": lambda M, t: M.Categorical(t([1.0, 1.0, 1.0])).log_prob(t(3.0).long()),
    "onehot_value": lambda M, t: M.OneHotCategorical(t([1.0, 1.0, 1.0])).log_prob(t([1.0, 1.0, 0.0])),
    "mvn_none": lambda M, t: M.MultivariateNormal(t([0.0, 0.0])),
    "mvn_two": lambda M, t: M.MultivariateNormal(t([0.0, 0.0]), t(np.eye(2)), scale_tril=t(np.eye(2))),
    "mvn_0d_loc": lambda M, t: M.MultivariateNormal(t(0.0), t(np.eye(1))),
    "mvn_not_pd": lambda M, t: M.MultivariateNormal(t([0.0, 0.0]), t([[1.0, 2.0], [2.0, 1.0]])),
    "mvn_not_tril": lambda M, t: M.MultivariateNormal(t([0.0, 0.0]), scale_tril=t([[1.0, 1.0], [0.0, 1.0]])),
    "mvn_1d_matrix": lambda M, t: M.MultivariateNormal(t([0.0, 0.0]), t([1.0, 1.0])),
    "mvn_value_event": lambda M, t: M.MultivariateNormal(t([0.0, 0.0]), t(np.eye(2))).log_prob(t([0.0, 0.0, 0.0])),
    "independent_ndims": lambda M, t: M.Independent(M.Normal(t(0.0), t(1.0)), 1),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_validation_errors_match_torch(name):
    _raises_like_torch(INVALID[name])


def test_validation_can_be_switched_off():
    d = D.Normal(dg.tensor(0.0), dg.tensor(-1.0), validate_args=False)
    with np.errstate(invalid="ignore"):
        assert math.isnan(float(d.log_prob(dg.tensor(0.0))))  # log of a negative scale, no error
    assert D.Uniform(0.0, 1.0, validate_args=False).log_prob(dg.tensor(2.0)).item() == -math.inf
    try:
        D.Distribution.set_default_validate_args(False)
        D.Exponential(-1.0)  # no error
        D.Bernoulli(0.3).log_prob(dg.tensor(0.5))
    finally:
        D.Distribution.set_default_validate_args(True)
    with pytest.raises(ValueError):
        D.Exponential(-1.0)
    with pytest.raises(ValueError):
        D.Distribution.set_default_validate_args("yes")


# ================================================================ sampling
def _check_moments(x, mean, var, what):
    """Sample mean and variance of ``x`` (draws along dim 0) within 6 standard errors, the errors
    estimated from the draws themselves (``sd / sqrt(n)``, and the sd of ``(x - mean)^2`` for the variance)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    m, v = x.mean(0), x.var(0)
    se_m = x.std(0) / math.sqrt(n)
    se_v = ((x - x.mean(0)) ** 2).std(0) / math.sqrt(n)
    assert np.all(np.abs(m - mean) < 6 * se_m + 1e-12), f"{what}: mean {m} vs {mean} (se {se_m})"
    assert np.all(np.abs(v - var) < 6 * se_v + 1e-12), f"{what}: variance {v} vs {var} (se {se_v})"


@pytest.mark.parametrize("name", ["normal", "laplace", "uniform", "exponential", "bernoulli_probs", "onehot_logits",
                                  "mvn_cov", "mvn_precision", "independent"])
def test_sample_mean_and_variance_match_torch_moments(name):
    dg.manual_seed(0)
    d, t, _, _ = _pair(name)
    x = d.sample((20000,)).numpy()
    _check_moments(x, t.mean.detach().numpy(), t.variance.detach().numpy(), name)
    if name.startswith("mvn"):  # the whole covariance, not only its diagonal
        xc = x - x.mean(0)
        cov = np.einsum("n...i,n...j->...ij", xc, xc) / x.shape[0]
        want = t.covariance_matrix.detach().numpy()
        var = np.diagonal(want, axis1=-2, axis2=-1)
        # the sd of a Gaussian sample covariance: sqrt((S_ii S_jj + S_ij^2) / n)
        se = np.sqrt(var[..., :, None] * var[..., None, :] + want ** 2) / math.sqrt(x.shape[0])
        assert np.all(np.abs(cov - want) < 6 * se), f"{name}: covariance {cov} vs {want}"


def test_categorical_sample_frequencies_match_probs():
    dg.manual_seed(0)
    probs = np.array([[0.1, 0.0, 0.6, 0.3], [0.25, 0.25, 0.25, 0.25]])
    x = D.Categorical(probs=dg.tensor(probs)).sample((20000,)).numpy()
    assert x.dtype == np.int64 and x.shape == (20000, 2)
    n = x.shape[0]
    freq = np.stack([(x == k).mean(0) for k in range(4)], -1)
    assert np.all(np.abs(freq - probs) <= 6 * np.sqrt(probs * (1 - probs) / n) + 1e-12), freq
    assert not np.any(x[:, 0] == 1)  # a zero probability is never drawn


@pytest.mark.parametrize("name", list(CASES))
def test_samples_are_reproducible_under_manual_seed(name):
    d = CASES[name][0](D, _params(CASES[name][1], "dg"))
    dg.manual_seed(123)
    a = d.sample((50,)).numpy()
    dg.manual_seed(123)
    b = d.sample((50,)).numpy()
    c = d.sample((50,)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    s = d.sample((50,))
    assert not s.requires_grad and bool(dg.isfinite(s.double()).all())
    if d.support is not None and not name.startswith("uniform"):
        assert bool(d.support.check(s).all())


def test_sample_is_outside_the_graph_rsample_inside():
    loc = dg.tensor([0.0, 1.0], requires_grad=True)
    d = D.Normal(loc, 1.0)
    assert not d.sample().requires_grad and d.rsample().requires_grad
    with pytest.raises(NotImplementedError):
        D.Categorical(logits=loc).rsample()


# ================================================================ end to end, both ways
def _reinforce(lib):
    """REINFORCE on a 4-armed bandit (rewards 0.1, 0.2, 0.9, 0.3 plus noise): the policy must come to
    prefer arm 2."""
    lib.manual_seed(0)
    rewards = lib.tensor([0.1, 0.2, 0.9, 0.3])
    logits = lib.zeros(4, requires_grad=True)
    opt = lib.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        policy = lib.distributions.Categorical(logits=logits)
        actions = policy.sample((32,))
        r = rewards[actions] + 0.1 * lib.randn(32)
        loss = -(policy.log_prob(actions) * (r - r.mean())).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lib.distributions.Categorical(logits=logits).probs.detach().numpy()


def _fit_normal(lib):
    """Fit N(mu, sigma) to data from N(3, 0.5) by maximising an ELBO-like objective through rsample,
    with a KL term to a wide prior."""
    lib.manual_seed(0)
    data = 3.0 + 0.5 * lib.randn(500)
    mu = lib.zeros(1, requires_grad=True)
    log_sigma = lib.zeros(1, requires_grad=True)
    opt = lib.optim.Adam([mu, log_sigma], lr=0.05)
    prior = lib.distributions.Normal(0.0, 10.0)
    for _ in range(400):
        q = lib.distributions.Normal(mu, log_sigma.exp())
        z = q.rsample((16,))
        lik = lib.distributions.Normal(z, 0.5).log_prob(data[None, :]).sum(-1).mean()
        loss = -lik + lib.distributions.kl_divergence(q, prior).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mu.detach().numpy(), log_sigma.exp().detach().numpy(), data.mean().item()


@pytest.mark.parametrize("lib", ["distgraph", "torch"])
def test_reinforce_bandit_learns_both_ways(lib):
    probs = _reinforce(dg if lib == "distgraph" else torch)
    assert probs.argmax() == 2 and probs[2] > 0.8, probs


@pytest.mark.parametrize("lib", ["distgraph", "torch"])
def test_reparameterised_normal_fit_learns_both_ways(lib):
    mu, sigma, data_mean = _fit_normal(dg if lib == "distgraph" else torch)
    # the posterior of the mean given 500 points of sd 0.5: centred on the data mean, sd 0.5/sqrt(500)
    assert abs(mu[0] - data_mean) < 0.05, (mu, data_mean)
    assert 0.005 < sigma[0] < 0.15, sigma  # from 1.0 at the start
