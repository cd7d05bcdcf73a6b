"""dg.func (functional_call, grad, vjp, jvp, jacrev, jacfwd, vmap) and autograd.functional (jacobian, vjp,
jvp; hessian/hvp/vhp raise), checked against PyTorch on the same values (float64)."""
import numpy as np
import pytest

import distgraph as dg
import distgraph.func as F
from distgraph.autograd import functional as AF
from distgraph.autograd.gradcheck import gradcheck
from distgraph.nn.utils.stateless import functional_call as stateless_call

torch = pytest.importorskip("torch")
TF, TAF = torch.func, torch.autograd.functional
TOL = dict(rtol=1e-10, atol=1e-12)
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated")
RNG = np.random.default_rng(0)
A, B = RNG.standard_normal(3), RNG.standard_normal((2, 3))


def _np(t):
    return t.detach().numpy()


def _same(a, b):
    """Equal nested tuples of tensors (same nesting, values within 1e-10)."""
    if isinstance(b, (tuple, list)):
        assert isinstance(a, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(b, dict):
        assert list(a) == list(b)
        for k in b:
            _same(a[k], b[k])
    else:
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_allclose(_np(a), _np(b), **TOL)


def _both(*arrays):
    return tuple(dg.tensor(a) for a in arrays), tuple(torch.tensor(a) for a in arrays)


FUNCS = {   # name: (function (same code for both libraries), inputs)
    "one_in_one_out": (lambda x: x.sin() * x.sum(), (A,)),
    "two_in_one_out": (lambda x, y: (x.exp() * y).sum(0), (A, B)),
    "one_in_two_out": (lambda x: (x.tanh(), (x * x).sum()), (A,)),
    "two_in_two_out": (lambda x, y: ((x * y).sum(1), (x.sin() * y).exp()), (A, B)),
}


def _mlp_pair():
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    d = dg.nn.Sequential(dg.nn.Linear(3, 4), dg.nn.Tanh(), dg.nn.Linear(4, 2)).double()
    d.load_state_dict({k: v.detach().numpy().copy() for k, v in t.state_dict().items()})
    return t, d


# ------------------------------------------------------------------ autograd.functional
@pytest.mark.parametrize("name", list(FUNCS))
@pytest.mark.parametrize("as_tuple", [False, True])
def test_jacobian_matches_torch_values_and_nesting(name, as_tuple):
    f, arrays = FUNCS[name]
    d, t = _both(*arrays)
    if len(arrays) == 1 and not as_tuple:
        d, t = d[0], t[0]
    _same(AF.jacobian(f, d), TAF.jacobian(f, t))


@pytest.mark.parametrize("name", list(FUNCS))
def test_vjp_and_jvp_match_torch(name):
    f, arrays = FUNCS[name]
    d, t = _both(*arrays)
    outs = f(*t)
    rng = np.random.default_rng(1)
    v = tuple(rng.standard_normal(tuple(o.shape)) for o in (outs if isinstance(outs, tuple) else (outs,)))
    vd, vt = _both(*v)
    if not isinstance(outs, tuple):
        vd, vt = vd[0], vt[0]
    _same(AF.vjp(f, d, vd), TAF.vjp(f, t, vt))
    u = tuple(np.random.default_rng(2).standard_normal(a.shape) for a in arrays)
    ud, ut = _both(*u)
    _same(AF.jvp(f, d, ud), TAF.jvp(f, t, ut))


def test_jacobian_of_mlp_wrt_input_and_through_functional_call():
    t, d = _mlp_pair()
    x = RNG.standard_normal((2, 3))
    _same(AF.jacobian(d, dg.tensor(x)), TAF.jacobian(t, torch.tensor(x)))
    names = [k for k, _ in t.named_parameters()]
    pt = tuple(p.detach() for p in t.parameters())
    pd = tuple(p.detach() for p in d.parameters())
    jt = TAF.jacobian(lambda *ps: TF.functional_call(t, dict(zip(names, ps)), torch.tensor(x)), pt)
    jd = AF.jacobian(lambda *ps: F.functional_call(d, dict(zip(names, ps)), dg.tensor(x)), pd)
    _same(jd, jt)


def test_jacobian_strict_and_independent_inputs_like_torch():
    f = lambda x, y: x * 2   # noqa: E731
    d, t = _both(A, A)
    _same(AF.jacobian(f, d), TAF.jacobian(f, t))   # zeros for y
    with pytest.raises(RuntimeError, match="independent of input 1"):
        AF.jacobian(f, d, strict=True)
    with pytest.raises(RuntimeError, match="independent of input 1"):
        AF.vjp(f, d, dg.ones(3), strict=True)


def test_functional_errors_like_torch():
    x = dg.ones(2)
    with pytest.raises(TypeError):
        AF.jacobian(lambda a, b: a, (x, 1.0))
    with pytest.raises(TypeError):
        AF.jacobian(lambda a: 3.0, x)
    with pytest.raises(RuntimeError, match="v can only be None"):
        AF.vjp(lambda a: a * 2, x)
    with pytest.raises(RuntimeError, match="invalid size"):
        AF.vjp(lambda a: a * 2, x, dg.ones(3))
    with pytest.raises(RuntimeError, match="v can only be None"):
        AF.jvp(lambda a: a * 2, x)
    with pytest.raises(NotImplementedError):
        AF.jacobian(lambda a: a, x, create_graph=True)
    with pytest.raises(NotImplementedError):
        AF.jacobian(lambda a: a, x, strategy="forward-mode")
    for second in (AF.hessian, AF.hvp, AF.vhp):
        with pytest.raises(NotImplementedError):
            second(lambda a: a.sum(), x)


def test_vjp_scalar_output_default_v():
    d, t = _both(A)
    f = lambda x: (x ** 3).sum()   # noqa: E731
    _same(AF.vjp(f, d[0]), TAF.vjp(f, t[0]))


# ------------------------------------------------------------------ functional_call
def test_functional_call_matches_torch_and_leaves_module_unchanged():
    t, d = _mlp_pair()
    x = RNG.standard_normal((5, 3))
    new = {k: RNG.standard_normal(tuple(v.shape)) for k, v in t.state_dict().items()}
    before = {k: v.numpy().copy() for k, v in d.state_dict().items()}
    yd = F.functional_call(d, {k: dg.tensor(v) for k, v in new.items()}, (dg.tensor(x),))
    yt = TF.functional_call(t, {k: torch.tensor(v) for k, v in new.items()}, (torch.tensor(x),))
    _same(yd, yt)
    for k, v in d.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    part = {"0.weight": new["0.weight"]}   # the rest from the module; a single arg needs no tuple
    _same(stateless_call(d, {k: dg.tensor(v) for k, v in part.items()}, dg.tensor(x)),
          torch.nn.utils.stateless.functional_call(t, {k: torch.tensor(v) for k, v in part.items()}, torch.tensor(x)))
    two = ({"0.weight": dg.tensor(new["0.weight"])}, {"2.bias": dg.tensor(new["2.bias"])})
    _same(F.functional_call(d, two, dg.tensor(x)),
          TF.functional_call(t, ({"0.weight": torch.tensor(new["0.weight"])}, {"2.bias": torch.tensor(new["2.bias"])}),
                             torch.tensor(x)))


def test_functional_call_gradients_flow_to_the_given_tensors():
    t, d = _mlp_pair()
    x = RNG.standard_normal((5, 3))
    pd = {k: v.detach().requires_grad_() for k, v in d.named_parameters()}
    pt = {k: v.detach().requires_grad_() for k, v in t.named_parameters()}
    F.functional_call(d, pd, dg.tensor(x)).pow(2).sum().backward()
    TF.functional_call(t, pt, torch.tensor(x)).pow(2).sum().backward()
    for k in pt:
        _same(pd[k].grad, pt[k].grad)
    assert all(p.grad is None for p in d.parameters())
    assert gradcheck(lambda w: F.functional_call(d, {"0.weight": w}, dg.tensor(x)), [pd["0.weight"]])


def test_functional_call_tied_weights_strict_and_errors_like_torch():
    def tied(lib):
        s = lib.nn.Sequential(lib.nn.Linear(2, 2, bias=False), lib.nn.Linear(2, 2, bias=False)).double()
        s[1].weight = s[0].weight
        return s
    d, t = tied(dg), tied(torch)
    e = np.eye(2) * 2
    x = np.array([1.0, -2.0])
    _same(F.functional_call(d, {"0.weight": dg.tensor(e)}, dg.tensor(x)),
          TF.functional_call(t, {"0.weight": torch.tensor(e)}, torch.tensor(x)))
    np.testing.assert_allclose(F.functional_call(d, {"0.weight": dg.tensor(e)}, dg.tensor(x)).numpy(), 4 * x)
    untied = F.functional_call(d, {"0.weight": dg.tensor(e)}, dg.tensor(x), tie_weights=False)
    np.testing.assert_allclose(untied.detach().numpy(), 2 * x @ d[1].weight.detach().numpy().T, **TOL)
    with pytest.raises(ValueError, match="tied"):
        F.functional_call(d, {"0.weight": dg.ones(2, 2), "1.weight": dg.zeros(2, 2)}, dg.tensor(x))
    lin = dg.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="multiple dictionaries"):
        F.functional_call(lin, ({"weight": dg.ones(2, 2)}, {"weight": dg.ones(2, 2)}), dg.ones(2))
    with pytest.raises(RuntimeError, match=r"Missing key\(s\): 'bias'"):
        F.functional_call(lin, {"weight": dg.ones(2, 2)}, dg.ones(2), strict=True)
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\): 'foo'"):
        F.functional_call(lin, {"foo": dg.ones(1)}, dg.ones(2), strict=True)
    F.functional_call(lin, {"foo": dg.ones(1)}, dg.ones(2))   # not strict: ignored, and not left behind
    assert not hasattr(lin, "foo")


