"""nn layers and functional ops: values and gradients against PyTorch with the same
weights, gradients against finite differences, and Module semantics."""
import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph.autograd import gradcheck

torch = pytest.importorskip("torch")
tnn, TF = torch.nn, torch.nn.functional


def copy_weights(dst, src):
    """Load a torch module's state into the distgraph twin (same keys, as PyTorch's)."""
    sd = {k: v.detach().numpy().copy() for k, v in src.state_dict().items()}
    assert list(sd) == list(dst.state_dict()), f"keys differ: {list(sd)} vs {list(dst.state_dict())}"
    dst.load_state_dict(sd)


def run_both(ours, theirs, x, *extra, train=True, loss=lambda y: (y * y).sum()):
    ours.train(train)
    theirs.train(train)
    xd = dg.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yd, yt = ours(xd, *extra), theirs(xt, *[torch.tensor(e) for e in extra])
    if isinstance(yd, tuple):
        yd, yt = yd[0], yt[0]
    np.testing.assert_allclose(yd.detach().numpy(), yt.detach().numpy(), rtol=1e-9, atol=1e-10)
    loss(yd).backward()
    loss(yt).backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-8, atol=1e-10)
    pt = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), pt[name].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)
    return ours, theirs


rng = np.random.default_rng(0)
LAYERS = [
    ("linear", lambda: nn.Linear(5, 3), lambda: tnn.Linear(5, 3), (4, 5)),
    ("linear_nobias_3d", lambda: nn.Linear(5, 3, bias=False), lambda: tnn.Linear(5, 3, bias=False), (2, 4, 5)),
    ("conv2d", lambda: nn.Conv2d(3, 4, 3), lambda: tnn.Conv2d(3, 4, 3), (2, 3, 7, 6)),
    ("conv2d_stride_pad_dil", lambda: nn.Conv2d(2, 4, (3, 2), stride=2, padding=(1, 2), dilation=(2, 1)),
     lambda: tnn.Conv2d(2, 4, (3, 2), stride=2, padding=(1, 2), dilation=(2, 1)), (2, 2, 9, 8)),
    ("conv2d_groups", lambda: nn.Conv2d(4, 6, 3, groups=2, padding=1), lambda: tnn.Conv2d(4, 6, 3, groups=2, padding=1),
     (2, 4, 5, 5)),
    ("conv2d_same", lambda: nn.Conv2d(2, 3, 4, padding="same"), lambda: tnn.Conv2d(2, 3, 4, padding="same"),
     (1, 2, 6, 6)),
    ("conv1d", lambda: nn.Conv1d(3, 2, 3, stride=2, padding=1), lambda: tnn.Conv1d(3, 2, 3, stride=2, padding=1),
     (2, 3, 9)),
    ("conv_transpose2d", lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
     lambda: tnn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), (2, 3, 4, 5)),
    ("conv_transpose2d_groups", lambda: nn.ConvTranspose2d(4, 6, 2, groups=2),
     lambda: tnn.ConvTranspose2d(4, 6, 2, groups=2), (1, 4, 3, 3)),
    ("maxpool", lambda: nn.MaxPool2d(2), lambda: tnn.MaxPool2d(2), (2, 3, 6, 6)),
    ("maxpool_stride_pad", lambda: nn.MaxPool2d(3, 2, 1), lambda: tnn.MaxPool2d(3, 2, 1), (1, 2, 7, 7)),
    ("avgpool", lambda: nn.AvgPool2d(3, 2, 1), lambda: tnn.AvgPool2d(3, 2, 1), (1, 2, 7, 7)),
    ("avgpool_no_pad_count", lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     lambda: tnn.AvgPool2d(3, 2, 1, count_include_pad=False), (1, 2, 7, 7)),
    ("adaptive_avgpool", lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda: tnn.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 7)),
    ("adaptive_avgpool_1", lambda: nn.AdaptiveAvgPool2d(1), lambda: tnn.AdaptiveAvgPool2d(1), (2, 3, 4, 4)),
    ("batchnorm1d", lambda: nn.BatchNorm1d(4), lambda: tnn.BatchNorm1d(4), (6, 4)),
    ("batchnorm1d_3d", lambda: nn.BatchNorm1d(3), lambda: tnn.BatchNorm1d(3), (4, 3, 5)),
    ("batchnorm2d", lambda: nn.BatchNorm2d(3), lambda: tnn.BatchNorm2d(3), (2, 3, 4, 4)),
    ("layernorm", lambda: nn.LayerNorm((3, 4)), lambda: tnn.LayerNorm((3, 4)), (2, 3, 4)),
    ("groupnorm", lambda: nn.GroupNorm(2, 4), lambda: tnn.GroupNorm(2, 4), (2, 4, 3, 3)),
    ("gelu", lambda: nn.GELU(), lambda: tnn.GELU(), (3, 4)),
    ("gelu_tanh", lambda: nn.GELU("tanh"), lambda: tnn.GELU("tanh"), (3, 4)),
    ("softmax", lambda: nn.Softmax(dim=1), lambda: tnn.Softmax(dim=1), (3, 4)),
    ("logsoftmax", lambda: nn.LogSoftmax(dim=-1), lambda: tnn.LogSoftmax(dim=-1), (3, 4)),
    ("leaky_relu", lambda: nn.LeakyReLU(0.2), lambda: tnn.LeakyReLU(0.2), (3, 4)),
    ("sequential", lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2), nn.SiLU()),
     lambda: tnn.Sequential(tnn.Linear(4, 8), tnn.Tanh(), tnn.Linear(8, 2), tnn.SiLU()), (5, 4)),
]


