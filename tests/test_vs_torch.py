"""Behaviour checked against PyTorch itself (installed by the test extra)."""
import itertools

import numpy as np
import pytest

import distgraph as dg

torch = pytest.importorskip("torch")

DTYPES = ["float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64", "bool"]


def _dg(name, zero_dim):
    return dg.ones((), dtype=name) if zero_dim else dg.ones(2, dtype=name)


def _torch(name, zero_dim):
    return torch.ones((), dtype=getattr(torch, name)) if zero_dim else torch.ones(2, dtype=getattr(torch, name))


@pytest.mark.parametrize("a, b", list(itertools.product(DTYPES, DTYPES)))
@pytest.mark.parametrize("dims", [(False, False), (False, True), (True, False)])
def test_tensor_tensor_promotion_matches_torch(a, b, dims):
    got = (_dg(a, dims[0]) * _dg(b, dims[1])).dtype
    want = (_torch(a, dims[0]) * _torch(b, dims[1])).dtype
    assert str(want).replace("torch.", "") == dg.backend.dtype_name(got)


@pytest.mark.parametrize("a", DTYPES)
@pytest.mark.parametrize("scalar", [2, 2.5, True])
def test_tensor_scalar_promotion_matches_torch(a, scalar):
    got = (_dg(a, False) * scalar).dtype
    want = (_torch(a, False) * scalar).dtype
    assert str(want).replace("torch.", "") == dg.backend.dtype_name(got)


@pytest.mark.parametrize("a", DTYPES)
def test_true_division_and_unary_float_ops_match_torch(a):
    for f_dg, f_t in [(lambda x: x / x, lambda x: x / x), (dg.exp, torch.exp), (dg.sqrt, torch.sqrt)]:
        if a == "bool" and f_dg is not dg.exp and f_dg is not dg.sqrt:
            continue
        got = f_dg(_dg(a, False)).dtype
        want = f_t(_torch(a, False)).dtype
        assert str(want).replace("torch.", "") == dg.backend.dtype_name(got)


@pytest.mark.parametrize("name", ["relu", "gelu", "silu", "softplus", "elu", "leaky_relu", "sigmoid", "tanh"])
def test_activations_and_their_gradients_match_torch(name):
    x = np.linspace(-3, 3, 25)
    xd = dg.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    getattr(dg.nn.functional, name)(xd).sum().backward()
    getattr(torch.nn.functional, name)(xt).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_reduction_tie_breaking_matches_torch():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    for f in [lambda t: t.amax(1), lambda t: t.max(), lambda t: t.max(1)[0], lambda t: t.norm(dim=0),
              lambda t: (t - t).norm()]:
        xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        f(xd).sum().backward()
        f(xt).sum().backward()
        np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy())


def test_maximum_ties_and_clamp_bounds_match_torch():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0])
    ad, bd = dg.tensor(a, requires_grad=True), dg.tensor(b, requires_grad=True)
    at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (dg.maximum(ad, bd) + ad.clamp(1.0, 2.0)).sum().backward()
    (torch.maximum(at, bt) + at.clamp(1.0, 2.0)).sum().backward()
    np.testing.assert_allclose(ad.grad.numpy(), at.grad.numpy())
    np.testing.assert_allclose(bd.grad.numpy(), bt.grad.numpy())


def test_var_std_correction_and_split_chunk_shapes_match_torch():
    x = np.arange(24.0).reshape(2, 3, 4) ** 1.5
    d, t = dg.tensor(x), torch.tensor(x)
    np.testing.assert_allclose(d.var(1, correction=0).numpy(), t.var(1, correction=0).numpy())
    np.testing.assert_allclose(d.std((0, 2), keepdim=True).numpy(), t.std((0, 2), keepdim=True).numpy())
    assert [p.shape for p in d.chunk(3, 2)] == [tuple(p.shape) for p in t.chunk(3, 2)]
    assert [p.shape for p in d.split(3, 2)] == [tuple(p.shape) for p in t.split(3, 2)]
    assert d.squeeze(0).shape == tuple(t.squeeze(0).shape)
    assert d.flatten(1).shape == tuple(t.flatten(1).shape)


OPS = """add sub mul div pow neg abs exp log log1p sqrt rsqrt sin cos tanh sigmoid relu gelu silu softplus
leaky_relu elu clamp clip maximum minimum where sum mean amax amin max min var std logsumexp prod norm argmax
argmin reshape view flatten unflatten squeeze unsqueeze transpose permute T expand expand_as repeat flip cat
stack split chunk index_select gather scatter_add masked_fill tril triu matmul einsum eq ne lt le gt ge
logical_and logical_or logical_xor logical_not isnan isfinite""".split()


@pytest.mark.parametrize("name", OPS)
def test_every_op_is_reachable_where_pytorch_offers_it(name):
    import distgraph.nn.functional as F
    missing = []
    if hasattr(torch, name) and not hasattr(dg, name):
        missing.append(f"dg.{name}")
    if hasattr(torch.Tensor, name) and not hasattr(dg.Tensor, name):
        missing.append(f"Tensor.{name}")
    if hasattr(torch.nn.functional, name) and not hasattr(F, name):
        missing.append(f"dg.nn.functional.{name}")
    assert not missing, f"PyTorch offers {name} as {missing}; distgraph does not"


def test_inplace_ops_on_basic_index_views_match_torch():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((3, 4)), rng.standard_normal(4)
    grads = []
    for lib in (dg, torch):
        a, b = lib.tensor(x, requires_grad=True), lib.tensor(w, requires_grad=True)
        y = a * 2
        y[:, 0] += 1          # Python: y.__getitem__ -> __iadd__ on the view -> __setitem__
        y[1] *= 3
        y[2].mul_(b)          # an explicit in-place op on a view
        y[0, 1:3] -= b[:2]
        (y * y).sum().backward()
        grads.append((a.grad.detach().numpy().copy(), b.grad.detach().numpy().copy(),
                      y.detach().numpy().copy()))
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_inplace_on_other_views_of_graph_tensors_is_refused_clearly():
    y = dg.ones(2, 3, requires_grad=True) * 1
    with pytest.raises(RuntimeError, match="basic indexing.*not on reshape/permute/expand views"):
        y.reshape(6).add_(1)
    leaf = dg.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        leaf[0] += 1
