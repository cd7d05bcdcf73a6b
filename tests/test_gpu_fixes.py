"""CPU tests for what issue 13 found the GPU machine would trip over.

* Random draws through a generator with only CuPy 14's ``Generator`` methods (no
  ``normal``, ``lognormal``, ``standard_cauchy``, ``permutation``, ``choice``): every
  initialiser, in-place fill and random constructor must use what CuPy has.
* float16 stays float16 through GELU (both forms) and the erf family, forward and
  gradient (SciPy's erf has no float16 loop and answered float64).
* A plain checkout, distgraph not installed: ``distgraph.launch`` still imports and
  ``pytest -m gpu --collect-only`` collects (pyproject maps ``launch/`` only at install).
* nll_loss on device arrays: no host range check (bad targets give NaN), same values and
  gradients as the host path; GradScaler reads its inf/NaN flag once per step, not once
  per parameter.
"""
import math
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph import backend

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------- a CuPy-shaped generator
class CupyLikeGenerator:
    """The methods of ``cupy.random.Generator`` (CuPy 14, cupy/random/_generator_api.pyx)
    over a NumPy stream, with CuPy's restriction that ``standard_normal`` draws only
    float32/float64.  ``normal``, ``lognormal``, ``standard_cauchy``, ``permutation``,
    ``shuffle`` and ``choice`` are missing, as in CuPy."""

    def __init__(self, seed=0):
        self._g = np.random.default_rng(seed)
        self.calls = []

    def _call(self, name, *args, **kw):
        self.calls.append(name)
        return getattr(self._g, name)(*args, **kw)

    def random(self, size=None, dtype=np.float64, out=None):
        return self._call("random", size, dtype=dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return self._call("uniform", low, high, size).astype(dtype)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return self._call("integers", low, high, size, dtype=dtype, endpoint=endpoint)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        if np.dtype(dtype).char not in "fd":
            raise TypeError(f"Unsupported dtype {np.dtype(dtype).name} for standard_normal")
        return self._call("standard_normal", size, dtype=dtype)

    def exponential(self, scale=1.0, size=None):
        return self._call("exponential", scale, size)

    def geometric(self, p, size=None):
        return self._call("geometric", p, size)

    def binomial(self, n, p, size=None):
        return self._call("binomial", n, p, size)


MISSING = ("normal", "lognormal", "standard_cauchy", "permutation", "shuffle", "choice")


@pytest.fixture
def cupy_like(monkeypatch):
    gen = CupyLikeGenerator()
    assert not any(hasattr(gen, m) for m in MISSING)
    monkeypatch.setattr(backend, "generator", lambda device: gen)
    return gen


def test_initialisers_draw_from_a_generator_without_normal(cupy_like):
    w = dg.empty(200, 100)
    nn.init.normal_(w, 1.0, 2.0)
    assert abs(w.numpy().mean() - 1.0) < 0.05 and abs(w.numpy().std() - 2.0) < 0.05
    nn.init.trunc_normal_(w, 0.0, 1.0, -0.5, 0.5)
    assert w.numpy().min() >= -0.5 and w.numpy().max() <= 0.5 and w.numpy().std() > 0.2
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.numpy().std() - math.sqrt(2 / 100)) < 0.01
    nn.init.xavier_normal_(w)
    assert abs(w.numpy().std() - math.sqrt(2 / 300)) < 0.01
    nn.init.sparse_(w, 0.3, std=0.5)
    assert ((w.numpy() == 0).sum(0) >= 60).all()  # ceil(0.3 * 200) zeros in every column
    nn.init.orthogonal_(dg.empty(8, 8))
    assert {"standard_normal", "random"} <= set(cupy_like.calls)