@pytest.mark.parametrize("name, ours, theirs, shape", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_matches_torch(name, ours, theirs, shape):
    torch.manual_seed(0)
    t = theirs().double()
    d = ours().double()
    if list(t.state_dict()):
        copy_weights(d, t)
    x = rng.standard_normal(shape)
    run_both(d, t, x)
    for k, v in t.state_dict().items():   # running statistics too
        np.testing.assert_allclose(d.state_dict()[k].numpy(), v.numpy(), rtol=1e-9, err_msg=k)
    if any("running" in k for k in t.state_dict()):
        run_both(d, t, x, train=False)


def test_embedding_with_padding_idx_matches_torch():
    t = tnn.Embedding(6, 3, padding_idx=1).double()
    d = nn.Embedding(6, 3, padding_idx=1).double()
    assert np.all(d.weight.array[1] == 0)
    copy_weights(d, t)
    idx = np.array([[1, 2, 2], [5, 1, 0]])
    yd, yt = d(dg.tensor(idx)), t(torch.tensor(idx))
    np.testing.assert_allclose(yd.detach().numpy(), yt.detach().numpy())
    (yd * yd).sum().backward()
    (yt * yt).sum().backward()
    np.testing.assert_allclose(d.weight.grad.numpy(), t.weight.grad.numpy())
    assert np.all(d.weight.grad.numpy()[1] == 0)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_matches_torch(batch_first):
    torch.manual_seed(0)
    t = tnn.MultiheadAttention(8, 2, batch_first=batch_first).double()
    d = nn.MultiheadAttention(8, 2, batch_first=batch_first).double()
    copy_weights(d, t)
    x = rng.standard_normal((2, 5, 8) if batch_first else (5, 2, 8))
    pad = np.zeros((2, 5), dtype=bool)
    pad[1, 3:] = True
    causal = np.triu(np.ones((5, 5), dtype=bool), 1)
    xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    od, wd = d(xd, xd, xd, key_padding_mask=dg.tensor(pad), attn_mask=dg.tensor(causal))
    ot, wt = t(xt, xt, xt, key_padding_mask=torch.tensor(pad), attn_mask=torch.tensor(causal))
    np.testing.assert_allclose(od.detach().numpy(), ot.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(wd.detach().numpy(), wt.detach().numpy(), rtol=1e-9, atol=1e-12)
    od.sum().backward()
    ot.sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(d.in_proj_weight.grad.numpy(), t.in_proj_weight.grad.numpy(), rtol=1e-8, atol=1e-12)


LOSSES = [
    ("cross_entropy", lambda x, y: F.cross_entropy(x, y), lambda x, y: TF.cross_entropy(x, y), (5, 4), "cls"),
    ("cross_entropy_sum_ignore", lambda x, y: F.cross_entropy(x, y, ignore_index=2, reduction="sum"),
     lambda x, y: TF.cross_entropy(x, y, ignore_index=2, reduction="sum"), (6, 4), "cls"),
    ("cross_entropy_smooth_weight", lambda x, y: F.cross_entropy(x, y, dg.tensor([1.0, 2.0, 0.5, 1.0],
                                                                                   dtype=dg.float64),
                                                                 label_smoothing=0.1),
     lambda x, y: TF.cross_entropy(x, y, torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64),
                                   label_smoothing=0.1), (6, 4), "cls"),
    ("cross_entropy_probs", lambda x, y: F.cross_entropy(x, y, label_smoothing=0.2),
     lambda x, y: TF.cross_entropy(x, y, label_smoothing=0.2), (5, 4), "prob"),
    ("cross_entropy_spatial", lambda x, y: F.cross_entropy(x, y, reduction="none"),
     lambda x, y: TF.cross_entropy(x, y, reduction="none"), (2, 4, 3), "cls"),
    ("nll", lambda x, y: F.nll_loss(F.log_softmax(x, 1), y), lambda x, y: TF.nll_loss(TF.log_softmax(x, 1), y),
     (5, 4), "cls"),
    ("mse", lambda x, y: F.mse_loss(x, y), lambda x, y: TF.mse_loss(x, y), (5, 4), "real"),
    ("l1", lambda x, y: F.l1_loss(x, y, reduction="sum"), lambda x, y: TF.l1_loss(x, y, reduction="sum"), (5, 4),
     "real"),
    ("bce_logits", lambda x, y: F.binary_cross_entropy_with_logits(x, y, pos_weight=dg.tensor(
        [1.0, 2.0, 3.0, 0.5], dtype=dg.float64)),
     lambda x, y: TF.binary_cross_entropy_with_logits(x, y, pos_weight=torch.tensor(
         [1.0, 2.0, 3.0, 0.5], dtype=torch.float64)), (5, 4), "unit"),
]


@pytest.mark.parametrize("name, ours, theirs, shape, kind", LOSSES, ids=[c[0] for c in LOSSES])
def test_loss_matches_torch_and_gradcheck(name, ours, theirs, shape, kind):
    x = rng.standard_normal(shape) * 2
    if kind == "cls":
        c = shape[1]
        y = rng.integers(0, c, (shape[0],) + shape[2:])
    elif kind == "prob":
        y = rng.random(shape)
        y /= y.sum(1, keepdims=True)
    elif kind == "unit":
        y = rng.random(shape)
    else:
        y = rng.standard_normal(shape)
    xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ld, lt = ours(xd, dg.tensor(y)), theirs(xt, torch.tensor(y))
    np.testing.assert_allclose(ld.detach().numpy(), lt.detach().numpy(), rtol=1e-10)
    assert gradcheck(lambda a: ours(a, dg.tensor(y)), [dg.tensor(x, requires_grad=True)])


def test_functional_ops_gradcheck_in_float64():
    x = dg.tensor(rng.standard_normal((1, 2, 5, 5)), requires_grad=True)
    w = dg.tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    b = dg.tensor(rng.standard_normal(3), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [x, w, b])
    wt = dg.tensor(rng.standard_normal((2, 3, 2, 2)), requires_grad=True)
    assert gradcheck(lambda x, w: F.conv_transpose2d(x, w, stride=2), [x, wt])
    assert gradcheck(lambda x: F.max_pool2d(x, 2, 1), [x])
    assert gradcheck(lambda x: F.pad(x, (1, 2, 0, 1), value=3.0), [x])
    assert gradcheck(lambda x: F.normalize(x, dim=1), [x])
    q = dg.tensor(rng.standard_normal((2, 4, 3)), requires_grad=True)
    k = dg.tensor(rng.standard_normal((2, 5, 3)), requires_grad=True)
    v = dg.tensor(rng.standard_normal((2, 5, 2)), requires_grad=True)
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [q, k, v])


