"""Graph rules of the backward engine: accumulation, order, hooks, freeing, versions."""
import gc
import tracemalloc

import numpy as np
import pytest

import distgraph as dg
from distgraph import autograd


def leaf(*shape, seed=0):
    rng = np.random.default_rng(seed)
    return dg.tensor(rng.standard_normal(shape), dtype=dg.float64, requires_grad=True)


def test_shared_subexpression_accumulates():
    x = leaf(3)
    y = x * x          # used three times below
    z = y + y * 2 + y.exp()
    z.sum().backward()
    xv = x.array
    np.testing.assert_allclose(x.grad.numpy(), 3 * 2 * xv + np.exp(xv * xv) * 2 * xv)


def test_diamond_graph_and_reuse_of_leaf():
    x = leaf(4)
    a, b = x.sin(), x.cos()
    (a * b + x).sum().backward()
    xv = x.array
    np.testing.assert_allclose(x.grad.numpy(), np.cos(2 * xv) + 1)


def test_gradients_accumulate_across_backward_calls():
    x = leaf(2)
    (x * 3).sum().backward()
    (x * 4).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [7.0, 7.0])


def test_same_gradient_array_is_never_shared_between_leaves():
    a, b = leaf(3), leaf(3, seed=1)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad.array, b.grad.array)
    (a + b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [2, 2, 2])
    np.testing.assert_allclose(b.grad.numpy(), [2, 2, 2])


def test_second_backward_without_retain_graph_raises():
    x = leaf(3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = leaf(3)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.array)


def test_non_scalar_backward_needs_gradient():
    x = leaf(2, 3)
    y = x * 2
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        y.backward()
    y.backward(dg.ones(2, 3, dtype=dg.float64) * 0.5)
    np.testing.assert_allclose(x.grad.numpy(), np.ones((2, 3)))
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\), expected .* \(2, 3\)"):
        (x * 2).backward(dg.ones(3))


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        dg.ones(2).sum().backward()


def test_no_grad_records_nothing_and_restores_mode():
    x = leaf(3)
    with dg.no_grad():
        y = x * 2
        assert not dg.is_grad_enabled()
        with dg.enable_grad():
            z = x * 2
    assert dg.is_grad_enabled()
    assert y.grad_fn is None and not y.requires_grad
    assert z.grad_fn is not None and z.requires_grad

    @dg.no_grad()
    def f(t):
        return t * 2
    assert f(x).grad_fn is None and dg.is_grad_enabled()
    with pytest.raises(ValueError):
        with dg.no_grad():
            raise ValueError
    assert dg.is_grad_enabled()


def test_set_grad_enabled_function_context_and_decorator():
    x = leaf(2)
    dg.set_grad_enabled(False)
    try:
        assert (x * 1).grad_fn is None
    finally:
        dg.set_grad_enabled(True)
    with dg.set_grad_enabled(False):
        assert not dg.is_grad_enabled()
    assert dg.is_grad_enabled()

    @dg.set_grad_enabled(False)
    def f():
        return dg.is_grad_enabled()
    assert dg.is_grad_enabled() and f() is False and dg.is_grad_enabled()


def test_grad_mode_is_thread_local():
    import threading
    seen = []
    with dg.no_grad():
        t = threading.Thread(target=lambda: seen.append(dg.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_inplace_on_leaf_requiring_grad_raises_but_works_under_no_grad():
    x = leaf(3)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*in-place"):
        x.add_(1)
    with dg.no_grad():
        x.add_(1)
        x -= 1
    assert x.is_leaf and x.requires_grad


def test_version_check_catches_modified_saved_tensor():
    x = leaf(3)
    y = x * 2
    z = y * y          # saves y
    y.add_(1)          # ... which is now changed in place
    with pytest.raises(RuntimeError, match="modified in place"):
        z.sum().backward()


def test_inplace_on_non_leaf_is_differentiated():
    x = leaf(3)
    y = x * 2
    y.mul_(3)          # nothing saved y before: fine
    y += x
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [7.0, 7.0, 7.0])
    w = leaf(3, seed=3)
    h = w * 2
    h.mul_(w)         # d/dw (2w * w): the in-place Mul must see h's old values
    h.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 4 * w.array)
    e = w.exp()
    e.mul_(2)         # exp saved its output, which is now changed: PyTorch raises too
    with pytest.raises(RuntimeError, match="ExpBackward.*modified in place"):
        e.sum().backward()


def test_inplace_dtype_error_names_types():
    t = dg.ones(3, dtype=dg.int64)
    with pytest.raises(RuntimeError, match="float32 can't be cast to the desired output type int64"):
        t += 0.5


def test_setitem_records_gradient():
    x, v = leaf(4), leaf(2, seed=1)
    y = x * 1
    y[1:3] = v * 2
    (y * dg.arange(4).double()).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 0, 0, 3])
    np.testing.assert_allclose(v.grad.numpy(), [2, 4])


