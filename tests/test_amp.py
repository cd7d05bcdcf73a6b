"""Mixed precision: which ops autocast to float16 and which to float32, and GradScaler's rules."""
import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F


def test_autocast_dtype_of_each_op_class():
    lin = nn.Linear(4, 3)
    conv = nn.Conv2d(1, 2, 3)
    ln = nn.LayerNorm(3)
    x = dg.randn(2, 4)
    img = dg.randn(1, 1, 5, 5)
    with dg.amp.autocast(dtype=dg.float16):
        assert dg.amp.is_autocast_enabled()
        y = lin(x)
        assert y.dtype == dg.float16                                  # linear: low precision
        assert (x @ x.T).dtype == dg.float16                          # matmul
        assert dg.einsum("ij,kj->ik", x, x).dtype == dg.float16      # einsum
        assert conv(img).dtype == dg.float16                         # convolution, bias included
        assert F.conv_transpose2d(img, conv.weight.transpose(0, 1)).dtype == dg.float16
        assert F.softmax(y, 1).dtype == dg.float32                   # softmax family: float32
        assert F.log_softmax(y, 1).dtype == dg.float32
        assert ln(y).dtype == dg.float32                             # norms: float32
        assert y.logsumexp(1).dtype == dg.float32
        loss = F.cross_entropy(y, dg.tensor([0, 2]))
        assert loss.dtype == dg.float32                              # losses: float32
        assert F.mse_loss(y, dg.zeros(2, 3)).dtype == dg.float32
        assert (y + 1).dtype == dg.float16                           # elementwise: plain promotion
    assert not dg.amp.is_autocast_enabled()
    assert lin(x).dtype == dg.float32
    loss.backward()
    assert lin.weight.grad.dtype == dg.float32 and lin.weight.grad.shape == (3, 4)


def test_autocast_decorator_disabled_and_bfloat16():
    @dg.amp.autocast()
    def f(a):
        return a @ a
    assert f(dg.eye(2)).dtype == dg.float16 and not dg.amp.is_autocast_enabled()
    with dg.amp.autocast(enabled=False):
        assert (dg.eye(2) @ dg.eye(2)).dtype == dg.float32
    with pytest.raises(TypeError, match="bfloat16"):
        dg.amp.autocast(dtype="bfloat16")


def test_autocast_gradients_close_to_float32():
    dg.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x, y = dg.randn(32, 8), dg.randint(0, 4, (32,))
    F.cross_entropy(m(x), y).backward()
    ref = [p.grad.numpy().copy() for p in m.parameters()]
    m.zero_grad()
    with dg.amp.autocast():
        loss = F.cross_entropy(m(x), y)
    loss.backward()
    for g, r in zip((p.grad.numpy() for p in m.parameters()), ref):
        np.testing.assert_allclose(g, r, atol=5e-3, rtol=5e-2)


def make():
    dg.manual_seed(1)
    m = nn.Linear(3, 2)
    return m, dg.optim.SGD(m.parameters(), lr=0.1)


def test_grad_scaler_scales_unscales_and_steps():
    m, opt = make()
    scaler = dg.amp.GradScaler(init_scale=1024.0, growth_interval=3)
    x = dg.randn(4, 3)
    before = m.weight.detach().numpy().copy()
    loss = (m(x) ** 2).mean()
    scaled = scaler.scale(loss)
    assert scaled.item() == pytest.approx(loss.item() * 1024, rel=1e-6)
    scaled.backward()
    scaler.unscale_(opt)                       # e.g. before clipping: gradients are the true ones
    g = m.weight.grad.numpy().copy()
    m2, _ = make()
    ((m2(x) ** 2).mean()).backward()
    np.testing.assert_allclose(g, m2.weight.grad.numpy(), rtol=1e-5)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    np.testing.assert_allclose(m.weight.detach().numpy(), before - 0.1 * g, rtol=1e-6)
    for _ in range(2):                         # growth after growth_interval clean steps
        opt.zero_grad()
        scaler.scale((m(x) ** 2).mean()).backward()
        scaler.step(opt)
        scaler.update()
    assert scaler.get_scale() == 2048.0


def test_grad_scaler_skips_the_step_and_backs_off_on_inf():
    m, opt = make()
    scaler = dg.amp.GradScaler(init_scale=8.0)
    scaler.scale((m(dg.randn(2, 3)) ** 2).sum()).backward()
    m.bias.grad.array[0] = np.inf              # injected overflow
    before = m.weight.detach().numpy().copy()
    assert scaler.step(opt) is None
    scaler.update()
    np.testing.assert_array_equal(m.weight.detach().numpy(), before)
    assert scaler.get_scale() == 4.0
    state = scaler.state_dict()
    other = dg.amp.GradScaler()
    other.load_state_dict(state)
    assert other.get_scale() == 4.0


def test_disabled_scaler_state_round_trips_as_torchs():
    torch = pytest.importorskip("torch")
    for lib, make_scaler in ((torch, lambda **kw: torch.amp.GradScaler("cpu", **kw)),
                             (dg, lambda **kw: dg.amp.GradScaler(**kw))):
        off = make_scaler(enabled=False)
        assert off.state_dict() == {}
        off.load_state_dict({})                              # a no-op on a disabled scaler
        on = make_scaler(init_scale=8.0)
        with pytest.raises(RuntimeError, match="disabled instance of GradScaler"):
            on.load_state_dict({})
        off.load_state_dict(on.state_dict())                 # still a no-op
    with pytest.raises(RuntimeError, match=r"missing \['growth_factor'"):
        dg.amp.GradScaler().load_state_dict({"scale": 2.0})


def test_grad_scaler_matches_torch_scale_trajectory():
    torch = pytest.importorskip("torch")
    ours = dg.amp.GradScaler(init_scale=16.0, growth_interval=2)
    theirs = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=2)
    tp = torch.nn.Parameter(torch.ones(2))
    topt = torch.optim.SGD([tp], lr=0.1)
    m, opt = make()
    for bad in [False, False, True, False, False, False, True]:
        opt.zero_grad()
        topt.zero_grad()
        ours.scale((m(dg.ones(1, 3)) ** 2).sum()).backward()
        theirs.scale((tp ** 2).sum()).backward()
        if bad:
            m.bias.grad.array[0] = np.nan
            tp.grad[0] = float("nan")
        ours.step(opt)
        theirs.step(topt)
        ours.update()
        theirs.update()
        assert ours.get_scale() == theirs.get_scale()
