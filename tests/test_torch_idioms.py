"""PyTorch runtime idioms a ported script types, each checked against torch itself: ``.data``,
grad-mode decorators, ``inference_mode``, anomaly detection, custom ``autograd.Function``s, gradient
checkpointing, ``accelerator``/``autocast``, formatting, the legacy constructor, module attribute rules,
``load`` arguments and ``torch.nn.modules`` import paths."""
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
from distgraph.utils.checkpoint import checkpoint, checkpoint_sequential

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent))


# ------------------------------------------------------------------ .data
def test_data_is_a_detached_tensor_sharing_storage_as_in_torch():
    for lib in (dg, torch):
        p = lib.ones(3, requires_grad=True)
        d = p.data
        assert isinstance(d, lib.Tensor) and not d.requires_grad and d.grad_fn is None
        p.data.add_(1.0)               # the classic manual update
        p.data.mul_(2)
        assert p.tolist() == [4.0, 4.0, 4.0]
        p.data[0] = 7.0
        assert p.tolist()[0] == 7.0
        p.data = lib.zeros(5)          # replaces what p holds, shape included
        assert tuple(p.shape) == (5,) and p.requires_grad
    assert isinstance(dg.ones(2).array, np.ndarray)


def test_writes_through_data_are_not_version_checked_as_in_torch():
    for lib in (dg, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * x                      # saves x
        x.data.mul_(10)                # invisible to autograd, as in torch
        y.sum().backward()
        assert x.grad.tolist() == [20.0, 40.0]


def test_data_setter_needs_a_tensor():
    with pytest.raises(TypeError, match="expected a Tensor"):
        dg.ones(2).data = np.zeros(2)


# -------------------------------------------------------------- grad modes
@pytest.mark.parametrize("name", ["no_grad", "enable_grad", "inference_mode"])
def test_grad_mode_decorators_with_and_without_parentheses(name):
    for lib in (dg, torch):
        x = lib.ones(2, requires_grad=True)

        @getattr(lib, name)
        def bare():
            return (x * 2).requires_grad

        @getattr(lib, name)()
        def called():
            return (x * 2).requires_grad

        want = name == "enable_grad"
        with lib.no_grad():
            assert bare() is want and called() is want
        assert bare() is want and called() is want
        assert (x * 2).requires_grad                   # the mode is restored


def test_inference_mode_false_leaves_grad_mode_alone():
    x = dg.ones(2, requires_grad=True)
    with dg.inference_mode(False):
        assert (x * 2).requires_grad
    with dg.inference_mode():
        assert not (x * 2).requires_grad and not dg.is_grad_enabled()
    assert dg.is_grad_enabled()


# ----------------------------------------------------------- detect_anomaly
def _nan_backward(lib):
    x = lib.tensor([0.0, 1.0], requires_grad=True)
    (lib.sqrt(x) * 0).sum().backward()   # d sqrt at 0 is inf; inf * 0 is nan
    return x.grad


def test_detect_anomaly_names_the_op_whose_backward_made_nan():
    with np.errstate(all="ignore"):
        assert np.isnan(_nan_backward(dg).numpy()[0]) and torch.isnan(_nan_backward(torch)[0])
        msgs = {}
        for lib in (dg, torch):
            with pytest.raises(RuntimeError) as e, lib.autograd.detect_anomaly():
                _nan_backward(lib)
            msgs[lib] = str(e.value)
    assert "returned nan values in its 0th output" in msgs[torch]
    assert "'SqrtBackward" in msgs[dg] and "returned nan values in its 0th output" in msgs[dg]
    assert "test_torch_idioms.py" in msgs[dg]                   # where the forward ran
    assert not dg.autograd.is_anomaly_enabled()


def test_set_detect_anomaly_switches_and_restores():
    with dg.autograd.set_detect_anomaly(True):
        assert dg.autograd.is_anomaly_enabled()
    assert not dg.autograd.is_anomaly_enabled()


# ------------------------------------------------------- autograd.Function
def _custom(lib):
    class ScaledExp(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale, w):
            y = x.exp() * scale * w
            ctx.save_for_backward(y, w)
            ctx.scale = scale
            return y, (x > 0)

        @staticmethod
        def backward(ctx, gy, gmask):
            y, w = ctx.saved_tensors
            gx = gy * y if ctx.needs_input_grad[0] else None
            return gx, None, gy * y / w

    return ScaledExp


def test_custom_function_matches_torch():
    xv, wv = np.array([0.5, -1.0, 2.0]), np.array([1.5, 2.0, 0.5])
    got = {}
    for lib in (dg, torch):
        x = lib.tensor(xv, requires_grad=True)
        w = lib.tensor(wv, requires_grad=True)
        y, mask = _custom(lib).apply(x, 3.0, w)
        assert not mask.requires_grad and mask.dtype == lib.bool
        (y * y).sum().backward()
        got[lib] = (y.detach().numpy(), x.grad.numpy(), w.grad.numpy(), y.grad_fn is not None)
    for a, b in zip(got[dg], got[torch]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_custom_function_without_grad_inputs_records_nothing():
    y, _ = _custom(dg).apply(dg.ones(2), 2.0, dg.ones(2))
    assert y.grad_fn is None and not y.requires_grad


# ------------------------------------------------------------- checkpoint
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.drop, self.fc2 = nn.Linear(5, 16), nn.Dropout(0.3), nn.Linear(16, 5)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc2(self.drop(dg.tanh(self.fc1(x))))


@pytest.mark.parametrize("input_requires_grad", [True, False])
def test_checkpoint_gives_the_same_gradients_with_dropout(input_requires_grad):
    dg.manual_seed(0)
    blk = Block().double()
    x = dg.randn(4, 5, dtype=dg.float64, requires_grad=input_requires_grad)
    grads = []
    for use in (False, True):
        for p in blk.parameters():
            p.grad = None
        x.grad = None
        dg.manual_seed(7)
        y = checkpoint(blk, x, use_reentrant=False) if use else blk(x)
        (y ** 2).sum().backward()
        grads.append([p.grad.numpy().copy() for p in blk.parameters()] +
                     ([x.grad.numpy().copy()] if input_requires_grad else []))
    assert blk.calls == 3                      # once plain, twice (forward + recompute) checkpointed
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


class _StatelessBitGen:
    """Like CuPy's bit generators: ``state`` is a method, not a settable dict."""

    def state(self):
        return 0


class _CupyLikeGenerator:
    """A NumPy generator behind CuPy's surface: no settable bit-generator state."""

    def __init__(self, seed):
        self._g = np.random.default_rng(seed)
        self.bit_generator = _StatelessBitGen()

    def random(self, *a, **k):
        return self._g.random(*a, **k)

    def integers(self, *a, **k):
        return self._g.integers(*a, **k)


def test_checkpoint_replays_dropout_with_a_generator_without_settable_state(monkeypatch):
    from distgraph import backend
    cpu = dg.device("cpu")
    monkeypatch.setattr(backend, "new_generator", lambda device, seed: _CupyLikeGenerator(seed))
    monkeypatch.setitem(backend._generators, "cpu", _CupyLikeGenerator(3))
    before = backend.generator(cpu)
    drop = dg.nn.Dropout(0.5)
    x = dg.ones(400, dtype=dg.float64, requires_grad=True)
    y = checkpoint(lambda a: drop(a) * 3.0, x, use_reentrant=False)
    forked = backend.generator(cpu)
    assert forked is not before                  # the segment ran on a generator forked by seed
    y.sum().backward()
    assert backend.generator(cpu) is forked      # the recomputation did not change the stream after it
    kept = y.detach().numpy() != 0
    assert 100 < kept.sum() < 300
    # the recomputed mask is the forward's: the gradient is 3 / (1 - p) exactly where y kept x
    np.testing.assert_array_equal(x.grad.numpy(), np.where(kept, 6.0, 0.0))


def test_checkpoint_several_outputs_and_keeps_no_graph_inside():
    x = dg.randn(3, dtype=dg.float64, requires_grad=True)
    u, v = checkpoint(lambda a: (a * 2, (a * a).sum()), x)
    assert u.grad_fn is not None and type(u.grad_fn).__name__ != "MulBackward"
    (u.sum() * 3 + v).backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 + 2 * x.detach().numpy())


def test_checkpoint_runs_parameter_hooks_and_one_end_of_backward_callback():
    blk = Block()
    blk.drop.p = 0.0
    seen, ends = [], []
    for name, p in blk.named_parameters():
        p.register_post_accumulate_grad_hook(lambda t, name=name: (seen.append(name),
                                                                     dg.autograd.queue_callback(lambda: ends.append(1))
                                                                     if len(seen) == 1 else None))
    checkpoint(blk, dg.randn(2, 5)).sum().backward()
    assert sorted(seen) == sorted(n for n, _ in blk.named_parameters()) and ends == [1]


def test_checkpoint_sequential_matches_plain_sequential():
    dg.manual_seed(3)
    seq = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    x = dg.randn(3, 4, dtype=dg.float64, requires_grad=True)
    seq(x).sum().backward()
    want = [p.grad.numpy().copy() for p in seq.parameters()] + [x.grad.numpy().copy()]
    seq.zero_grad()
    x.grad = None
    checkpoint_sequential(seq, 2, x).sum().backward()
    for a, b in zip(want, [p.grad.numpy() for p in seq.parameters()] + [x.grad.numpy()]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    with pytest.raises(ValueError, match="segments"):
        checkpoint_sequential(seq, 9, x)


# ------------------------------------------------ devices, autocast, format
def test_accelerator_answers_as_torch_on_this_machine():
    assert dg.accelerator.is_available() == torch.accelerator.is_available()
    if not torch.accelerator.is_available():
        assert dg.accelerator.current_accelerator() is None and torch.accelerator.current_accelerator() is None
        device = dg.accelerator.current_accelerator().type if dg.accelerator.is_available() else "cpu"
        assert dg.ones(2).to(device, non_blocking=True).device == dg.device("cpu")


def test_autocast_with_torch_signature():
    from distgraph.cuda.amp import GradScaler, autocast   # torch.cuda.amp's path
    a, b = dg.ones(2, 3), dg.ones(3, 2)
    with dg.autocast("cuda", dtype=dg.float16):
        assert (a @ b).dtype == dg.float16
    with autocast(enabled=False):
        assert (a @ b).dtype == dg.float32
    with pytest.raises(ValueError, match="device_type"):
        dg.autocast("tpu")
    assert GradScaler is dg.amp.GradScaler


@pytest.mark.parametrize("spec", [".2f", ".4e", ">10.3f", "", "g"])
def test_format_of_one_element_tensors_as_torch(spec):
    for v in (3.14159, 2.0, 7):
        assert format(dg.tensor(v), spec) == format(torch.tensor(v), spec)
    if spec:
        for lib in (dg, torch):
            with pytest.raises(TypeError):
                format(lib.tensor([1.5]), spec)     # only 0-d tensors take a format spec


def test_legacy_tensor_constructor_as_torch():
    for args in [(2, 3), ([1, 2],), ([[1.5], [2]],), ((4,),), ()]:
        t, d = torch.Tensor(*args), dg.Tensor(*args)
        assert tuple(t.shape) == d.shape and str(t.dtype) == "torch." + dg.backend.dtype_name(d.dtype)
    np.testing.assert_array_equal(dg.Tensor([1, 2]).numpy(), torch.Tensor([1, 2]).numpy())
    v = dg.autograd.Variable(dg.ones(2), requires_grad=True)
    assert v.requires_grad and isinstance(v, dg.Tensor)


# ------------------------------------------------------------ Module rules
def _two(lib):
    class Two(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = lib.nn.Linear(2, 2), lib.nn.Linear(2, 2)
            self.register_buffer("scale", lib.ones(1))
    return Two()


def test_reassigning_a_child_keeps_its_place_as_in_torch():
    for lib in (dg, torch):
        m = _two(lib)
        m.a = lib.nn.Linear(2, 2)
        m.a.weight = lib.nn.Parameter(lib.ones(2, 2))
        assert [n for n, _ in m.named_children()] == ["a", "b"]
        assert list(m.state_dict()) == ["scale", "a.weight", "a.bias", "b.weight", "b.bias"]


@pytest.mark.parametrize("name, value", [("a.weight", "tensor"), ("a", "tensor"), ("scale", "number")])
def test_assigning_the_wrong_kind_to_a_registered_name_raises_as_in_torch(name, value):
    for lib in (dg, torch):
        m = _two(lib)
        owner, attr = (m.a, "weight") if name == "a.weight" else (m, name)
        with pytest.raises(TypeError):
            setattr(owner, attr, lib.ones(2, 2) if value == "tensor" else 3)
    m = _two(dg)
    m.a.weight = None                       # None unregisters the value but keeps the name
    assert "weight" in m.a._parameters and m.a.weight is None


# ----------------------------------------------------------------- load
def test_load_accepts_torch_arguments(tmp_path):
    path = tmp_path / "ck.pt"
    dg.save({"w": dg.ones(2), "step": 3}, path)
    for kw in [dict(weights_only=True), dict(weights_only=False), dict(map_location="cpu"),
               dict(map_location=dg.device("cpu")), dict(map_location=lambda storage, loc: storage),
               dict(map_location={"cuda:0": "cpu"}), dict(mmap=False)]:
        back = dg.load(path, **kw)
        assert back["step"] == 3 and back["w"].tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="pickle"):
        dg.load(path, pickle_module=object())
    tpath = tmp_path / "t.pt"
    torch.save({"w": torch.arange(3.0)}, tpath)
    assert dg.load(tpath, weights_only=False)["w"].tolist() == [0.0, 1.0, 2.0]


# -------------------------------------------------------- import paths
@pytest.mark.parametrize("sub", ["module", "linear", "conv", "loss", "activation", "container", "batchnorm",
                                 "dropout", "pooling", "normalization", "sparse", "rnn", "transformer"])
def test_torch_nn_modules_paths(sub):
    ours = importlib.import_module(f"distgraph.nn.modules.{sub}")
    theirs = importlib.import_module(f"torch.nn.modules.{sub}")
    shared = [n for n in getattr(theirs, "__all__", []) if hasattr(dg.nn, n)]
    assert shared, sub
    for n in shared:
        assert getattr(ours, n) is getattr(dg.nn, n)
    assert dg.nn.modules.loss._Loss is dg.nn.loss._Loss


# ------------------------------------------------------------ launch idioms
def _run(code, env_extra, timeout=60):
    import os
    import subprocess
    import sys
    from mpi_util import LAUNCHER_VARS
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS and k not in
           ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "DISTGRAPH_TORCH_ENV")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("env_extra", [{"TORCHELASTIC_RUN_ID": "x", "RANK": "1", "WORLD_SIZE": "2"},
                                       {"RANK": "0", "WORLD_SIZE": "4"}])
def test_a_torchrun_started_process_refuses_to_train_alone(env_extra):
    p = _run("import distgraph.distributed as dist; dist.init_process_group('gloo')", env_extra)
    assert p.returncode != 0
    assert "would train alone" in p.stderr and "distgraph-run -n" in p.stderr and "mpiexec -n" in p.stderr


def test_gloo_under_plain_python_is_a_world_of_one():
    p = _run("import distgraph.distributed as dist; dist.init_process_group('gloo', init_method='env://');"
             "print(dist.get_world_size(), dist.get_rank(), dist.get_backend())", {"DISTGRAPH_LOG_LEVEL": "INFO"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[:2] == ["1", "0"] and "'gloo' runs on distgraph's MPI backend" in p.stderr


def test_torchrun_variables_are_exported_from_the_mpi_launcher_environment():
    import os
    env = {"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}
    saved = {k: os.environ.get(k) for k in list(env) + list(dg.comm.env.TORCH_VARS)}
    fake = dict(env)
    dg.comm.env.export_torch_env(fake)
    assert (fake["RANK"], fake["WORLD_SIZE"], fake["LOCAL_RANK"], fake["LOCAL_WORLD_SIZE"]) == ("1", "2", "1", "2")
    kept = dict(env, RANK="1")
    dg.comm.env.export_torch_env(kept)
    assert kept["RANK"] == "1"
    plain = {}
    dg.comm.env.export_torch_env(plain)
    assert plain == {}
    assert {k: os.environ.get(k) for k in saved} == saved
