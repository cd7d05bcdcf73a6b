"""More optimizers against PyTorch: Adadelta, Adagrad, Adamax, NAdam, RAdam, ASGD, Rprop, LBFGS.

Each case runs the same parameters and gradients through distgraph and torch, step by step.
"""
import copy

import numpy as np
import pytest

import distgraph as dg
from distgraph import optim
from distgraph.autograd import Parameter

torch = pytest.importorskip("torch")

CASES = [
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)),
    ("Adadelta", dict(lr=0.7, maximize=True, weight_decay=0.05)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.3, eps=1e-6)),
    ("Adagrad", dict(lr=0.05, maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-5, weight_decay=0.1)),
    ("Adamax", dict(lr=0.01, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.01, betas=(0.8, 0.99), momentum_decay=0.01, weight_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.2, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", dict()),
    ("RAdam", dict(lr=0.01, betas=(0.5, 0.6), eps=1e-6, weight_decay=0.1)),  # rho_t > 5 from step 1
    ("RAdam", dict(lr=0.01, weight_decay=0.2, decoupled_weight_decay=True, maximize=True)),
    ("ASGD", dict()),
    ("ASGD", dict(lr=0.05, lambd=1e-2, alpha=0.6, t0=3, weight_decay=0.1)),
    ("ASGD", dict(lr=0.05, t0=1, maximize=True)),
    ("Rprop", dict()),
    ("Rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2))),
    ("Rprop", dict(lr=0.05, maximize=True)),
    # the torch-only keyword arguments of the existing optimizers are accepted
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, foreach=False, fused=None, differentiable=False)),
    ("Adam", dict(lr=0.01, amsgrad=True, foreach=False, capturable=False, fused=None, differentiable=False)),
    ("AdamW", dict(lr=0.01, foreach=None, capturable=False, fused=None, maximize=True)),
    ("RMSprop", dict(lr=0.01, centered=True, capturable=False, foreach=None, differentiable=False)),
]
SHAPES = [(5, 3), (4,), ()]


def _ids(case):
    return case[0] + "-" + ",".join(f"{k}={v}" for k, v in case[1].items())


@pytest.fixture(autouse=True)
def _torch_float64_scalars():
    # torch keeps NAdam's mu_product and ASGD's eta/mu in the default dtype; float64 makes them exact.
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _make_pair(name, kwargs, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    inits = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in SHAPES]
    dg_params = [Parameter(dg.from_numpy(a.copy())) for a in inits]
    th_params = [torch.tensor(a.copy(), requires_grad=True) for a in inits]
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.003}]  # noqa: E731
    return dg_params, th_params, getattr(optim, name)(groups(dg_params), **kwargs), \
        getattr(torch.optim, name)(groups(th_params), **kwargs)


def _run(dg_params, th_params, dg_opt, th_opt, steps, seed=1, tol=1e-10):
    rng = np.random.default_rng(seed)
    for step in range(steps):
        for i, (p, q) in enumerate(zip(dg_params, th_params)):
            if i == 1 and step % 3 == 2:  # a parameter without a gradient this step is skipped
                p.grad, q.grad = None, None
                continue
            g = np.asarray(rng.standard_normal(p.shape), dtype=p.array.dtype)
            if step % 4 == 3:
                g = np.asarray(np.sign(g) * np.abs(g) ** 0.5, dtype=g.dtype)  # sign changes and repeats for Rprop
            p.grad, q.grad = dg.from_numpy(g.copy()), torch.from_numpy(g.copy())
        dg_opt.step()
        th_opt.step()
        for p, q in zip(dg_params, th_params):
            np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=tol, atol=tol / 100,
                                       err_msg=f"step {step}")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_trajectory_matches_torch(case):
    name, kwargs = case
    dg_params, th_params, dg_opt, th_opt = _make_pair(name, kwargs)
    _run(dg_params, th_params, dg_opt, th_opt, 12)
    assert all(p.dtype == np.float64 for p in dg_params)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_float32_trajectory_stays_float32(case):
    name, kwargs = case
    dg_params, th_params, dg_opt, th_opt = _make_pair(name, kwargs, dtype=np.float32)
    _run(dg_params, th_params, dg_opt, th_opt, 6, tol=2e-5)
    assert all(p.dtype == np.float32 for p in dg_params)
    assert all(v.dtype == np.float32 for st in dg_opt.state.values() for v in st.values() if hasattr(v, "dtype"))


