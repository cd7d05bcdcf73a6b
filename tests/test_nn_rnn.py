"""RNN, LSTM, GRU and their cells against torch with copied weights: outputs, final states, input
and parameter gradients (float64), state_dict keys, unbatched input, dropout between layers, LSTM
projections, PackedSequence input and nn.utils.rnn, errors."""
import warnings

import numpy as np
import pytest

import distgraph as dg
from distgraph.autograd import gradcheck
from distgraph.nn import utils_rnn as U
from dg_testing import to_numpy

torch = pytest.importorskip("torch")
R = torch.nn.utils.rnn


def _pair(kind, *args, device="cpu", **kw):
    tm = getattr(torch.nn, kind)(*args, **kw).double()
    dm = getattr(dg.nn, kind)(*args, **kw).double()
    assert list(tm.state_dict()) == list(dm.state_dict())
    assert [tuple(v.shape) for v in tm.state_dict().values()] == [tuple(v.shape) for v in dm.state_dict().values()]
    dm.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, dm.to(device)


def _close(a, b):
    np.testing.assert_allclose(to_numpy(a) if isinstance(a, dg.Tensor) else a.detach().numpy(),
                               to_numpy(b) if isinstance(b, dg.Tensor) else b.detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def _states(kind, h):
    return h if kind == "LSTM" else (h,)


def _check_grads(tm, dm, inputs):
    for a, b in inputs:
        _close(a.grad, b.grad)
    for (name, p), q in zip(tm.named_parameters(), dm.parameters()):
        _close(p.grad, q.grad)


@pytest.mark.parametrize("kind, kw", [
    ("RNN", dict()), ("RNN", dict(nonlinearity="relu", num_layers=2)),
    ("LSTM", dict()), ("GRU", dict()),
    ("RNN", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict(num_layers=3, bias=False)), ("GRU", dict(num_layers=3, bias=False)),
    ("LSTM", dict(proj_size=2)), ("LSTM", dict(proj_size=3, num_layers=2, bidirectional=True, bias=False)),
])
@pytest.mark.parametrize("with_state", [False, True])
def test_recurrent_layer_matches_torch(device, kind, kw, with_state):
    tm, dm = _pair(kind, 3, 4, device=device, **kw)
    tm.train(), dm.train()                                        # dropout=0: train mode is deterministic
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3))
    layers = kw.get("num_layers", 1) * (2 if kw.get("bidirectional") else 1)
    batch = 2 if kw.get("batch_first") else 5
    h = rng.standard_normal((layers, batch, kw.get("proj_size") or 4))
    c = rng.standard_normal((layers, batch, 4))
    xt, xd = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True, device=device)
    args_t, args_d = (xt,), (xd,)
    if with_state:
        ht, hd = torch.tensor(h, requires_grad=True), dg.tensor(h, requires_grad=True, device=device)
        ct, cd = torch.tensor(c), dg.tensor(c, device=device)
        args_t, args_d = (xt, (ht, ct) if kind == "LSTM" else ht), (xd, (hd, cd) if kind == "LSTM" else hd)
    (ot, st), (od, sd) = tm(*args_t), dm(*args_d)
    assert tuple(od.shape) == tuple(ot.shape) and od.dtype == dg.float64
    _close(ot, od)
    for a, b in zip(_states(kind, st), _states(kind, sd)):
        assert tuple(a.shape) == tuple(b.shape)
        _close(a, b)
    ((ot ** 2).sum() + sum((s ** 3).sum() for s in _states(kind, st))).backward()
    ((od ** 2).sum() + sum((s ** 3).sum() for s in _states(kind, sd))).backward()
    _check_grads(tm, dm, [(xt, xd)] + ([(ht, hd)] if with_state else []))


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_and_dropout_between_layers(device, kind):
    tm, dm = _pair(kind, 3, 4, num_layers=2, dropout=0.5, device=device)
    tm.eval(), dm.eval()
    x = np.random.default_rng(1).standard_normal((6, 3))
    h = np.random.default_rng(2).standard_normal((2, 4))
    st = (torch.tensor(h), torch.tensor(h)) if kind == "LSTM" else torch.tensor(h)
    sd = (dg.tensor(h, device=device), dg.tensor(h, device=device)) if kind == "LSTM" else dg.tensor(h, device=device)
    for args_t, args_d in (((torch.tensor(x),), (dg.tensor(x, device=device),)),
                           ((torch.tensor(x), st), (dg.tensor(x, device=device), sd))):
        (ot, ht), (od, hd) = tm(*args_t), dm(*args_d)
        assert tuple(od.shape) == tuple(ot.shape) == (6, 4)
        _close(ot, od)
        for a, b in zip(_states(kind, ht), _states(kind, hd)):
            assert tuple(a.shape) == tuple(b.shape) == (2, 4)
            _close(a, b)
    dm.train()
    a, b = dm(dg.tensor(x, device=device))[0], dm(dg.tensor(x, device=device))[0]
    assert not np.allclose(to_numpy(a), to_numpy(b))              # random dropout between layers in training
    dm.eval()
    np.testing.assert_array_equal(to_numpy(dm(dg.tensor(x, device=device))[0]),
                                  to_numpy(dm(dg.tensor(x, device=device))[0]))


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_cells_match_torch(device, kind, batched, bias):
    tm, dm = _pair(kind, 3, 4, bias=bias, device=device)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3) if batched else (3,))
    h = rng.standard_normal((5, 4) if batched else (4,))
    for with_state in (True, False):
        xt, xd = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True, device=device)
        ht, hd = torch.tensor(h, requires_grad=True), dg.tensor(h, requires_grad=True, device=device)
        st = ((ht, 2 * ht) if kind == "LSTMCell" else ht) if with_state else None
        sd = ((hd, 2 * hd) if kind == "LSTMCell" else hd) if with_state else None
        yt, yd = tm(xt, st), dm(xd, sd)
        yt = yt[0] + 2 * yt[1] if kind == "LSTMCell" else yt
        yd = yd[0] + 2 * yd[1] if kind == "LSTMCell" else yd
        assert tuple(yt.shape) == tuple(yd.shape)
        _close(yt, yd)
        (yt ** 2).sum().backward(), (yd ** 2).sum().backward()
        _check_grads(tm, dm, [(xt, xd)] + ([(ht, hd)] if with_state else []))
        tm.zero_grad(), dm.zero_grad()


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_gradcheck(kind):
    cell = getattr(dg.nn, kind)(2, 3).double()
    rng = np.random.default_rng(3)
    x = dg.tensor(rng.standard_normal((2, 2)), requires_grad=True)
    h = dg.tensor(rng.standard_normal((2, 3)), requires_grad=True)

    def fn(x, h, *params):
        out = cell(x, (h, h * 0.5) if kind == "LSTMCell" else h)
        return out[0] * out[1] if kind == "LSTMCell" else out

    assert gradcheck(fn, [x, h, *cell.parameters()])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_sequence_input_matches_torch(device, kind, enforce_sorted):
    kw = dict(num_layers=2, bidirectional=True)
    kw.update(proj_size=2) if kind == "LSTM" else None
    tm, dm = _pair(kind, 3, 4, device=device, **kw)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 3, 3))
    lengths = [5, 3, 2] if enforce_sorted else [2, 5, 3]
    h = rng.standard_normal((4, 3, 2 if kind == "LSTM" else 4))
    xt, xd = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True, device=device)
    ht, hd = torch.tensor(h, requires_grad=True), dg.tensor(h, requires_grad=True, device=device)
    st = (ht, torch.tensor(rng.standard_normal((4, 3, 4)))) if kind == "LSTM" else ht
    sd = (hd, dg.tensor(st[1].numpy(), device=device)) if kind == "LSTM" else hd
    pt = R.pack_padded_sequence(xt, lengths, enforce_sorted=enforce_sorted)
    pd = U.pack_padded_sequence(xd, lengths, enforce_sorted=enforce_sorted)
    (ot, hnt), (od, hnd) = tm(pt, st), dm(pd, sd)
    assert isinstance(od, U.PackedSequence)
    np.testing.assert_array_equal(ot.batch_sizes.numpy(), to_numpy(od.batch_sizes))
    _close(ot.data, od.data)
    for a, b in zip(_states(kind, hnt), _states(kind, hnd)):
        _close(a, b)
    pt_out, lt = R.pad_packed_sequence(ot, batch_first=True)
    pd_out, ld = U.pad_packed_sequence(od, batch_first=True)
    _close(pt_out, pd_out)
    np.testing.assert_array_equal(lt.numpy(), to_numpy(ld))
    ((pt_out ** 2).sum() + _states(kind, hnt)[0].sum()).backward()
    ((pd_out ** 2).sum() + _states(kind, hnd)[0].sum()).backward()
    _check_grads(tm, dm, [(xt, xd), (ht, hd)])