def test_functional_call_buffers_batchnorm():
    torch.manual_seed(0)
    t, d = torch.nn.BatchNorm1d(3).double(), dg.nn.BatchNorm1d(3).double()
    x = RNG.standard_normal((4, 3))
    rm, rv = RNG.standard_normal(3), RNG.random(3) + 0.5
    t.eval(), d.eval()
    _same(F.functional_call(d, {"running_mean": dg.tensor(rm), "running_var": dg.tensor(rv)}, dg.tensor(x)),
          TF.functional_call(t, {"running_mean": torch.tensor(rm), "running_var": torch.tensor(rv)}, torch.tensor(x)))


# ------------------------------------------------------------------ func transforms
@pytest.mark.parametrize("argnums", [0, 1, (0, 1)])
def test_grad_and_value_match_torch(argnums):
    f = lambda x, y: (x.sin() * y).sum()   # noqa: E731
    d, t = _both(A, B)
    _same(F.grad(f, argnums=argnums)(*d), TF.grad(f, argnums=argnums)(*t))
    _same(F.grad_and_value(f, argnums=argnums)(*d), TF.grad_and_value(f, argnums=argnums)(*t))


def test_grad_has_aux_pytree_params_and_constant_like_torch():
    t, m = _mlp_pair()
    x = RNG.standard_normal((5, 3))

    def loss(lib, model):
        def f(params, inp):
            out = lib.func.functional_call(model, params, (inp,))
            return out.pow(2).mean(), out
        return f
    pd = {k: v.detach() for k, v in m.named_parameters()}
    pt = {k: v.detach() for k, v in t.named_parameters()}
    gd, auxd = F.grad(loss(dg, m), has_aux=True)(pd, dg.tensor(x))
    gt, auxt = TF.grad(loss(torch, t), has_aux=True)(pt, torch.tensor(x))
    _same(gd, gt)
    _same(auxd, auxt)
    _same(F.grad(lambda x: (x * 0).sum())(dg.tensor(A)), TF.grad(lambda x: (x * 0).sum())(torch.tensor(A)))


