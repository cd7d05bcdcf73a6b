"""The backward engine: iterative, deterministic, hook-aware.

Backward runs in two passes over the graph reachable from the roots:

1. count, for every node, how many edges lead into it (iterative DFS, so a
   10,000-op chain needs no recursion);
2. run nodes from a heap keyed by creation order, latest first.  A node runs
   once every gradient flowing into it has been summed, so each node and each
   leaf sees exactly one, complete gradient.  The order depends only on the
   graph, never on memory addresses: every rank issues its gradient-ready
   hooks (and so its collectives) in the same order.

A leaf's ``.grad`` is updated as soon as its last contribution arrives, and
its post-accumulate-grad hooks run right then: this is what lets
``DistributedDataParallel`` start an all-reduce while backward goes on.
"""
from __future__ import annotations

import heapq
import threading

import numpy as np

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.function import _tracing
from distgraph.autograd.tensor import Tensor, _make

_local = threading.local()


def queue_callback(fn):
    """Run ``fn()`` once, when the backward pass now running finishes.

    Must be called from inside a backward pass (e.g. from a tensor hook), like
    PyTorch's ``Variable._execution_engine.queue_callback``.
    """
    callbacks = getattr(_local, "callbacks", None)
    if callbacks is None:
        raise RuntimeError("queue_callback: no backward pass is running; call it from a hook during backward")
    callbacks.append(fn)


class callback_scope:
    """Collects ``queue_callback`` calls for a backward pass run outside ``run_backward``.

    A graph replay (``distgraph.graph``) runs a recorded backward itself; the hooks it
    calls (DDP's gradient-ready hook) queue callbacks as in eager.  ``run()`` calls them
    as ``run_backward`` does when its pass ends; leaving the scope restores the outer one.
    """

    def __enter__(self):
        self.outer = getattr(_local, "callbacks", None)
        self.callbacks = self.outer if self.outer is not None else []
        _local.callbacks = self.callbacks
        return self

    def run(self):
        i = 0
        while self.outer is None and i < len(self.callbacks):
            self.callbacks[i]()
            i += 1

    def __exit__(self, *exc):
        _local.callbacks = self.outer
        return False


def _leaf_hooks(t, g):
    hooks = t._hooks
    if hooks is not None:
        for fn in hooks.get("pre", ()):
            r = fn(_wrap(g))
            if r is not None:
                g = r.array
    return g


def _wrap(g):
    return _make(np.asarray(g) if isinstance(g, np.generic) else g, None, False)


def dependencies(roots) -> dict:
    """Pass 1 of backward: ``{id(x): number of graph edges into x}`` for every node and leaf tensor
    reachable from ``roots`` (tensors; each starts at its ``grad_fn``, a leaf at itself).  DDP asks
    the same question after forward: which parameters can this output's backward reach?"""
    deps = {}
    stack = []
    for r in roots:
        start = r.grad_fn if r.grad_fn is not None else r
        if id(start) not in deps:
            deps[id(start)] = 0
            stack.append(start)
    while stack:
        node = stack.pop()
        if isinstance(node, Tensor):
            continue
        if node._released:
            raise RuntimeError(
                f"Trying to backward through the graph a second time ({node.name()}): its saved "
                "arrays were freed by the first backward; pass retain_graph=True to the first "
                "backward (or autograd.grad) if you need to backward twice")
        for nxt in node.next:
            if nxt is None:
                continue
            k = id(nxt)
            if k in deps:
                deps[k] += 1
            else:
                deps[k] = 1
                stack.append(nxt)
    return deps


