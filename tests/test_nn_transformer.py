"""MultiheadAttention, Transformer and its encoder/decoder layers against torch with copied weights
(dropout 0, eval and train mode): outputs, attention weights, input and parameter gradients in
float64, state_dict keys, masks of every kind, the causal mask helper, errors."""
import warnings

import numpy as np
import pytest

import distgraph as dg
from dg_testing import to_numpy

torch = pytest.importorskip("torch")


def _copy(tm, dm, device="cpu"):
    assert list(tm.state_dict()) == list(dm.state_dict())
    assert [tuple(v.shape) for v in tm.state_dict().values()] == [tuple(v.shape) for v in dm.state_dict().values()]
    dm.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    return dm.to(device)


def _close(a, b, rtol=1e-9):
    np.testing.assert_allclose(a.detach().numpy(), to_numpy(b), rtol=rtol, atol=1e-10)


def _grads(tm, dm, pairs):
    for a, b in pairs:
        _close(a.grad, b.grad, 1e-8)
    for (name, p), q in zip(tm.named_parameters(), dm.parameters()):
        assert p.grad is not None and q.grad is not None, name
        _close(p.grad, q.grad, 1e-8)


def _both(x, device, grad=True):
    return torch.tensor(x, requires_grad=grad), dg.tensor(x, requires_grad=grad, device=device)


@pytest.mark.parametrize("kw", [dict(), dict(kdim=5, vdim=6), dict(add_bias_kv=True, add_zero_attn=True),
                                dict(bias=False, batch_first=True), dict(add_zero_attn=True, kdim=5, vdim=5)])