def test_grad_errors_like_torch():
    with pytest.raises(RuntimeError, match="scalar"):
        F.grad(lambda x: x * 2)(dg.ones(2))
    with pytest.raises(RuntimeError, match="return a Tensor"):
        F.grad(lambda x: 1.0)(dg.ones(2))
    with pytest.raises(RuntimeError, match="argnum"):
        F.grad(lambda x: x.sum(), argnums=1)(dg.ones(2))
    with pytest.raises(NotImplementedError):   # a gradient of a gradient: no higher-order gradients here
        F.grad(lambda x: F.grad(lambda y: (y ** 3).sum())(x).sum())(dg.ones(2))
    with pytest.raises(NotImplementedError):
        F.hessian(lambda x: x.sum())(dg.ones(2))


def test_vjp_and_jvp_transforms_match_torch():
    f = lambda x, y: (x.sin() * y, (x * y).sum())   # noqa: E731
    d, t = _both(A, B)
    od, fd = F.vjp(f, *d)
    ot, ft = TF.vjp(f, *t)
    _same(od, ot)
    cot = (np.ones((2, 3)), 3.0)
    for _ in range(2):   # vjp_fn may be called again
        _same(fd((dg.tensor(cot[0]), dg.tensor(cot[1]))), ft((torch.tensor(cot[0]), torch.tensor(cot[1]))))
    ud, ut = _both(B[0], B[::-1].copy())
    _same(F.jvp(f, d, ud), TF.jvp(f, t, ut))


