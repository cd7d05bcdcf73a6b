"""A compiled model trained with its backward outside (``model = dg.compile(model)``; then
``loss = crit(model(x), y); loss.backward(); opt.step()`` as in eager): the forward replays as a
region (distgraph/graph/region.py) whose one graph node runs the recorded backward.

Each model test trains an eager twin and a compiled twin on the same batches and requires the
losses, every gradient and every parameter to be bit-equal after each step (float64): the region
runs the ops' own rules in eager's order.  The other tests cover what the region must get right
beyond values: gradients into the arguments, the order the leaves finish in (DDP's hooks), a
second forward before the first backward, in-place changes before backward, retain_graph, and
where it must fall back to eager.
"""
import warnings

import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph.graph import CaptureWarning

STEPS = 6


def _twins(make):
    dg.manual_seed(0)
    a = make()
    dg.manual_seed(0)
    b = make()
    return a, b


def _host(a):
    a = a.array if isinstance(a, dg.Tensor) else a
    return a.get() if hasattr(a, "get") else np.asarray(a)   # (a CuPy array comes to the host)


def _equal(a, b, what):
    a, b = _host(a), _host(b)
    assert a.shape == b.shape and np.array_equal(a, b), \
        f"{what}: region and eager differ by {np.max(np.abs(a - b)) if a.shape == b.shape else 'shape'}"


def _train(make, shape, loss_fn, target, opt=dg.optim.SGD, opt_kw=None, seed_each_step=False, device="cpu"):
    opt_kw = opt_kw or {"lr": 0.05, "momentum": 0.9}
    eager, model = (m.to(device) for m in _twins(make))
    compiled = dg.compile(model)
    opts = [opt(eager.parameters(), **opt_kw), opt(model.parameters(), **opt_kw)]
    rng = np.random.default_rng(0)
    for i in range(STEPS):
        x = dg.tensor(rng.standard_normal(shape), dtype=dg.float64) if isinstance(shape, tuple) else shape(rng)
        x, y = x.to(device), target(rng).to(device)
        losses = []
        for m, o in zip((eager, compiled), opts):
            if seed_each_step:
                dg.manual_seed(100 + i)
            o.zero_grad()
            loss = loss_fn(m(x), y)
            loss.backward()
            o.step()
            losses.append(loss)
        _equal(losses[1], losses[0], f"loss at step {i}")
        for (n, p), q in zip(model.named_parameters(), eager.parameters()):
            _equal(p.grad, q.grad, f"grad of {n} at step {i}")
            _equal(p, q, f"{n} after step {i}")
        for (n, b), c in zip(model.named_buffers(), eager.buffers()):
            _equal(b, c, f"buffer {n} after step {i}")
    assert compiled.stats["replays"] == STEPS - 2, (compiled.stats, compiled.eager_reasons())
    return compiled


def _targets(shape):
    return lambda r: dg.tensor(r.standard_normal(shape), dtype=dg.float64)


# ------------------------------------------------------------------ models
def test_mlp_with_cross_entropy_outside(device):
    make = lambda: nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),  # noqa: E731
                                 nn.Linear(16, 4)).double()
    _train(make, (5, 8), F.cross_entropy, lambda r: dg.tensor(r.integers(0, 4, 5)), device=device)


def test_cnn_with_dropout_and_adam(device):
    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 4, 3, stride=2)
            self.pool = nn.MaxPool2d(2)
            self.drop = nn.Dropout(0.25)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            h = F.relu(self.conv1(x))
            h = self.pool(F.relu(self.conv2(h)))
            return self.fc(self.drop(h.flatten(1)))
    _train(lambda: CNN().double(), (2, 2, 7, 7), F.mse_loss, _targets((2, 3)), dg.optim.Adam, {"lr": 1e-2},
           seed_each_step=True, device=device)


def test_transformer_encoder_layer():
    layer = lambda: nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0,  # noqa: E731
                                               batch_first=True).double()
    _train(layer, (2, 5, 8), F.mse_loss, _targets((2, 5, 8)), dg.optim.AdamW, {"lr": 1e-3})


def test_lstm_language_model_with_embedding(device):
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 6)
            self.rnn = nn.LSTM(6, 8, batch_first=True)
            self.out = nn.Linear(8, 11)

        def forward(self, tokens):
            h, _ = self.rnn(self.emb(tokens))
            return self.out(h).flatten(0, 1)
    _train(lambda: LM().double(), lambda r: dg.tensor(r.integers(0, 11, (3, 4))), F.cross_entropy,
           lambda r: dg.tensor(r.integers(0, 11, 12)), device=device)


