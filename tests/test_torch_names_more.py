"""More torch names training scripts type, each against torch itself on the same numbers (float64):
``nn.RMSNorm``/``F.rms_norm``, ``set_float32_matmul_precision``, ``tril_indices``/``triu_indices``,
``block_diag``, ``cartesian_prod``, ``combinations``, and ``optim.swa_utils`` (``AveragedModel`` with
SWA and EMA averages, ``update_bn``, ``SWALR``)."""
import warnings

import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
from distgraph.autograd.gradcheck import gradcheck

torch = pytest.importorskip("torch")
TOL = 1e-12


def _same(d, t, what, tol=TOL):
    d = d.detach().numpy() if isinstance(d, dg.Tensor) else np.asarray(d)
    t = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    assert d.shape == t.shape, f"{what}: shape {d.shape} vs torch's {t.shape}"
    assert np.allclose(d, t, rtol=0, atol=tol), f"{what}: differs from torch by {np.max(np.abs(d - t))}"


def _pair(a):
    return dg.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


# ------------------------------------------------------------------ RMSNorm
@pytest.mark.parametrize("shape,norm,eps,affine", [((3, 4), 4, None, True), ((2, 3, 5), (3, 5), 1e-6, True),
                                                   ((4, 6), 6, None, False)])
def test_rms_norm_matches_torch(shape, norm, eps, affine):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    dm, tm = nn.RMSNorm(norm, eps=eps, elementwise_affine=affine).double(), \
        torch.nn.RMSNorm(norm, eps=eps, elementwise_affine=affine).double()
    assert repr(dm) == repr(tm) and list(dm.state_dict()) == list(tm.state_dict())
    if affine:
        w = rng.standard_normal(dm.weight.shape)
        with dg.no_grad():
            dm.weight.copy_(dg.tensor(w))
        with torch.no_grad():
            tm.weight.copy_(torch.tensor(w))
    (dx, tx), g = _pair(x), rng.standard_normal(shape)
    dy, ty = dm(dx), tm(tx)
    _same(dy, ty, "RMSNorm output")
    dy.backward(dg.tensor(g))
    ty.backward(torch.tensor(g))
    _same(dx.grad, tx.grad, "RMSNorm input gradient")
    if affine:
        _same(dm.weight.grad, tm.weight.grad, "RMSNorm weight gradient")
    _same(dg.nn.functional.rms_norm(dg.tensor(x), norm, eps=eps),
          torch.nn.functional.rms_norm(torch.tensor(x), norm if isinstance(norm, tuple) else (norm,), eps=eps),
          "F.rms_norm")
    assert gradcheck(lambda t: dg.nn.functional.rms_norm(t, norm, eps=1e-3), (dg.tensor(x, requires_grad=True),))


def test_rms_norm_float32_default_eps_and_shape_error():
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4) * 1e-4   # small values: eps matters
    _same(nn.RMSNorm(4)(dg.tensor(x)), torch.nn.RMSNorm(4)(torch.tensor(x)), "float32 with eps None", tol=1e-6)
    with pytest.raises(RuntimeError, match="trailing shape"):
        nn.RMSNorm(5)(dg.tensor(x))


# ------------------------------------------------------------------ small functions
def test_float32_matmul_precision_is_recorded_and_bad_names_only_warn():
    assert dg.get_float32_matmul_precision() == torch.get_float32_matmul_precision() == "highest"
    try:
        dg.set_float32_matmul_precision("high")
        assert dg.get_float32_matmul_precision() == "high"
        with pytest.warns(UserWarning, match="has no effect"):
            dg.set_float32_matmul_precision("fast")
        assert dg.get_float32_matmul_precision() == "high"
    finally:
        dg.set_float32_matmul_precision("highest")


