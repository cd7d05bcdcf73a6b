"""Capture: run a function eagerly once while a tracer writes down what it did.

The tracer is installed in ``distgraph.autograd.function._tracing`` for this thread.
``Function.apply`` calls ``before_op``/``after_op``; ``engine.run_backward`` calls
``backward_begin``/``backward_node``/``backward_leaf``/``backward_end``; the
interceptors of ``distgraph.graph.intercept`` call ``record_read`` (a host read of a
tensor value) and ``record_call`` (a Python call replayed as a whole, such as
``optimizer.step()``).  Nothing is changed in what eager computes.

Every array the tape can see gets a *reference*, a small tuple saying where the
array comes from on replay:

* ``("arg", i)``   the array of the i-th tensor among the call's arguments;
* ``("op", k)``    the output of the k-th recorded op;
* ``("call", k, j)`` the j-th tensor returned by the k-th recorded call;
* ``("ext", n)``   the array of a tensor made outside the function's ops (a parameter,
  a buffer, or a tensor made by raw array code inside the function);
* ``("raw", n)``   a raw array held by an op (an index array, say), made outside the ops.

Whether an ``ext``/``raw`` reference is *persistent* (the same object on every call: read
it live on replay) or a *per-call constant* (made anew each call, baked into the tape
only if its value never changes) is decided by comparing two captures
(``distgraph.graph.tape.compare``).
"""
from __future__ import annotations

import threading

import numpy as np

from distgraph.autograd.function import Function, _saved_slots
from distgraph.backend import get_array_module
from distgraph.autograd.tensor import Tensor

# Ops whose output shape depends on the data (not only on input shapes): a replay
# would bake one call's shape.
DATA_DEPENDENT_SHAPE_OPS = frozenset({"Nonzero", "MaskedSelect", "Unique", "Argwhere", "NonzeroOp"})


def is_array(x) -> bool:
    return isinstance(x, np.ndarray) or hasattr(x, "__cuda_array_interface__")


class Refused(Exception):
    """Raised inside the tracer to stop recording; the function keeps running eagerly."""


class OpRecord:
    """One op application. ``in_shapes``: each input array's shape (None for other inputs); ``xp``: the
    output's array module; ``aliases``: the output shared memory with an input (a view op)."""
    __slots__ = ("node", "cls", "init", "inputs", "ndim0", "shape", "dtype", "in_shapes", "xp", "aliases")

    def __init__(self, node, init, inputs, y, arrays):
        self.node, self.cls, self.init, self.inputs = node, type(node), init, inputs
        self.ndim0 = y.ndim == 0
        self.shape, self.dtype = tuple(y.shape), y.dtype
        self.in_shapes = tuple(tuple(a.shape) if is_array(a) else None for a in arrays)
        self.xp = get_array_module(y)
        self.aliases = _shares(y, arrays)


def _arrays_in(v):
    if is_array(v):
        yield v
    elif isinstance(v, (tuple, list)):
        for x in v:
            yield from _arrays_in(x)


def _shares(y, values):
    """Whether array ``y`` may share memory with an array among ``values`` (nested tuples and lists)."""
    if not is_array(y):
        return False
    xp = get_array_module(y)
    return any(type(a) is type(y) and xp.may_share_memory(a, y) for a in _arrays_in(list(values)))


