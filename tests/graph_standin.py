"""A stand-in CUDA graph backend for NumPy tapes (``distgraph.graph.cudagraph.NUMPY_GRAPHS``).

It has a CUDA graph's semantics: capturing runs nothing, and a launch runs the captured kernels on
the arrays they were captured with (fixed addresses), reading their values at launch time.
Addresses are the arrays' data pointers.  Used by tests/test_graph_cudagraph.py and
tests/parallel/graph_ddp_prog.py.
"""
import numpy as np


class _Graph:
    def __init__(self, fn, inputs):
        self.fn, self.inputs = fn, list(inputs)


class StandInGraphs:
    """The backend; ``captured``/``launched`` list the graphs, ``fail`` makes every capture raise it."""
    captured, launched = [], []
    fail = None

    @staticmethod
    def address(a):
        return a.__array_interface__["data"][0]

    def copy(self, dst, src):
        np.copyto(dst, src)

    def empty_like(self, a):
        return np.full_like(a, np.nan)       # a launch that skipped the copy would show

    def capture(self, fn, inputs):
        if StandInGraphs.fail:
            raise RuntimeError(StandInGraphs.fail)
        g = _Graph(fn, inputs)
        StandInGraphs.captured.append(g)
        return g

    def launch(self, graph):
        StandInGraphs.launched.append(graph)
        graph.fn(*graph.inputs)


def install():
    from distgraph.graph import cudagraph
    cudagraph.NUMPY_GRAPHS = StandInGraphs
