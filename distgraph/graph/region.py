"""A compiled forward whose output needs a graph: ``model = dg.compile(model)`` in a training loop.

The backward runs outside the compiled function (``loss = crit(model(x), y); loss.backward()``),
so the tape cannot hold it.  A *region* replays the forward as the tape does (every op by its own
``forward`` rule on arrays, no graph built op by op) and returns its one output tensor with a
single graph node, ``CompiledBackward``.  When the engine reaches that node it runs the recorded
ops' ``backward`` rules in reverse recording order, which is the order eager's engine runs them
in (a node's consumers are all recorded after it), summing gradients in the same order, and hands
the gradients of the region's inputs (the arguments and parameters that need one) back to the
engine, which accumulates them into ``.grad`` and calls their hooks (DDP's) as in eager.

Every op of a region keeps what its forward saved in one op instance per recorded op, reused by
each replay; so while one replay's graph is still waiting for its backward, the next call runs
eagerly (``Region.busy``) instead of overwriting those arrays.
"""
from __future__ import annotations

import weakref

from distgraph.autograd.function import Node
from distgraph.autograd.tensor import Tensor, wrap


class CompiledBackward(Node):
    """The graph node of a region's output: its backward is the region's recorded backward."""

    __slots__ = ("region", "__weakref__")

    def name(self) -> str:
        return "CompiledBackward"

    def backward(self, gy):
        return self.region.backward(gy)


class Region:
    """A forward-only tape (``tape.Tape`` with every op kept as an op instance) plus its backward.

    ``out_op``: the recorded op whose output is the region's output; ``leaves``: where each input
    gradient goes, as ``("arg", i)`` (the i-th tensor argument) or ``("ext", n)`` (a parameter).
    """

    def __init__(self, tape, cap, verdict, out_op):
        self.tape, self.out_op = tape, out_op
        ops = cap.ops
        n = len(ops)
        first_use = {}   # leaf -> (the earliest op reading it, input position): eager finishes leaves in that order
        routes = [[] for _ in range(n)]
        saved = {}   # the arguments and parameters an op in the graph saved: checked for in-place changes
        for k, op in enumerate(ops):
            nig = getattr(op.node, "needs_input_grad", None)
            if nig is None:     # an op outside the graph (its inputs need no gradient)
                continue
            for j in op.cls.saves:
                e = op.inputs[j] if j < len(op.inputs) else None
                if e is not None and e[0] == "in" and e[1][0] in ("arg", "ext"):
                    saved.setdefault(e[1], None)
            for i, e in enumerate(op.inputs):
                if not nig[i] or e[0] != "in":
                    continue
                ref = e[1]
                if ref[0] == "op":
                    routes[k].append((i, ref[1]))
                elif ref[0] in ("arg", "ext"):
                    if ref[0] == "ext":
                        t = cap.ext[ref[1]]
                        if ref[1] not in verdict.persistent_ext:
                            raise NotRegion(f"a tensor that requires grad is made inside the function (shape "
                                             f"{tuple(t.shape)}); pass it as an argument, or make it once outside")
                        if t.grad_fn is not None:
                            raise NotRegion(f"it reads a tensor of shape {tuple(t.shape)} that was computed "
                                             "outside with a graph (not an argument); pass it as an argument")
                    first_use.setdefault(ref, (k, i))
                    routes[k].append((i, ref))
        # eager's engine finishes a leaf when its last gradient arrives: the earliest reader's, last
        self.leaves = sorted(first_use, key=lambda r: (-first_use[r][0], first_use[r][1]))
        slot = {r: n + j for j, r in enumerate(self.leaves)}
        ns = tape.ns
        self.plan = [(ns[f"op{k}"].backward, k, [(i, s if isinstance(s, int) else slot[s]) for i, s in routes[k]])
                     for k in range(out_op, -1, -1) if getattr(ops[k].node, "needs_input_grad", None) is not None]
        self.n_slots = n + len(self.leaves)
        self.ext = cap.ext
        self.saved = [r for r in saved if r[0] == "arg" or r[1] in verdict.persistent_ext]
        out = ops[out_op]
        self.watch_output = out.cls.saves_output or out.aliases
        self._pending = None

    def busy(self) -> bool:
        """Whether the last replay's graph may still run its backward (its op instances are in use)."""
        node = self._pending() if self._pending is not None else None
        return node is not None and not node._released

    def run(self, tensors):
        out = self.tape.run(tensors)
        inputs = [tensors[r[1]] if r[0] == "arg" else self.ext[r[1]] for r in self.leaves]
        node = CompiledBackward()
        node.region = self
        node.link(t.grad_fn or t for t in inputs)
        out, y = _substitute(out, self.tape.cap.outputs, self.out_op, node)
        watched = [tensors[r[1]] if r[0] == "arg" else self.ext[r[1]] for r in self.saved]
        if self.watch_output:
            watched.append(y)
        node._versions = [(t._version, t._version[0]) for t in watched]
        self._pending = weakref.ref(node)
        return out

    def backward(self, gy):
        g = [None] * self.n_slots
        g[self.out_op] = gy
        for bw, k, routes in self.plan:
            gk = g[k]
            if gk is None:
                continue
            g[k] = None
            gxs = bw(gk)
            for i, s in routes:
                gx = gxs[i]
                if gx is not None:
                    prev = g[s]
                    g[s] = gx if prev is None else prev + gx
        return g[self.n_slots - len(self.leaves):]


class NotRegion(Exception):
    """Why a forward-only capture cannot be a region (the key then runs eagerly)."""


def _substitute(value, enc, out_op, node):
    """``value`` (the tape's result) with the region's output tensor replaced by one made by ``node``;
    returns (the new value, that tensor).  (No closure: a recursive one would keep ``node`` alive in a
    reference cycle, and ``Region.busy`` would see a dropped output as waiting for its backward.)"""
    found = []
    return _swap(value, enc, ("op", out_op), node, found), found[0]


def _swap(v, e, ref, node, found):
    kind = e[0]
    if kind == "wrap" and e[1] == ref and isinstance(v, Tensor) and not found:
        found.append(wrap(v.array, grad_fn=node))
        return found[0]
    if kind in ("tuple", "list") and isinstance(v, (tuple, list)):
        items = [_swap(x, ex, ref, node, found) for x, ex in zip(v, e[1])]
        return items if isinstance(v, list) else tuple(items)
    if kind == "dict" and isinstance(v, dict):
        return {k: _swap(v[k], ex, ref, node, found) for k, ex in e[1]}
    return v