class Capture:
    """What one eager run did, in order (``entries``), with every array referenced."""

    def __init__(self, args):
        self.thread = threading.get_ident()
        self.args = args                # the call's tensors, flattened
        self.arg_of = {id(t): i for i, t in enumerate(args)}
        self.slot_of = {}               # id(array) -> reference
        self.keep = []                  # every array seen, kept alive so that ids stay unique
        self.ext, self.ext_of = [], {}  # tensors made outside the ops, by id(tensor)
        self.raws = []                  # raw arrays held by ops, made outside the ops
        self.ops, self.node_index = [], {}
        self.reads, self.calls, self.backwards = [], [], []
        self.entries = []               # ("op" | "read" | "call" | "backward", index)
        self.watched = {}               # id(version list) -> [version list, version seen, what]
        self.refusal = None
        self.depth = 0                  # > 0 inside a recorded call: its ops are not recorded
        self.backward = None            # the backward pass being recorded
        self.first_effect = None        # index in entries of the first side effect
        self.outputs = None
        self.region_out = None          # a forward-only capture with a graph: its output ops (region.py)
        self.forward_effects = []       # Python state a forward sets for its backward (no region then)
        self.pending_init = None
        self.grad_expect = {}           # id(leaf) -> [leaf, the .grad tensor it should hold now]
        self.bw_alias = set()           # ops whose backward returned a view of an array it saved
        self.grad_of = {}               # id(a .grad tensor a backward made) -> its leaf's reference
        self.arg_values = [t.array.copy() for t in args]  # to tell whether two captures saw the same data
        for i, t in enumerate(args):
            self._bind(t.array, ("arg", i))
            self._watch(t, expect_fresh=False)

    # ------------------------------------------------------------ refusing
    def refuse(self, reason):
        """Mark this capture as not replayable (the function still runs eagerly)."""
        if self.refusal is None:
            self.refusal = reason

    # ------------------------------------------------------------ references
    def _bind(self, array, ref):
        self.slot_of[id(array)] = ref
        self.keep.append(array)

    def array_ref(self, a):
        ref = self.slot_of.get(id(a))
        if ref is None:
            ref = ("raw", len(self.raws))
            self.raws.append(a)
            self._bind(a, ref)
        return ref

    def tensor_ref(self, t):
        """The reference of a tensor's *array* (what an op reads)."""
        self._watch(t, expect_fresh=True)
        ref = self.slot_of.get(id(t.array))
        if ref is None:
            ref = self._ext(t)
        return ref

    def _ext(self, t):
        n = self.ext_of.get(id(t))
        if n is None:
            n = self.ext_of[id(t)] = len(self.ext)
            self.ext.append(t)
            self._bind(t.array, ("ext", n))
        return ("ext", n)

    def leaf_ref(self, t):
        """The reference of a leaf *tensor* (whose ``.grad`` a backward updates)."""
        i = self.arg_of.get(id(t))
        if i is not None:
            return ("argt", i)
        n = self.ext_of.get(id(t))
        if n is None:
            self.keep.append(t.array)
            n = self.ext_of[id(t)] = len(self.ext)
            self.ext.append(t)
            self.slot_of.setdefault(id(t.array), ("ext", n))
        return ("ext", n)

    def encode(self, v):
        """A value with every tensor and array replaced by its reference."""
        if isinstance(v, Tensor):
            i = self.arg_of.get(id(v))
            if i is not None:
                return ("argt", i)
            ref = self.tensor_ref(v)
            if ref[0] == "ext":
                return ("tensor", ref[1])       # pass the very tensor (a parameter, say)
            return ("wrap", ref)                # a fresh tensor around the replayed array
        if is_array(v):
            return ("array", self.array_ref(v))
        if isinstance(v, (tuple, list)):
            return ("list" if isinstance(v, list) else "tuple", [self.encode(x) for x in v])
        if isinstance(v, dict):
            return ("dict", [(k, self.encode(x)) for k, x in v.items()])
        if isinstance(v, np.generic):
            return ("const", v)
        return ("const", v)

    # ------------------------------------------------------------ versions
    def _watch(self, t, expect_fresh):
        """Note a tensor's version counter; a change seen later (outside a recorded call)
        is an in-place write the tape would not replay."""
        ver = t._version
        w = self.watched.get(id(ver))
        if w is None:
            ref = self.slot_of.get(id(t.array))
            fresh = expect_fresh and ref is not None and ref[0] in ("op", "call")
            if fresh and ver[0] != 0:
                self.refuse(f"a tensor computed by {self._what(ref)} was changed in place "
                            f"(e.g. x.add_(1), relu_(), x[i] = v); in-place ops are not replayed")
            self.watched[id(ver)] = [ver, ver[0], tuple(t.shape)]
        elif w[1] != ver[0]:
            self.refuse(f"a tensor of shape {w[2]} was changed in place between two ops "
                        "(an in-place op, or a raw write such as BatchNorm's running statistics); "
                        "in-place updates outside ops and optimizer steps are not replayed")

    def watch_module_state(self, tensors):
        for t in tensors:
            self._watch(t, expect_fresh=False)

    def _recheck_versions(self):
        for w in self.watched.values():
            if w[1] != w[0][0]:
                self.refuse(f"a tensor of shape {w[2]} was changed in place outside the ops and recorded "
                            "calls (an in-place op, or a raw write such as BatchNorm's running "
                            "statistics in training mode); that update would not be replayed")
                return

    def _refresh_versions(self):
        for w in self.watched.values():
            w[1] = w[0][0]

    def _what(self, ref):
        if ref[0] == "op":
            return f"op #{ref[1]} ({self.ops[ref[1]].cls.__name__})"
        if ref[0] == "call":
            return f"call #{ref[1]}"
        return ref[0]

    def _effect(self):
        if self.first_effect is None:
            self.first_effect = len(self.entries)

    # ------------------------------------------------------------ op hooks
    def before_op(self, node):
        if self.depth or self.backward is not None:
            return
        init = {}
        for name in _saved_slots(type(node)):
            try:
                v = getattr(node, name)
            except AttributeError:
                continue
            init[name] = self.encode(v)
        self.pending_init = (node, init)

    def after_op(self, node, inputs, y):
        if self.depth or self.backward is not None:
            return
        if self.pending_init is None or self.pending_init[0] is not node:
            self.refuse(f"{type(node).__name__}: an op ran inside another op's forward")
            return
        init = self.pending_init[1]
        self.pending_init = None
        if type(node).__name__ in DATA_DEPENDENT_SHAPE_OPS:
            self.refuse(f"{type(node).__name__}: its output shape depends on the data")
        if not isinstance(node, Function):
            self.refuse(f"{type(node).__name__}: not a distgraph Function")
        refs, arrays = [], []
        for x in inputs:
            arrays.append(x.array if isinstance(x, Tensor) else x)
            if isinstance(x, Tensor):
                refs.append(("in", self.tensor_ref(x)))
            elif is_array(x):
                refs.append(("in", self.array_ref(x)))
            else:
                refs.append(("const", x))
        k = len(self.ops)
        attrs = [getattr(node, n, None) for n in _saved_slots(type(node)) if n in init]
        self.ops.append(OpRecord(node, init, refs, y, arrays + attrs))
        self.node_index[id(node)] = k
        self._bind(y, ("op", k))
        self.entries.append(("op", k))

    # ------------------------------------------------------------ host reads
    def record_read(self, t, kind, value):
        if self.depth or self.backward is not None:
            return
        ref = self.tensor_ref(t)
        # The guard is the tensor's whole value: equal values give equal reads, whatever the kind.
        self.reads.append((kind, ref, t.array.copy(), len(self.entries)))
        if self.first_effect is not None:
            self.refuse(f"a tensor value is read on the host ({kind}) after backward or an optimizer "
                        "step began; a replay cannot re-check it there. Return the tensor and read it "
                        "outside the compiled function")
        self.entries.append(("read", len(self.reads) - 1))

    # ------------------------------------------------------------ recorded calls
    def _check_grads(self):
        """``p.grad = None`` by hand (between recorded steps) is replayed where it was seen;
        any other change of ``.grad`` outside a recorded call or backward is refused."""
        for w in self.grad_expect.values():
            t, expected = w
            if t.grad is expected:
                continue
            if t.grad is None:
                self._effect()
                self.entries.append(("nograd", self.leaf_ref(t)))
                w[1] = None
            else:
                self.refuse(f"the .grad of a tensor of shape {tuple(t.shape)} was replaced by hand inside the "
                            "function; only `t.grad = None` (or optimizer.zero_grad()) is replayed")

    def _refresh_grads(self):
        for w in self.grad_expect.values():
            w[1] = w[0].grad

    def record_call(self, func, args, kwargs):
        """Called before ``func(*args, **kwargs)`` runs; returns the call's index."""
        self._recheck_versions()
        self._check_grads()
        self._effect()
        c = len(self.calls)
        self.calls.append([func, self.encode(args), self.encode(kwargs), None])
        self.entries.append(("call", c))
        return c

    def call_done(self, c, result):
        self._refresh_versions()
        self._refresh_grads()
        self.calls[c][3] = self._encode_result(c, result, [0])

    def _encode_result(self, c, v, counter):
        if isinstance(v, Tensor):
            ref = self.slot_of.get(id(v.array))
            if ref is None:
                ref = ("call", c, counter[0])
                counter[0] += 1
                self._bind(v.array, ref)
            self.watched.setdefault(id(v._version), [v._version, v._version[0], tuple(v.shape)])
            return ("out", ref)
        if isinstance(v, (tuple, list)):
            return ("tuple", [self._encode_result(c, x, counter) for x in v])
        return ("const", v)

    # ------------------------------------------------------------ backward hooks
    def backward_begin(self, roots, grads, retain_graph, inputs):
        if self.depth:
            return
        if self.backward is not None:
            self.refuse("a backward pass ran inside another (activation checkpointing, say)")
            return
        if inputs is not None:
            self.refuse("autograd.grad / backward(inputs=...) is not replayed; use loss.backward()")
        self._recheck_versions()
        self._check_grads()
        first = self.first_effect is None
        self._effect()
        rs, gs = [], []
        for r, g in zip(roots, grads):
            if r.grad_fn is not None:
                k = self.node_index.get(id(r.grad_fn))
                if k is None:
                    self.refuse("backward from a tensor computed outside the compiled function")
                    k = -1
                rs.append(("node", k))
            else:
                rs.append(("leaf", self.leaf_ref(r)))
            if r.array.size == 1 and g.size == 1 and g.dtype == r.array.dtype and float(g.reshape(-1)[0]) == 1.0:
                gs.append(("ones", tuple(g.shape)))       # loss.backward(): d loss / d loss = 1
            else:
                gs.append(("array", self.array_ref(g)))
        # "pre": whether each leaf's .grad was None when this backward reached it; re-checked on
        # replay (a guard) when this backward is the function's first side effect.
        self.backward = {"roots": rs, "grads": gs, "events": [], "pre": [], "check_pre": first}

    def backward_node(self, node, gxs):
        b = self.backward
        if self.depth or b is None:
            return
        k = self.node_index.get(id(node))
        if k is None:
            self.refuse(f"{node.name()}: a backward node that no recorded op made (a custom "
                        "autograd.Function, checkpointing, or a graph built before the call)")
            return
        if getattr(node, "_hooks", None):
            self.refuse(f"{node.name()}: a hook on an intermediate tensor (register_hook / retain_grad) "
                        "is not replayed")
        nones = tuple(gx is None for gx in gxs)
        saved = [getattr(node, n, None) for n in _saved_slots(type(node))]
        if any(_shares(gx, saved) for gx in gxs if gx is not None):
            self.bw_alias.add(k)
        b["events"].append(("node", k, nones))

    def backward_leaf(self, t):
        b = self.backward
        if self.depth or b is None:
            return
        ref = self.leaf_ref(t)
        if id(t) not in self.grad_expect:
            b["pre"].append((ref, t.grad is None))
        self.grad_expect[id(t)] = [t, None]
        b["events"].append(("leaf", ref))

    def backward_end(self):
        if self.depth or self.backward is None:
            return
        self.backwards.append(self.backward)
        self.entries.append(("backward", len(self.backwards) - 1))
        self.backward = None
        self._refresh_versions()   # .grad tensors are new; leaf versions do not move in backward
        self._refresh_grads()
        for w in self.grad_expect.values():
            self.grad_of[id(w[1])] = self.leaf_ref(w[0])

    # ------------------------------------------------------------ the end
    def finish(self, outputs):
        self._recheck_versions()
        self._check_grads()
        self.outputs = self._encode_output(outputs)
        if not self.backwards and self._needs_graph(outputs):
            self.region_out = self._region_output()

    def _region_output(self):
        """A forward whose outputs need a graph (their backward runs outside, ``region.py``): the ops that
        made those outputs, in output order; refused where a region cannot replay it."""
        why = "the function returns a tensor that requires grad but runs no backward (it runs outside)"
        if self.forward_effects:
            self.refuse(f"{why}, and {self.forward_effects[0]}, which a replayed forward would skip; compile the "
                        "whole training step, or compile the model inside DDP: DDP(dg.compile(model))")
            return None
        if any(kind == "nograd" for kind, _ in self.entries):
            self.refuse(f"{why}, and it sets a .grad to None, which a replayed forward cannot order with that "
                        "backward; compile the whole training step (forward, loss.backward(), optimizer.step())")
            return None
        outs = []

        def walk(e):
            if e[0] == "wrap" and e[1][0] == "op" and getattr(self.ops[e[1][1]].node, "next", None) is not None:
                outs.append(e[1][1])
            elif e[0] in ("tuple", "list"):
                for x in e[1]:
                    walk(x)
            elif e[0] == "dict":
                for _, x in e[1]:
                    walk(x)
        walk(self.outputs)
        return outs or None   # (none: what needs a graph is a returned parameter itself, passed as it is)

    def _needs_graph(self, v):
        if isinstance(v, Tensor):
            return v.requires_grad and id(v) not in self.arg_of
        if isinstance(v, (tuple, list)):
            return any(self._needs_graph(x) for x in v)
        if isinstance(v, dict):
            return any(self._needs_graph(x) for x in v.values())
        return False

    def _encode_output(self, v):
        if isinstance(v, Tensor):
            if id(v) in self.grad_of:      # a leaf's .grad as the backward left it
                return ("grad", self.grad_of[id(v)])
            i = self.arg_of.get(id(v))
            if i is not None:
                return ("argt", i)
            self._watch(v, expect_fresh=True)
            ref = self.slot_of.get(id(v.array))
            if ref is None or ref[0] == "ext":
                return ("tensor", self._ext(v)[1])
            return ("wrap", ref)
        if isinstance(v, (tuple, list)):
            return ("list" if isinstance(v, list) else "tuple", [self._encode_output(x) for x in v])
        if isinstance(v, dict):
            return ("dict", [(k, self._encode_output(x)) for k, x in v.items()])
        if is_array(v):
            self.refuse("the function returns a raw array; return a tensor")
        # A value read from a tensor (loss.item()) is returned as it was read: every read is
        # a guard, so a replay whose reads differ from the capture's runs eagerly instead.
        return ("const", v)