@pytest.mark.parametrize("masks", ["none", "kpm_bool", "attn_3d_float", "attn_2d_bool_kpm_float", "causal"])
def test_multihead_attention_matches_torch(device, kw, masks):
    tm = torch.nn.MultiheadAttention(8, 2, **kw).double()
    dm = _copy(tm, dg.nn.MultiheadAttention(8, 2, **kw).double(), device)
    rng = np.random.default_rng(0)
    L, S, N = 4, 3, 2
    bf = kw.get("batch_first", False)
    shape = (lambda T, E: (N, T, E) if bf else (T, N, E))
    q, k, v = (rng.standard_normal(shape(T, E)) for T, E in ((L, 8), (S, kw.get("kdim", 8)), (S, kw.get("vdim", 8))))
    kpm = np.zeros((N, S), bool)
    kpm[1, -1] = True
    given = {"none": {}, "kpm_bool": dict(key_padding_mask=kpm),
             "attn_3d_float": dict(attn_mask=rng.standard_normal((N * 2, L, S))),
             "attn_2d_bool_kpm_float": dict(attn_mask=rng.standard_normal((L, S)) > 1,
                                            key_padding_mask=np.where(kpm, -1e9, 0.0)),
             "causal": dict(attn_mask=np.triu(np.ones((L, S), bool), 1), is_causal=True)}[masks]
    for avg in (True, False):
        ts, ds = zip(*(_both(a, device) for a in (q, k, v)))
        wrap = (lambda lib, d: {n: (m if isinstance(m, bool) else lib.tensor(m, **d)) for n, m in given.items()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                    # torch warns on mixed bool/float masks
            ot, wt = tm(*ts, average_attn_weights=avg, **wrap(torch, {}))
        od, wd = dm(*ds, average_attn_weights=avg, **wrap(dg, dict(device=device)))
        assert tuple(od.shape) == tuple(ot.shape) and tuple(wd.shape) == tuple(wt.shape)
        _close(ot, od, 1e-10)
        _close(wt, wd, 1e-10)
        ((ot ** 2).sum() + (wt ** 3).sum()).backward()
        ((od ** 2).sum() + (wd ** 3).sum()).backward()
        _grads(tm, dm, zip(ts, ds))
        tm.zero_grad(), dm.zero_grad()


def test_multihead_attention_unbatched_no_weights_and_dropout(device):
    tm = torch.nn.MultiheadAttention(6, 3).double()
    dm = _copy(tm, dg.nn.MultiheadAttention(6, 3, dropout=0.5).double(), device)
    rng = np.random.default_rng(1)
    x, kv = rng.standard_normal((4, 6)), rng.standard_normal((5, 6))
    kpm = np.array([False, False, True, False, True])
    dm.eval()
    ot, wt = tm(torch.tensor(x), torch.tensor(kv), torch.tensor(kv), key_padding_mask=torch.tensor(kpm))
    od, wd = dm(dg.tensor(x, device=device), dg.tensor(kv, device=device), dg.tensor(kv, device=device),
                key_padding_mask=dg.tensor(kpm, device=device))
    assert tuple(od.shape) == (4, 6) and tuple(wd.shape) == (4, 5)
    _close(ot, od, 1e-10)
    _close(wt, wd, 1e-10)
    assert dm(dg.tensor(x), dg.tensor(x), dg.tensor(x), need_weights=False)[1] is None
    dm.train()
    xs = dg.tensor(x, device=device)
    (o1, w1), (o2, w2) = dm(xs, xs, xs), dm(xs, xs, xs)
    assert not np.allclose(to_numpy(o1), to_numpy(o2))          # dropout on the attention weights
    assert (to_numpy(w1) == 0).any()                            # returned weights are after dropout, as torch


def test_multihead_attention_parameters_and_errors():
    for kw in (dict(), dict(kdim=5, vdim=7, add_bias_kv=True), dict(bias=False)):
        t, d = torch.nn.MultiheadAttention(8, 4, **kw), dg.nn.MultiheadAttention(8, 4, **kw)
        assert list(t.state_dict()) == list(d.state_dict())
        assert [n for n, _ in t.named_parameters()] == [n for n, _ in d.named_parameters()]
        assert d._qkv_same_embed_dim == t._qkv_same_embed_dim and d.head_dim == t.head_dim
    d = dg.nn.MultiheadAttention(8, 2)
    assert float(d.in_proj_bias.abs().sum()) == 0 and float(d.in_proj_weight.abs().sum()) > 0
    assert type(d.out_proj).__name__ == "NonDynamicallyQuantizableLinear"
    for lib in (torch, dg):
        mha = lib.nn.MultiheadAttention
        x = lib.ones(4, 2, 8)
        with pytest.raises(AssertionError):
            mha(8, 3)
        with pytest.raises(ValueError):
            mha(0, 2)
        with pytest.raises(RuntimeError):
            mha(8, 2)(x, x, x, is_causal=True)                   # is_causal is a hint: needs attn_mask
        with pytest.raises(RuntimeError):
            mha(8, 2)(x, x, x, attn_mask=lib.zeros(3, 3))
        with pytest.raises(AssertionError):
            mha(8, 2)(lib.ones(4, 2, 6), x, x)
        with pytest.raises(AssertionError):
            mha(8, 2)(x, lib.ones(5, 2, 8), x)


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
@pytest.mark.parametrize("kw", [dict(), dict(norm_first=True, activation="gelu", batch_first=True),
                                dict(bias=False, layer_norm_eps=1e-3), dict(activation="callable")])
@pytest.mark.parametrize("train", [False, True])
def test_layers_match_torch(device, kind, kw, train):
    kw = dict(kw)
    if kw.get("activation") == "callable":
        kw["activation"] = "tanh"                               # each library gets its own tanh below
    name = "TransformerEncoderLayer" if kind == "encoder" else "TransformerDecoderLayer"
    mk = (lambda lib: getattr(lib.nn, name)(8, 2, 16, dropout=0.0,
                                             **{**kw, **({"activation": lib.tanh} if kw.get("activation") == "tanh"
                                                         else {})}))
    tm, dm = mk(torch).double(), mk(dg).double()
    dm = _copy(tm, dm, device)
    tm.train(train), dm.train(train)
    rng = np.random.default_rng(2)
    bf = kw.get("batch_first", False)
    x, mem = rng.standard_normal((3, 5, 8)), rng.standard_normal((3, 4, 8))
    if not bf:
        x, mem = x.transpose(1, 0, 2).copy(), mem.transpose(1, 0, 2).copy()
    kpm = np.zeros((3, 5), bool)
    kpm[0, -2:] = True
    causal = np.triu(np.full((5, 5), -np.inf), 1)
    (xt, xd), (mt, md) = _both(x, device), _both(mem, device)
    if kind == "encoder":
        ot = tm(xt, src_mask=torch.tensor(causal), src_key_padding_mask=torch.tensor(kpm), is_causal=True)
        od = dm(xd, src_mask=dg.tensor(causal, device=device), src_key_padding_mask=dg.tensor(kpm, device=device),
                is_causal=True)
        pairs = [(xt, xd)]
    else:
        mkpm = np.zeros((3, 4), bool)
        mkpm[2, 0] = True
        ot = tm(xt, mt, tgt_mask=torch.tensor(causal), tgt_key_padding_mask=torch.tensor(kpm),
                memory_key_padding_mask=torch.tensor(mkpm))
        od = dm(xd, md, tgt_mask=dg.tensor(causal, device=device), tgt_key_padding_mask=dg.tensor(kpm, device=device),
                memory_key_padding_mask=dg.tensor(mkpm, device=device))
        pairs = [(xt, xd), (mt, md)]
    assert tuple(od.shape) == tuple(ot.shape)
    _close(ot, od)
    (ot ** 2).sum().backward(), (od ** 2).sum().backward()
    _grads(tm, dm, pairs)


@pytest.mark.parametrize("batch_first, norm_first, activation", [(False, False, "relu"), (True, True, "gelu")])
def test_full_transformer_matches_torch(device, batch_first, norm_first, activation):
    kw = dict(dropout=0.0, batch_first=batch_first, norm_first=norm_first, activation=activation)
    tm = torch.nn.Transformer(8, 2, 2, 2, 16, **kw).double()
    dm = _copy(tm, dg.nn.Transformer(8, 2, 2, 2, 16, **kw).double(), device)
    rng = np.random.default_rng(0)
    s, t = rng.standard_normal((5, 3, 8)), rng.standard_normal((4, 3, 8))
    if batch_first:
        s, t = s.transpose(1, 0, 2).copy(), t.transpose(1, 0, 2).copy()
    mask_t = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    mask_d = dg.nn.Transformer.generate_square_subsequent_mask(4, dtype=dg.float64, device=device)
    np.testing.assert_array_equal(mask_t.numpy(), to_numpy(mask_d))
    kpm = np.zeros((3, 5), bool)
    kpm[1, -2:] = True
    (st, sd), (tt, td) = _both(s, device), _both(t, device)
    ot = tm(st, tt, tgt_mask=mask_t, src_key_padding_mask=torch.tensor(kpm),
            memory_key_padding_mask=torch.tensor(kpm), tgt_is_causal=True)
    od = dm(sd, td, tgt_mask=mask_d, src_key_padding_mask=dg.tensor(kpm, device=device),
            memory_key_padding_mask=dg.tensor(kpm, device=device), tgt_is_causal=True)
    assert tuple(od.shape) == tuple(ot.shape)
    _close(ot, od)
    (ot ** 2).sum().backward(), (od ** 2).sum().backward()
    _grads(tm, dm, [(st, sd), (tt, td)])


def test_encoder_and_decoder_stacks_match_torch(device):
    tl = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    te = torch.nn.TransformerEncoder(tl, 3, norm=torch.nn.LayerNorm(8), enable_nested_tensor=False).double()
    de = _copy(te, dg.nn.TransformerEncoder(dg.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 3,
                                            norm=dg.nn.LayerNorm(8), enable_nested_tensor=True).double(), device)
    x = np.random.default_rng(1).standard_normal((6, 2, 8))
    mt = torch.log(torch.tril(torch.ones(6, 6, dtype=torch.float64)))
    md = dg.log(dg.tril(dg.ones(6, 6, dtype=dg.float64, device=device)))
    _close(te(torch.tensor(x), mask=mt), de(dg.tensor(x, device=device), mask=md))
    _close(te(torch.tensor(x[:, 0])), de(dg.tensor(x[:, 0], device=device)))          # unbatched (S, E)
    assert de.layers[0] is not de.layers[1]                     # deep copies, as torch
    tdl = torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0)
    td = torch.nn.TransformerDecoder(tdl, 2).double()
    dd = _copy(td, dg.nn.TransformerDecoder(dg.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0), 2).double(), device)
    tgt = np.random.default_rng(2).standard_normal((3, 2, 8))
    _close(td(torch.tensor(tgt), torch.tensor(x), memory_mask=torch.zeros(3, 6, dtype=torch.float64)),
           dd(dg.tensor(tgt, device=device), dg.tensor(x, device=device),
              memory_mask=dg.zeros(3, 6, dtype=dg.float64, device=device)))