@pytest.mark.parametrize("row,col,offset", [(3, 4, 1), (3, 3, -1), (4, 2, 0), (1, 5, -3), (5, 5, 7)])
def test_tril_and_triu_indices_match_torch(row, col, offset):
    for name in ("tril_indices", "triu_indices"):
        d, t = getattr(dg, name)(row, col, offset), getattr(torch, name)(row, col, offset)
        assert d.tolist() == t.tolist() and str(d.dtype) == "int64", name


def test_block_diag_values_dtype_and_gradients_match_torch():
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((2, 3)), rng.standard_normal(()), rng.standard_normal(4), rng.standard_normal((3, 1))]
    pairs = [_pair(a) for a in arrays]
    dy, ty = dg.block_diag(*[p[0] for p in pairs]), torch.block_diag(*[p[1] for p in pairs])
    _same(dy, ty, "block_diag")
    g = rng.standard_normal(ty.shape)
    dy.backward(dg.tensor(g))
    ty.backward(torch.tensor(g))
    for i, (d, t) in enumerate(pairs):
        _same(d.grad, t.grad, f"block_diag gradient {i}")
    mixed = dg.block_diag(dg.ones(2, 2, dtype=dg.int64), dg.ones(1, 1))
    assert str(mixed.dtype) == "float32" and dg.block_diag().shape == torch.block_diag().shape
    with pytest.raises(RuntimeError, match="2 or fewer dimensions"):
        dg.block_diag(dg.ones(1, 1, 1))


def test_cartesian_prod_and_combinations_match_torch():
    a, b = [1.0, 2.0], [3.0, 4.0, 5.0]
    (da, ta), (db, tb) = _pair(np.array(a)), _pair(np.array(b))
    dy, ty = dg.cartesian_prod(da, db), torch.cartesian_prod(ta, tb)
    assert dy.tolist() == ty.tolist()
    (dy * dy).sum().backward()
    (ty * ty).sum().backward()
    _same(da.grad, ta.grad, "cartesian_prod gradient")
    assert dg.cartesian_prod(dg.tensor([1, 2])).tolist() == [1, 2]
    x = np.array([1.0, 2.0, 3.0, 4.0])
    for r in (0, 1, 2, 3, 5):
        for rep in (False, True):
            d, t = dg.combinations(dg.tensor(x), r, rep), torch.combinations(torch.tensor(x), r, rep)
            assert tuple(d.shape) == tuple(t.shape) and d.tolist() == t.tolist(), (r, rep)
    dx, tx = _pair(x)
    (dg.combinations(dx, 2) ** 3).sum().backward()
    (torch.combinations(tx, 2) ** 3).sum().backward()
    _same(dx.grad, tx.grad, "combinations gradient")
    for fn in (dg.cartesian_prod, dg.combinations):
        with pytest.raises(RuntimeError, match="1D vector"):
            fn(dg.ones(2, 2))


# ------------------------------------------------------------------ swa_utils
def _nets():
    """The same small net in both frameworks (weights from NumPy), with a BatchNorm."""
    rng = np.random.default_rng(2)
    d = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                            torch.nn.Linear(4, 2)).double()
    for p, q in zip(d.parameters(), t.parameters()):
        w = rng.standard_normal(tuple(q.shape))
        with dg.no_grad():
            p.copy_(dg.tensor(w))
        with torch.no_grad():
            q.copy_(torch.tensor(w))
    return d, t


def _train_step(model, opt, x, lib):
    opt.zero_grad()
    model(lib.tensor(x)).pow(2).mean().backward()
    opt.step()


