"""CUDA graphs for the fused runs of a replayed tape (distgraph/graph/cudagraph.py).

On the CPU the graph backend is a stand-in with a CUDA graph's semantics (tests/graph_standin.py):
capturing runs nothing, and a launch runs the captured kernels on the arrays they were captured
with (fixed addresses), reading their values at launch time.  Results must be eager's bit for bit,
whatever moves.
The ``gpu`` tests run the same checks with CuPy's stream capture.
"""
import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
import distgraph.nn.functional as F
from distgraph.graph import cudagraph, compile
from graph_standin import StandInGraphs


@pytest.fixture
def graphs(monkeypatch):
    monkeypatch.setattr(cudagraph, "NUMPY_GRAPHS", StandInGraphs)
    monkeypatch.setattr(StandInGraphs, "captured", [])
    monkeypatch.setattr(StandInGraphs, "launched", [])
    monkeypatch.setattr(StandInGraphs, "fail", None)
    return StandInGraphs


def _chain(w):
    def step(x):
        y = x
        for _ in range(16):
            y = (y * w + 0.01).tanh()
        loss = (y * y).sum()
        loss.backward()
        g = w.grad
        w.grad = None
        return loss, g
    return step


def _array(t):
    return t.array if isinstance(t, dg.Tensor) else t


def test_elementwise_chain_launches_graphs_and_matches_eager_bit_for_bit(graphs):
    w = dg.tensor(np.full((16, 16), 0.9), dtype=dg.float64, requires_grad=True)
    eager, comp = _chain(w), compile(_chain(w), mode="reduce-overhead")
    rng = np.random.default_rng(0)
    kept = []
    for i in range(8):
        x = dg.tensor(rng.standard_normal((16, 16)), dtype=dg.float64)   # a new argument array each call
        got, want = comp(x), eager(x)
        for a, b in zip(got, want):
            assert np.array_equal(_array(a), _array(b)), f"call {i}"
        kept.append([(_array(a), _array(a).copy()) for a in got])
    for n, results in enumerate(kept):     # loss and w.grad handed out as copies of the graphs' buffers
        assert all(np.array_equal(a, c) for a, c in results), f"a result of call {n} was overwritten later"
    tape = comp.tapes()[0]
    # the whole forward and the whole backward (gradient accumulation included) are one graph each
    assert len(tape.segments) == 2, tape.source
    assert len(graphs.captured) == len(tape.segments)          # each captured once
    launches = sum(s.launches for s in tape.segments)
    # calls 1-2 run eagerly, the first replay allocates, each segment then runs as Python code twice
    assert launches == len(tape.segments) * (8 - 2 - 1 - 2)
    assert "S0((" in tape.source and "out=" not in tape.source.split("S0((")[1].split("\n")[0]
    # the argument is staged (copied into the segment's own array), the buffers are read in place
    seg = tape.segments[0]
    assert False in seg.pinned and True in seg.pinned, seg.pinned


def test_default_mode_and_no_cudagraph_modes_launch_nothing(graphs):
    w = dg.tensor(np.full((4, 4), 0.9), dtype=dg.float64, requires_grad=True)
    x = dg.tensor(np.ones((4, 4)), dtype=dg.float64)
    for kw in ({}, {"mode": "default"}, {"mode": "max-autotune-no-cudagraphs"},
               {"options": {"triton.cudagraphs": False}}):
        comp = compile(_chain(w), **kw)
        for _ in range(5):
            comp(x)
        assert comp.tapes()[0].segments == [], kw
    comp = compile(_chain(w), options={"triton.cudagraphs": True})
    for _ in range(7):
        comp(x)
    assert comp.tapes()[0].segments
    assert graphs.launched


def test_mode_errors_match_torch_compile():
    with pytest.raises(RuntimeError, match="unrecognized mode='fast'"):
        compile(lambda x: x, mode="fast")
    with pytest.raises(RuntimeError, match="either mode or options"):
        compile(lambda x: x, mode="reduce-overhead", options={"fuse": True})


def test_an_input_that_moves_sends_the_run_to_python_and_recaptures(graphs):
    w = dg.tensor(np.full((8, 8), 0.9), dtype=dg.float64, requires_grad=True)
    eager_w = dg.tensor(np.full((8, 8), 0.9), dtype=dg.float64, requires_grad=True)
    comp, eager = compile(_chain(w), mode="reduce-overhead"), _chain(eager_w)
    x = dg.tensor(np.linspace(-1, 1, 64).reshape(8, 8), dtype=dg.float64)
    for i in range(12):
        if i == 6:      # a new array behind the same parameter: the graphs read the old address
            w.data = dg.tensor(np.full((8, 8), 0.8), dtype=dg.float64)
            eager_w.data = dg.tensor(np.full((8, 8), 0.8), dtype=dg.float64)
        for a, b in zip(comp(x), eager(x)):
            assert np.array_equal(_array(a), _array(b)), f"call {i}"
    segs = comp.tapes()[0].segments
    pinned_w = [s for s in segs if s.captures == 2]
    assert pinned_w, [(s.captures, s.pinned) for s in segs]