def run_backward(roots, grads, retain_graph=False, inputs=None):
    """Propagate ``grads`` (arrays) from ``roots`` (Tensors).

    With ``inputs=None`` leaf gradients accumulate into ``.grad``.  With a
    list of tensors, their gradients are returned instead (``autograd.grad``)
    and no ``.grad`` is touched.
    """
    tracer = _tracing.tracer
    if tracer is not None:  # capturing (distgraph.graph): the tracer records this pass's schedule
        tracer.backward_begin(roots, grads, retain_graph, inputs)
    captured = None
    if inputs is not None:
        captured = {id(t): None for t in inputs}
        capture_nodes = {id(t.grad_fn): id(t) for t in inputs if t.grad_fn is not None}
    # --- pass 1: dependency counts -------------------------------------
    deps = dependencies(roots)

    # --- pass 2: run ready nodes, latest first --------------------------
    buffers = {}
    heap = []
    handed = set()  # arrays given to a leaf's .grad in this pass (never alias two)
    ready_leaves = []
    for r, g in zip(roots, grads):
        start = r.grad_fn if r.grad_fn is not None else r
        k = id(start)
        buffers[k] = g if k not in buffers else buffers[k] + g
    for r in roots:
        start = r.grad_fn if r.grad_fn is not None else r
        if deps[id(start)] == 0:
            deps[id(start)] = -1
            if isinstance(start, Tensor):
                ready_leaves.append(start)
            else:
                heapq.heappush(heap, (-start.seq, id(start), start))

    def route(nxt, gx):
        """``gx`` reaches ``nxt``: summed into its buffer; a node whose last gradient this was becomes
        ready, a leaf is finished (``.grad``, its hooks)."""
        j = id(nxt)
        prev = buffers.get(j)
        buffers[j] = gx if prev is None else prev + gx
        left = deps[j] - 1
        deps[j] = left
        if left == 0:
            if isinstance(nxt, Tensor):
                _finish_leaf(nxt, buffers.pop(j), captured, handed)
            else:
                heapq.heappush(heap, (-nxt.seq, j, nxt))

    # A backward run from inside another (gradient checkpointing recomputes and
    # backpropagates a segment mid-backward) shares the outer pass's callbacks:
    # they run once, when the outermost pass ends.
    outer = getattr(_local, "callbacks", None)
    callbacks = outer if outer is not None else []
    _local.callbacks = callbacks
    check_nan = grad_mode.is_anomaly_check_nan_enabled()
    try:
        with grad_mode.no_grad():
            for leaf in ready_leaves:
                _finish_leaf(leaf, buffers.pop(id(leaf)), captured, handed)
            while heap:
                _, k, node = heapq.heappop(heap)
                gy = buffers.pop(k)
                hooks = getattr(node, "_hooks", None)
                if hooks:
                    for fn in hooks:
                        r = fn(_wrap(gy))
                        if r is not None:
                            gy = r.array
                if captured is not None and k in capture_nodes:
                    captured[capture_nodes[k]] = gy
                if node._versions:
                    node._check_versions()
                streaming = node.backward_streaming
                if streaming is None:
                    gxs = node.backward(gy)
                else:   # (a compiled region: it hands some gradients over while it runs, see graph/region.py)
                    gxs = streaming(gy, lambda i, gx, node=node: route(node.next[i], gx))
                if tracer is not None:
                    tracer.backward_node(node, gxs)
                if check_nan:
                    _check_nan(node, gxs)
                if not retain_graph:
                    node._release()
                for nxt, gx in zip(node.next, gxs):
                    if nxt is not None and gx is not None:
                        route(nxt, gx)
        # Callbacks run after every gradient is in place, outside no_grad like
        # PyTorch's engine callbacks; they may queue further callbacks.
        i = 0
        while outer is None and i < len(callbacks):
            callbacks[i]()
            i += 1
    finally:
        _local.callbacks = outer
    if tracer is not None:
        tracer.backward_end()
    if captured is not None:
        return [captured[id(t)] for t in inputs]
    return None


def _check_nan(node, gxs):
    """Anomaly mode: a backward rule that produced NaN names itself and where its forward ran."""
    for i, gx in enumerate(gxs):
        if gx is None or not hasattr(gx, "dtype"):   # (a compiled region's outputs pass their gradients tagged)
            continue
        xp = backend.get_array_module(gx)
        if backend.is_floating(gx.dtype) and bool(xp.isnan(gx).any()):
            trace = getattr(node, "_trace", None)
            where = ("\nTraceback of the forward call that made this op:\n" + trace) if trace else \
                "\n(its forward ran outside detect_anomaly, so no forward traceback was recorded)"
            raise RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th output; "
                               f"check its inputs (log of 0, 0/0, sqrt of a negative...).{where}")


def _finish_leaf(t, g, captured, handed):
    tracer = _tracing.tracer
    if tracer is not None:
        tracer.backward_leaf(t)
    if captured is not None:
        if id(t) in captured:
            g = _leaf_hooks(t, g)
            captured[id(t)] = np.asarray(g) if isinstance(g, np.generic) else g
        return
    g = _leaf_hooks(t, g)
    if isinstance(g, np.generic):
        g = np.asarray(g)
    if g.shape != t.array.shape:
        raise RuntimeError(
            f"backward: gradient of shape {tuple(g.shape)} does not match its leaf of shape "
            f"{tuple(t.array.shape)}")
    if t.grad is None:
        if id(g) in handed or g.base is not None or g.dtype != t.array.dtype or not g.flags.c_contiguous:
            g = g.astype(t.array.dtype, order="C", copy=True)
        handed.add(id(g))
        t.grad = _wrap(g)
    else:
        t.grad.array += g
    hooks = t._hooks
    if hooks is not None:
        for fn in hooks.get("post", ()):
            fn(t)
