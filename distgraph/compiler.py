"""``torch.compiler``: the knobs around ``dg.compile`` a training script types.

``reset()`` forgets every tape, ``disable`` keeps a function out of replays (its caller's key runs
eagerly), ``is_compiling()`` tells a capture from an eager call.  What each means here, beside
PyTorch's meaning, is in docs/graph.md ("PyTorch's compile idioms").
"""
from __future__ import annotations

from distgraph.graph.compiled import compile, disable, is_compiling, reset  # noqa: A004

__all__ = ["compile", "reset", "disable", "is_compiling", "is_dynamo_compiling", "is_exporting",
           "cudagraph_mark_step_begin"]


def is_dynamo_compiling() -> bool:
    """As ``is_compiling()`` (PyTorch tells its two tracers apart; distgraph has one)."""
    return is_compiling()


def is_exporting() -> bool:
    """Whether an ONNX export is tracing.  False here: ``dg.onnx.export`` traces without compile."""
    return False


def cudagraph_mark_step_begin():
    """A no-op: a replay's outputs are fresh tensors, never overwritten by the next replay, so there is
    no step to mark (PyTorch's CUDA-graph trees need it before reusing their output buffers)."""