@pytest.mark.parametrize("kind", ["swa", "ema", "ema_avg_fn", "swa_buffers"])
def test_averaged_model_matches_torch(kind):
    d, t = _nets()
    su, tsu = dg.optim.swa_utils, torch.optim.swa_utils
    kw = {"swa": ({}, {}), "ema": ({"multi_avg_fn": su.get_ema_multi_avg_fn(0.9)},
                                   {"multi_avg_fn": tsu.get_ema_multi_avg_fn(0.9)}),
          "ema_avg_fn": ({"avg_fn": su.get_ema_avg_fn(0.8)}, {"avg_fn": tsu.get_ema_avg_fn(0.8)}),
          "swa_buffers": ({"use_buffers": True}, {"use_buffers": True})}[kind]
    da, ta = su.AveragedModel(d, **kw[0]), tsu.AveragedModel(t, **kw[1])
    assert list(da.state_dict()) == list(ta.state_dict())
    dopt, topt = dg.optim.SGD(d.parameters(), lr=0.1), torch.optim.SGD(t.parameters(), lr=0.1)
    rng = np.random.default_rng(3)
    for i in range(5):
        x = rng.standard_normal((6, 3))
        _train_step(d, dopt, x, dg)
        _train_step(t, topt, x, torch)
        da.update_parameters(d)
        ta.update_parameters(t)
        for (n, p), q in zip(da.named_parameters(), ta.parameters()):
            _same(p, q, f"{kind}: averaged {n} after update {i}")
        for (n, b), c in zip(da.named_buffers(), ta.buffers()):
            _same(b, c, f"{kind}: buffer {n} after update {i}")
    assert int(da.n_averaged.item()) == int(ta.n_averaged) == 5
    x = rng.standard_normal((4, 3))
    _same(da.eval()(dg.tensor(x)), ta.eval()(torch.tensor(x)), f"{kind}: averaged model's output")


def test_update_bn_recomputes_running_statistics_as_torch():
    d, t = _nets()
    rng = np.random.default_rng(4)
    batches = [rng.standard_normal((5, 3)) for _ in range(4)]
    with dg.no_grad():
        d[1].running_mean.fill_(7.0)
    with torch.no_grad():
        t[1].running_mean.fill_(7.0)
    d.eval()
    t.eval()
    dg.optim.swa_utils.update_bn([(dg.tensor(b), 0) for b in batches], d)
    torch.optim.swa_utils.update_bn([(torch.tensor(b), 0) for b in batches], t)
    for (n, b), c in zip(d.named_buffers(), t.buffers()):
        _same(b, c, f"update_bn: {n}")
    assert d[1].momentum == t[1].momentum == 0.1 and d.training is t.training is False


@pytest.mark.parametrize("strategy,anneal", [("cos", 4), ("linear", 3), ("cos", 0)])
def test_swalr_schedule_matches_torch(strategy, anneal):
    lrs = []
    for lib in (dg, torch):
        p = lib.zeros(2, requires_grad=True)
        opt = lib.optim.SGD([{"params": [p]}, {"params": [lib.zeros(1, requires_grad=True)], "lr": 0.3}], lr=0.5)
        sched = lib.optim.swa_utils.SWALR(opt, swa_lr=[0.05, 0.01], anneal_epochs=anneal, anneal_strategy=strategy)
        seen = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(8):
                opt.step()
                sched.step()
                seen.append([g["lr"] for g in opt.param_groups])
        lrs.append(seen)
    _same(np.array(lrs[0]), np.array(lrs[1]), f"SWALR {strategy} {anneal}", tol=1e-15)
    with pytest.raises(ValueError, match="anneal_strategy"):
        dg.optim.swa_utils.SWALR(dg.optim.SGD([dg.zeros(1, requires_grad=True)], lr=0.1), 0.01,
                                 anneal_strategy="step")


def test_zero_dim_comparison_results_combine_with_bitwise_ops():
    """A 0-d reduction can hold a NumPy scalar; combining it with another 0-d tensor by & / | is no
    device mismatch (both are on the host)."""
    for lib in (dg, torch):
        x = lib.tensor([1.0, 2.0])
        a, b = (x >= 0).all(-1), ((x.sum(-1) - 1).abs() < 1e-6)
        assert bool(a & b) is False and bool(a | b) is True


