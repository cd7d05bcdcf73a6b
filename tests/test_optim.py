"""Optimizers against PyTorch itself: same parameters, same gradients, same trajectory."""
import copy

import numpy as np
import pytest

import distgraph as dg
from distgraph import optim
from distgraph.autograd import Parameter

torch = pytest.importorskip("torch")

# (optimizer name, options): each runs in distgraph and in torch on the same data.
CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.5, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.3, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.005, momentum=0.5, centered=True, maximize=True, eps=1e-4)),
]
SHAPES = [(5, 3), (4,), ()]


def _ids(case):
    return case[0] + "-" + ",".join(f"{k}={v}" for k, v in case[1].items())


def _make_pair(name, kwargs, dtype, seed=0):
    rng = np.random.default_rng(seed)
    inits = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    dg_params = [Parameter(dg.from_numpy(a.copy())) for a in inits]
    th_params = [torch.tensor(a.copy(), requires_grad=True) for a in inits]
    # two groups: the second with its own lr, to check per-group options
    dg_opt = getattr(optim, name)([{"params": dg_params[:2]}, {"params": dg_params[2:], "lr": 0.003}], **kwargs)
    th_opt = getattr(torch.optim, name)([{"params": th_params[:2]}, {"params": th_params[2:], "lr": 0.003}],
                                        **kwargs)
    return dg_params, th_params, dg_opt, th_opt


def _run(dg_params, th_params, dg_opt, th_opt, steps, dtype, seed=1):
    rng = np.random.default_rng(seed)
    for step in range(steps):
        for i, (p, q) in enumerate(zip(dg_params, th_params)):
            if i == 1 and step % 3 == 2:  # a parameter without a gradient this step is skipped
                p.grad, q.grad = None, None
                continue
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad = dg.from_numpy(g.copy())
            q.grad = torch.from_numpy(g.copy())
        dg_opt.step()
        th_opt.step()


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-6)])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_torch(case, dtype, tol):
    name, kwargs = case
    dg_params, th_params, dg_opt, th_opt = _make_pair(name, kwargs, dtype)
    _run(dg_params, th_params, dg_opt, th_opt, 10, dtype)
    for p, q in zip(dg_params, th_params):
        assert p.dtype == dtype
        np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_state_dict_round_trip_and_torch_layout(case):
    name, kwargs = case
    dtype = np.float64
    dg_params, th_params, dg_opt, th_opt = _make_pair(name, kwargs, dtype)
    _run(dg_params, th_params, dg_opt, th_opt, 4, dtype)
    sd, th_sd = dg_opt.state_dict(), th_opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in th_sd["param_groups"]]
    assert sorted(sd["state"]) == sorted(th_sd["state"])
    for idx, st in th_sd["state"].items():
        assert set(sd["state"][idx]) == set(st), idx
        if "step" in st:
            assert sd["state"][idx]["step"] == int(st["step"])
    common = set(sd["param_groups"][0]) & set(th_sd["param_groups"][0])
    assert {"lr", "params", "weight_decay", "maximize"} <= common

    # a fresh distgraph optimizer fed (a) our state dict and (b) torch's must continue identically
    for source in (sd, _torch_to_dg(th_sd)):
        params2 = [Parameter(dg.from_numpy(p.array.copy())) for p in dg_params]
        opt2 = getattr(optim, name)([{"params": params2[:2]}, {"params": params2[2:]}], **kwargs)
        opt2.load_state_dict(source)
        assert opt2.param_groups[1]["lr"] == 0.003
        th_params2 = [torch.tensor(q.detach().numpy().copy(), requires_grad=True) for q in th_params]
        th_opt2 = getattr(torch.optim, name)([{"params": th_params2[:2]}, {"params": th_params2[2:]}], **kwargs)
        th_opt2.load_state_dict(copy.deepcopy(th_sd))  # torch aliases the loaded buffers
        _run(params2, th_params2, opt2, th_opt2, 5, dtype, seed=7)
        for p, q in zip(params2, th_params2):
            np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=1e-10, atol=1e-10)


