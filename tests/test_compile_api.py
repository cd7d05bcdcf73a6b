"""torch.compile's surroundings as distgraph gives them: ``OptimizedModule``, ``Module.compile()``,
``dg.compiler`` and ``dg._dynamo``.  tests/compat/programs/compile_idioms.py checks the same idioms
against torch itself; here is what only distgraph can show (replays happen, caches really clear)."""
import warnings

import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
from distgraph.graph import CaptureWarning, OptimizedModule


def _mlp():
    dg.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()


def _train(model, n=4):
    x = dg.ones(2, 3, dtype=dg.float64)
    for _ in range(n):
        model(x).sum().backward()


def test_compiled_module_is_a_module_around_the_original():
    m = _mlp()
    cm = dg.compile(m)
    assert isinstance(cm, OptimizedModule) and isinstance(cm, nn.Module) and cm._orig_mod is m
    assert list(cm.state_dict()) == ["_orig_mod." + k for k in m.state_dict()]
    assert [p for p in cm.parameters()] == [p for p in m.parameters()]
    assert cm.eval() is cm and not m.training and cm.train() is cm and m.training
    cm.extra = 5                           # attributes it lacks go to the original, both ways
    assert m.extra == 5 and cm.extra == 5
    with pytest.raises(TypeError):
        cm[0]
    _train(cm)
    assert cm.stats["replays"] == 2, cm.stats
    fresh = _mlp()
    fresh.load_state_dict(cm._orig_mod.state_dict())
    x = dg.ones(1, 3, dtype=dg.float64)
    assert np.array_equal(fresh(x).array, m(x).array)


def test_module_compile_in_place_keeps_the_module_and_replays():
    m = _mlp()
    keys = list(m.state_dict())
    assert m.compile() is None
    assert type(m) is nn.Sequential and list(m.state_dict()) == keys
    _train(m)
    assert m._compiled_call.stats["replays"] == 2, m._compiled_call.stats
    e = _mlp()
    _train(e)
    for p, q in zip(m.parameters(), e.parameters()):
        assert np.array_equal(p.grad.array, q.grad.array)


def test_compiler_reset_forgets_every_tape():
    cm = dg.compile(_mlp())
    _train(cm)
    assert cm.tapes()
    dg.compiler.reset()
    assert not cm.tapes()
    _train(cm, 3)
    assert cm.stats["captures"] == 4 and cm.stats["replays"] == 3, cm.stats
    dg._dynamo.reset()
    assert not cm.tapes()


def test_disable_makes_the_key_eager_with_a_warning_naming_the_function():
    @dg.compiler.disable
    def helper(x):
        return x * 3

    @dg.compile
    def f(x):
        return helper(x) + 1
    with pytest.warns(CaptureWarning, match="helper, marked compiler.disable"):
        outs = [f(dg.ones(2)).tolist() for _ in range(3)]
    assert outs == [[4.0, 4.0]] * 3 and f.stats["replays"] == 0
    with pytest.raises(dg.graph.CaptureError, match="compiler.disable"):
        dg.compile(lambda x: helper(x), fullgraph=True)(dg.ones(2))


def test_is_compiling_is_true_while_capturing_only():
    seen = []

    @dg.compile
    def f(x):
        seen.append(dg.compiler.is_compiling())
        return x + 1
    for _ in range(4):
        f(dg.ones(2))
    assert seen == [True, True] and f.stats["replays"] == 2   # replays run no Python
    assert not dg.compiler.is_compiling()


def test_dynamo_config_cache_size_limit_bounds_the_tapes():
    old = dg._dynamo.config.cache_size_limit
    dg._dynamo.config.recompile_limit = 2          # (an alias, as in torch)
    try:
        assert dg._dynamo.config.cache_size_limit == 2
        f = dg.compile(lambda x: x * 2)
        with pytest.warns(CaptureWarning, match="more than 2 different argument shapes"):
            for n in (1, 2, 3):
                f(dg.ones(n))
        assert len(f._cache) == 2
    finally:
        dg._dynamo.config.cache_size_limit = old
    with pytest.raises(AttributeError, match="no_such_knob does not exist"):
        dg._dynamo.config.no_such_knob = 1


def test_modes_and_their_errors():
    m = _mlp()
    for mode in ("default", "lite", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        assert isinstance(dg.compile(m, mode=mode), OptimizedModule)
    with pytest.raises(RuntimeError, match="unrecognized mode='fastest'"):
        dg.compile(m, mode="fastest")
    with pytest.raises(RuntimeError, match="either mode or options"):
        dg.compile(m, mode="default", options={})
    assert dg.compile(m, disable=True) is m


def test_mark_dynamic_and_step_marker_accepted():
    t = dg.ones(3, 2)
    assert dg._dynamo.mark_dynamic(t, 0) is None and dg.compiler.cudagraph_mark_step_begin() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = dg.compile(lambda x: x + 1)
        for _ in range(3):
            out = f(t)
    assert out.tolist() == [[2.0, 2.0]] * 3 and f.stats["replays"] == 1
