"""A compiled forward whose output needs a graph: ``model = dg.compile(model)`` in a training loop.

The backward runs outside the compiled function (``loss = crit(model(x), y); loss.backward()``),
so the tape cannot hold it.  A *region* replays the forward as the tape does (every op by its own
``forward`` rule on arrays, no graph built op by op) and returns its output tensor with a single
graph node, ``CompiledBackward`` (several outputs with a graph: each gets a small ``OutputBackward``
node leading into that one node, whose gradient is then the outputs' gradients together).  When the
engine reaches that node it runs the recorded ops' ``backward`` rules in reverse recording order,
which is the order eager's engine runs them in (a node's consumers are all recorded after it),
summing gradients in the same order, and hands
the gradients of the region's inputs (the arguments and parameters that need one) back to the
engine, which accumulates them into ``.grad`` and calls their hooks (DDP's) as in eager: each as
soon as it is complete (``Node.backward_streaming``), so DDP's bucket all-reduces overlap the rest
of the region's backward.

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

    def backward_streaming(self, gy, hand):
        return self.region.backward(gy, hand)


class OutputBackward(Node):
    """One of several region outputs: hands its gradient to the region's node, tagged with its op."""

    __slots__ = ("op",)

    def name(self) -> str:
        return "CompiledOutputBackward"

    def backward(self, gy):
        return (_Seeds({self.op: gy}),)


class _Seeds(dict):
    """The gradients of a region's outputs, by output op; the engine sums what reaches one node with
    ``+``, which here merges (adding the gradients of an op returned twice)."""

    def __add__(self, other):
        out = _Seeds(self)
        for k, g in other.items():
            out[k] = out[k] + g if k in out else g
        return out


class Region:
    """A forward-only tape (``tape.Tape`` with every op kept as an op instance) plus its backward.

    ``out_ops``: the recorded ops whose outputs are the region's outputs with a graph, in output
    order; ``leaves``: where each input gradient goes, as ``("arg", i)`` (the i-th tensor argument)
    or ``("ext", n)`` (a parameter).
    """

    def __init__(self, tape, cap, verdict, out_ops):
        self.tape, self.out_ops = tape, list(out_ops)
        out_op = max(out_ops)
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
        done_after = {}   # op -> the leaves whose last gradient it gives: (index in the node's next, slot)
        for j, r in enumerate(self.leaves):
            done_after.setdefault(first_use[r][0], []).append((j, slot[r]))
        self.plan = [(ns[f"op{k}"].backward, k, [(i, s if isinstance(s, int) else slot[s]) for i, s in routes[k]],
                      done_after.get(k, ()))
                     for k in range(out_op, -1, -1) if getattr(ops[k].node, "needs_input_grad", None) is not None]
        self.n_slots = n + len(self.leaves)
        self.ext = cap.ext
        self.saved = [r for r in saved if r[0] == "arg" or r[1] in verdict.persistent_ext]
        self.watch_output = [ops[k].cls.saves_output or ops[k].aliases for k in self.out_ops]
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
        if len(self.out_ops) == 1:
            heads = [node]
        else:
            heads = []
            for k in self.out_ops:
                head = OutputBackward()
                head.op = k
                head.link([node])
                heads.append(head)
        out, ys = _substitute(out, self.tape.cap.outputs, self.out_ops, heads)
        watched = [tensors[r[1]] if r[0] == "arg" else self.ext[r[1]] for r in self.saved]
        watched += [y for y, w in zip(ys, self.watch_output) if w]
        node._versions = [(t._version, t._version[0]) for t in watched]
        self._pending = weakref.ref(node)
        return out

    def backward(self, gy, hand=None):
        """The recorded backward from the outputs' gradient ``gy``.  Returns one gradient per input of the
        region's node (``leaves``); with ``hand`` (the engine's, see ``Node.backward_streaming``) each
        leaf's gradient is handed over as soon as it is complete, so that its hooks (DDP's bucket
        all-reduces) start while the rest of the backward runs, as in eager; those are None in the result."""
        g = [None] * self.n_slots
        if isinstance(gy, _Seeds):
            for k, gk in gy.items():
                g[k] = gk
        else:
            g[self.out_ops[0]] = gy
        for bw, k, routes, done in self.plan:
            gk = g[k]
            if gk is not None:
                g[k] = None
                gxs = bw(gk)
                for i, s in routes:
                    gx = gxs[i]
                    if gx is not None:
                        prev = g[s]
                        g[s] = gx if prev is None else prev + gx
            if hand is not None:
                for j, s in done:
                    if g[s] is not None:
                        gx, g[s] = g[s], None
                        hand(j, gx)
        return g[self.n_slots - len(self.leaves):]


class NotRegion(Exception):
    """Why a forward-only capture cannot be a region (the key then runs eagerly)."""


def _substitute(value, enc, out_ops, heads):
    """``value`` (the tape's result) with the region's output tensors replaced by tensors made by
    ``heads`` (one graph node per output, in output order); returns (the new value, those tensors).
    (No closure: a recursive one would keep the nodes alive in a reference cycle, and ``Region.busy``
    would see a dropped output as waiting for its backward.)"""
    found = []
    return _swap(value, enc, out_ops, heads, found), found


def _swap(v, e, out_ops, heads, found):
    kind = e[0]
    n = len(found)
    if kind == "wrap" and n < len(out_ops) and e[1] == ("op", out_ops[n]) and isinstance(v, Tensor):
        found.append(wrap(v.array, grad_fn=heads[n]))
        return found[-1]
    if kind in ("tuple", "list") and isinstance(v, (tuple, list)):
        items = [_swap(x, ex, out_ops, heads, found) for x, ex in zip(v, e[1])]
        return items if isinstance(v, list) else tuple(items)
    if kind == "dict" and isinstance(v, dict):
        return {k: _swap(v[k], ex, out_ops, heads, found) for k, ex in e[1]}
    return v