# ------------------------------------------------------------------ default dtype, sampling, small names
def test_set_default_dtype_changes_what_torch_changes():
    def made(lib):
        i = lib.tensor([1, 2])
        return [str(x.dtype).replace("torch.", "") for x in (
            lib.tensor([1.0]), lib.tensor(2.5), lib.zeros(2), lib.ones(1), lib.empty(2), lib.full((2,), 1.5),
            lib.randn(2), lib.rand(2), lib.arange(0.0, 1.0, 0.5), lib.linspace(0, 1, 3), lib.eye(2),
            lib.nn.Linear(2, 2).weight, lib.nn.LayerNorm(2).weight, lib.nn.Conv2d(1, 1, 3).weight,
            lib.nn.Embedding(3, 2).weight, lib.nn.LSTM(2, 2).weight_ih_l0, i / 2, i.sqrt(), i * 0.5,
            lib.where(i > 1, i, 0.5), lib.tensor([1.0], dtype=lib.float32) * 2.5,
            lib.nn.Transformer.generate_square_subsequent_mask(3))]
    for dtype in ("float64", "float16", "float32"):
        got = []
        for lib in (dg, torch):
            lib.set_default_dtype(getattr(lib, dtype))
            try:
                got.append((str(lib.get_default_dtype()).replace("torch.", ""), made(lib)))
            finally:
                lib.set_default_dtype(lib.float32)
        assert got[0] == got[1], (dtype, got)
    for lib in (dg, torch):
        with pytest.raises(TypeError, match="floating-point types"):
            lib.set_default_dtype(lib.int64)
    assert str(dg.get_default_dtype()) == "float32"


def test_multinomial_draws_as_torch_documents():
    w = np.array([1.0, 2.0, 3.0, 0.0])
    n = 60000
    dg.manual_seed(3)
    draws = dg.multinomial(dg.tensor(w), n, replacement=True)
    dg.manual_seed(3)
    assert np.array_equal(draws.numpy(), dg.multinomial(dg.tensor(w), n, replacement=True).numpy())
    assert str(draws.dtype) == "int64" and draws.shape == (n,)
    freq, p = np.bincount(draws.numpy(), minlength=4) / n, w / w.sum()
    assert (np.abs(freq - p) < 6 * np.sqrt(p * (1 - p) / n) + 1e-12).all(), freq
    rows = dg.multinomial(dg.tensor(np.tile(w, (20000, 1))), 3)     # without replacement, per row
    r = rows.numpy()
    assert r.shape == (20000, 3) and all(len(set(x)) == 3 for x in r[:200]) and not (r == 3).any()
    first = np.bincount(r[:, 0], minlength=4) / len(r)                # the first draw is weighted as w
    assert (np.abs(first - p) < 6 * np.sqrt(p * (1 - p) / len(r)) + 1e-12).all(), first
    t = torch.multinomial(torch.tensor(np.tile(w, (2, 1))), 3)
    assert tuple(t.shape) == tuple(dg.multinomial(dg.tensor(np.tile(w, (2, 1))), 3).shape)
    assert sorted(dg.multinomial(dg.tensor(w), 4).tolist()) == [0, 1, 2, 3]       # zero weight: drawn last
    assert dg.multinomial(dg.tensor(w), 4).tolist()[-1] == torch.multinomial(torch.tensor(w), 4).tolist()[-1] == 3
    for bad in (dict(input=w, num_samples=5), dict(input=-w, num_samples=1), dict(input=w * 0, num_samples=1),
                dict(input=np.ones((2, 2, 2)), num_samples=1)):
        for lib in (dg, torch):
            with pytest.raises(RuntimeError):
                lib.multinomial(lib.tensor(bad["input"]), bad["num_samples"])