def _torch_to_dg(obj):
    if isinstance(obj, torch.Tensor):
        return dg.tensor(obj.detach().numpy())
    if isinstance(obj, dict):
        return {k: _torch_to_dg(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_torch_to_dg(v) for v in obj)
    return obj


def test_load_state_dict_copies_and_casts():
    p = Parameter(dg.zeros(3, dtype=dg.float32))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    buf = dg.tensor(np.ones(3))  # float64 in the saved state
    opt.load_state_dict({"state": {0: {"momentum_buffer": buf}},
                         "param_groups": [{**opt.state_dict()["param_groups"][0], "lr": 0.5}]})
    loaded = opt.state[p]["momentum_buffer"]
    assert loaded.dtype == dg.float32 and loaded.array is not buf.array
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["params"][0] is p


def test_load_state_dict_mismatch_errors():
    a, b = Parameter(dg.zeros(2)), Parameter(dg.zeros(2))
    opt = optim.SGD([a, b], lr=0.1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="2 parameters in the loaded state dict, 1 here"):
        optim.SGD([a], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameter groups, this optimizer has 2"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(KeyError, match="param_groups"):
        opt.load_state_dict({"state": {}})


@pytest.mark.parametrize("make,message", [
    (lambda p: optim.SGD(p, lr=-1), r"SGD: invalid lr -1 \(expected >= 0\)"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), "SGD: invalid momentum -0.5"),
    (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "SGD: invalid weight_decay"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "Nesterov momentum requires a momentum > 0"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "zero dampening"),
    (lambda p: optim.Adam(p, lr=-0.1), "Adam: invalid lr"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), r"Adam: invalid beta parameter at index 0 1.0 \(expected in \[0, 1\)\)"),
    (lambda p: optim.AdamW(p, betas=(0.9, -0.1)), "AdamW: invalid beta parameter at index 1"),
    (lambda p: optim.Adam(p, eps=-1e-8), "Adam: invalid eps"),
    (lambda p: optim.Adam(p, betas=(0.9,)), "expected a pair"),
    (lambda p: optim.RMSprop(p, alpha=-0.1), "RMSprop: invalid alpha"),
    (lambda p: optim.RMSprop(p, momentum=-1), "RMSprop: invalid momentum"),
    (lambda p: optim.SGD([{"params": p, "lr": -2}], lr=0.1), "SGD: invalid lr -2"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make([Parameter(dg.zeros(2))])


def test_bad_params():
    p = Parameter(dg.zeros(2))
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD({p}, lr=0.1)
    with pytest.raises(TypeError, match="is a ndarray"):
        optim.SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        optim.Optimizer([p], {"lr": optim.optimizer.required})


def test_add_param_group_named_params_and_defaults():
    a, b = Parameter(dg.zeros(2)), Parameter(dg.zeros(3))
    opt = optim.SGD([("a", a)], lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["param_names"] == ["a"]
    opt.add_param_group({"params": b, "lr": 0.01})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.01
    with pytest.raises(ValueError, match="more than one"):
        opt.add_param_group({"params": [a]})


def test_zero_grad_and_version_counter():
    p = Parameter(dg.ones(3))
    opt = optim.SGD([p], lr=0.5)
    (p * p).sum().backward()
    v = p._version[0]
    opt.step()
    assert p._version[0] == v + 1
    np.testing.assert_allclose(p.array, 0.0)  # 1 - 0.5 * 2
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and not p.grad.array.any()
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # nothing to do without gradients
    assert p._version[0] == v + 1


def test_closure_and_convergence_through_autograd():
    dg.manual_seed(0)
    target = dg.tensor([1.0, -2.0, 3.0])
    for cls, kw in [(optim.SGD, dict(lr=0.1, momentum=0.9)), (optim.Adam, dict(lr=0.1)),
                    (optim.AdamW, dict(lr=0.1, weight_decay=0.0)), (optim.RMSprop, dict(lr=0.05))]:
        x = Parameter(dg.zeros(3))
        opt = cls([x], **kw)

        def closure():
            opt.zero_grad()
            loss = ((x - target) ** 2).sum()
            loss.backward()
            return loss
        first = opt.step(closure).item()
        for _ in range(300):
            loss = opt.step(closure)
        assert loss.item() < 1e-3 * first, cls.__name__
        assert not x.requires_grad or x.grad_fn is None  # the update recorded no graph


def test_repr_lists_groups():
    opt = optim.Adam([Parameter(dg.zeros(2))], lr=0.01)
    text = repr(opt)
    assert text.startswith("Adam (") and "Parameter Group 0" in text and "lr: 0.01" in text


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("case", [c for c in CASES if c[1].get("weight_decay") or c[1].get("momentum")
                                  or c[0].startswith("Adam")], ids=_ids)
def test_large_params_match_torch(case, dtype, tol):
    """Parameters big enough for the one-pass BLAS axpy path (and the grads are never modified)."""
    name, kwargs = case
    rng = np.random.default_rng(3)
    init = rng.standard_normal((150, 120)).astype(dtype)
    p, q = Parameter(dg.from_numpy(init.copy())), torch.tensor(init.copy(), requires_grad=True)
    opt, th_opt = getattr(optim, name)([p], **kwargs), getattr(torch.optim, name)([q], **kwargs)
    for _ in range(5):
        g = rng.standard_normal(init.shape).astype(dtype)
        p.grad, q.grad = dg.from_numpy(g.copy()), torch.from_numpy(g.copy())
        opt.step()
        th_opt.step()
        np.testing.assert_array_equal(p.grad.array, g)
    np.testing.assert_allclose(p.array, q.detach().numpy(), rtol=tol, atol=tol)