# ------------------------------------------------------------------ what a region must get right
def _replaying(make):
    """An eager model and a compiled twin already past its two captures."""
    eager, model = _twins(make)
    compiled = dg.compile(model)
    x = dg.ones(2, 3, dtype=dg.float64)
    for _ in range(2):
        compiled(x).sum().backward()
    model.zero_grad()
    return eager, model, compiled


def _mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def test_gradients_reach_arguments_and_the_graph_outside():
    """A leaf argument gets its .grad; a computed argument passes its gradient on to the graph before.
    (Both calls have one key: an argument that requires grad, computed or a leaf.)"""
    eager, model = _twins(_mlp)
    compiled = dg.compile(model)
    grads = []
    for m in (eager, compiled):
        w = dg.tensor(np.linspace(-1, 1, 6).reshape(2, 3), dtype=dg.float64, requires_grad=True)
        leaf = dg.tensor(np.ones((2, 3)), dtype=dg.float64, requires_grad=True)
        for _ in range(3):
            (m(w * 3.0) ** 2).sum().backward()
            (m(leaf) ** 2).sum().backward()
        grads.append((w.grad, leaf.grad, [p.grad for p in m.parameters()]))
    assert compiled.stats["replays"] == 4, compiled.stats
    (w0, l0, p0), (w1, l1, p1) = grads
    _equal(w1, w0, "gradient through a computed argument")
    _equal(l1, l0, "gradient of a leaf argument")
    for a, b in zip(p1, p0):
        _equal(a, b, "parameter gradient accumulated over six backwards")


def test_leaves_finish_in_eagers_order():
    """DDP's hooks fire as each parameter's gradient is complete: a region hands them over in the
    order eager's engine finishes them (a shared weight finishes at its first use)."""
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.c(self.b(self.a(x)) + self.a(x).tanh())
    eager, model, compiled = _replaying(lambda: Tied().double())
    orders = []
    for m in (eager, model):
        order = []
        for n, p in m.named_parameters():
            p.register_post_accumulate_grad_hook(lambda p, n=n: order.append(n))
        out = (compiled if m is model else m)(dg.ones(2, 3, dtype=dg.float64))
        out.sum().backward()
        orders.append(order)
    assert compiled.stats["replays"] == 1
    assert orders[1] == orders[0] and len(orders[0]) == 6, orders


def test_second_forward_before_backward_runs_eagerly_and_is_right():
    """The region's op instances hold one replay's saved arrays: while that replay's graph waits for
    its backward, the next call runs eagerly (and the sum of both is eager's)."""
    eager, model, compiled = _replaying(_mlp)
    x1, x2 = dg.ones(2, 3, dtype=dg.float64), dg.full((2, 3), 0.5, dtype=dg.float64)
    (eager(x1).sum() + (eager(x2) ** 2).sum()).backward()
    (compiled(x1).sum() + (compiled(x2) ** 2).sum()).backward()
    assert compiled.stats["replays"] == 1 and compiled.stats["eager"] == 1, compiled.stats
    for p, q in zip(model.parameters(), eager.parameters()):
        _equal(p.grad, q.grad, "gradient of two forwards")
    compiled(x1).sum().backward()        # the graph is gone: replays again
    assert compiled.stats["replays"] == 2


def test_output_dropped_without_backward_frees_the_region():
    eager, model, compiled = _replaying(_mlp)
    x = dg.ones(2, 3, dtype=dg.float64)
    compiled(x)                          # a forward whose output is dropped at once
    compiled(x).sum().backward()
    assert compiled.stats["replays"] == 2, compiled.stats


def test_in_place_change_of_an_input_before_backward_raises_as_in_eager():
    """Linear saves its input (and its weight) for backward: a change in place before backward raises
    in both; changing a tensor no op saved does not."""
    eager, model, compiled = _replaying(_mlp)
    for m in (eager, compiled):
        x = dg.ones(2, 3, dtype=dg.float64)
        out = m(x)
        x.add_(1.0)
        with pytest.raises(RuntimeError, match="modified in place"):
            out.sum().backward()
        del out                      # (a failed backward leaves the graph, and the region, waiting)
        out = m(x)
        with dg.no_grad():
            (eager if m is eager else model)[0].weight.mul_(1.0)
        with pytest.raises(RuntimeError, match="modified in place"):
            out.sum().backward()
    assert compiled.stats["replays"] == 2

    class AddFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(3, 2)

        def forward(self, x):
            return self.f(x + 1.0)
    eager, model = _twins(lambda: AddFirst().double())
    compiled = dg.compile(model)
    for m in (eager, compiled):
        for _ in range(3):
            x = dg.ones(2, 3, dtype=dg.float64)
            out = m(x)
            x.add_(1.0)              # (x + 1.0) is what Linear saved, not x
            out.sum().backward()
    assert compiled.stats["replays"] == 1
    _equal(model.f.weight.grad, eager.f.weight.grad, "gradient after a change no op saw")


