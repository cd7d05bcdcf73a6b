"""The timeline profiler: spans, overlap figure, and the trace file."""
import json

import pytest

from distgraph import profiler


@pytest.fixture
def fresh(tmp_path):
    path = tmp_path / "trace.json"
    profiler.enable(str(path))
    profiler._events.clear()
    yield path
    profiler.disable()
    profiler._events.clear()


def test_spans_and_overlap_fraction(fresh):
    profiler.record("backward", "backward", 0.0, 100.0)
    profiler.record("allreduce bucket 0", "allreduce", 50.0, 150.0)   # half inside backward
    profiler.record("allreduce bucket 1", "allreduce", 120.0, 220.0)  # outside
    assert profiler.overlap_fraction() == pytest.approx(50.0 / 200.0)
    with profiler.span("optimizer.step", "optim"):
        pass
    assert [e["name"] for e in profiler.events()][-1] == "optimizer.step"


def test_write_once_and_exit_handler_does_not_overwrite(fresh):
    profiler.record("forward", "forward", 0.0, 10.0)
    path = profiler.write()
    trace = json.load(open(path))["traceEvents"]
    assert [e["name"] for e in trace if e["ph"] == "X"] == ["forward"] and trace[0]["ph"] == "M"
    open(path, "w").write("merged by rank 0")       # stands for the merged multi-rank file
    profiler._at_exit()                             # nothing new since write(): leave it alone
    assert open(path).read() == "merged by rank 0"
    profiler.record("late", "user", 11.0, 12.0)
    profiler._at_exit()
    assert "late" in open(path).read()


def test_disabled_records_nothing(fresh):
    profiler.disable()
    profiler.record("x", "user", 0, 1)
    with profiler.span("y"):
        pass
    assert profiler.events() == []
