"""Transformer and its encoder/decoder layers against torch with copied weights (dropout 0):
outputs and input gradients in float64, state_dict keys, the causal mask helper."""
import numpy as np
import pytest

import distgraph as dg

torch = pytest.importorskip("torch")


def _copy(tm, dm):
    assert list(tm.state_dict()) == list(dm.state_dict())
    dm.load_state_dict({k: dg.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})


@pytest.mark.parametrize("batch_first, norm_first, activation", [(False, False, "relu"), (True, True, "gelu")])
def test_full_transformer_matches_torch(batch_first, norm_first, activation):
    kw = dict(dropout=0.0, batch_first=batch_first, norm_first=norm_first, activation=activation)
    tm = torch.nn.Transformer(8, 2, 2, 2, 16, **kw).double()
    dm = dg.nn.Transformer(8, 2, 2, 2, 16, **kw).double()
    _copy(tm, dm)
    rng = np.random.default_rng(0)
    s, t = rng.standard_normal((5, 3, 8)), rng.standard_normal((4, 3, 8))
    if batch_first:
        s, t = s.transpose(1, 0, 2).copy(), t.transpose(1, 0, 2).copy()
    mask_t = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    mask_d = dg.nn.Transformer.generate_square_subsequent_mask(4, dtype=dg.float64)
    np.testing.assert_array_equal(mask_t.numpy(), mask_d.numpy())
    kpm = np.zeros((3, 5), bool)
    kpm[1, -2:] = True
    st, sd = torch.tensor(s, requires_grad=True), dg.tensor(s, requires_grad=True)
    ot = tm(st, torch.tensor(t), tgt_mask=mask_t, src_key_padding_mask=torch.tensor(kpm))
    od = dm(sd, dg.tensor(t), tgt_mask=mask_d, src_key_padding_mask=dg.tensor(kpm))
    np.testing.assert_allclose(ot.detach().numpy(), od.detach().numpy(), rtol=1e-9, atol=1e-10)
    (ot ** 2).sum().backward(), (od ** 2).sum().backward()
    np.testing.assert_allclose(st.grad.numpy(), sd.grad.numpy(), rtol=1e-8, atol=1e-10)
    for p, q in zip(tm.parameters(), dm.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_encoder_stack_with_causal_mask_matches_torch():
    tl = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    dl = dg.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    te, de = torch.nn.TransformerEncoder(tl, 3, enable_nested_tensor=False).double(), \
        dg.nn.TransformerEncoder(dl, 3).double()
    _copy(te, de)
    x = np.random.default_rng(1).standard_normal((6, 2, 8))
    mt = torch.log(torch.tril(torch.ones(6, 6, dtype=torch.float64)))
    md = dg.log(dg.tril(dg.ones(6, 6, dtype=dg.float64)))
    np.testing.assert_allclose(te(torch.tensor(x), mask=mt).detach().numpy(), de(dg.tensor(x), mask=md).detach().numpy(),
                               rtol=1e-9, atol=1e-10)
    assert de.layers[0] is not de.layers[1]                   # deep copies, as torch
    with pytest.raises(RuntimeError):
        dg.nn.TransformerEncoderLayer(8, 2, activation="tanh")