def test_retain_graph_backward_twice_matches_eager():
    eager, model, compiled = _replaying(_mlp)
    for m in (eager, compiled):
        out = (m(dg.ones(2, 3, dtype=dg.float64)) ** 2).sum()
        out.backward(retain_graph=True)
        out.backward()
    for p, q in zip(model.parameters(), eager.parameters()):
        _equal(p.grad, q.grad, "gradient after two backwards of one graph")
    with pytest.raises(RuntimeError, match="second time"):
        out.backward()


def test_eval_under_no_grad_is_a_plain_tape_and_training_resumes():
    eager, model, compiled = _replaying(_mlp)
    x = dg.ones(2, 3, dtype=dg.float64)
    with dg.no_grad():
        for _ in range(3):
            y = compiled(x)
    assert not y.requires_grad
    _equal(y, eager(x).detach(), "output under no_grad")
    compiled(x).sum().backward()
    assert compiled.stats["replays"] == 1 + 1, compiled.stats   # one no_grad replay (after 2 captures), one region


def test_several_outputs_with_a_graph_replay_as_eager():
    """Each output gets its own small node into the region's one node; the outputs' gradients meet
    there (an op returned twice adds up), and a backward through one output alone works."""
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.f, self.g = nn.Linear(3, 2), nn.Linear(2, 2)

        def forward(self, x):
            y = self.f(x)
            return {"y": y, "both": (self.g(y).tanh(), y), "n": 3}
    eager, model = _twins(lambda: Two().double())
    compiled = dg.compile(model)
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CaptureWarning)
        for i in range(5):
            x = dg.tensor(rng.standard_normal((4, 3)), dtype=dg.float64)
            for m in (eager, compiled):
                out = m(x)
                assert out["n"] == 3
                loss = (out["y"] ** 2).sum() + out["both"][0].sum() * 3.0 + out["both"][1].mean()
                if i == 4:
                    loss = out["both"][0].sum()      # only one output in this backward
                loss.backward()
            for (n, p), q in zip(model.named_parameters(), eager.parameters()):
                _equal(p.grad, q.grad, f"grad of {n} at call {i}")
    assert compiled.stats["replays"] == 3, compiled.stats
    assert out["both"][0].grad_fn.name() == "CompiledOutputBackward"


def test_lstm_module_compiled_alone_returns_its_states_with_a_graph():
    eager, model = _twins(lambda: nn.LSTM(4, 5, batch_first=True).double())
    compiled = dg.compile(model)
    rng = np.random.default_rng(0)
    for i in range(4):
        x = dg.tensor(rng.standard_normal((2, 3, 4)), dtype=dg.float64)
        for m in (eager, compiled):
            out, (h, c) = m(x)
            (out.sum() + (h * c).sum()).backward()
        for (n, p), q in zip(model.named_parameters(), eager.parameters()):
            _equal(p.grad, q.grad, f"grad of {n} at call {i}")
    assert compiled.stats["replays"] == 2, (compiled.stats, compiled.eager_reasons())


def test_fullgraph_refusal_names_the_reason():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(3, 2)

        def forward(self, x):
            return self.f(x).relu_()
    compiled = dg.compile(InPlace().double(), fullgraph=True)
    with pytest.raises(dg.graph.CaptureError, match="changed in place"):
        compiled(dg.ones(4, 3, dtype=dg.float64))


def test_region_replays_cost_less_than_eager_in_ops_run():
    """A replayed region builds no graph op by op: the replay's output has one graph node."""
    eager, model, compiled = _replaying(_mlp)
    out = compiled(dg.ones(2, 3, dtype=dg.float64))
    assert type(out.grad_fn).__name__ == "CompiledBackward"
    nxt = out.grad_fn.next
    assert len(nxt) == 4 and all(isinstance(n, dg.Tensor) for n in nxt)   # the 4 parameters, nothing else
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out.sum().backward()


# ------------------------------------------------------------------ BatchNorm in training
class _BNNet(nn.Module):
    def __init__(self, momentum=0.1):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4, momentum=momentum)
        self.fc = nn.Linear(4 * 5 * 5, 3)
        self.bn1 = nn.BatchNorm1d(3, momentum=momentum)

    def forward(self, x):
        return self.bn1(self.fc(F.relu(self.bn(self.conv(x))).flatten(1)))


def _bn_state_equal(a, b, when):
    for (n, x), y in zip(a.named_buffers(), b.buffers()):
        _equal(x, y, f"buffer {n} {when}")