def test_tensor_fills_draw_from_a_generator_without_normal(cupy_like):
    t = dg.empty(20000, dtype=dg.float64)
    t.normal_(3.0, 0.5)
    assert abs(t.numpy().mean() - 3.0) < 0.02 and abs(t.numpy().std() - 0.5) < 0.02
    t.log_normal_(0.0, 0.25)
    assert (t.numpy() > 0).all() and abs(np.log(t.numpy()).std() - 0.25) < 0.01
    t.cauchy_(1.0, 2.0)
    assert abs(np.median(t.numpy()) - 1.0) < 0.1
    assert abs(np.median(np.abs(t.numpy() - 1.0)) - 2.0) < 0.15  # Cauchy's half-width
    t.exponential_(2.0)
    assert abs(t.numpy().mean() - 0.5) < 0.02
    t.uniform_(-1, 1)
    assert -1 <= t.numpy().min() and t.numpy().max() < 1
    t.bernoulli_(0.25)
    assert abs(t.numpy().mean() - 0.25) < 0.02
    t.geometric_(0.5)
    assert t.numpy().min() >= 1
    t.random_(0, 10)
    assert set(np.unique(t.numpy())) == set(range(10))


def test_random_constructors_and_layers_without_normal_or_permutation(cupy_like):
    p = dg.randperm(1000)
    assert p.dtype == dg.int64 and sorted(p.numpy().tolist()) == list(range(1000))
    assert not np.array_equal(p.numpy(), np.arange(1000))
    assert dg.randperm(50, dtype=dg.int32).dtype == dg.int32
    assert dg.randn(3, 4, dtype=dg.float16).dtype == dg.float16  # drawn as float32
    assert dg.rand(3).dtype == dg.float32 and dg.randint(0, 5, (7,)).dtype == dg.int64
    emb = nn.Embedding(100, 16, padding_idx=0)
    assert abs(emb.weight.detach().numpy()[1:].std() - 1.0) < 0.1 and (emb.weight.detach().numpy()[0] == 0).all()
    bag = nn.EmbeddingBag(10, 4)
    assert bag.weight.detach().numpy().std() > 0
    x = dg.ones(1000)
    assert 300 < (F.dropout(x, 0.5, training=True).numpy() == 0).sum() < 700
    assert "permutation" not in cupy_like.calls and "random" in cupy_like.calls


def test_rng_helpers_keep_numpy_streams_unchanged():
    """With a NumPy generator the helpers call its own methods: same numbers as before."""
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(backend.normal(a, 1, 2, (3,)), b.normal(1, 2, (3,)))
    np.testing.assert_array_equal(backend.permutation(a, 9), b.permutation(9))
    np.testing.assert_array_equal(backend.lognormal(a, 0, 1, 4), b.lognormal(0, 1, 4))
    np.testing.assert_array_equal(backend.standard_cauchy(a, 4), b.standard_cauchy(4))