def test_a_failed_capture_leaves_the_run_as_python_code(graphs):
    graphs.fail = "cudaErrorStreamCaptureUnsupported"
    w = dg.tensor(np.full((4, 4), 0.9), dtype=dg.float64, requires_grad=True)
    comp, eager = compile(_chain(w), mode="reduce-overhead"), _chain(w)
    x = dg.tensor(np.ones((4, 4)), dtype=dg.float64)
    for _ in range(6):
        for a, b in zip(comp(x), eager(x)):
            assert np.array_equal(_array(a), _array(b))
    segs = comp.tapes()[0].segments
    assert segs and all(s.graph is None and "StreamCaptureUnsupported" in s.error and s.captures == 1 for s in segs)
    assert not graphs.launched


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_mlp_training_step_matches_eager(graphs, opt):
    def make():
        dg.manual_seed(0)
        return nn.Sequential(nn.Linear(12, 32), nn.Tanh(), nn.Linear(32, 32), nn.Sigmoid(), nn.Linear(32, 3))

    def body(model):
        o = (dg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt == "sgd"
             else dg.optim.Adam(model.parameters(), lr=1e-2))

        def step(x, y):
            o.zero_grad()
            loss = F.mse_loss(model(x) * 2 - 1, y)
            loss.backward()
            o.step()
            return loss
        return step
    em, cm = make().double(), make().double()
    eager, comp = body(em), compile(body(cm), mode="reduce-overhead", fullgraph=True)
    rng = np.random.default_rng(1)
    for i in range(8):
        x = dg.tensor(rng.standard_normal((16, 12)))
        y = dg.tensor(rng.standard_normal((16, 3)))
        assert np.array_equal(comp(x, y).array, eager(x, y).array), f"loss at step {i}"
        for p, q in zip(cm.parameters(), em.parameters()):
            assert np.array_equal(p.array, q.array), f"parameters after step {i}"
    assert comp.tapes()[0].segments and graphs.launched


def test_segments_exclude_steps_whose_results_escape(graphs):
    """A run of Steps ends where a result is returned (a fresh array each replay): the caller's
    result of one call must not be overwritten by the next launch."""
    w = dg.tensor(np.full((4, 4), 0.5), dtype=dg.float64)

    def f(x):
        y = ((x * w + 1) * w + 1).tanh()
        return y
    comp = compile(f, mode="reduce-overhead")
    kept = []
    for i in range(6):
        x = dg.tensor(np.full((4, 4), float(i)), dtype=dg.float64)
        out = comp(x)
        kept.append((out, out.array.copy()))
    for n, (out, copy) in enumerate(kept):
        assert np.array_equal(out.array, copy), f"result of call {n} changed"
        assert np.array_equal(copy, f(dg.tensor(np.full((4, 4), float(n)), dtype=dg.float64)).array)


def test_cupy_backend_captures_inside_its_stream_and_refuses_allocations(monkeypatch):
    """The CuPy calls CupyGraphs makes, against a stand-in ``cupy`` that logs them (the real ones run
    only in the gpu test below): capture on a non-blocking stream with an allocator that refuses,
    launch on the current stream."""
    import contextlib
    import sys
    import types
    log = []

    class Stream:
        def __init__(self, non_blocking=False):
            log.append(("Stream", non_blocking))

        def __enter__(self):
            log.append("enter")

        def __exit__(self, *a):
            log.append("exit")

        def begin_capture(self):
            log.append("begin")

        def end_capture(self):
            log.append("end")
            return types.SimpleNamespace(launch=lambda stream: log.append(("launch", stream)))

    @contextlib.contextmanager
    def using_allocator(fn):
        log.append("allocator")
        saved = fake.allocator
        fake.allocator = fn
        yield
        fake.allocator = saved

    fake = types.ModuleType("cupy")
    fake.allocator = None
    fake.cuda = types.SimpleNamespace(Stream=Stream, using_allocator=using_allocator,
                                      get_current_stream=lambda: "current")
    monkeypatch.setitem(sys.modules, "cupy", fake)
    g = cudagraph.CupyGraphs()

    def kernels(a):
        log.append(("kernels", a))
    graph = g.capture(kernels, ["x"])
    g.launch(graph)
    assert log == [("Stream", True), "enter", "allocator", "begin", ("kernels", "x"), "end", "exit",
                   ("launch", "current")], log

    def allocates(a):
        fake.allocator(256)
    with pytest.raises(RuntimeError, match="allocated 256 bytes during capture"):
        g.capture(allocates, ["x"])
    assert log[-1] == "exit" and log[-2] == "end"      # the capture is ended even so


# ------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
def test_cupy_stream_capture_chain_matches_eager():
    cupy = pytest.importorskip("cupy")
    if not dg.cuda.is_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    w = dg.tensor(np.full((16, 16), 0.9), dtype=dg.float32, device="cuda", requires_grad=True)
    eager, comp = _chain(w), compile(_chain(w), mode="reduce-overhead")
    for i in range(8):
        x = dg.randn(16, 16, device="cuda")
        for a, b in zip(comp(x), eager(x)):
            assert bool(cupy.array_equal(_array(a), _array(b))), f"call {i}"
    segs = comp.tapes()[0].segments
    assert segs and all(s.error is None for s in segs), [s.error for s in segs]
    assert sum(s.launches for s in segs) > 0