def test_batchnorm_in_training_replays_its_running_statistics(device):
    """BatchNorm's running-statistics update and batch count are recorded calls: a replay updates them as
    eager does (bit-equal, with the batch count), in a region and in a whole compiled step."""
    compiled = _train(lambda: _BNNet().double(), (4, 2, 5, 5), F.mse_loss, _targets((4, 3)), device=device)
    assert int(compiled._orig_mod.bn.num_batches_tracked.item()) == STEPS   # (buffers compared by _train)

    eager, model = _twins(lambda: _BNNet().double())
    steps = []
    for m in (eager, model):
        opt = dg.optim.SGD(m.parameters(), lr=0.05)

        def step(x, m=m, opt=opt):
            opt.zero_grad()
            loss = m(x).pow(2).mean()
            loss.backward()
            opt.step()
            return loss
        steps.append(step if m is eager else dg.compile(step, fullgraph=True))
    rng = np.random.default_rng(1)
    for i in range(STEPS):
        x = dg.tensor(rng.standard_normal((4, 2, 5, 5)), dtype=dg.float64)
        _equal(steps[1](x), steps[0](x), f"whole-step loss {i}")
    _bn_state_equal(model, eager, "after the compiled steps")
    assert steps[1].stats["replays"] == STEPS - 2, steps[1].stats


def test_batchnorm_cumulative_average_runs_eagerly_and_right():
    """momentum=None: each batch's momentum is 1/count, a value the tape would bake; that key runs eagerly."""
    eager, model = _twins(lambda: _BNNet(momentum=None).double())
    compiled = dg.compile(model)
    rng = np.random.default_rng(0)
    with pytest.warns(CaptureWarning, match="_count_batch|differs between two calls"):
        for _ in range(4):
            x = dg.tensor(rng.standard_normal((4, 2, 5, 5)), dtype=dg.float64)
            eager(x).sum().backward()
            compiled(x).sum().backward()
    assert compiled.stats["replays"] == 0
    _bn_state_equal(model, eager, "with the cumulative average")


def test_autocast_and_grad_scaler_around_a_compiled_model():
    """The autocast dtype is part of the key and its casts are ops: a float16-autocast forward with a
    GradScaler step outside replays bit-equal to eager (GELU and LayerNorm in float32 inside)."""
    def make():
        return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 4))
    eager, model = _twins(make)
    compiled = dg.compile(model)
    runs = [(eager, dg.optim.AdamW(eager.parameters(), 1e-2), dg.amp.GradScaler()),
            (compiled, dg.optim.AdamW(model.parameters(), 1e-2), dg.amp.GradScaler())]
    rng = np.random.default_rng(0)
    for i in range(STEPS):
        x, y = dg.tensor(rng.standard_normal((5, 8)).astype(np.float32)), dg.tensor(rng.integers(0, 4, 5))
        for m, opt, scaler in runs:
            opt.zero_grad()
            with dg.autocast("cpu", dtype=dg.float16):
                out = m(x)
                loss = F.cross_entropy(out, y)
            assert out.dtype == dg.float16
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        for (n, p), q in zip(model.named_parameters(), eager.parameters()):
            _equal(p, q, f"{n} after step {i}")
    assert compiled.stats["replays"] == STEPS - 2, (compiled.stats, compiled.eager_reasons())


def test_parameter_gradients_are_handed_over_while_the_region_backward_runs():
    """DDP's bucket all-reduces start from the parameters' hooks: each fires as soon as its gradient is
    complete, with the region's backward still running (the last layer's before the first layer's
    backward), in eager's order."""
    eager, model, compiled = _replaying(lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4),
                                                              nn.Tanh(), nn.Linear(4, 2)).double())
    first_layer_backward_ran = []
    region = compiled.tapes()[0]
    op0 = region.tape.ns["op0"]          # the first Linear's op: the last backward the region runs
    orig = op0.backward
    region.plan = [(lambda gy, orig=orig: (first_layer_backward_ran.append(True), orig(gy))[1], *rest)
                   if rest[0] == 0 else (bw, *rest) for bw, *rest in region.plan]
    seen, orders = [], []
    for m in (eager, model):
        order = []
        for n, p in m.named_parameters():
            p.register_post_accumulate_grad_hook(
                lambda p, n=n, order=order: order.append((n, bool(first_layer_backward_ran))))
        (compiled if m is model else m)(dg.ones(2, 3, dtype=dg.float64)).sum().backward()
        orders.append([n for n, _ in order])
        seen.append(order)
    assert compiled.stats["replays"] == 1
    assert orders[1] == orders[0], orders
    # in the region: the last layer's parameters were finished before the first layer's backward ran
    assert seen[1][0] == ("4.weight", False) and seen[1][-1][1], seen[1]
