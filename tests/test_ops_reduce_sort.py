"""Reductions, scans, sorting and products checked against torch: forward values, dtypes and
shapes, input gradients, gradcheck in float64, and the exception type of bad input."""
import numpy as np
import pytest
import torch

import distgraph as dg
import distgraph.linalg as dgl
from distgraph.autograd import gradcheck
from dg_testing import to_numpy

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


def ties(*shape):
    """Small integers as floats: many equal values."""
    return RNG.integers(0, 3, shape).astype(np.float64)


def _leaves(arrays, device, grad):
    ours = [dg.tensor(a, device=device, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    theirs = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]
    return ours, theirs


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [y for o in out for y in _flat(o)]
    return [out]


def _same(o, t, what):
    assert str(o.dtype).replace("dg.", "").replace("distgraph.", "") == str(t.dtype).replace("torch.", ""), \
        f"{what}: dtype {o.dtype} vs {t.dtype}"
    assert tuple(o.shape) == tuple(t.shape), f"{what}: shape {tuple(o.shape)} vs {tuple(t.shape)}"
    np.testing.assert_allclose(to_numpy(o).astype(np.float64), t.detach().numpy().astype(np.float64),
                               rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=what)


def compare(fn, arrays, device, grad=True, tfn=None):
    """Run ``fn`` on distgraph and on torch (``tfn`` if the spelling differs); compare every output
    and, where they are floating, the gradient of a fixed weighted sum of them."""
    ours, theirs = _leaves(arrays, device, grad)
    yo, yt = _flat(fn(dg, *ours)), _flat((tfn or fn)(torch, *theirs))
    assert len(yo) == len(yt)
    for k, (o, t) in enumerate(zip(yo, yt)):
        _same(o, t, f"output {k}")
    if not grad:
        return
    live = [(o, t) for o, t in zip(yo, yt) if t.requires_grad]
    if not live:
        return
    lo = lt = 0
    for o, t in live:
        w = RNG.standard_normal(tuple(t.shape))
        if o.requires_grad:  # else its gradient is zero (e.g. a count): torch's must be too
            lo = lo + (o * dg.tensor(w, device=device).to(o.dtype)).sum()
        lt = lt + (t * torch.tensor(w, dtype=t.dtype)).sum()
    if not isinstance(lo, int):
        lo.backward()
    lt.backward()
    for k, (o, t) in enumerate(zip(ours, theirs)):
        if t.requires_grad:
            gt = t.grad if t.grad is not None else torch.zeros_like(t)
            go = o.grad if o.grad is not None else dg.zeros(*t.shape)
            np.testing.assert_allclose(to_numpy(go), gt.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"grad {k}")


# (name, fn(lib, *tensors), input arrays); fn gets ``dg`` or ``torch`` as ``lib``.
CASES = [
    # reductions: axis alias, keepdim, dtype=, 0-d inputs, empty inputs
    ("sum_axis", lambda L, x: L.sum(x, axis=1), [rand(2, 3)]),
    ("sum_dims_keep", lambda L, x: x.sum((0, 2), keepdim=True), [rand(2, 3, 4)]),
    ("sum_empty_list", lambda L, x: L.sum(x, dim=[]), [rand(2, 3)]),
    ("sum_dtype", lambda L, x: x.sum(1, dtype=L.float64), [rand(2, 3, dtype=np.float32)]),
    ("sum_int", lambda L, x: x.sum(), [np.arange(6, dtype=np.int32)]),
    ("sum_bool", lambda L, x: (x > 0).sum(0), [rand(3, 2)]),
    ("sum_0d", lambda L, x: (L.sum(x, 0), L.sum(x, -1), L.sum(x, (0,))), [rand()]),
    ("sum_empty", lambda L, x: (x.sum(0), x.sum()), [rand(0, 3)]),
    ("mean_axis_keep", lambda L, x: x.mean(axis=-1, keepdim=True), [rand(2, 3)]),
    ("mean_dtype", lambda L, x: L.mean(x, dtype=L.float64), [np.arange(6, dtype=np.int64)]),
    ("mean_0d", lambda L, x: L.mean(x, 0), [rand()]),
    ("prod_dim", lambda L, x: L.prod(x, 1, keepdim=True), [rand(2, 3)]),
    ("prod_zeros", lambda L, x: (x.prod(), x.prod(0)), [np.array([[0., 2], [3, 0], [1, 4]])]),
    ("prod_0d", lambda L, x: L.prod(x, 0), [rand()]),
    ("prod_int", lambda L, x: x.prod(), [np.arange(1, 5, dtype=np.int32)]),
    ("amax_axis", lambda L, x: L.amax(x, axis=(0, 1)), [rand(2, 3)]),
    ("amin_ties", lambda L, x: L.amin(x, 1), [ties(3, 4)]),
    ("amax_0d", lambda L, x: L.amax(x, 0), [rand()]),
    ("max_dim", lambda L, x: L.max(x, 1), [rand(3, 4)]),
    ("max_dim_ties", lambda L, x: tuple(L.max(x, dim=0, keepdim=True)), [ties(4, 3)]),
    ("min_dim_ties", lambda L, x: tuple(x.min(-1)), [ties(3, 5)]),
    ("max_axis", lambda L, x: tuple(x.max(axis=1)), [rand(2, 3)]),
    ("max_all", lambda L, x: L.max(x), [rand(2, 3)]),
    ("max_binary", lambda L, x, y: L.max(x, y), [rand(2, 3), rand(3)]),
    ("min_binary", lambda L, x, y: L.min(x, y), [rand(2, 3), rand(2, 3)]),
    ("max_0d", lambda L, x: tuple(L.max(x, 0)), [rand()]),
    ("argmax_ties", lambda L, x: (L.argmax(x), L.argmax(x, 1), x.argmin(0, keepdim=True)), [ties(3, 4)]),
    ("argmax_0d", lambda L, x: (L.argmax(x, 0), L.argmin(x)), [rand()]),
    ("var_unbiased_pos", lambda L, x: (L.var(x, 1, False), L.var(x, True), x.var(0, True, True)), [rand(3, 4)]),
    ("var_correction", lambda L, x: L.var(x, dim=1, correction=0, keepdim=True), [rand(3, 4)]),
    ("std_axis", lambda L, x: L.std(x, axis=0), [rand(3, 4)]),
    ("var_mean", lambda L, x: L.var_mean(x, 1), [rand(3, 4)]),
    ("std_mean", lambda L, x: L.std_mean(x, dim=0, correction=0, keepdim=True), [rand(3, 4)]),
    ("std_mean_all", lambda L, x: L.std_mean(x), [rand(3, 4)]),
    ("nansum", lambda L, x: (L.nansum(x), L.nansum(x, 1)), [np.array([[1., np.nan, 2], [np.nan, 3, 4]])]),
    ("nanmean", lambda L, x: (L.nanmean(x), x.nanmean(0)), [np.array([[1., np.nan, 2], [5, 3, 4]])]),
    ("nansum_int", lambda L, x: L.nansum(x), [np.arange(4, dtype=np.int32)]),
    ("aminmax", lambda L, x: tuple(L.aminmax(x)), [rand(3, 4)]),
    ("aminmax_dim", lambda L, x: tuple(L.aminmax(x, dim=1, keepdim=True)), [rand(3, 4)]),
    ("logsumexp_keep", lambda L, x: L.logsumexp(x, (0, 1), keepdim=True), [rand(3, 4)]),
    ("logsumexp_0d", lambda L, x: L.logsumexp(x, 0), [rand()]),
    ("logsumexp_int", lambda L, x: L.logsumexp(x, 0), [np.arange(4)]),
    ("norm_p", lambda L, x: (L.norm(x), L.norm(x, 1, 1), L.norm(x, 3, 0, True), L.norm(x, float("inf"))), [rand(3, 4)]),
    ("norm_p0", lambda L, x: L.norm(x, 0), [np.array([0., 1, 2, 0])]),
    ("all_any", lambda L, x: (L.all(x), L.any(x, 1), x.all(axis=0), x.any(0, keepdim=True)), [ties(3, 4)]),
    ("all_uint8", lambda L, x: (L.all(x), L.any(x, 0)), [np.array([1, 2, 0], np.uint8)]),
    ("count_nonzero", lambda L, x: (L.count_nonzero(x), L.count_nonzero(x, 1), L.count_nonzero(x, (0, 1))),
     [ties(3, 4)]),
    ("histc", lambda L, x: (L.histc(x, 4), L.histc(x, 3, min=-1, max=1)), [rand(20)]),
    # scans
    ("cumsum", lambda L, x: (L.cumsum(x, 1), x.cumsum(dim=0)), [rand(3, 4)]),
    ("cumsum_dtype", lambda L, x: L.cumsum(x, 0, dtype=L.float64), [rand(4, dtype=np.float32)]),
    ("cumsum_int", lambda L, x: (L.cumsum(x, 0), L.cumprod(x, 0)), [np.arange(1, 5, dtype=np.int32)]),
    ("cumsum_0d", lambda L, x: (L.cumsum(x, 0), L.cumprod(x, -1)), [rand()]),
    ("cumsum_empty", lambda L, x: L.cumsum(x, 0), [rand(0, 2)]),
    ("cumprod", lambda L, x: L.cumprod(x, -1), [rand(3, 4)]),
    ("cumprod_zeros", lambda L, x: L.cumprod(x, 1), [np.array([[2., 0, 3, 4], [0, 0, 2, 1], [1, 2, 3, 0]])]),
    ("cummax", lambda L, x: tuple(L.cummax(x, 1)), [ties(3, 5)]),
    ("cummin", lambda L, x: tuple(x.cummin(0)), [ties(5, 3)]),
    ("cummax_nan", lambda L, x: tuple(L.cummax(x, 0)), [np.array([1., np.nan, 2, np.nan, 0])]),
    ("cummax_0d", lambda L, x: tuple(L.cummax(x, 0)), [rand()]),
    ("logcumsumexp", lambda L, x: L.logcumsumexp(x, 1), [rand(3, 4)]),
    ("logcumsumexp_big", lambda L, x: L.logcumsumexp(x, 0), [np.array([-1000., 1000, 0, -np.inf, 1000])]),
    # sorting and selection
    ("sort", lambda L, x: tuple(L.sort(x)), [rand(3, 4)]),
    ("sort_ties_stable", lambda L, x: tuple(L.sort(x, dim=0, stable=True)), [ties(6, 3)]),
    ("sort_ties_desc", lambda L, x: tuple(L.sort(x, dim=1, descending=True, stable=True)), [ties(3, 6)]),
    ("sort_nan", lambda L, x: (tuple(x.sort()), tuple(x.sort(descending=True))), [np.array([1., np.nan, 0, 2])]),
    ("sort_0d", lambda L, x: tuple(L.sort(x, 0)), [rand()]),
    ("sort_int", lambda L, x: tuple(L.sort(x, descending=True, stable=True)), [np.array([3, 1, 3, 2])]),
    ("argsort", lambda L, x: (L.argsort(x, dim=1, stable=True), x.argsort(dim=0, descending=True, stable=True)),
     [ties(4, 5)]),
    ("msort", lambda L, x: L.msort(x), [rand(3, 2)]),
    ("topk", lambda L, x: tuple(L.topk(x, 2)), [rand(3, 5)]),
    ("topk_smallest", lambda L, x: tuple(x.topk(3, dim=0, largest=False)), [rand(4, 2)]),
    ("topk_0", lambda L, x: tuple(L.topk(x, 0)), [rand(2, 3)]),
    ("kthvalue", lambda L, x: tuple(L.kthvalue(x, 2, 1, keepdim=True)), [rand(3, 4)]),
    ("median_all", lambda L, x: L.median(x), [rand(3, 4)]),
    ("median_dim", lambda L, x: tuple(L.median(x, 0)), [rand(4, 3)]),
    ("median_nan", lambda L, x: (L.median(x), tuple(L.median(x, 0))), [np.array([1., np.nan, 2])]),
    ("median_empty", lambda L, x: L.median(x), [rand(0)]),
    ("quantile", lambda L, x: (L.quantile(x, 0.3), L.quantile(x, 0.5, dim=1), x.quantile(0.8, -1, keepdim=True)),
     [rand(3, 5)]),
    ("quantile_q_tensor", lambda L, x: (L.quantile(x, L.tensor([0., 0.25, 1.], dtype=L.float64), dim=0, keepdim=True),
                                        L.quantile(x, L.tensor([0.4, 0.9], dtype=L.float64)),
                                        L.quantile(x, L.tensor(0.6, dtype=L.float64), keepdim=True)), [rand(4, 3)]),
    ("quantile_modes", lambda L, x: tuple(L.quantile(x, 0.3, 1, interpolation=m)
                                          for m in ("lower", "higher", "midpoint", "nearest")), [rand(2, 6)]),
    ("quantile_nan", lambda L, x: (L.quantile(x, 0.5, dim=1), L.quantile(x, 0.2)),
     [np.array([[1., np.nan, 2, 5], [3, 1, 0, 4]])]),
    ("empty_dims", lambda L, x: (L.logsumexp(x, 0), L.prod(x, 0), tuple(L.cummax(x, 0)), tuple(L.sort(x, 0)),
                                 tuple(L.topk(x, 0, 0)), L.var(x, 0), L.count_nonzero(x, 0), L.cumprod(x, 0),
                                 L.amax(x, 1), L.logcumsumexp(x, 0)), [rand(0, 2)]),
    ("nanmedian", lambda L, x: (L.nanmedian(x), tuple(L.nanmedian(x, 1))), [np.array([[1., np.nan, 2, 5], [3, 1, 0, 4]])]),
    ("mode", lambda L, x: tuple(L.mode(x, 1)), [np.array([[3., 1, 3, 1, 2, 3], [1, 2, 2, 1, 0, 5]])]),
    ("mode_dim0", lambda L, x: tuple(x.mode(0, keepdim=True)), [np.array([[1., 2], [1, 3], [2, 3]])]),
    # products
    ("mm", lambda L, a, b: L.mm(a, b), [rand(2, 3), rand(3, 4)]),
    ("bmm", lambda L, a, b: a.bmm(b), [rand(2, 2, 3), rand(2, 3, 4)]),
    ("mv", lambda L, a, b: L.mv(a, b), [rand(2, 3), rand(3)]),
    ("dot", lambda L, a, b: (L.dot(a, b), L.vdot(a, b)), [rand(3), rand(3)]),
    ("inner", lambda L, a, b: L.inner(a, b), [rand(2, 3), rand(4, 3)]),
    ("inner_0d", lambda L, a, b: L.inner(a, b), [rand(), rand(2)]),
    ("outer", lambda L, a, b: (L.outer(a, b), a.ger(b)), [rand(2), rand(3)]),
    ("addmm", lambda L, c, a, b: (L.addmm(c, a, b), L.addmm(c, a, b, beta=0.5, alpha=2)), [rand(4), rand(2, 3), rand(3, 4)]),
    ("addmm_beta0", lambda L, c, a, b: L.addmm(c, a, b, beta=0), [np.full((2, 4), np.nan), rand(2, 3), rand(3, 4)]),
    ("addmv", lambda L, c, a, b: L.addmv(c, a, b, alpha=3), [rand(2), rand(2, 3), rand(3)]),
    ("addr", lambda L, c, a, b: L.addr(c, a, b, beta=2), [rand(2, 3), rand(2), rand(3)]),
    ("baddbmm", lambda L, c, a, b: L.baddbmm(c, a, b, beta=0.5), [rand(2, 2, 4), rand(2, 2, 3), rand(2, 3, 4)]),
    ("addbmm", lambda L, c, a, b: L.addbmm(c, a, b, alpha=0.5), [rand(2, 4), rand(3, 2, 3), rand(3, 3, 4)]),
    ("einsum_diag", lambda L, a: (L.einsum("ii->i", a), L.einsum("ii", a)), [rand(3, 3)]),
    ("einsum_batch_trace", lambda L, a: L.einsum("bii->b", a), [rand(2, 3, 3)]),
    ("einsum_mixed", lambda L, a, b: L.einsum("iij,jk->ik", a, b), [rand(3, 3, 2), rand(2, 4)]),
    ("einsum_ellipsis", lambda L, a, b: L.einsum("...ij,...jk->...ik", a, b), [rand(2, 2, 3), rand(2, 3, 4)]),
    ("einsum_list", lambda L, a, b: L.einsum("i,j", [a, b]), [rand(2), rand(3)]),
    ("tensordot", lambda L, a, b: L.tensordot(a, b), [rand(2, 3, 4), rand(3, 4, 5)]),
    ("tensordot_1", lambda L, a, b: L.tensordot(a, b, 1), [rand(2, 3), rand(3, 4, 2)]),
    ("tensordot_lists", lambda L, a, b: L.tensordot(a, b, ([1, 0], [0, 1])), [rand(3, 2, 4), rand(2, 3, 5)]),
    ("kron", lambda L, a, b: L.kron(a, b), [rand(2, 3), rand(2, 2)]),
    ("kron_ranks", lambda L, a, b: L.kron(a, b), [rand(2), rand(3, 2)]),
    ("trace", lambda L, a: (L.trace(a), a.trace()), [rand(3, 4)]),
    ("trace_int", lambda L, a: L.trace(a), [np.arange(9, dtype=np.int32).reshape(3, 3)]),
    ("cross", lambda L, a, b: L.cross(a, b, dim=1), [rand(2, 3), rand(2, 3)]),
    ("cross_bcast", lambda L, a, b: L.linalg.cross(a, b), [rand(4, 3), rand(1, 3)]),
    ("cdist", lambda L, a, b: (L.cdist(a, b), L.cdist(a, b, p=1), L.cdist(a, b, 3.0)), [rand(3, 2), rand(4, 2)]),
    ("cdist_batch_zero", lambda L, a: L.cdist(a, a), [rand(2, 3, 2)]),
    ("linalg_norms", lambda L, a: (L.linalg.norm(a), L.linalg.norm(a, "fro"), L.linalg.norm(a, dim=1),
                                   L.linalg.vector_norm(a, 3, keepdim=True), L.linalg.vector_norm(a, float("inf"), 0),
                                   L.linalg.matrix_norm(a, 1), L.linalg.matrix_norm(a, -float("inf"), keepdim=True),
                                   L.linalg.matrix_norm(a, "nuc"), L.linalg.matrix_norm(a, 2)), [rand(3, 4)]),
    ("linalg_norm_batch", lambda L, a: (L.linalg.matrix_norm(a, "fro", (0, 2)), L.linalg.norm(a, 1, (1, 2))),
     [rand(2, 3, 4)]),
]


def _lib(lib):
    """``L.linalg`` for both libraries (distgraph's module may not be exported yet)."""
    if lib is dg and not hasattr(dg, "linalg"):
        class _L:
            def __getattr__(self, name):
                return dgl if name == "linalg" else getattr(dg, name)
        return _L()
    return lib


@pytest.mark.parametrize("name,fn,arrays", CASES, ids=[c[0] for c in CASES])
def test_against_torch(name, fn, arrays, device):
    compare(lambda L, *xs: fn(_lib(L), *xs), arrays, device)


# (name, fn, inputs): float64 gradcheck of our own gradients by central differences
GRADCHECK = [
    ("cumprod_zeros", lambda x: dg.cumprod(x, 1), [np.array([[2., 0, 3, 4], [0, 0.5, 2, 1]])]),
    ("logcumsumexp", lambda x: dg.logcumsumexp(x, 0), [rand(5, 2)]),
    ("cummax", lambda x: dg.cummax(x, 1).values, [rand(2, 5)]),
    ("sort", lambda x: dg.sort(x, 0, descending=True).values, [rand(4, 3)]),
    ("topk", lambda x: dg.topk(x, 2, 0).values, [rand(4, 3)]),
    ("median", lambda x: (dg.median(x), dg.median(x, 1).values), [rand(3, 5)]),
    ("quantile", lambda x: (dg.quantile(x, 0.3), dg.quantile(x, dg.tensor([0.1, 0.75], dtype=dg.float64), 1)),
     [rand(3, 5)]),
    ("var_mean", lambda x: dg.var_mean(x, 1), [rand(3, 4)]),
    ("nanmean", lambda x: dg.nanmean(x, 0), [np.array([[1., np.nan], [2, 3]])]),
    ("einsum_diag", lambda x: dg.einsum("bii->bi", x), [rand(2, 3, 3)]),
    ("tensordot", lambda x, y: dg.tensordot(x, y, 1), [rand(2, 3), rand(3, 2)]),
    ("kron", lambda x, y: dg.kron(x, y), [rand(2, 2), rand(2)]),
    ("cross", lambda x, y: dg.cross(x, y, 0), [rand(3, 2), rand(3, 2)]),
    ("cdist", lambda x, y: dg.cdist(x, y), [rand(3, 2), rand(2, 2)]),
    ("addbmm", lambda c, a, b: dg.addbmm(c, a, b, beta=2), [rand(2, 2), rand(2, 2, 3), rand(2, 3, 2)]),
    ("nuclear", lambda a: dgl.matrix_norm(a, "nuc"), [rand(3, 2)]),
    ("matrix_norm_inf", lambda a: dgl.matrix_norm(a, float("inf")), [rand(3, 2)]),
]


@pytest.mark.parametrize("name,fn,arrays", GRADCHECK, ids=[c[0] for c in GRADCHECK])
def test_gradcheck(name, fn, arrays):
    xs = [dg.tensor(a, requires_grad=True) for a in arrays]
    assert gradcheck(fn, xs)


# not differentiable: unique, searchsorted, bucketize (outputs compared, including dtype)
INDEX_CASES = [
    ("unique", lambda L, x: L.unique(x), [np.array([[3, 1], [3, 2]])]),
    ("unique_all", lambda L, x: L.unique(x, return_inverse=True, return_counts=True), [np.array([[3., 1], [3, 2]])]),
    ("unique_dim", lambda L, x: x.unique(dim=0, return_inverse=True, return_counts=True),
     [np.array([[1, 2], [0, 1], [1, 2]])]),
    ("unique_0d", lambda L, x: L.unique(x, return_counts=True), [np.array(4)]),
    ("unique_consecutive", lambda L, x: L.unique_consecutive(x, return_inverse=True, return_counts=True),
     [np.array([1, 1, 2, 2, 3, 1, 1])]),
    ("unique_consecutive_dim", lambda L, x: L.unique_consecutive(x, return_counts=True, dim=1),
     [np.array([[1, 1, 2, 1], [0, 0, 3, 0]])]),
    ("searchsorted", lambda L, s, v: (L.searchsorted(s, v), L.searchsorted(s, v, right=True),
                                      L.searchsorted(s, v, side="right", out_int32=True)),
     [np.array([1., 3, 3, 5]), np.array([[3., 0], [6, 4]])]),
    ("searchsorted_nd", lambda L, s, v: L.searchsorted(s, v), [np.array([[1, 3, 5], [2, 4, 6]]), np.array([[3, 6], [1, 4]])]),
    ("searchsorted_sorter", lambda L, s, v: L.searchsorted(s, v, sorter=L.argsort(s)), [np.array([5., 1, 3]), np.array([2., 4])]),
    ("bucketize", lambda L, v, b: (L.bucketize(v, b), L.bucketize(v, b, right=True, out_int32=True)),
     [np.array([[1, 3], [5, 0]]), np.array([1, 3, 5])]),
    ("bincount", lambda L, x, w32, w64, wi: (L.bincount(x), x.bincount(minlength=9), L.bincount(x, w32),
                                             L.bincount(x, weights=w64, minlength=2), L.bincount(x, wi)),
     [np.array([0, 2, 2, 5, 1]), rand(5, dtype=np.float32), rand(5), np.array([1, 2, 3, 4, 5])]),
    ("bincount_empty", lambda L, x: (L.bincount(x), L.bincount(x, minlength=3)), [np.zeros(0, np.int64)]),
    ("bincount_uint8", lambda L, x: L.bincount(x), [np.array([3, 0, 3], np.uint8)]),
]


@pytest.mark.parametrize("name,fn,arrays", INDEX_CASES, ids=[c[0] for c in INDEX_CASES])
def test_index_results(name, fn, arrays, device):
    compare(fn, arrays, device, grad=False)


def test_scalar_values_and_namedtuples():
    s = dg.tensor([1., 3, 5])
    assert dg.searchsorted(s, 3).shape == () and int(dg.searchsorted(s, 3)) == int(torch.searchsorted(
        torch.tensor([1., 3, 5]), 3))
    assert int(dg.bucketize(3, s, right=True)) == int(torch.bucketize(3, torch.tensor([1., 3, 5]), right=True))
    x = dg.tensor([[1., 5], [4, 2]])
    for r in (x.max(1), x.min(1), x.sort(), x.topk(1), x.kthvalue(1), x.median(1), x.mode(1), x.cummax(0)):
        assert r.values is r[0] and r.indices is r[1]
    assert x.aminmax().min is x.aminmax()[0] or float(x.aminmax().min) == 1.0


def test_cumprod_gradient_with_zeros_matches_torch():
    a = np.array([0., 2, 0, 3, 1.5])
    x = dg.tensor(a, requires_grad=True)
    t = torch.tensor(a, requires_grad=True)
    dg.cumprod(x, 0).sum().backward()
    torch.cumprod(t, 0).sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), t.grad.numpy())


