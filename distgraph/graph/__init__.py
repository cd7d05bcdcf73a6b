"""Capture and replay (issue 14): ``dg.compile(fn)`` records a function's ops once and replays them.

* ``compiled.py``: ``compile`` and ``CompiledFunction`` (the capture / check / replay cycle);
* ``capture.py``: the tracer that records one eager run;
* ``intercept.py``: host reads, whole calls (``optimizer.step()``) and dropout seen during a capture;
* ``guards.py``: the key a tape is filed under;
* ``tape.py``: comparing two records and generating the replay code.

See docs/graph.md for the design, the guard rules and the limits.
"""
from distgraph.graph.compiled import (CaptureError, CaptureWarning, CompiledFunction, OptimizedModule,
                                      compile)  # noqa: A004
from distgraph.graph.tape import GuardFailed, ReplayError

__all__ = ["compile", "CompiledFunction", "OptimizedModule", "CaptureWarning", "CaptureError", "GuardFailed",
           "ReplayError"]
