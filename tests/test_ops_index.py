"""Indexing and shape ops against PyTorch: each case is one function of the library
(``torch`` or ``distgraph``), run on the same inputs; forward values, dtypes, shapes,
input gradients and error types must agree."""
import numpy as np
import pytest

import distgraph as dg
from distgraph.autograd import gradcheck
from dg_testing import to_numpy

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def _f(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _i(high, *shape):
    return RNG.integers(0, high, shape).astype(np.int64)


def _to(lib, arrays, device="cpu"):
    out = []
    for a in arrays:
        if lib is torch:
            t = torch.tensor(a)
            out.append(t.requires_grad_() if a.dtype.kind == "f" else t)
        else:
            t = dg.tensor(a, device=device)
            out.append(t.requires_grad_() if a.dtype.kind == "f" else t)
    return out


def _outs(y):
    return list(y) if isinstance(y, (tuple, list)) else [y]


def compare(fn, arrays, device="cpu", grad=True):
    """Run ``fn(lib, *tensors)`` with torch and distgraph; compare outputs and gradients."""
    tin, din = _to(torch, arrays), _to(dg, arrays, device)
    ty, dy = _outs(fn(torch, *tin)), _outs(fn(dg, *din))
    assert len(ty) == len(dy)
    for a, b in zip(ty, dy):
        assert tuple(a.shape) == tuple(b.shape), (tuple(a.shape), b.shape)
        assert str(a.dtype).replace("torch.", "") == dg.backend.dtype_name(b.dtype), (a.dtype, b.dtype)
        np.testing.assert_allclose(to_numpy(b), a.detach().numpy(), rtol=1e-5, atol=1e-6)
    fl = [(a, b) for a, b in zip(ty, dy) if a.requires_grad]
    assert [a.requires_grad for a in ty] == [b.requires_grad for b in dy]
    if not grad or not fl:
        return
    ws = [RNG.standard_normal(tuple(a.shape)).astype(np.float32) for a, _ in fl]
    sum(((a * torch.tensor(w)).sum() for (a, _), w in zip(fl, ws)), torch.zeros(())).backward()
    sum(((b * dg.tensor(w, device=device)).sum() for (_, b), w in zip(fl, ws)), dg.zeros(())).backward()
    for t, d in zip(tin, din):
        if t.requires_grad:
            tg = t.grad.numpy() if t.grad is not None else np.zeros(t.shape, np.float32)
            dgr = to_numpy(d.grad) if d.grad is not None else np.zeros(d.shape, np.float32)
            np.testing.assert_allclose(dgr, tg, rtol=1e-5, atol=1e-5)


def same_error(fn, arrays):
    """``fn`` raises the same exception type under torch and distgraph."""
    with pytest.raises(Exception) as te:
        fn(torch, *_to(torch, arrays))
    with pytest.raises(Exception) as de:
        fn(dg, *_to(dg, arrays))
    assert isinstance(de.value, te.type), f"torch raised {te.type.__name__}: {te.value}; we raised " \
                                          f"{type(de.value).__name__}: {de.value}"


def T(lib, a):
    return lib.tensor(a)


# ------------------------------------------------------------------ op table
IDX23 = np.array([[0, 2, 1], [1, 0, 0]])
OPS = {
    "gather": (lambda L, x: L.gather(x, 1, T(L, IDX23[:, :2])), [_f(2, 3)]),
    "gather_rep": (lambda L, x: x.gather(0, T(L, [[1, 1, 0], [1, 1, 1]])), [_f(2, 3)]),
    "scatter_src": (lambda L, x, s: L.scatter(x, 1, T(L, [[0, 2], [1, 0]]), s), [_f(2, 3), _f(2, 2)]),
    "scatter_value": (lambda L, x: x.scatter(0, T(L, [[1, 0, 1]]), value=2.5), [_f(2, 3)]),
    "scatter_add": (lambda L, x, s: L.scatter_add(x, 1, T(L, [[0, 0, 2, 0], [1, 1, 1, 2]]), s), [_f(2, 3), _f(2, 4)]),
    "scatter_add_dim0": (lambda L, x, s: x.scatter_add(0, T(L, IDX23 % 2), s), [_f(2, 3), _f(2, 3)]),
    **{f"scatter_reduce_{r}_{inc}": (
        lambda L, x, s, r=r, inc=inc: L.scatter_reduce(x, 1, T(L, [[0, 0, 2, 0], [1, 1, 1, 2]]), s, r,
                                                       include_self=inc), [_f(2, 3), _f(2, 4)])
       for r in ("sum", "prod", "mean", "amax", "amin") for inc in (True, False)},
    "index_select": (lambda L, x: L.index_select(x, 1, T(L, [2, 0, 2])), [_f(2, 3)]),
    "index_select_0d": (lambda L, x: x.index_select(0, T(L, 1)), [_f(3, 2)]),
    "index_add": (lambda L, x, s: L.index_add(x, 0, T(L, [1, 1, 0]), s, alpha=2.0), [_f(3, 2), _f(3, 2)]),
    "index_copy": (lambda L, x, s: x.index_copy(1, T(L, [2, 0]), s), [_f(2, 3), _f(2, 2)]),
    "index_fill": (lambda L, x: x.index_fill(1, T(L, [0, 2]), -1.5), [_f(2, 3)]),
    "index_put": (lambda L, x, v: x.index_put((T(L, [0, 1]), T(L, [2, 2])), v), [_f(2, 3), _f(2)]),
    "index_put_acc": (lambda L, x, v: L.index_put(x, (T(L, [0, 0, 1]),), v, accumulate=True),
                      [_f(2, 3), _f(3, 3)]),
    "masked_select": (lambda L, x: L.masked_select(x, x > 0), [_f(3, 4)]),
    "masked_select_bcast": (lambda L, x: x.masked_select(T(L, [True, False, True])), [_f(2, 3)]),
    "masked_scatter": (lambda L, x, s: x.masked_scatter(x > 0, s), [_f(3, 4), _f(15)]),
    "masked_fill": (lambda L, x: x.masked_fill(x < 0, 0.5), [_f(3, 4)]),
    "nonzero": (lambda L, x: L.nonzero(x > 0), [_f(3, 4)]),
    "nonzero_tuple": (lambda L, x: L.nonzero(x > 0, as_tuple=True), [_f(3, 4)]),
    "argwhere": (lambda L, x: L.argwhere(x > 0), [_f(2, 2, 3)]),
    "take": (lambda L, x: L.take(x, T(L, [[0, 5], [5, 11]])), [_f(3, 4)]),
    "take_neg": (lambda L, x: x.take(T(L, [-1, 0])), [_f(3, 4)]),
    "take_along_dim": (lambda L, x: L.take_along_dim(x, T(L, [[0], [2]]), 1), [_f(2, 3)]),
    "take_along_bcast": (lambda L, x: L.take_along_dim(x, T(L, [[0], [2]]), 1), [_f(1, 3)]),
    "take_along_none": (lambda L, x: L.take_along_dim(x, T(L, [0, 4])), [_f(2, 3)]),
    "argsort_take_along": (lambda L, x: L.take_along_dim(x, x.argmax(1, keepdim=True), 1), [_f(3, 4)]),
    "put": (lambda L, x, s: x.put(T(L, [0, 4, 4]), s, accumulate=True), [_f(2, 3), _f(3)]),
    "roll": (lambda L, x: L.roll(x, 1, 0), [_f(3, 4)]),
    "roll_multi": (lambda L, x: x.roll((1, -2), (0, 1)), [_f(3, 4)]),
    "roll_flat": (lambda L, x: L.roll(x, 5), [_f(3, 4)]),
    "diag_1d": (lambda L, x: L.diag(x), [_f(3)]),
    "diag_1d_k": (lambda L, x: L.diag(x, -2), [_f(3)]),
    "diag_2d": (lambda L, x: x.diag(1), [_f(3, 4)]),
    "diagonal": (lambda L, x: L.diagonal(x, 1, 0, 2), [_f(3, 2, 4)]),
    "diagonal_neg": (lambda L, x: x.diagonal(-1, -1, -2), [_f(2, 3, 4)]),
    "diag_embed": (lambda L, x: L.diag_embed(x), [_f(2, 3)]),
    "diag_embed_k": (lambda L, x: L.diag_embed(x, 1, 0, 2), [_f(2, 3)]),
    "tril": (lambda L, x: L.tril(x, -1), [_f(2, 3, 4)]),
    "triu": (lambda L, x: x.triu(1), [_f(3, 4)]),
    "unfold": (lambda L, x: x.unfold(1, 3, 2), [_f(2, 7)]),
    "unfold_overlap": (lambda L, x: x.unfold(0, 2, 1), [_f(4, 2)]),
    "repeat_interleave": (lambda L, x: L.repeat_interleave(x, 2), [_f(2, 3)]),
    "repeat_interleave_dim": (lambda L, x: x.repeat_interleave(T(L, [1, 0, 3]), dim=1), [_f(2, 3)]),
    "repeat_interleave_counts": (lambda L: L.repeat_interleave(T(L, [2, 0, 1])), []),
    "meshgrid_ij": (lambda L, a, b: L.meshgrid(a, b, indexing="ij"), [_f(3), _f(2)]),
    "meshgrid_xy": (lambda L, a, b, c: L.meshgrid([a, b, c], indexing="xy"), [_f(3), _f(2), _f(4)]),
    "narrow": (lambda L, x: L.narrow(x, 1, 1, 2), [_f(2, 4)]),
    "narrow_neg": (lambda L, x: x.narrow(0, -2, 2), [_f(3, 4)]),
    "select": (lambda L, x: L.select(x, 1, -1), [_f(2, 3)]),
    "flip": (lambda L, x: x.flip(0, 1), [_f(2, 3)]),
    "flip_fn": (lambda L, x: L.flip(x, [1]), [_f(2, 3)]),
    "fliplr": (lambda L, x: L.fliplr(x), [_f(2, 3)]),
    "flipud": (lambda L, x: x.flipud(), [_f(2, 3)]),
    **{f"rot90_{k}": (lambda L, x, k=k: L.rot90(x, k, [1, 2]), [_f(2, 3, 4)]) for k in (-1, 0, 1, 2, 3, 5)},
    "movedim": (lambda L, x: L.movedim(x, 0, -1), [_f(2, 3, 4)]),
    "movedim_multi": (lambda L, x: x.movedim((0, 1), (2, 0)), [_f(2, 3, 4)]),
    "moveaxis": (lambda L, x: L.moveaxis(x, -1, 0), [_f(2, 3, 4)]),
    "swapaxes": (lambda L, x: L.swapaxes(x, 0, 2), [_f(2, 3, 4)]),
    "swapdims": (lambda L, x: x.swapdims(1, -1), [_f(2, 3, 4)]),
    "tile": (lambda L, x: L.tile(x, (2,)), [_f(2, 3)]),
    "tile_more": (lambda L, x: x.tile(2, 1, 2), [_f(2, 3)]),
    "broadcast_to": (lambda L, x: L.broadcast_to(x, (2, 3, 4)), [_f(3, 1)]),
    "broadcast_tensors": (lambda L, a, b: L.broadcast_tensors(a, b), [_f(3, 1), _f(4)]),
    "hstack": (lambda L, a, b: L.hstack([a, b]), [_f(2, 3), _f(2, 1)]),
    "hstack_1d": (lambda L, a, b: L.hstack((a, b)), [_f(3), _f(2)]),
    "vstack": (lambda L, a, b: L.vstack([a, b]), [_f(3), _f(2, 3)]),
    "dstack": (lambda L, a, b: L.dstack([a, b]), [_f(3), _f(3)]),
    "column_stack": (lambda L, a, b: L.column_stack([a, b]), [_f(3), _f(3, 2)]),
    "unbind": (lambda L, x: L.unbind(x, 1), [_f(2, 3)]),
    "tensor_split_n": (lambda L, x: L.tensor_split(x, 3, dim=1), [_f(2, 7)]),
    "tensor_split_idx": (lambda L, x: x.tensor_split([1, 4, 9]), [_f(6, 2)]),
    "tensor_split_tensor": (lambda L, x: L.tensor_split(x, T(L, [2])), [_f(5)]),
    "hsplit": (lambda L, x: L.hsplit(x, 2), [_f(2, 4)]),
    "vsplit": (lambda L, x: x.vsplit([1]), [_f(3, 4)]),
    "atleast_1d": (lambda L, x: L.atleast_1d(x), [_f()]),
    "atleast_2d": (lambda L, a, b: L.atleast_2d(a, b), [_f(), _f(3)]),
    "atleast_3d": (lambda L, a, b, c: L.atleast_3d([a, b, c]), [_f(), _f(3), _f(2, 3)]),
    "squeeze_tuple": (lambda L, x: x.squeeze((0, 2)), [_f(1, 3, 1, 1)]),
    "squeeze_keep": (lambda L, x: L.squeeze(x, (1, 2)), [_f(1, 3, 1)]),
    "T": (lambda L, x: x.T, [_f(2, 3)]),
    "mT": (lambda L, x: x.mT, [_f(4, 2, 3)]),
    "view_flat": (lambda L, x: x.view(-1), [_f(2, 3)]),
    "contiguous": (lambda L, x: x.t().contiguous(), [_f(2, 3)]),
    "expand_neg": (lambda L, x: x.expand(2, -1, 3), [_f(4, 1)]),
    "unsqueeze_neg": (lambda L, x: x.unsqueeze(-1), [_f(2, 3)]),
    "split_list": (lambda L, x: L.split(x, [1, 3], dim=1), [_f(2, 4)]),
    "split_int": (lambda L, x: x.split(2), [_f(5, 2)]),
    "chunk": (lambda L, x: x.chunk(3, 1), [_f(2, 5)]),
    "chunk_more": (lambda L, x: L.chunk(x, 4), [_f(6)]),
    "cat_empty": (lambda L, a, b: L.cat([a, b, a]), [np.zeros(0, np.float32), _f(2, 3)]),
    "cat_neg_dim": (lambda L, a, b: L.cat((a, b), -1), [_f(2, 3), _f(2, 1)]),
    "stack": (lambda L, a, b: L.stack([a, b], -1), [_f(2, 3), _f(2, 3)]),
    "int_gather": (lambda L, x: L.gather(x, 0, T(L, [[1, 0]])), [_i(9, 2, 2)]),
    "int_roll": (lambda L, x: L.roll(x, -1, 1), [_i(9, 2, 3)]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_matches_torch(name, device):
    fn, arrays = OPS[name]
    compare(fn, arrays, device)


GRADCHECK = ["gather_rep", "scatter_src", "scatter_add", "scatter_reduce_prod_True", "scatter_reduce_mean_False",
             "scatter_reduce_amax_True", "index_add", "index_copy", "index_put_acc", "masked_scatter", "take",
             "take_along_bcast", "roll_multi", "diag_1d_k", "diagonal", "diag_embed_k", "unfold_overlap",
             "repeat_interleave_dim", "meshgrid_xy", "rot90_1", "movedim_multi", "tile_more", "dstack",
             "tensor_split_n", "cat_empty"]


@pytest.mark.parametrize("name", GRADCHECK)
def test_gradcheck(name, device):
    fn, arrays = OPS[name]
    ins = [dg.tensor(a.astype(np.float64) if a.dtype.kind == "f" else a, device=device) for a in arrays]
    for t in ins:
        if t.is_floating_point():
            t.requires_grad_()

    def f(*xs):
        out = _outs(fn(dg, *xs))
        return out[0] if len(out) == 1 else dg.cat([o.reshape(-1) for o in out])
    assert gradcheck(f, ins)


def test_scatter_prod_with_zeros_matches_torch():
    x = np.array([[0.0, 2.0, 3.0], [1.0, 0.0, 0.0]], np.float32)
    s = np.array([[0.0, 5.0, 2.0, 4.0], [3.0, 0.0, 2.0, 7.0]], np.float32)
    compare(lambda L, a, b: L.scatter_reduce(a, 1, T(L, [[0, 0, 1, 2], [1, 1, 1, 2]]), b, "prod"), [x, s])
    compare(lambda L, a, b: L.scatter_reduce(a, 1, T(L, [[0, 0, 1, 2], [1, 1, 1, 2]]), b, "amax",
                                             include_self=False), [x, s])


def test_scatter_int_mean_floor_divides():
    compare(lambda L, x: L.scatter_reduce(x, 0, T(L, [0, 0, 1]), T(L, [4, 7, 5]), "mean"), [np.array([1, 2, 3])])


# --------------------------------------------------------------- in-place
INPLACE = {
    "scatter_": lambda L, x, s: x.clone().scatter_(1, T(L, [[0], [2]]), s[:, :1]),
    "scatter_value_": lambda L, x, s: (x * 1).scatter_(1, T(L, [[0], [2]]), 3.0),
    "scatter_add_": lambda L, x, s: (x * 1).scatter_add_(1, T(L, [[0, 0, 1], [2, 2, 2]]), s),
    "scatter_reduce_": lambda L, x, s: (x * 1).scatter_reduce_(1, T(L, [[0, 0, 1], [2, 2, 2]]), s, "amax"),
    "index_add_": lambda L, x, s: (x * 1).index_add_(0, T(L, [1, 1]), s),
    "index_copy_": lambda L, x, s: (x * 1).index_copy_(0, T(L, [1, 0]), s),
    "index_fill_": lambda L, x, s: (x * 1).index_fill_(1, T(L, [1]), -2.0),
    "index_put_": lambda L, x, s: (x * 1).index_put_((T(L, [0, 1]),), s, accumulate=True),
    "masked_scatter_": lambda L, x, s: (x * 1).masked_scatter_(x > 0, s),
    "masked_fill_": lambda L, x, s: (x * 1).masked_fill_(x > 0, 1.0),
    "put_": lambda L, x, s: (x * 1).put_(T(L, [0, 5, 1]), s[0]),
    "setitem_grad_value": lambda L, x, s: _set(x * 1, (0, slice(1, 3)), s[1, :2]),
}


def _set(x, index, value):
    x[index] = value
    return x


@pytest.mark.parametrize("name", sorted(INPLACE))
def test_inplace_matches_torch(name, device):
    compare(INPLACE[name], [_f(2, 3), _f(2, 3)], device)


def test_inplace_without_grad_writes_through():
    for L in (torch, dg):
        x = L.zeros(2, 3)
        y = x.scatter_(1, L.tensor([[2], [0]]), 1.0)
        assert y is x
    x = dg.zeros(2, 3)
    x.index_fill_(1, dg.tensor([1]), 4.0)
    assert to_numpy(x).tolist() == torch.zeros(2, 3).index_fill_(1, torch.tensor([1]), 4.0).tolist()


# ------------------------------------------------------------ index table
INDICES = [
    lambda L: 0, lambda L: -1, lambda L: (1, 2), lambda L: (0, 1, 2), lambda L: slice(1, None),
    lambda L: (slice(None), slice(None, None, 2)), lambda L: (Ellipsis, 1), lambda L: (None, 0),
    lambda L: (0, None, Ellipsis, None), lambda L: [0, 2, 2], lambda L: (slice(None), [1, 1, 0]),
    lambda L: (0, slice(None), [0, 1]), lambda L: (slice(None), 0, [0, 1]), lambda L: ([0, 1], 0),
    lambda L: ([0, 1], slice(None), 0), lambda L: (0, [1, 2], [3, 0]), lambda L: ([0, 2], slice(1, 3), [1, 4]),
    lambda L: ([[0], [2]], [1, 3]), lambda L: (L.tensor(1), slice(None), L.tensor([0, 0])),
    lambda L: L.tensor(2), lambda L: (Ellipsis, L.tensor(1)), lambda L: L.tensor([[0, 1], [2, 2]]),
    lambda L: L.tensor([True, False, True]), lambda L: (slice(None), L.tensor([False, True, True, False])),
    lambda L: L.tensor([[True, False, True, False, True]] * 4).unsqueeze(0).expand(3, 4, 5) if False else
    L.tensor(np.arange(60).reshape(3, 4, 5) % 3 == 0), lambda L: (L.tensor(np.eye(3, 4, dtype=bool)), [0]),
    lambda L: True, lambda L: False, lambda L: (0, True), lambda L: (None, [0, 1], None, 1),
    lambda L: [], lambda L: (slice(None), []), lambda L: (slice(None), [0, 1], [2, 3]),
    lambda L: (slice(None), [0, 1], slice(None), [2, 3]) if False else (slice(None), [0, 1], [[2], [3]]),
    lambda L: ([0, 1], None, [2, 3]), lambda L: (Ellipsis, [0, 4]), lambda L: (slice(-2, None), -1, [0, 0, 4]),
    lambda L: L.tensor([1], dtype=L.int32), lambda L: (slice(None), slice(5, 9)), lambda L: (2, 3, -1),
    lambda L: (slice(1, 2), [[0, 1]], slice(None)), lambda L: (Ellipsis, 0, Ellipsis), lambda L: (0, Ellipsis, None, Ellipsis),
]


@pytest.mark.parametrize("k", range(len(INDICES)))
def test_getitem_matches_torch(k, device):
    compare(lambda L, x: x[INDICES[k](L)], [_f(3, 4, 5)], device)


@pytest.mark.parametrize("k", range(len(INDICES)))
def test_setitem_matches_torch(k, device):
    def fn(L, x, v):
        y = x * 1
        idx = INDICES[k](L)
        target = y[idx].shape
        y[idx] = v.reshape(-1)[:max(1, int(np.prod(target[-1:])))].reshape(target[-1:] or ()) * 2 \
            if len(target) and target[-1] else 0.5
        return y
    compare(fn, [_f(3, 4, 5), _f(60)], device)


def test_setitem_scalar_and_tensor_values():
    for L in (torch, dg):
        x = L.zeros(3, 4)
        x[0] = 1
        x[:, [1, 3]] = L.tensor([5.0, 6.0])
        x[:, 0] = L.tensor([1, 2, 3])
        x[x > 5] = -1
        x[1, 2] = L.tensor(7)
        if L is torch:
            ref = x.numpy()
        else:
            np.testing.assert_array_equal(to_numpy(x), ref)


def test_repeated_index_gradient_accumulates():
    x = dg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    assert to_numpy(x.grad).tolist() == [3.0, 0.0, 1.0]


def test_basic_index_is_a_view_and_strides():
    for L in (torch, dg):
        x = L.zeros(3, 4)
        x[1][2] = 5.0
        x[:, 0].fill_(1.0)
        assert x.sum().item() == 8.0
    x, t = dg.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    for f in (lambda a: a, lambda a: a.transpose(0, 2), lambda a: a[:, 1], lambda a: a.expand(5, 2, 3, 4),
              lambda a: a.unsqueeze(1), lambda a: a[:, :, ::2]):
        assert f(x).stride() == f(t).stride()
        assert f(x).is_contiguous() == f(t).is_contiguous()
    assert x.stride(1) == t.stride(1)


# ----------------------------------------------------------------- errors
ERRORS = [
    (lambda L, x: x[::-1], [_f(3)]),
    (lambda L, x: x[0, 0, 0], [_f(2, 3)]),
    (lambda L, x: x[5], [_f(2, 3)]),
    (lambda L, x: x[:, [3]], [_f(2, 3)]),
    (lambda L, x: x[1.5], [_f(2, 3)]),
    (lambda L, x: x[L.tensor([1.0])], [_f(2, 3)]),
    (lambda L, x: x[L.tensor([True, False])], [_f(3)]),
    (lambda L, x: x[L.tensor([[True]])], [_f(2, 3)]),
    (lambda L, x: L.gather(x, 1, L.tensor([[3]])), [_f(2, 3)]),
    (lambda L, x: L.gather(x, 1, L.tensor([[1.0]])), [_f(2, 3)]),
    (lambda L, x: L.gather(x, 1, L.tensor([1])), [_f(2, 3)]),
    (lambda L, x: L.gather(x, 2, L.tensor([[1]])), [_f(2, 3)]),
    (lambda L, x: L.index_select(x, 0, L.tensor([[0]])), [_f(2, 3)]),
    (lambda L, x: L.scatter(x, 0, L.tensor([[0]]), x.double()), [_f(2, 3)]),
    (lambda L, x: L.scatter_reduce(x, 0, L.tensor([[0]]), x, "foo"), [_f(2, 3)]),
    (lambda L, x: L.masked_select(x, L.ones(3)), [_f(2, 3)]),
    (lambda L, x: L.take(x, L.tensor([6])), [_f(2, 3)]),
    (lambda L, x: L.diag(x), [_f(2, 2, 2)]),
    (lambda L, x: L.diagonal(x, 0, 1, 1), [_f(2, 2)]),
    (lambda L, x: x.unfold(0, 6, 1), [_f(5)]),
    (lambda L, x: x.unfold(0, 2, 0), [_f(5)]),
    (lambda L, x: L.repeat_interleave(x, L.tensor([1, 2])), [_f(3)]),
    (lambda L, x: L.narrow(x, 0, 4, 3), [_f(5)]),
    (lambda L, x: L.narrow(x, 0, 7, 0), [_f(5)]),
    (lambda L, x: L.fliplr(x), [_f(3)]),
    (lambda L, x: L.rot90(x, 1, [0, 0]), [_f(2, 3)]),
    (lambda L, x: L.movedim(x, 0, 5), [_f(2, 3)]),
    (lambda L, x: L.broadcast_to(x, (2, 4)), [_f(3)]),
    (lambda L, a, b: L.broadcast_tensors(a, b), [_f(3), _f(4)]),
    (lambda L, x: L.tensor_split(x, 0), [_f(5)]),
    (lambda L, x: L.split(x, [2, 2]), [_f(5)]),
    (lambda L, x: L.chunk(x, 0), [_f(5)]),
    (lambda L, x: x.view(-1, 5), [_f(3, 4)]),
    (lambda L, x: L.cat([x, x[0]]), [_f(2, 3)]),
    (lambda L, x: L.meshgrid(x, x.reshape(1, 3)), [_f(3)]),
    (lambda L, x: L.hsplit(x, 3), [_f(2, 4)]),
    (lambda L, x: _set(x.detach(), [0, 1], L.tensor([1.0, 2.0, 3.0], dtype=L.float64)), [_f(2, 3)]),
    (lambda L, x: _set(x.detach(), [0, 1], L.tensor(1)), [_f(2, 3)]),
    (lambda L, x: _set(x.detach(), 0, [1.0, 2.0, 3.0]), [_f(2, 3)]),
    (lambda L, x: _set(x.detach(), 0, np.ones(3)), [_f(2, 3)]),
    (lambda L, x: _set(x.detach(), slice(None), L.ones(3, 3)), [_f(2, 3)]),
    (lambda L, x: _set(x, 0, 1.0), [_f(2, 3)]),
]


@pytest.mark.parametrize("k", range(len(ERRORS)))
def test_errors_match_torch(k):
    fn, arrays = ERRORS[k]
    same_error(fn, arrays)