def test_rnn_utils_match_torch(device):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 2))
    for lengths, es in (([2, 4, 3], False), ([4, 3, 1], True)):
        xt, xd = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True, device=device)
        pt, pd = R.pack_padded_sequence(xt, lengths, enforce_sorted=es), \
            U.pack_padded_sequence(xd, dg.tensor(lengths), enforce_sorted=es)
        _close(pt.data, pd.data)
        np.testing.assert_array_equal(pt.batch_sizes.numpy(), to_numpy(pd.batch_sizes))
        assert (pd.sorted_indices is None) == (pt.sorted_indices is None)
        if not es:
            np.testing.assert_array_equal(pt.sorted_indices.numpy(), to_numpy(pd.sorted_indices))
            np.testing.assert_array_equal(pt.unsorted_indices.numpy(), to_numpy(pd.unsorted_indices))
        (ot, lt), (od, ld) = R.pad_packed_sequence(pt, True, -1.0, 6), U.pad_packed_sequence(pd, True, -1.0, 6)
        _close(ot, od)
        np.testing.assert_array_equal(lt.numpy(), to_numpy(ld))
        assert ld.dtype == dg.int64
        weights = np.arange(ot.numel(), dtype=float).reshape(ot.shape)
        (ot * torch.tensor(weights)).sum().backward()
        (od * dg.tensor(weights, device=device)).sum().backward()
        _close(xt.grad, xd.grad)
    seqs = [rng.standard_normal((n, 2)) for n in (2, 5, 3)]
    for side in ("left", "right"):
        for bf in (True, False):
            _close(R.pad_sequence([torch.tensor(s) for s in seqs], bf, 7.0, side),
                   U.pad_sequence([dg.tensor(s, device=device) for s in seqs], bf, 7.0, side))
    pt = R.pack_sequence([torch.tensor(s) for s in seqs], enforce_sorted=False)
    pd = U.pack_sequence([dg.tensor(s, device=device) for s in seqs], enforce_sorted=False)
    _close(pt.data, pd.data)
    for a, b in zip(R.unpack_sequence(pt), U.unpack_sequence(pd)):
        _close(a, b)
    ids = U.pad_sequence([dg.tensor([1, 2]), dg.tensor([3])], batch_first=True)
    assert ids.dtype == dg.int64 and ids.tolist() == [[1, 2], [3, 0]]
    for lib, mod in ((torch, R), (dg, U)):
        with pytest.raises(RuntimeError):
            mod.pack_padded_sequence(lib.zeros(4, 3, 2), [2, 4, 3])              # not sorted
        with pytest.raises(RuntimeError):
            mod.pack_padded_sequence(lib.zeros(4, 3, 2), [2, 0, 3], enforce_sorted=False)
        with pytest.raises(ValueError):
            mod.pad_packed_sequence(mod.pack_padded_sequence(lib.zeros(4, 2, 2), [4, 3]), total_length=2)