def _torch_to_dg(obj):
    if isinstance(obj, torch.Tensor):
        return dg.tensor(obj.detach().numpy())
    if isinstance(obj, dict):
        return {k: _torch_to_dg(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_torch_to_dg(v) for v in obj)
    return obj


@pytest.mark.parametrize("case", CASES[:21], ids=_ids)
def test_state_dict_round_trip(case):
    name, kwargs = case
    dg_params, th_params, dg_opt, th_opt = _make_pair(name, kwargs)
    _run(dg_params, th_params, dg_opt, th_opt, 4)
    sd, th_sd = dg_opt.state_dict(), th_opt.state_dict()
    assert sorted(sd["state"]) == sorted(th_sd["state"])
    for idx, st in th_sd["state"].items():
        assert set(sd["state"][idx]) == set(st), idx
        assert sd["state"][idx]["step"] == int(st["step"])
    assert set(th_sd["param_groups"][0]) <= set(sd["param_groups"][0]) | {"initial_lr"}
    for source in (sd, _torch_to_dg(th_sd)):
        params2 = [Parameter(dg.from_numpy(p.array.copy())) for p in dg_params]
        opt2 = getattr(optim, name)([{"params": params2[:2]}, {"params": params2[2:]}], **kwargs)
        opt2.load_state_dict(source)
        assert opt2.param_groups[1]["lr"] == 0.003
        th_params2 = [torch.tensor(q.detach().numpy().copy(), requires_grad=True) for q in th_params]
        th_opt2 = getattr(torch.optim, name)([{"params": th_params2[:2]}, {"params": th_params2[2:]}], **kwargs)
        th_opt2.load_state_dict(copy.deepcopy(th_sd))
        _run(params2, th_params2, opt2, th_opt2, 5, seed=7)


def test_adagrad_state_starts_in_init():
    p = Parameter(dg.zeros(3))
    opt = optim.Adagrad([p], initial_accumulator_value=0.5)
    th = torch.optim.Adagrad([torch.zeros(3, requires_grad=True)], initial_accumulator_value=0.5)
    assert set(opt.state_dict()["state"][0]) == set(th.state_dict()["state"][0])
    np.testing.assert_array_equal(opt.state[p]["sum"].array, 0.5)


@pytest.mark.parametrize("name", ["Adadelta", "Adagrad", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"])
def test_zero_grad_and_closure(name):
    p = Parameter(dg.ones(3, dtype=dg.float64))
    q = torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt, th = getattr(optim, name)([p], lr=0.1), getattr(torch.optim, name)([q], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p * p).sum()
        loss.backward()
        return loss

    def th_closure():
        th.zero_grad()
        loss = (q * q * q).sum()
        loss.backward()
        return loss

    for _ in range(3):
        assert float(opt.step(closure)) == pytest.approx(float(th.step(th_closure).detach()), rel=1e-12)
    np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=1e-10)
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and not p.grad.array.any()
    opt.zero_grad()
    assert p.grad is None


BAD = [
    ("Adadelta", dict(lr=-1)), ("Adadelta", dict(rho=1.5)), ("Adadelta", dict(rho=-0.1)),
    ("Adadelta", dict(eps=-1)), ("Adadelta", dict(weight_decay=-1)),
    ("Adagrad", dict(lr=-1)), ("Adagrad", dict(lr_decay=-1)), ("Adagrad", dict(weight_decay=-1)),
    ("Adagrad", dict(initial_accumulator_value=-1)), ("Adagrad", dict(eps=-1)),
    ("Adamax", dict(lr=-1)), ("Adamax", dict(eps=-1)), ("Adamax", dict(betas=(1.0, 0.9))),
    ("Adamax", dict(betas=(0.9, -0.1))), ("Adamax", dict(weight_decay=-1)),
    ("NAdam", dict(lr=-1)), ("NAdam", dict(eps=-1)), ("NAdam", dict(betas=(1.0, 0.9))),
    ("NAdam", dict(weight_decay=-1)), ("NAdam", dict(momentum_decay=-1)),
    ("RAdam", dict(lr=-1)), ("RAdam", dict(eps=-1)), ("RAdam", dict(betas=(0.9, 1.0))),
    ("RAdam", dict(weight_decay=-1)),
    ("ASGD", dict(lr=-1)), ("ASGD", dict(weight_decay=-1)),
    ("Rprop", dict(lr=-1)), ("Rprop", dict(etas=(1.5, 1.2))), ("Rprop", dict(etas=(0.5, 0.9))),
    ("LBFGS", dict(lr=-1)),
]


@pytest.mark.parametrize("name,kwargs", BAD, ids=[f"{n}-{k}" for n, k in BAD])
def test_bad_arguments_raise_like_torch(name, kwargs):
    with pytest.raises(ValueError) as th_err:
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(type(th_err.value), match=name if name != "LBFGS" else "learning rate"):
        getattr(optim, name)([Parameter(dg.zeros(2))], **kwargs)


# ------------------------------------------------------------------- LBFGS
def _rosenbrock(x):
    return ((1 - x[:-1]) ** 2).sum() + 100 * ((x[1:] - x[:-1] ** 2) ** 2).sum()


def _least_squares(x, A, b):
    r = A @ x - b
    return (r * r).sum() + 0.1 * (x ** 4).sum()




def _lbfgs_pair(problem, **kwargs):
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(4) * 0.3  # near enough for plain L-BFGS (lr=1) not to blow up and amplify rounding
    A, b = rng.standard_normal((6, 4)), rng.standard_normal(6)
    p, q = Parameter(dg.from_numpy(x0.copy())), torch.tensor(x0.copy(), requires_grad=True)
    if problem == "rosenbrock":
        f_dg, f_th = _rosenbrock, _rosenbrock
    else:
        A_dg, b_dg, A_th, b_th = dg.from_numpy(A), dg.from_numpy(b), torch.from_numpy(A), torch.from_numpy(b)
        f_dg, f_th = (lambda x: _least_squares(x, A_dg, b_dg)), (lambda x: _least_squares(x, A_th, b_th))
    opt, th = optim.LBFGS([p], **kwargs), torch.optim.LBFGS([q], **kwargs)

    def closure():
        opt.zero_grad()
        loss = f_dg(p)
        loss.backward()
        return loss

    def th_closure():
        th.zero_grad()
        loss = f_th(q)
        loss.backward()
        return loss

    return p, q, opt, th, closure, th_closure


LBFGS_CASES = [
    dict(),
    dict(line_search_fn="strong_wolfe"),
    dict(lr=0.5, max_iter=5, history_size=3),
    dict(lr=0.8, max_iter=7, max_eval=9, history_size=2, line_search_fn="strong_wolfe"),
    dict(tolerance_grad=1e-3, tolerance_change=1e-4, max_iter=30, line_search_fn="strong_wolfe"),
    dict(tolerance_grad=1e-3, tolerance_change=1e-4, max_iter=30),
]


@pytest.mark.parametrize("problem", ["rosenbrock", "least_squares"])
@pytest.mark.parametrize("kwargs", LBFGS_CASES, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items()) or "default")
def test_lbfgs_trajectory_matches_torch(problem, kwargs):
    p, q, opt, th, closure, th_closure = _lbfgs_pair(problem, **kwargs)
    # Rosenbrock's curved valley amplifies 1-ulp differences (BLAS dot products) over ~60 iterations.
    tol = 1e-9 if problem == "least_squares" else 1e-6
    for outer in range(6):
        loss, th_loss = opt.step(closure), th.step(th_closure)
        assert float(loss) == pytest.approx(float(th_loss.detach()), rel=tol, abs=1e-9), outer
        np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=tol, atol=tol, err_msg=f"step {outer}")
        s, ts = opt.state[p], th.state[q]
        assert (s["func_evals"], s["n_iter"]) == (ts["func_evals"], ts["n_iter"])


