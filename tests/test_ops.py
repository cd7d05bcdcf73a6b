"""One line per op: forward against NumPy, gradient against central finite
differences in float64, over several shapes (broadcasting, size-1, empty)."""
import math

import numpy as np
import pytest

import distgraph as dg
import distgraph.nn.functional as F
from distgraph.autograd import gradcheck

from dg_testing import to_numpy

_erf = np.vectorize(math.erf, otypes=[float])


def _gen(kind, shape, rng):
    if kind == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "nonzero":  # away from kinks at 0
        return rng.uniform(0.3, 2.0, shape) * rng.choice([-1, 1], shape)
    if kind == "distinct":  # no ties for max/min
        n = int(np.prod(shape))
        return (rng.permutation(n).reshape(shape) - n / 2) * 0.37
    return rng.standard_normal(shape)


class Case:
    def __init__(self, name, fn, ref, shapes, kind="any", grad=True):
        self.name, self.fn, self.ref, self.shapes, self.kind, self.grad = name, fn, ref, shapes, kind, grad

    def __repr__(self):
        return f"{self.name}{self.shapes}"


def _kinds(case, i):
    return case.kind[i] if isinstance(case.kind, tuple) else case.kind


BROADCAST = [[(3, 4), (3, 4)], [(3, 4), (4,)], [(2, 1, 4), (3, 1)], [(0, 4), (4,)], [(1,), (2, 3)], [(), (2, 3)]]
UNARY = [[(3, 4)], [(5,)], [()], [(2, 0, 3)], [(1, 3, 1)]]