def test_parameters_init_repr_and_all_weights():
    m = dg.nn.LSTM(3, 16, 2, proj_size=4, bidirectional=True)
    t = torch.nn.LSTM(3, 16, 2, proj_size=4, bidirectional=True)
    m.flatten_parameters()
    assert all(float(p.abs().max()) <= 1 / 4 for p in m.parameters())
    assert len({float(p.abs().max()) for p in m.parameters()}) > 1
    assert [[tuple(p.shape) for p in g] for g in m.all_weights] == [[tuple(p.shape) for p in g] for g in t.all_weights]
    for args, kw in (((3, 4, 2), dict(bias=False, batch_first=True, dropout=0.5)), ((3, 4), dict(bidirectional=True))):
        for kind in ("RNN", "LSTM", "GRU"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert repr(getattr(dg.nn, kind)(*args, **kw)) == repr(getattr(torch.nn, kind)(*args, **kw))
    assert repr(m) == repr(t)
    for kind, kw in (("RNNCell", dict(nonlinearity="relu")), ("GRUCell", dict(bias=False)), ("LSTMCell", {})):
        assert repr(getattr(dg.nn, kind)(3, 4, **kw)) == repr(getattr(torch.nn, kind)(3, 4, **kw))
    assert dg.nn.GRU(3, 4).weight_ih_l0.dtype == dg.float32


def test_errors_match_torch():
    for lib in (dg, torch):
        nn = lib.nn
        with pytest.raises(RuntimeError):
            nn.GRU(3, 4)(lib.ones(2, 1, 5))                              # wrong input_size
        with pytest.raises(ValueError):
            nn.GRU(3, 4)(lib.ones(2, 1, 1, 3))                           # 4-d input
        with pytest.raises(ValueError):
            nn.GRU(3, 4)(lib.ones(2, 1, 3, dtype=lib.float64))           # dtype differs from the weights
        with pytest.raises(RuntimeError):
            nn.RNN(3, 4)(lib.ones(5, 3), lib.zeros(1, 1, 4))             # unbatched input, 3-d hx
        with pytest.raises(RuntimeError):
            nn.RNN(3, 4)(lib.ones(5, 2, 3), lib.zeros(1, 3, 4))          # hx batch differs
        with pytest.raises(RuntimeError):
            nn.LSTM(3, 4, proj_size=2)(lib.ones(5, 2, 3), (lib.zeros(1, 2, 4), lib.zeros(1, 2, 4)))
        with pytest.raises(ValueError):
            nn.RNN(3, 4, nonlinearity="sigmoid")
        with pytest.raises(ValueError):
            nn.LSTM(3, 4, proj_size=4)
        with pytest.raises(ValueError):
            nn.LSTM(3, 4, dropout=1.5)
        with pytest.raises(ValueError):
            nn.LSTM(3, 0)
        with pytest.raises(TypeError):
            nn.LSTM(3, 4.0)
        with pytest.warns(UserWarning):
            nn.LSTM(3, 4, dropout=0.5)
        with pytest.raises(RuntimeError):
            nn.RNNCell(3, 4, nonlinearity="sigmoid")(lib.ones(2, 3))
        with pytest.raises(ValueError):
            nn.GRUCell(3, 4)(lib.ones(1, 2, 3))
        with pytest.raises(RuntimeError):
            nn.GRUCell(3, 4)(lib.ones(2, 3), lib.zeros(3, 4))
        with pytest.raises(RuntimeError):
            nn.LSTMCell(3, 4)(lib.ones(2, 5))