def _raises(fn, arrays):
    """Both libraries raise, and the same exception type."""
    ours, theirs = _leaves(arrays, "cpu", False)
    with pytest.raises(Exception) as te:
        fn(torch, *theirs)
    with pytest.raises(te.type):
        fn(_lib(dg), *ours)


ERRORS = [
    ("cumsum_no_dim", lambda L, x: L.cumsum(x), [rand(3)]),
    ("cumsum_bad_dim", lambda L, x: L.cumsum(x, 2), [rand(3, 2)]),
    ("logcumsumexp_int", lambda L, x: L.logcumsumexp(x, 0), [np.arange(3)]),
    ("sort_bad_dim", lambda L, x: L.sort(x, 2), [rand(3, 2)]),
    ("topk_k", lambda L, x: L.topk(x, 4), [rand(2, 3)]),
    ("kthvalue_k", lambda L, x: L.kthvalue(x, 0), [rand(2, 3)]),
    ("median_empty_dim", lambda L, x: L.median(x, 0), [rand(0, 3)]),
    ("mode_empty_dim", lambda L, x: L.mode(x, 0), [rand(0, 3)]),
    ("max_empty", lambda L, x: L.max(x), [rand(0)]),
    ("amax_empty", lambda L, x: L.amax(x), [rand(0)]),
    ("argmax_empty", lambda L, x: L.argmax(x), [rand(0)]),
    ("kthvalue_empty", lambda L, x: L.kthvalue(x, 1, 0), [rand(0, 2)]),
    ("max_dim_empty", lambda L, x: L.max(x, 0), [rand(0, 2)]),
    ("mean_int", lambda L, x: L.mean(x), [np.arange(3)]),
    ("nanmean_int", lambda L, x: L.nanmean(x), [np.arange(3)]),
    ("var_int", lambda L, x: L.var(x), [np.arange(3)]),
    ("sum_dim_and_axis", lambda L, x: L.sum(x, dim=0, axis=0), [rand(2)]),
    ("aminmax_empty", lambda L, x: L.aminmax(x), [rand(0)]),
    ("histc_int", lambda L, x: L.histc(x, 3), [np.arange(3)]),
    ("histc_range", lambda L, x: L.histc(x, 3, min=2, max=1), [rand(3)]),
    ("bincount_negative", lambda L, x: L.bincount(x), [np.array([1, -1])]),
    ("quantile_q_range", lambda L, x: L.quantile(x, 1.5), [rand(3)]),
    ("quantile_int", lambda L, x: L.quantile(x, 0.5), [np.arange(3)]),
    ("quantile_q_dtype", lambda L, x: L.quantile(x, L.tensor([0.5], dtype=L.float32)), [rand(3)]),
    ("quantile_empty", lambda L, x: L.quantile(x, 0.5), [rand(0)]),
    ("quantile_mode", lambda L, x: L.quantile(x, 0.5, interpolation="cubic"), [rand(3)]),
    ("quantile_q_2d", lambda L, x: L.quantile(x, L.tensor([[0.5]], dtype=L.float64)), [rand(3)]),
    ("bincount_float", lambda L, x: L.bincount(x), [np.array([1., 2])]),
    ("bincount_2d", lambda L, x: L.bincount(x), [np.array([[1, 2]])]),
    ("bincount_minlength", lambda L, x: L.bincount(x, minlength=-1), [np.array([1, 2])]),
    ("bincount_weights", lambda L, x, w: L.bincount(x, w), [np.array([1, 2]), rand(3)]),
    ("searchsorted_side", lambda L, s: L.searchsorted(s, 1.0, side="left", right=True), [np.array([1., 2])]),
    ("searchsorted_shape", lambda L, s, v: L.searchsorted(s, v), [rand(2, 3), rand(3, 1)]),
    ("bucketize_2d", lambda L, v, b: L.bucketize(v, b), [rand(2), rand(2, 2)]),
    ("mm_shapes", lambda L, a, b: L.mm(a, b), [rand(2, 2), rand(3, 2)]),
    ("mm_dtypes", lambda L, a, b: L.mm(a, b), [rand(2, 2, dtype=np.float32), rand(2, 2)]),
    ("matmul_dtypes", lambda L, a, b: L.matmul(a, b), [rand(2, 2, dtype=np.float32), rand(2, 2)]),
    ("dot_dtypes", lambda L, a, b: L.dot(a, b), [rand(2, dtype=np.float32), rand(2)]),
    ("dot_2d", lambda L, a, b: L.dot(a, b), [rand(2, 2), rand(2, 2)]),
    ("bmm_shapes", lambda L, a, b: L.bmm(a, b), [rand(2, 2, 3), rand(2, 2, 3)]),
    ("mv_shapes", lambda L, a, b: L.mv(a, b), [rand(2, 3), rand(2)]),
    ("einsum_diag_sizes", lambda L, a: L.einsum("ii->i", a), [rand(2, 3)]),
    ("einsum_sizes", lambda L, a, b: L.einsum("ij,jk->ik", a, b), [rand(2, 3), rand(2, 3)]),
    ("trace_3d", lambda L, a: L.trace(a), [rand(2, 2, 2)]),
    ("cross_size", lambda L, a, b: L.cross(a, b, dim=0), [rand(2, 3), rand(2, 3)]),
    ("cdist_cols", lambda L, a, b: L.cdist(a, b), [rand(3, 2), rand(4, 3)]),
    ("linalg_norm_3d_ord", lambda L, a: L.linalg.norm(a, 2), [rand(2, 2, 2)]),
    ("prod_tuple", lambda L, a: L.prod(a, (0, 1)), [rand(2, 2)]),
]


@pytest.mark.parametrize("name,fn,arrays", ERRORS, ids=[c[0] for c in ERRORS])
def test_errors_like_torch(name, fn, arrays):
    _raises(fn, arrays)