def test_sdpa_causal_matches_torch():
    q, k, v = (rng.standard_normal((2, 3, 4, 5)) for _ in range(3))
    got = F.scaled_dot_product_attention(dg.tensor(q), dg.tensor(k), dg.tensor(v), is_causal=True)
    want = TF.scaled_dot_product_attention(torch.tensor(q), torch.tensor(k), torch.tensor(v), is_causal=True)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-10)


def test_one_hot_pad_and_dropout():
    assert F.one_hot(dg.tensor([0, 2]), 3).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert F.one_hot(dg.tensor([0, 2]), 3).dtype == dg.int64
    x = dg.ones(1000, 100)
    dg.manual_seed(0)
    y = F.dropout(x, 0.3)
    kept = (y.numpy() != 0).mean()
    assert abs(kept - 0.7) < 0.01 and np.allclose(y.numpy()[y.numpy() != 0], 1 / 0.7)
    assert F.dropout(x, 0.3, training=False) is x
    d = nn.Dropout(0.5)
    d.eval()
    assert d(x) is x


# ----------------------------------------------------------- Module semantics
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.register_buffer("scratch", dg.zeros(2), persistent=False)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
        self.blocks = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])

    def forward(self, x):
        h = self.head(self.bn(self.conv(x)).relu())
        for b in self.blocks:
            h = b(h)
        return h


class TNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 2, 3)
        self.bn = tnn.BatchNorm2d(2)
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.head = tnn.Sequential(tnn.Flatten(), tnn.Linear(8, 3))
        self.blocks = tnn.ModuleList([tnn.Linear(3, 3), tnn.Linear(3, 3)])


def test_state_dict_keys_and_names_match_torch():
    d, t = Net(), TNet()
    assert list(d.state_dict()) == list(t.state_dict())
    assert [n for n, _ in d.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in d.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in d.named_modules()] == [n for n, _ in t.named_modules()]
    assert [type(m).__name__ for m in d.children()] == [type(m).__name__ for m in t.children()]


def test_load_state_dict_errors_name_keys_and_shapes():
    d = Net()
    sd = d.state_dict()
    sd.pop("conv.bias")
    sd["extra.weight"] = dg.zeros(1)
    # (PyTorch's order: missing keys first, then unexpected ones)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "conv.bias"(.|\n)*Unexpected key\(s\)'
                                           r' in state_dict: "extra.weight"'):
        d.load_state_dict(sd)
    result = d.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["conv.bias"] and result.unexpected_keys == ["extra.weight"]
    bad = d.state_dict()
    bad["head.1.weight"] = dg.zeros(3, 9)
    with pytest.raises(RuntimeError, match=r"size mismatch for head.1.weight.*\(3, 9\).*\(3, 8\)"):
        d.load_state_dict(bad)


def test_train_eval_zero_grad_to_apply_hooks_repr():
    d = Net()
    d.eval()
    assert not d.training and not d.bn.training
    d.train()
    assert d.head[1].training
    d(dg.randn(2, 1, 4, 4)).sum().backward()
    assert all(p.grad is not None for p in d.parameters())
    d.zero_grad()
    assert all(p.grad is None for p in d.parameters())
    d.double()
    assert d.conv.weight.dtype == dg.float64 and d.bn.num_batches_tracked.dtype == dg.int64
    seen = []
    d.apply(lambda m: seen.append(type(m).__name__))
    assert seen[-1] == "Net" and "Linear" in seen
    calls = []
    h1 = d.register_forward_pre_hook(lambda m, args: calls.append("pre"))
    h2 = d.register_forward_hook(lambda m, args, out: out * 0)
    out = d(dg.randn(2, 1, 4, 4, dtype=dg.float64))
    assert calls == ["pre"] and np.all(out.detach().numpy() == 0)
    h1.remove()
    h2.remove()
    assert np.any(d(dg.randn(2, 1, 4, 4, dtype=dg.float64)).detach().numpy() != 0)
    assert "(conv): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1))" in repr(d)