@pytest.mark.parametrize("jac", ["jacrev", "jacfwd"])
@pytest.mark.parametrize("argnums", [0, (0, 1)])
def test_jacrev_jacfwd_match_torch(jac, argnums):
    f = lambda x, y: (x.sin() * y, (x * y).sum())   # noqa: E731
    d, t = _both(A, B)
    _same(getattr(F, jac)(f, argnums=argnums)(*d), getattr(TF, jac)(f, argnums=argnums)(*t))


@pytest.mark.parametrize("in_dims, out_dims", [(0, 0), ((None, 0), 1), ((0, 1), 0), ((1, None), -1)])
def test_vmap_matches_torch(in_dims, out_dims):
    arrays = {0: (B, B), (None, 0): (A, B), (0, 1): (B, B.T.copy()), (1, None): (B, A[:2].copy())}[in_dims]
    f = lambda x, y: x.sin() * y   # noqa: E731
    d, t = _both(*arrays)
    _same(F.vmap(f, in_dims, out_dims)(*d), TF.vmap(f, in_dims, out_dims)(*t))


def test_vmap_of_grad_per_sample_gradients_match_torch():
    t, m = _mlp_pair()
    x, y = RNG.standard_normal((6, 3)), RNG.standard_normal((6, 2))

    def per_sample(lib, model):
        def loss(params, xi, yi):
            out = lib.func.functional_call(model, params, (xi[None],))
            return ((out - yi[None]) ** 2).sum()
        return lib.func.vmap(lib.func.grad(loss), in_dims=(None, 0, 0))
    pd = {k: v.detach() for k, v in m.named_parameters()}
    pt = {k: v.detach() for k, v in t.named_parameters()}
    _same(per_sample(dg, m)(pd, dg.tensor(x), dg.tensor(y)), per_sample(torch, t)(pt, torch.tensor(x), torch.tensor(y)))


def test_vmap_is_differentiable_and_errors_like_torch():
    x = dg.tensor(B).requires_grad_()
    assert gradcheck(lambda a: F.vmap(lambda r: r.sin() * r.sum())(a), [x])
    with pytest.raises(ValueError, match="same size"):
        F.vmap(lambda a, b: a + b)(dg.ones(2, 3), dg.ones(3, 3))
    with pytest.raises(ValueError):
        F.vmap(lambda a: a, in_dims=(0, 0))(dg.ones(2))
    with pytest.raises(ValueError):
        F.vmap(lambda a: a, in_dims=None)(dg.ones(2))
    with pytest.raises(ValueError):
        F.vmap(lambda a: a, in_dims=3)(dg.ones(2))
    with pytest.raises(ValueError, match="only return Tensors"):
        F.vmap(lambda a: 1.0)(dg.ones(2))