# ------------------------------------------------------------ float16 dtype
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [dg.float16, dg.float32])
def test_gelu_keeps_the_input_dtype_forward_and_backward(approximate, dtype):
    x0 = np.linspace(-4, 4, 41)
    x = dg.tensor(x0, dtype=dtype, requires_grad=True)
    y = F.gelu(x, approximate=approximate)
    y.backward(dg.ones(41, dtype=dtype))
    assert y.dtype == dtype and x.grad.dtype == dtype
    ref = dg.tensor(x0.astype(np.dtype(dtype)).astype(np.float64), requires_grad=True)
    yr = F.gelu(ref, approximate=approximate)
    yr.sum().backward()
    tol = 2e-3 if dtype == dg.float16 else 1e-6
    np.testing.assert_allclose(y.detach().numpy().astype(np.float64), yr.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(x.grad.numpy().astype(np.float64), ref.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("fn, lo, hi", [(dg.erf, -2, 2), (dg.erfc, -2, 2), (dg.erfinv, -0.9, 0.9)])
@pytest.mark.parametrize("dtype", [dg.float16, dg.float32])
def test_erf_family_keeps_the_input_dtype(fn, lo, hi, dtype):
    x = dg.tensor(np.linspace(lo, hi, 9), dtype=dtype, requires_grad=True)
    y = fn(x)
    y.sum().backward()
    assert y.dtype == dtype and x.grad.dtype == dtype
    assert backend.erf(np.ones(3, np.float16)).dtype == np.float16


# ------------------------------------------------- a checkout, not installed
def _checkout_env():
    """A clean environment whose Python sees numpy/pytest/... but *not* distgraph's
    installation: ``-S`` skips site (no .pth files: no editable-install finder), and
    PYTHONPATH holds the checkout, then the site-packages folders themselves."""
    dirs = [str(ROOT)] + [d for d in site.getsitepackages() if os.path.isdir(d)]
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.pathsep.join(dirs),
            "HOME": os.environ.get("HOME", "/tmp"), "PYTHONDONTWRITEBYTECODE": "1"}


CHECK = """
import importlib.machinery, os, sys
root = sys.argv[1]
assert not any("editable" in type(f).__name__.lower() or "editable" in getattr(f, "__module__", "")
               for f in sys.meta_path), sys.meta_path
assert "__editable___distgraph_0_1_0_finder" not in sys.modules
spec = importlib.machinery.PathFinder.find_spec("distgraph")
assert spec.origin == os.path.join(root, "distgraph", "__init__.py"), spec.origin
assert not os.path.exists(os.path.join(root, "distgraph", "launch"))  # only launch/ exists
import distgraph.launch.cli
import distgraph
assert distgraph.launch.__file__ == os.path.join(root, "launch", "__init__.py"), distgraph.launch.__file__
assert distgraph.launch.cli.__file__ == os.path.join(root, "launch", "cli.py")
from distgraph.launch import command  # a sibling submodule resolves too
print("OK", distgraph.launch.cli.main.__name__)
"""


def test_launch_imports_from_a_checkout_without_installing():
    proc = subprocess.run([sys.executable, "-S", "-c", CHECK, str(ROOT)], cwd=ROOT, env=_checkout_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "OK main" in proc.stdout, proc.stdout + proc.stderr


def test_gpu_tests_collect_from_a_checkout_without_installing():
    proc = subprocess.run([sys.executable, "-S", "-m", "pytest", "-m", "gpu", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "tests"], cwd=ROOT, env=_checkout_env(),
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    m = re.search(r"(\d+)/\d+ tests collected", out)
    assert m and int(m.group(1)) > 0 and "error" not in out.lower().split("collected")[-1], out[-3000:]
    assert "tests/launch/" in out or "test_cuda_api.py" in out


def test_installed_layout_still_maps_launch():
    """In this (installed) environment ``distgraph.launch`` comes from the install's mapping."""
    import distgraph.launch.cli as cli
    assert Path(cli.__file__).resolve() == ROOT / "launch" / "cli.py"


# ------------------------------------------------------------ nll_loss on a device
def _as_if_on_a_device(monkeypatch):
    """From now on nll_loss sees its arrays as device arrays (its ``backend.device_of`` says cuda:0)."""
    import types
    fake = types.SimpleNamespace(**{k: getattr(backend, k) for k in dir(backend) if not k.startswith("__")})
    fake.device_of = lambda a: backend.Device("cuda", 0)
    monkeypatch.setattr(F, "backend", fake)


def _nll(reduction, t):
    x = dg.tensor(np.log(np.random.default_rng(0).dirichlet(np.ones(5), 6)), requires_grad=True)
    loss = F.nll_loss(x, dg.tensor(t), reduction=reduction, weight=dg.tensor(np.arange(1.0, 6.0)))
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_device_path_matches_the_host_path(monkeypatch, reduction):
    t = np.array([0, 4, -100, 2, 1, 3])
    want = _nll(reduction, t)
    _as_if_on_a_device(monkeypatch)
    got = _nll(reduction, t)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_nll_loss_device_path_gives_nan_for_bad_targets_instead_of_a_host_check(monkeypatch):
    x = dg.tensor(np.log(np.full((3, 4), 0.25)))
    with pytest.raises(IndexError, match=r"target values must lie in \[0, 4\)"):
        F.nll_loss(x, dg.tensor([0, 7, 1]))  # on the host the check stays
    _as_if_on_a_device(monkeypatch)
    assert math.isnan(F.nll_loss(x, dg.tensor([0, 7, 1])).item())  # no IndexError, no host read
    assert F.nll_loss(x, dg.tensor([0, 3, 1])).item() == pytest.approx(math.log(4))


def test_nll_loss_and_cross_entropy_read_no_index_range_on_the_host(monkeypatch):
    from distgraph.autograd.ops import index as index_ops
    rng = np.random.default_rng(0)
    cases = [(rng.standard_normal((5, 4)), np.array([0, 3, -100, 2, 1])),      # (N, C)
             (rng.standard_normal(4), np.array(2)),                             # one sample, (C,)
             (rng.standard_normal((2, 4, 3)), np.array([[0, 1, 3], [2, -100, 1]]))]  # (N, C, d)

    def losses():
        out = []
        for x, t in cases:
            xt = dg.tensor(x, requires_grad=True)
            loss = F.cross_entropy(xt, dg.tensor(t)) + F.nll_loss(F.log_softmax(xt, -1 if x.ndim == 1 else 1),
                                                                  dg.tensor(t), reduction="sum")
            loss.backward()
            out.append((loss.item(), xt.grad.numpy().copy()))
        return out
    want = losses()
    _as_if_on_a_device(monkeypatch)

    def host_read(*args):
        raise AssertionError("the index range was read on the host")
    monkeypatch.setattr(index_ops, "_check_index_range", host_read)
    for (lg, gg), (lw, gw) in zip(losses(), want):
        assert lg == pytest.approx(lw, rel=1e-12)
        np.testing.assert_allclose(gg, gw, rtol=1e-12)
    with pytest.raises(AssertionError, match="read on the host"):     # a user's gather keeps its check
        dg.gather(dg.tensor([1.0, 2.0]), 0, dg.tensor([1]))


# ---------------------------------------------------------------- GradScaler
class CountingArray(np.ndarray):
    """A gradient that counts host reads (``bool``/``float``/``item``), as a device array would cost."""
    reads = 0

    def __bool__(self):
        CountingArray.reads += 1
        return super().__bool__()

    def __float__(self):
        CountingArray.reads += 1
        return super().__float__()

    def item(self, *args):
        CountingArray.reads += 1
        return super().item(*args)


def test_grad_scaler_reads_the_inf_flag_once_per_step():
    params = [dg.zeros(4, requires_grad=True) for _ in range(6)]
    opt = dg.optim.SGD(params, lr=0.1)
    scaler = dg.amp.GradScaler(init_scale=4.0)
    for p in params:
        p.grad = dg.ones(4)
        p.grad.array = np.ones(4, np.float32).view(CountingArray) * 4.0
    CountingArray.reads = 0
    scaler.step(opt)
    scaler.update()
    assert CountingArray.reads <= 1, CountingArray.reads  # not one per parameter
    np.testing.assert_allclose(params[0].detach().numpy(), -0.1 * np.ones(4))
    assert scaler.get_scale() == 4.0
    params[3].grad.array[1] = np.inf  # an overflow: the step is skipped and the scale halves
    params[0].grad.array[...] = 4.0
    scaler.step(opt)
    scaler.update()
    np.testing.assert_allclose(params[0].detach().numpy(), -0.1 * np.ones(4))
    assert scaler.get_scale() == 2.0


# ---------------------------------------------------------------- DDP finish
def test_ddp_finish_reads_flags_back_only_for_buckets_with_an_unused_parameter(monkeypatch):
    """Reading the reduced used-flags is a host synchronisation on a GPU: none when this rank used
    every parameter, one per bucket holding a parameter it did not use."""
    from distgraph import comm
    from distgraph.nn.parallel import reducer
    if not comm.is_initialized():
        comm.init_process_group()
    reads = []
    real = reducer.backend.to_device
    monkeypatch.setattr(reducer.backend, "to_device", lambda a, dev: reads.append(a.shape) or real(a, dev))

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x, both=True):
            return self.b(self.a(x)) if both else self.a(x)
    net = nn.parallel.DistributedDataParallel(Two(), bucket_cap_mb=0.00003)   # one bucket per parameter
    x = dg.ones(2, 3)
    net(x).sum().backward()
    assert reads == []
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net(x, both=False).sum().backward()                 # b's weight and bias: unused here
    assert len(net.reducer.buckets) == 4 and reads == [(1,), (1,)], (net.reducer.layout, reads)