def table():
    cases = []
    for shapes in BROADCAST:
        cases += [
            Case("add", lambda a, b: a + b, np.add, shapes),
            Case("sub", lambda a, b: a - b, np.subtract, shapes),
            Case("mul", lambda a, b: a * b, np.multiply, shapes),
            Case("div", lambda a, b: a / b, np.divide, shapes, ("any", "nonzero")),
            Case("pow", lambda a, b: a ** b, np.power, shapes, ("pos", "any")),
            Case("maximum", dg.maximum, np.maximum, shapes, "distinct"),
            Case("minimum", dg.minimum, np.minimum, shapes, "distinct"),
            Case("where", lambda a, b: dg.where(a > 0, a, b), lambda a, b: np.where(a > 0, a, b), shapes, "nonzero"),
            Case("add_alpha", lambda a, b: dg.add(a, b, alpha=2.5), lambda a, b: a + 2.5 * b, shapes),
        ]
    for shapes in UNARY:
        cases += [
            Case("radd", lambda a: 2 + a, lambda a: 2 + a, shapes),
            Case("rsub", lambda a: 2 - a, lambda a: 2 - a, shapes),
            Case("rmul", lambda a: 3 * a, lambda a: 3 * a, shapes),
            Case("rdiv", lambda a: 2 / a, lambda a: 2 / a, shapes, "nonzero"),
            Case("pow_scalar", lambda a: a ** 3, lambda a: a ** 3, shapes),
            Case("rpow", lambda a: 2 ** a, lambda a: 2.0 ** a, shapes),
            Case("neg", lambda a: -a, np.negative, shapes),
            Case("abs", dg.abs, np.abs, shapes, "nonzero"),
            Case("exp", dg.exp, np.exp, shapes),
            Case("log", dg.log, np.log, shapes, "pos"),
            Case("log1p", dg.log1p, np.log1p, shapes, "pos"),
            Case("sqrt", dg.sqrt, np.sqrt, shapes, "pos"),
            Case("rsqrt", dg.rsqrt, lambda a: 1 / np.sqrt(a), shapes, "pos"),
            Case("sin", dg.sin, np.sin, shapes),
            Case("cos", dg.cos, np.cos, shapes),
            Case("tanh", dg.tanh, np.tanh, shapes),
            Case("sigmoid", dg.sigmoid, lambda a: 1 / (1 + np.exp(-a)), shapes),
            Case("relu", F.relu, lambda a: np.maximum(a, 0), shapes, "nonzero"),
            Case("gelu", F.gelu, lambda a: 0.5 * a * (1 + _erf(a / np.sqrt(2))), shapes),
            Case("gelu_tanh", lambda a: F.gelu(a, approximate="tanh"),
                 lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3))), shapes),
            Case("silu", F.silu, lambda a: a / (1 + np.exp(-a)), shapes),
            Case("softplus", F.softplus, lambda a: np.log1p(np.exp(a)), shapes),
            Case("softplus_beta", lambda a: F.softplus(a, beta=2, threshold=1),
                 lambda a: np.where(2 * a > 1, a, np.log1p(np.exp(2 * a)) / 2), shapes, "nonzero"),
            Case("leaky_relu", lambda a: F.leaky_relu(a, 0.1), lambda a: np.where(a > 0, a, 0.1 * a), shapes, "nonzero"),
            Case("elu", F.elu, lambda a: np.where(a > 0, a, np.exp(a) - 1), shapes, "nonzero"),
            Case("clamp", lambda a: a.clamp(-0.5, 0.6), lambda a: np.clip(a, -0.5, 0.6), shapes, "distinct"),
            Case("clamp_min", lambda a: dg.clamp(a, min=0.1), lambda a: np.maximum(a, 0.1), shapes, "distinct"),
            Case("masked_fill", lambda a: a.masked_fill(a > 0, 0.5), lambda a: np.where(a > 0, 0.5, a), shapes),
        ]
    x234 = [(2, 3, 4)]
    for dim in [None, 0, -1, (0, 2)]:
        for keep in [False, True]:
            kw = dict(dim=dim, keepdim=keep)
            nd = None if dim is None else dim
            cases += [
                Case(f"sum{kw}", lambda a, kw=kw: a.sum(**kw), lambda a, nd=nd, k=keep: a.sum(nd, keepdims=k), x234),
                Case(f"mean{kw}", lambda a, kw=kw: a.mean(**kw), lambda a, nd=nd, k=keep: a.mean(nd, keepdims=k), x234),
                Case(f"amax{kw}", lambda a, kw=kw: a.amax(**kw), lambda a, nd=nd, k=keep: a.max(nd, keepdims=k), x234,
                     "distinct"),
                Case(f"amin{kw}", lambda a, kw=kw: a.amin(**kw), lambda a, nd=nd, k=keep: a.min(nd, keepdims=k), x234,
                     "distinct"),
                Case(f"var{kw}", lambda a, kw=kw: a.var(**kw), lambda a, nd=nd, k=keep: a.var(nd, ddof=1, keepdims=k),
                     x234),
                Case(f"std{kw}", lambda a, kw=kw: a.std(**kw, correction=0),
                     lambda a, nd=nd, k=keep: a.std(nd, keepdims=k), x234),
                Case(f"norm{kw}", lambda a, kw=kw: a.norm(**kw),
                     lambda a, nd=nd, k=keep: np.sqrt((a * a).sum(nd, keepdims=k)), x234),
                Case(f"norm1{kw}", lambda a, kw=kw: a.norm(p=1, **kw),
                     lambda a, nd=nd, k=keep: np.abs(a).sum(nd, keepdims=k), x234, "nonzero"),
                Case(f"norm3{kw}", lambda a, kw=kw: a.norm(p=3, **kw),
                     lambda a, nd=nd, k=keep: (np.abs(a) ** 3).sum(nd, keepdims=k) ** (1 / 3), x234, "nonzero"),
            ]
            if dim is not None:
                cases.append(Case(f"logsumexp{kw}", lambda a, kw=kw: a.logsumexp(**kw),
                                  lambda a, nd=nd, k=keep: np.log(np.exp(a).sum(nd, keepdims=k)), x234))
            if isinstance(dim, int):
                cases += [
                    Case(f"max_dim{kw}", lambda a, kw=kw: a.max(**kw).values,
                         lambda a, nd=nd, k=keep: a.max(nd, keepdims=k), x234, "distinct"),
                    Case(f"min_dim{kw}", lambda a, kw=kw: dg.min(a, **kw)[0],
                         lambda a, nd=nd, k=keep: a.min(nd, keepdims=k), x234, "distinct"),
                    Case(f"prod{kw}", lambda a, kw=kw: a.prod(**kw), lambda a, nd=nd, k=keep: a.prod(nd, keepdims=k),
                         x234),
                ]
    cases += [
        Case("sum_empty", lambda a: a.sum(1), lambda a: a.sum(1), [(2, 0, 3)]),
        Case("sum_size1", lambda a: a.sum(0), lambda a: a.sum(0), [(1, 3)]),
        Case("mean_size1", lambda a: a.mean((0, 2)), lambda a: a.mean((0, 2)), [(1, 3, 1)]),
        Case("max_all", lambda a: a.max(), lambda a: a.max(), [(3, 4)], "distinct"),
        Case("max_ties", lambda a: (a * 0 + a.clamp(max=0.5)).amax(1), lambda a: np.minimum(a, 0.5).max(1),
             [(3, 8)], "distinct"),
        Case("prod_all", lambda a: a.prod(), lambda a: a.prod(), [(2, 3)]),
        Case("prod_with_zero", lambda a: (a * dg.tensor([1.0, 0.0, 1.0], dtype=dg.float64, device=a.device)).prod(1),
             lambda a: (a * [1.0, 0.0, 1.0]).prod(1), [(2, 3)]),
        Case("norm_all", lambda a: a.norm(), lambda a: np.sqrt((a * a).sum()), [(3, 4)]),
        Case("norm_inf", lambda a: a.norm(p=float("inf"), dim=1), lambda a: np.abs(a).max(1), [(3, 4)], "distinct"),
        # shape
        Case("reshape", lambda a: a.reshape(4, -1), lambda a: a.reshape(4, -1), [(2, 3, 4)]),
        Case("view", lambda a: a.view(6, 4), lambda a: a.reshape(6, 4), [(2, 3, 4)]),
        Case("flatten", lambda a: a.flatten(1), lambda a: a.reshape(2, 12), [(2, 3, 4)]),
        Case("unflatten", lambda a: a.unflatten(1, (2, 2)), lambda a: a.reshape(3, 2, 2), [(3, 4)]),
        Case("squeeze", lambda a: a.squeeze(), lambda a: a.squeeze(), [(1, 3, 1)]),
        Case("squeeze_dim", lambda a: a.squeeze(0), lambda a: a.squeeze(0), [(1, 3, 1)]),
        Case("unsqueeze", lambda a: a.unsqueeze(-1), lambda a: a[..., None], [(3, 4)]),
        Case("transpose", lambda a: a.transpose(0, 2), lambda a: a.swapaxes(0, 2), [(2, 3, 4)]),
        Case("permute", lambda a: a.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1), [(2, 3, 4)]),
        Case("T", lambda a: a.T, lambda a: a.T, [(3, 4)]),
        Case("expand", lambda a: a.expand(2, 3, 4), lambda a: np.broadcast_to(a, (2, 3, 4)), [(3, 1)]),
        Case("expand_as", lambda a, b: a.expand_as(b) * b, lambda a, b: a * b, [(1, 4), (3, 4)]),
        Case("repeat", lambda a: a.repeat(2, 1, 3), lambda a: np.tile(a, (2, 1, 3)), [(3, 2)]),
        Case("flip", lambda a: a.flip((0, 2)), lambda a: a[::-1, :, ::-1], [(2, 3, 4)]),
        Case("cat", lambda a, b: dg.cat([a, b], 1), lambda a, b: np.concatenate([a, b], 1), [(2, 3), (2, 5)]),
        Case("cat_empty", lambda a, b: dg.cat([a, b], 0), lambda a, b: np.concatenate([a, b], 0), [(0, 3), (2, 3)]),
        Case("stack", lambda a, b: dg.stack([a, b], -1), lambda a, b: np.stack([a, b], -1), [(2, 3), (2, 3)]),
        Case("split", lambda a: a.split(2, 1)[1], lambda a: a[:, 2:4], [(3, 5)]),
        Case("split_sizes", lambda a: a.split([1, 4], 1)[1], lambda a: a[:, 1:], [(3, 5)]),
        Case("chunk", lambda a: a.chunk(3, 0)[2], lambda a: a[4:], [(5, 2)]),
        Case("getitem_basic", lambda a: a[1, ::2, None, ...], lambda a: a[1, ::2, None, ...], [(3, 4, 2)]),
        Case("getitem_int_array", lambda a: a[dg.tensor([0, 2, 0])], lambda a: a[[0, 2, 0]], [(3, 4)]),
        Case("getitem_np_array", lambda a: a[:, np.array([3, 1])], lambda a: a[:, [3, 1]], [(3, 4)]),
        Case("getitem_mask", lambda a: a[a > 0], lambda a: a[a > 0], [(3, 4)], "nonzero"),
        Case("getitem_mixed", lambda a: a[[0, 1], :, [1, 1]], lambda a: a[[0, 1], :, [1, 1]], [(2, 3, 4)]),
        Case("index_select", lambda a: a.index_select(1, dg.tensor([2, 0, 2])), lambda a: a[:, [2, 0, 2]], [(3, 4)]),
        Case("gather", lambda a: a.gather(1, dg.tensor([[0, 0], [1, 0], [3, 2]])),
             lambda a: np.take_along_axis(a, np.array([[0, 0], [1, 0], [3, 2]]), 1), [(3, 4)]),
        Case("scatter_add", lambda a, b: a.scatter_add(0, dg.tensor([[1, 0, 1]]), b),
             lambda a, b: a + np.array([[0, b[0, 1], 0], [b[0, 0], 0, b[0, 2]]]), [(2, 3), (1, 3)]),
        Case("scatter_add_repeats", lambda a, b: a.scatter_add(1, dg.tensor([[0, 0], [2, 0]]), b),
             lambda a, b: a + np.array([[b[0, 0] + b[0, 1], 0, 0], [b[1, 1], 0, b[1, 0]]]), [(2, 3), (2, 3)]),
        Case("tril", lambda a: a.tril(), np.tril, [(4, 4)]),
        Case("triu_batched", lambda a: a.triu(1), lambda a: np.triu(a, 1), [(2, 3, 4)]),
        # linalg
        Case("matmul", lambda a, b: a @ b, np.matmul, [(3, 4), (4, 5)]),
        Case("matmul_vv", lambda a, b: a @ b, np.matmul, [(4,), (4,)]),
        Case("matmul_vm", lambda a, b: a @ b, np.matmul, [(4,), (4, 5)]),
        Case("matmul_mv", lambda a, b: a @ b, np.matmul, [(3, 4), (4,)]),
        Case("matmul_batched", lambda a, b: a @ b, np.matmul, [(2, 3, 4), (4, 5)]),
        Case("matmul_broadcast", lambda a, b: dg.matmul(a, b), np.matmul, [(2, 1, 3, 4), (5, 4, 2)]),
        Case("matmul_empty", lambda a, b: a @ b, np.matmul, [(0, 4), (4, 5)]),
        Case("einsum_bmm", lambda a, b: dg.einsum("bij,bjk->bik", a, b), lambda a, b: np.einsum("bij,bjk->bik", a, b),
             [(2, 3, 4), (2, 4, 5)]),
        Case("einsum_ellipsis", lambda a, b: dg.einsum("...i,i", a, b), lambda a, b: np.einsum("...i,i", a, b),
             [(2, 3, 4), (4,)]),
        Case("einsum_sum_only", lambda a: dg.einsum("ij->", a), lambda a: np.einsum("ij->", a), [(3, 4)]),
        Case("einsum_outer", lambda a, b: dg.einsum("i,j->ij", a, b), np.outer, [(3,), (4,)]),
    ]
    return cases


CASES = table()


def _inputs(case, device, rng):
    arrays = [_gen(_kinds(case, i), s, rng) for i, s in enumerate(case.shapes)]
    tensors = [dg.tensor(a, dtype=dg.float64, device=device, requires_grad=True) for a in arrays]
    return arrays, tensors


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_forward_matches_numpy(case, device):
    arrays, tensors = _inputs(case, device, np.random.default_rng(1))
    out = case.fn(*tensors)
    expected = case.ref(*arrays)
    got = to_numpy(out)
    assert got.shape == np.shape(expected), f"{case}: shape {got.shape} != {np.shape(expected)}"
    assert got.dtype == np.float64, f"{case}: float64 inputs gave {got.dtype}"
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-10, err_msg=repr(case))


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_gradient_matches_finite_differences(case, device):
    _, tensors = _inputs(case, device, np.random.default_rng(2))
    assert gradcheck(case.fn, tensors)