def test_lbfgs_state_dict_resume_and_errors():
    p, q, opt, th, closure, th_closure = _lbfgs_pair("least_squares", history_size=3, max_iter=4)
    opt.step(closure), th.step(th_closure)
    # a second optimizer over the same parameter, loaded from the first's state, continues as torch does
    opt2 = optim.LBFGS([p], history_size=3, max_iter=4)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[p]["n_iter"] == th.state[q]["n_iter"] and len(opt2.state[p]["old_dirs"]) == 3
    opt.state.clear()  # prove the history now comes from opt2 alone
    opt2.step(closure), th.step(th_closure)
    np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=1e-9)
    with pytest.raises(ValueError):
        torch.optim.LBFGS([{"params": [torch.zeros(1, requires_grad=True)]},
                           {"params": [torch.zeros(1, requires_grad=True)]}])
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([{"params": [Parameter(dg.zeros(1))]}, {"params": [Parameter(dg.zeros(1))]}])
    with pytest.raises(TypeError):
        th.step(None)
    with pytest.raises(TypeError, match="closure"):
        opt.step(None)
    bad, th_bad = optim.LBFGS([p], line_search_fn="backtracking"), torch.optim.LBFGS([q], line_search_fn="backtracking")
    with pytest.raises(RuntimeError):
        th_bad.step(th_closure)
    with pytest.raises(RuntimeError, match="strong_wolfe"):
        bad.step(closure)


# ------------------------------------------------------------ every device
DEVICE_CASES = [c for c in CASES[:21]] + [("LBFGS", dict(line_search_fn="strong_wolfe")), ("LBFGS", dict())]


@pytest.mark.parametrize("case", DEVICE_CASES, ids=_ids)
def test_same_trajectory_on_device(case, device):
    """The array-module generic code gives torch's trajectory on every device (GPU: CuPy arrays)."""
    name, kwargs = case
    rng = np.random.default_rng(5)
    x0, A = rng.standard_normal(4), rng.standard_normal((6, 4))
    p = Parameter(dg.from_numpy(x0.copy()).to(device))
    q = torch.tensor(x0.copy(), requires_grad=True)
    A_dg, A_th = dg.from_numpy(A.copy()).to(device), torch.from_numpy(A.copy())
    opt, th = getattr(optim, name)([p], **kwargs), getattr(torch.optim, name)([q], **kwargs)

    def closure():
        opt.zero_grad()
        loss = ((A_dg @ p - 1.0) ** 2).sum()
        loss.backward()
        return loss

    def th_closure():
        th.zero_grad()
        loss = ((A_th @ q - 1.0) ** 2).sum()
        loss.backward()
        return loss

    for _ in range(4):
        opt.step(closure), th.step(th_closure)
    assert p.device.type == device
    np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().numpy(), rtol=1e-9, atol=1e-12)
