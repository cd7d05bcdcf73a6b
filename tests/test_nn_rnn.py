"""RNN, LSTM, GRU and their cells against torch with copied weights: outputs, final states, input
and parameter gradients (float64), state_dict keys, unbatched input, dropout between layers."""
import numpy as np
import pytest

import distgraph as dg

torch = pytest.importorskip("torch")


def _pair(kind, *args, **kw):
    tm = getattr(torch.nn, kind)(*args, **kw).double()
    dm = getattr(dg.nn, kind)(*args, **kw).double()
    assert list(tm.state_dict()) == list(dm.state_dict())
    assert [tuple(v.shape) for v in tm.state_dict().values()] == [tuple(v.shape) for v in dm.state_dict().values()]
    dm.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return tm, dm


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True),
                                dict(num_layers=3, bias=False), dict(bidirectional=True)])
@pytest.mark.parametrize("with_state", [False, True])
def test_recurrent_layer_matches_torch(kind, kw, with_state):
    tm, dm = _pair(kind, 3, 4, **kw)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3))
    dirs = 2 if kw.get("bidirectional") else 1
    state = rng.standard_normal((kw.get("num_layers", 1) * dirs, 2 if kw.get("batch_first") else 5, 4))
    xt, xd = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True)
    args_t, args_d = (xt,), (xd,)
    if with_state:
        st = (torch.tensor(state), torch.tensor(state * 0.5)) if kind == "LSTM" else torch.tensor(state)
        sd = (dg.tensor(state), dg.tensor(state * 0.5)) if kind == "LSTM" else dg.tensor(state)
        args_t, args_d = (xt, st), (xd, sd)
    (ot, ht), (od, hd) = tm(*args_t), dm(*args_d)
    _close(ot.detach().numpy(), od.detach().numpy())
    for a, b in zip(ht if kind == "LSTM" else (ht,), hd if kind == "LSTM" else (hd,)):
        _close(a.detach().numpy(), b.detach().numpy())
    hsum_t = sum(h.sum() for h in (ht if kind == "LSTM" else (ht,)))
    hsum_d = sum(h.sum() for h in (hd if kind == "LSTM" else (hd,)))
    ((ot ** 2).sum() + hsum_t).backward()
    ((od ** 2).sum() + hsum_d).backward()
    _close(xt.grad.numpy(), xd.grad.numpy())
    for p, q in zip(tm.parameters(), dm.parameters()):
        _close(p.grad.numpy(), q.grad.numpy())


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_unbatched_input_and_eval_dropout_match_torch(kind):
    tm, dm = _pair(kind, 3, 4, num_layers=2, dropout=0.5)
    tm.eval(), dm.eval()
    x = np.random.default_rng(1).standard_normal((6, 3))
    ot, od = tm(torch.tensor(x))[0], dm(dg.tensor(x))[0]
    assert tuple(od.shape) == tuple(ot.shape) == (6, 4)
    _close(ot.detach().numpy(), od.detach().numpy())
    dm.train()
    a, b = dm(dg.tensor(x))[0], dm(dg.tensor(x))[0]
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())   # dropout between layers in training


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(kind, batched):
    tm, dm = _pair(kind, 3, 4)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3) if batched else (3,))
    h = rng.standard_normal((5, 4) if batched else (4,))
    xt, xd = torch.tensor(x, requires_grad=True), dg.tensor(x, requires_grad=True)
    st = (torch.tensor(h), torch.tensor(h)) if kind == "LSTMCell" else torch.tensor(h)
    sd = (dg.tensor(h), dg.tensor(h)) if kind == "LSTMCell" else dg.tensor(h)
    for state_t, state_d in ((st, sd), (None, None)):
        yt, yd = tm(xt, state_t), dm(xd, state_d)
        yt = yt[0] + 2 * yt[1] if kind == "LSTMCell" else yt
        yd = yd[0] + 2 * yd[1] if kind == "LSTMCell" else yd
        _close(yt.detach().numpy(), yd.detach().numpy())
        (yt ** 2).sum().backward(), (yd ** 2).sum().backward()
        _close(xt.grad.numpy(), xd.grad.numpy())


def test_init_range_errors_and_flatten_parameters():
    m = dg.nn.LSTM(3, 16)
    m.flatten_parameters()
    bound = 1 / 4
    assert all(float(p.abs().max()) <= bound for p in m.parameters())
    for lib in (dg, torch):
        with pytest.raises(RuntimeError):
            lib.nn.GRU(3, 4)(lib.ones(2, 1, 5))
        with pytest.raises(ValueError):
            lib.nn.RNN(3, 4, nonlinearity="sigmoid")