def test_defaults_keys_and_errors():
    t, d = torch.nn.Transformer(16, 2, 1, 1), dg.nn.Transformer(16, 2, 1, 1)
    assert list(t.state_dict()) == list(d.state_dict())
    assert (d.d_model, d.nhead, d.batch_first) == (t.d_model, t.nhead, t.batch_first)
    lin = d.encoder.layers[0].linear1
    assert (lin.in_features, lin.out_features) == (16, 2048) and d.encoder.layers[0].dropout.p == 0.1
    assert list(torch.nn.TransformerEncoderLayer(8, 2, 16, bias=False).state_dict()) == \
        list(dg.nn.TransformerEncoderLayer(8, 2, 16, bias=False).state_dict())
    mask = dg.nn.Transformer.generate_square_subsequent_mask(3)
    assert mask.dtype == dg.float32 and to_numpy(mask)[0, 1] == -np.inf and to_numpy(mask)[1, 0] == 0
    for lib in (torch, dg):
        with pytest.raises(RuntimeError):
            lib.nn.TransformerEncoderLayer(8, 2, activation="tanh")
        tr = lib.nn.Transformer(8, 2, 1, 1, 16)
        x = lib.ones(4, 2, 8)
        with pytest.raises(RuntimeError):
            tr(x, lib.ones(3, 3, 8))                            # batch sizes differ
        with pytest.raises(RuntimeError):
            tr(x, lib.ones(3, 2, 6))                            # feature number differs from d_model
        with pytest.raises(RuntimeError):
            tr(x, lib.ones(3, 2, 8), tgt_is_causal=True)        # is_causal without a mask