def test_inplace_through_a_view_invalidates_what_the_base_saved():
    x = leaf(2, 3)
    y = x * 1
    z = y * y            # saves y
    with dg.no_grad():
        y[0].fill_(5.0)  # a view of y, written in place
    assert y.array[0, 0] == 5.0
    with pytest.raises(RuntimeError, match="modified in place"):
        z.sum().backward()


def test_long_chain_has_no_recursion_limit():
    x = leaf(1)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000], rtol=1e-9)


def test_memory_is_freed_over_many_iterations():
    w = dg.randn(16, 16, requires_grad=True)
    x = dg.randn(4, 16)

    def step():
        loss = ((x @ w).tanh() ** 2).mean()
        loss.backward()
        w.grad = None

    for _ in range(100):
        step()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(10_000):
        step()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert after - before < 256 * 1024, f"memory grew by {after - before} bytes over 10,000 iterations"


def test_hooks_order_and_replacement():
    calls = []
    x = leaf(3)
    y = x * 2
    y.register_hook(lambda g: calls.append(("y", g.numpy().copy())))
    h = x.register_hook(lambda g: calls.append(("x-pre", g.numpy().copy())) or g * 10)
    x.register_post_accumulate_grad_hook(lambda t: calls.append(("x-post", t.grad.numpy().copy())))
    (y * 3).sum().backward()
    assert [c[0] for c in calls] == ["y", "x-pre", "x-post"]
    np.testing.assert_allclose(calls[0][1], [3, 3, 3])
    np.testing.assert_allclose(calls[1][1], [6, 6, 6])
    np.testing.assert_allclose(x.grad.numpy(), [60, 60, 60])     # the hook replaced the gradient
    h.remove()
    x.grad = None
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1, 1, 1])


def test_hook_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        dg.ones(2).register_hook(lambda g: g)
    x = leaf(2)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)


def test_post_accumulate_hooks_fire_as_each_leaf_is_ready_in_deterministic_order():
    ws = [leaf(2, seed=i) for i in range(4)]
    order = []
    for i, w in enumerate(ws):
        w.register_post_accumulate_grad_hook(lambda t, i=i: order.append(i))
    h = dg.ones(2, dtype=dg.float64)
    for w in ws:          # a chain of layers: the last one's gradient is ready first
        h = (h * w).tanh()
    h.sum().backward()
    assert order == [3, 2, 1, 0]


def test_queue_callback_runs_once_after_all_gradients():
    x, y = leaf(2), leaf(2, seed=1)
    seen = []

    def hook(t):
        if not seen:
            autograd.queue_callback(lambda: seen.append((x.grad is not None, y.grad is not None)))
        seen.append("hook")
    x.register_post_accumulate_grad_hook(hook)
    y.register_post_accumulate_grad_hook(hook)
    (x * y).sum().backward()
    assert seen == ["hook", "hook", (True, True)]
    with pytest.raises(RuntimeError, match="no backward pass is running"):
        autograd.queue_callback(lambda: None)


def test_retain_grad_on_non_leaf():
    x = leaf(3)
    y = x * 2
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), 2 * y.array)


def test_autograd_grad_returns_gradients_without_touching_grad():
    x, y = leaf(3), leaf(3, seed=1)
    mid = x * y
    out = (mid * x).sum()
    gx, gm = autograd.grad(out, [x, mid])
    np.testing.assert_allclose(gx.numpy(), 2 * x.array * y.array)
    np.testing.assert_allclose(gm.numpy(), x.array)
    assert x.grad is None and y.grad is None
    z = leaf(1)
    with pytest.raises(RuntimeError, match="not used"):
        autograd.grad((x * 2).sum(), [z])
    assert autograd.grad((x * 2).sum(), [x, z], allow_unused=True)[1] is None


def test_create_graph_is_refused_clearly():
    x = leaf(2)
    with pytest.raises(NotImplementedError, match="higher-order"):
        autograd.grad((x * x).sum(), [x], create_graph=True)


def test_detach_and_requires_grad_rules():
    x = leaf(3)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None and np.shares_memory(d.array, x.array)
    with pytest.raises(RuntimeError, match="floating point"):
        dg.ones(3, dtype=dg.int64, requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        dg.arange(3).requires_grad_()
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2).requires_grad_(False)
    t = dg.ones(2).requires_grad_()
    assert t.requires_grad and t.is_leaf


def test_integer_and_bool_ops_do_not_require_grad():
    x = leaf(3)
    assert not (x > 0).requires_grad and (x > 0).dtype == dg.bool
    assert not x.argmax().requires_grad


def test_backward_order_is_deterministic_across_runs():
    def run():
        order = []
        ws = [leaf(3, seed=i) for i in range(6)]
        for i, w in enumerate(ws):
            w.register_post_accumulate_grad_hook(lambda t, i=i: order.append(i))
        a = (ws[0] * ws[1]).sum() + (ws[2] * ws[3]).sum()
        b = (ws[4] + ws[5] * a).sum()
        (a * b).backward()
        return order
    assert run() == run() == run()