def test_initialisation_statistics_follow_torch():
    dg.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    w = lin.weight.numpy() if not lin.weight.requires_grad else lin.weight.detach().numpy()
    assert w.min() >= -bound and w.max() <= bound and abs(w.std() - bound / np.sqrt(3)) < 0.02 * bound
    t = dg.empty(500, 400)
    nn.init.kaiming_normal_(t, nonlinearity="relu")
    assert abs(t.numpy().std() - np.sqrt(2 / 400)) < 0.01 * np.sqrt(2 / 400) * 5
    nn.init.xavier_uniform_(t)
    a = np.sqrt(6 / 900)
    assert t.numpy().max() <= a and abs(t.numpy().std() - a / np.sqrt(3)) < 0.02 * a
    nn.init.trunc_normal_(t, std=1, a=-1, b=1)
    assert t.numpy().min() >= -1 and t.numpy().max() <= 1
    q = dg.empty(6, 4)
    nn.init.orthogonal_(q)
    np.testing.assert_allclose(q.numpy().T @ q.numpy(), np.eye(4), atol=1e-5)
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(float(tnn.init.calculate_gain("leaky_relu", 0.2)))
    e = nn.Embedding(1000, 50)
    assert abs(e.weight.detach().numpy().std() - 1) < 0.02


def test_clip_grad_norm_and_vectors_match_torch():
    d, t = nn.Linear(4, 3).double(), tnn.Linear(4, 3).double()
    copy_weights(d, t)
    x = rng.standard_normal((5, 4)) * 10
    d(dg.tensor(x)).sum().backward()
    t(torch.tensor(x)).sum().backward()
    nd = nn.utils.clip_grad_norm_(d.parameters(), 1.0)
    nt = tnn.utils.clip_grad_norm_(t.parameters(), 1.0)
    assert float(nd) == pytest.approx(float(nt))
    np.testing.assert_allclose(d.weight.grad.numpy(), t.weight.grad.numpy(), rtol=1e-6)
    nn.utils.clip_grad_value_(d.parameters(), 0.01)
    assert np.abs(d.weight.grad.numpy()).max() <= 0.01
    v = nn.utils.parameters_to_vector(d.parameters())
    np.testing.assert_allclose(v.detach().numpy(), tnn.utils.parameters_to_vector(t.parameters()).detach().numpy())
    nn.utils.vector_to_parameters(v * 0, d.parameters())
    assert np.all(d.bias.detach().numpy() == 0)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_max_pool_ties_send_the_gradient_where_torch_does(kernel, stride, padding):
    x = np.round(rng.standard_normal((2, 3, 7, 7)))          # many equal values in each window
    x[0, 0] = 0.0                                            # a whole plane of ties
    xd, xt = dg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yd = F.max_pool2d(xd, kernel, stride, padding)
    yt = TF.max_pool2d(xt, kernel, stride, padding)
    np.testing.assert_array_equal(yd.detach().numpy(), yt.detach().numpy())
    w = rng.standard_normal(yt.shape)
    (yd * dg.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), atol=1e-12)


def test_module_and_optimizer_zero_grad_agree_with_torch():
    torch = pytest.importorskip("torch")
    for lib, opt_cls in ((dg, dg.optim.SGD), (torch, torch.optim.SGD)):
        m = lib.nn.Linear(3, 2)
        opt = opt_cls(m.parameters(), lr=0.1)
        for zero in (m.zero_grad, opt.zero_grad):
            m(lib.ones(4, 3)).sum().backward()
            g = m.weight.grad
            version = (lambda t: t._version[0]) if lib is dg else (lambda t: t._version)  # dg: a shared counter
            v = version(g)
            zero(set_to_none=False)
            assert m.weight.grad is g and not g.requires_grad and g.grad_fn is None
            assert float(abs(g).sum()) == 0.0 and version(g) > v, (lib.__name__, zero)
            zero()
            assert m.weight.grad is None
