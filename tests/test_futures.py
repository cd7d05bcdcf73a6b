"""dg.futures.Future against torch.futures.Future: the same calls give the same values and errors."""
import pytest

import distgraph as dg
from distgraph import comm

torch = pytest.importorskip("torch")


def chain(lib):
    """set_result, then, a chain of then, add_done_callback, then on a complete Future."""
    log = []
    f = lib.futures.Future()
    g = f.then(lambda x: x.value() * 2)
    h = g.then(lambda x: x.value() + 1)
    f.add_done_callback(lambda x: log.append(("done", x.value())))
    log.append(("before", f.done(), g.done()))
    f.set_result(5)
    log.append(("after", f.done(), g.done(), h.done(), g.wait(), h.value()))
    late = f.then(lambda x: x.value() - 1)      # chained after completion: runs at once
    log.append(("late", late.done(), late.wait()))
    return log


def test_then_and_callbacks_as_torch():
    assert chain(dg) == chain(torch)


def errors(lib):
    out = []
    f = lib.futures.Future()
    g = f.then(lambda x: 1 / 0)                 # a callback's exception lands in its Future
    f.set_result(1)
    try:
        g.wait()
    except RuntimeError as e:                   # (torch's wrapping, naming the callback's error)
        out.append(str(e).split("\n")[0])
    h = lib.futures.Future()
    h.set_exception(ValueError("boom"))
    try:
        h.wait()
    except ValueError as e:
        out.append(str(e))
    k = h.then(lambda x: x.value())             # the parent's error goes on through value()
    try:
        k.wait()
    except RuntimeError as e:
        out.append("through then: " + str(e).split("\n")[0])
    try:
        f.set_result(2)
    except RuntimeError:
        out.append("completes once")
    return out


def test_errors_as_torch():
    assert errors(dg) == errors(torch) == [
        "Got the following error when running the callback: ZeroDivisionError: division by zero", "boom",
        "through then: Got the following error when running the callback: ValueError: boom", "completes once"]


def test_collect_all_and_wait_all():
    for lib in (dg, torch):
        a, b = lib.futures.Future(), lib.futures.Future()
        both = lib.futures.collect_all([a, b])
        a.set_result(1)
        assert not both.done()
        b.set_result(2)
        assert [f.value() for f in both.wait()] == [1, 2]
        c, d = lib.futures.Future(), lib.futures.Future()
        c.set_result("x"), d.set_result("y")
        assert lib.futures.wait_all([c, d]) == ["x", "y"]


def test_future_of_a_collective_holds_the_tensors_it_wrote():
    if not comm.is_initialized():
        comm.init_process_group()
    t = dg.tensor([1.0, 2.0])
    fut = comm.all_reduce(t, async_op=True).get_future()
    out = fut.then(lambda f: f.value()[0] * 10).wait()
    assert fut.done() and fut.value()[0] is t
    assert out.tolist() == [10.0, 20.0]


def test_future_is_subscriptable_for_annotations():
    assert dg.futures.Future[dg.Tensor] is dg.futures.Future


def test_a_future_nothing_completes_says_so():
    with pytest.raises(RuntimeError, match="set_result was never called"):
        dg.futures.Future().wait()