def test_where_of_a_condition_alone_and_other_small_names():
    c = [[0, 1, 1], [1, 0, 1]]
    d, t = dg.where(dg.tensor(c)), torch.where(torch.tensor(c))
    assert [x.tolist() for x in d] == [x.tolist() for x in t]
    m, tm = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    for lib, mod in ((dg, m), (torch, tm)):
        mod(lib.ones(2, 3)).sum().backward()
        lib.nn.utils.clip_grad_norm_(mod.parameters(), 1.0, foreach=True)
        lib.nn.utils.clip_grad_value_(mod.parameters(), 0.5, foreach=None)
    dp, tp = nn.DataParallel(m), torch.nn.DataParallel(tm)
    assert list(dp.state_dict()) == list(tp.state_dict()) and dp.module is m
    assert dp(dg.ones(2, 3)).shape == (2, 2)
    with pytest.warns(UserWarning, match="not split"):
        nn.DataParallel(m, device_ids=[0, 1])
    assert repr(dg.channels_last) == repr(torch.channels_last)
    x = dg.tensor(np.arange(8.0).reshape(1, 2, 2, 2))
    assert np.array_equal(x.to(memory_format=dg.channels_last).contiguous(memory_format=dg.contiguous_format).numpy(),
                          x.numpy())
    e, te = nn.Linear(2, 3).to_empty(device="cpu"), torch.nn.Linear(2, 3).to_empty(device="cpu")
    assert [tuple(p.shape) for p in e.parameters()] == [tuple(p.shape) for p in te.parameters()]


# ------------------------------------------------------------------ lazy modules
@pytest.mark.parametrize("name,args,x_shape", [("LazyLinear", (3,), (2, 5)), ("LazyConv1d", (4, 3), (2, 3, 9)),
                                               ("LazyConv2d", (4, 3), (1, 2, 6, 6)), ("LazyConv2d", (4, 3), (2, 6, 6)),
                                               ("LazyConv3d", (2, 2), (1, 3, 4, 4, 4)),
                                               ("LazyBatchNorm1d", (), (4, 3)), ("LazyBatchNorm2d", (), (2, 3, 4, 4))])
def test_lazy_modules_become_their_class_as_torchs(name, args, x_shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    dm, tm = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
    assert dm.has_uninitialized_params() and tm.has_uninitialized_params()
    assert list(dm.state_dict()) == [k for k in tm.state_dict() if not k.startswith("running") and "num_batches" not in k]
    held = list(dm.parameters())
    opt = dg.optim.SGD(held, lr=0.1) if held else None       # made before the first call, as torch allows
    dm.eval() if "BatchNorm" in name else None
    tm.eval() if "BatchNorm" in name else None
    dm(dg.tensor(x))
    tm(torch.tensor(x))
    assert type(dm).__name__ == type(tm).__name__ and repr(dm).split(",")[0] == repr(tm).split(",")[0]
    assert list(dm.state_dict()) == list(tm.state_dict())
    assert all(type(p).__name__ == "Parameter" for p in dm.parameters())
    assert [tuple(p.shape) for p in dm.parameters()] == [tuple(p.shape) for p in tm.parameters()]
    assert all(p is q for p, q in zip(dm.parameters(), held)) and dm.training == tm.training
    dm.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    out_d, out_t = dm(dg.tensor(x)), tm(torch.tensor(x))
    _same(out_d, out_t, f"{name} after loading torch's weights", tol=1e-5)
    if opt is not None:
        out_d.sum().backward()
        before = [p.detach().numpy().copy() for p in held]
        opt.step()
        assert any(not np.array_equal(b, p.detach().numpy()) for b, p in zip(before, held))


def test_lazy_module_loads_a_state_dict_before_its_first_call():
    src = torch.nn.Linear(7, 2)
    lazy = nn.LazyLinear(2)
    lazy.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in src.state_dict().items()})
    assert tuple(lazy.weight.shape) == (2, 7)
    x = np.ones((3, 7), np.float32)
    _same(lazy(dg.tensor(x)), src(torch.tensor(x)), "a lazy Linear loaded from a state dict", tol=1e-6)
