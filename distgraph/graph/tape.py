"""Tape: two captures compared, then one of them turned into straight-line replay code.

``compare(a, b)`` checks that two eager runs with the same key did the same thing (same ops
with the same attributes, wired the same way; the same reads with the same values; the same
calls; the same backward schedule) and sorts each tensor made outside the ops into

* *persistent*: the same object in both runs (a parameter, a buffer): read live on replay;
* *constant*: a new object each run with the same value both times (a causal mask built in
  forward): baked into the tape;
* anything else (a new value each run: raw-array code on the data, or random numbers drawn
  outside an op) makes the function not replayable.

``Tape(capture, verdict)`` generates one Python function that runs the recorded ops' forward
and backward rules on arrays in the recorded order, calls the leaves' gradient hooks
(``engine._finish_leaf``: DDP's hooks launch their bucket all-reduces there, in eager's order),
re-runs recorded calls (``optimizer.step()``), and checks every guard before the first side
effect.  The tape is built as a list of instructions (``fuse.Program``): elementwise ops of
``fuse.RULES`` are inlined as ufunc calls that write into reused buffers (``out=``, see fuse.py).
``Tape.source`` is the generated code, for reading.
"""
from __future__ import annotations

import math

import numpy as np

from distgraph import backend
from distgraph.autograd import engine, grad_mode
from distgraph.autograd.tensor import Tensor, wrap
from distgraph.graph import cudagraph as _cudagraph
from distgraph.graph import fuse as _fuse
from distgraph.graph.capture import is_array


class GuardFailed(Exception):
    """A replay read a tensor value different from the capture's; nothing had been changed yet."""


class ReplayError(RuntimeError):
    """A replay found a backward rule behaving unlike its capture, after gradients were written."""


# ------------------------------------------------------------------ comparing
def _same_value(x, y):
    if is_array(x) or is_array(y):
        if not (is_array(x) and is_array(y)) or type(x) is not type(y):
            return False
        if x.shape != y.shape or x.dtype != y.dtype:
            return False
        xp = backend.get_array_module(x)
        return bool(xp.array_equal(x, y, equal_nan=x.dtype.kind in "fc"))
    if type(x) is not type(y):
        return False
    if isinstance(x, float) and math.isnan(x):
        return math.isnan(y)
    try:
        return bool(x == y)
    except Exception:
        return x is y


def _same_enc(x, y):
    if type(x) is not type(y):
        return False
    if isinstance(x, tuple) and x and x[0] == "const" and len(x) == 2:
        return isinstance(y, tuple) and len(y) == 2 and y[0] == "const" and _same_value(x[1], y[1])
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(_same_enc(a, b) for a, b in zip(x, y))
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same_enc(x[k], y[k]) for k in x)
    return _same_value(x, y)


class Verdict:
    """The outcome of ``compare``: a refusal, or how to treat each outside tensor and raw array."""

    def __init__(self):
        self.refusal = None
        self.persistent_ext, self.persistent_raw = set(), set()
        self.unproven = False  # constants seen only with equal inputs: they might depend on them
        self.retry = False     # the leaves' .grad states differed: the next call may settle them


def compare(a, b) -> Verdict:
    v = Verdict()

    def no(reason):
        v.refusal = reason
        return v

    if len(a.entries) != len(b.entries) or a.entries != b.entries:
        return no("two calls with the same argument shapes ran different sequences of ops, reads and "
                  "calls: its Python code branches on something that is not an argument's shape (a tensor "
                  "value read without a guard, a Python counter, random choice)")
    for k, (x, y) in enumerate(zip(a.ops, b.ops)):
        if x.cls is not y.cls or x.shape != y.shape or x.dtype != y.dtype:
            return no(f"op #{k}: {x.cls.__name__}{x.shape} on one call, {y.cls.__name__}{y.shape} on the next")
        if not _same_enc(x.inputs, y.inputs) or not _same_enc(x.init, y.init):
            return no(f"op #{k} ({x.cls.__name__}): its inputs or attributes differ between two calls "
                      "(a Python number computed from data, or a different wiring)")
    for r, (x, y) in enumerate(zip(a.reads, b.reads)):
        if x[0] != y[0] or x[1] != y[1] or x[3] != y[3]:
            return no(f"host read #{r} differs between two calls")
        if not _same_value(x[2], y[2]):
            return no(f"a tensor value read on the host ({x[0]}) changes from call to call: "
                      "each replay would have to fall back; return the tensor instead and read it outside "
                      "the compiled function (e.g. loss.item() after the call)")
    for c, (x, y) in enumerate(zip(a.calls, b.calls)):
        if x[0] is not y[0] or not _same_enc(x[1:], y[1:]):
            return no(f"recorded call #{c} ({getattr(x[0], '__qualname__', x[0])}) differs between two calls")
    for x, y in zip(a.backwards, b.backwards):
        if not all(_same_enc(x[k], y[k]) for k in ("roots", "grads", "events", "check_pre")):
            return no("the backward schedule differs between two calls")
        if not _same_enc(x["pre"], y["pre"]):
            v.retry = True   # .grad None on the first call only (accumulating across calls): record again
    if not _same_enc(a.outputs, b.outputs):
        return no("the function's outputs differ in structure (or in a returned Python value) between two calls")
    if len(a.ext) != len(b.ext) or len(a.raws) != len(b.raws):
        return no("the function used a different number of tensors made outside its ops on two calls")
    args_equal = all(_same_value(x, y) for x, y in zip(a.arg_values, b.arg_values))
    leaves = {ev[1] for bw in b.backwards for ev in bw["events"] if ev[0] == "leaf"}
    leaves |= {r[1] for bw in b.backwards for r in bw["roots"] if r[0] == "leaf"}
    for n, (x, y) in enumerate(zip(a.ext, b.ext)):
        if x is y:
            v.persistent_ext.add(n)
            continue
        if ("ext", n) in leaves:
            return no(f"a tensor that requires grad is created inside the function (shape {tuple(y.shape)}) "
                      "and gets a gradient: pass it as an argument, or make it once outside")
        if not _same_value(x.array, y.array):
            return no(f"a tensor of shape {tuple(y.shape)} made outside the ops (raw array code on the data, "
                      "or random numbers drawn outside an op) changes from call to call; a replay cannot "
                      "recompute it. Compute it with tensor ops, or pass it as an argument")
        v.unproven |= args_equal
    for n, (x, y) in enumerate(zip(a.raws, b.raws)):
        if x is y:
            v.persistent_raw.add(n)
            continue
        if not _same_value(x, y):
            return no(f"an array of shape {tuple(y.shape)} held by an op was made outside the ops and "
                      "changes from call to call (an index computed from the data with raw array code); "
                      "a replay cannot recompute it")
        v.unproven |= args_equal
    return v


# ------------------------------------------------------------------ code generation
_LITERALS = (int, bool, str, type(None))


class _Gen:
    def __init__(self, cap, verdict):
        self.cap, self.verdict = cap, verdict
        self.ns = {"wrap": wrap, "GuardFailed": GuardFailed, "_same": _same_value,
                   "ReplayError": ReplayError, "_finish_leaf": engine._finish_leaf, "_Scope": _BackwardScope,
                   "_fix0": _fix0, "_ones_like": _ones_like}
        self.consts = {}

    def const(self, v):
        t = type(v)
        if t in _LITERALS or (t is float and math.isfinite(v)):
            return repr(v)
        key = id(v)
        name = self.consts.get(key)
        if name is None:
            name = self.consts[key] = f"c{len(self.consts)}"
            self.ns[name] = v
        return name

    def ref(self, r):
        kind = r[0]
        if kind == "arg":
            return f"a{r[1]}"
        if kind == "op":
            return f"v{r[1]}"
        if kind == "call":
            return f"w{r[1]}_{r[2]}"
        if kind == "ext":
            return f"E{r[1]}.array" if r[1] in self.verdict.persistent_ext else f"K{r[1]}"
        if kind == "raw":
            return f"R{r[1]}"
        raise AssertionError(r)

    def expr(self, e):
        kind = e[0]
        if kind in ("in", "array"):
            return self.ref(e[1])
        if kind == "const":
            return self.const(e[1])
        if kind == "tensor":
            return f"E{e[1]}"
        if kind == "argt":
            return f"A[{e[1]}]"
        if kind == "wrap":
            return f"wrap({self.ref(e[1])})"
        if kind == "grad":
            return grad_name(e[1])
        if kind == "tuple":
            inner = ", ".join(self.expr(x) for x in e[1])
            return f"({inner}{',' if len(e[1]) == 1 else ''})"
        if kind == "list":
            return "[" + ", ".join(self.expr(x) for x in e[1]) + "]"
        if kind == "dict":
            return "{" + ", ".join(f"{self.const(k)}: {self.expr(x)}" for k, x in e[1]) + "}"
        raise AssertionError(e)

    def dynamic(self, e):
        """Whether an encoded value must be rebuilt on each replay (it holds a replayed array)."""
        kind = e[0]
        if kind in ("in", "array"):
            r = e[1]
            return r[0] in ("arg", "op", "call") or (r[0] == "ext" and r[1] in self.verdict.persistent_ext)
        if kind in ("tensor", "argt", "wrap"):
            return True
        if kind in ("tuple", "list"):
            return any(self.dynamic(x) for x in e[1])
        if kind == "dict":
            return any(self.dynamic(x) for _, x in e[1])
        return False

    def static_value(self, e):
        """The value of an encoded attribute that needs no rebuilding (constants, raw arrays)."""
        kind = e[0]
        if kind == "const":
            return e[1]
        if kind in ("in", "array"):
            r = e[1]
            if r[0] == "raw":
                return self.cap.raws[r[1]]
            if r[0] == "ext":
                return self.cap.ext[r[1]].array
        if kind == "tuple":
            return tuple(self.static_value(x) for x in e[1])
        if kind == "list":
            return [self.static_value(x) for x in e[1]]
        if kind == "dict":
            return {k: self.static_value(x) for k, x in e[1]}
        raise AssertionError(e)

def leaf_expr(ref):
    return f"A[{ref[1]}]" if ref[0] == "argt" else f"E{ref[1]}"


def grad_name(ref):
    return "gr_" + "_".join(map(str, ref))


def _fix0(y):
    return np.asarray(y) if isinstance(y, np.generic) else y


def _copy(a):
    return a.copy(order="K")


def _ones_like(a):
    return backend.get_array_module(a).ones_like(a)


class _BackwardScope:
    """Grad mode off and DDP's end-of-backward callbacks collected, as ``run_backward`` does."""

    def __init__(self):
        self.scope = engine.callback_scope().__enter__()
        self.prev = grad_mode.is_grad_enabled()
        grad_mode._set(False)
        self.handed = set()

    def done(self):
        grad_mode._set(self.prev)
        self.scope.run()

    def close(self):
        grad_mode._set(self.prev)
        self.scope.__exit__(None, None, None)


def _clone(op):
    """A fresh instance of a recorded op holding only what its constructor set (the recorded
    node itself had its saved arrays released by the capture's backward)."""
    node = op.node
    new = op.cls.__new__(op.cls)
    nig = getattr(node, "needs_input_grad", None)
    if nig is not None:
        new.needs_input_grad = list(nig)
    new._released = False
    return new


class Tape:
    """A captured function, replayable on new arguments with the same key.

    ``fuse``: run the elementwise ops of ``fuse.RULES`` as inlined ufuncs writing into buffers reused
    across replays (``out=``) and in place along chains; off, they are inlined but allocate fresh arrays.
    """

    def __init__(self, cap, verdict, fuse=True, cuda_graphs=False, op_instances=False):
        # op_instances: every op runs through an op instance (no inlined ufuncs), whose saved arrays a
        # backward outside the tape reads (region.py)
        if op_instances:
            fuse = cuda_graphs = False
        self.cap, self.fuse, self.cuda_graphs, self.op_instances = cap, fuse, cuda_graphs, op_instances
        self.segments = []
        g = _Gen(cap, verdict)
        ns = g.ns
        ns["_M"] = {}
        for n, t in enumerate(cap.ext):
            if n in verdict.persistent_ext:
                ns[f"E{n}"] = t
            else:
                ns[f"K{n}"] = t.array
                ns[f"E{n}"] = t
        for n, a in enumerate(cap.raws):
            ns[f"R{n}"] = a
        self.n_ops = len(cap.ops)
        self.prog = p = _fuse.Program(ns)
        self.fused = self._fusable()
        self.held = {}      # op -> the variables its clone keeps for its backward
        for i in range(len(cap.args)):
            p.line(f"a{i} = A[{i}].array")
        effect = cap.first_effect if cap.first_effect is not None else len(cap.entries)
        self.guards = sum(1 for kind, _ in cap.entries[:effect] if kind == "read")
        for pos, (kind, idx) in enumerate(cap.entries):
            if kind == "op":
                self._op(g, idx)
            elif kind == "read":
                _, ref, value, _ = cap.reads[idx]
                ns[f"G{idx}"] = value
                p.line(f"if not _same({g.ref(ref)}, G{idx}):\n"
                       f"    raise GuardFailed('host read #{idx} ({cap.reads[idx][0]}) differs from the capture')",
                       reads=_vars_ref(ref))
            elif kind == "call":
                self._call(g, idx)
            elif kind == "backward":
                self._backward(g, idx)
            elif kind == "nograd":
                p.line(f"{leaf_expr(idx)}.grad = None")
        p.line(f"return {g.expr(cap.outputs)}", escapes=_vars_enc(cap.outputs), copyable=_vars_enc(cap.outputs))
        self.ns = ns
        self.source = self._compile("first")
        self._first = ns["replay"]

    def busy(self) -> bool:
        """Never: a tape's replays are independent (``region.Region.busy`` can be)."""
        return False

    def run(self, tensors):
        """The first replay allocates every array as eager does and keeps them; those become the
        buffers of the code that later replays run (``self.run`` is replaced by it)."""
        out = self._first(tensors)
        arrays = self.ns.pop("_M")
        graphs = self.fuse and self.cuda_graphs
        self.plan, buffers, self.copies = _fuse.plan(self.prog.instrs, arrays, copy_out=graphs)
        for v in buffers:
            # with copy_out a buffer's first array may have been handed over (returned, made a .grad)
            self.ns[f"B_{v}"] = backend.get_array_module(arrays[v]).empty_like(arrays[v]) if graphs else arrays[v]
        self.n_buffers = len(buffers) if self.fuse else 0
        self.n_inplace = sum(1 for h in self.plan.values() if h[0] == "inplace") if self.fuse else 0
        if graphs:
            self.ns["_copy"] = _copy
            self._segments(arrays, buffers)
        self.source = self._compile("steady")
        self.run = self.ns["replay"]
        return out

    def _compile(self, mode):
        segs = {start: (end, f"S{n}", inputs, binds)
                for n, (start, end, inputs, binds) in enumerate(self._segment_spans)} if mode == "steady" else None
        src = _fuse.source(self.prog.instrs, "def replay(A):", mode, getattr(self, "plan", None), self.fuse, segs,
                           getattr(self, "copies", None))
        exec(compile(src, f"<distgraph.graph tape of {self.n_ops} ops>", "exec"), self.ns)
        return src

    _segment_spans = ()

    def _segments(self, arrays, buffers):
        """Runs of fused Steps launched as CUDA graphs (``cudagraph.py``), where the arrays' module has them."""
        modules = {type(a).__module__.split(".")[0] for a in arrays.values() if hasattr(a, "shape")}
        graphs = _cudagraph.backend_for(modules)
        if graphs is None:
            return
        spans = _cudagraph.find(self.prog.instrs, self.plan, buffers, self.ns)
        for n, (start, end, inputs, _, lasting) in enumerate(spans):
            src = _cudagraph.function_source(f"seg{n}", self.prog.instrs, start, end, inputs, self.plan)
            exec(compile(src, f"<distgraph.graph segment {n} of a tape of {self.n_ops} ops>", "exec"), self.ns)
            seg = _cudagraph.Segment(self.ns[f"seg{n}"], graphs, lasting)
            self.ns[f"S{n}"] = seg
            self.segments.append(seg)
        self._segment_spans = [span[:4] for span in spans]

    # ------------------------------------------------------------ ops
    def _fusable(self):
        """Ops run as inlined ufuncs: their class is in fuse.RULES, their inputs are arguments, op outputs,
        outside tensors or numbers, and each backward through them gave gradients exactly where needed."""
        cap, out = self.cap, set()
        if self.op_instances:
            return out
        expected = {}
        for bw in cap.backwards:
            for ev in bw["events"]:
                if ev[0] == "node":
                    expected.setdefault(ev[1], set()).add(ev[2])
        for k, op in enumerate(cap.ops):
            if op.cls not in _fuse.RULES or op.xp.__name__ not in ("numpy", "cupy"):
                continue
            ok = all(e[0] == "const" and type(e[1]) in (int, float, bool) or
                     e[0] == "in" and e[1][0] in ("arg", "op", "ext", "raw") for e in op.inputs)
            nxt = getattr(op.node, "next", None)
            if k in expected:
                ok = ok and nxt is not None and expected[k] == {tuple(n is None for n in nxt)}
            if ok:
                out.add(k)
        return out

    def _operand(self, g, e):
        if e[0] == "const":
            return _fuse.Operand(g.const(e[1]))
        r = e[1]
        return _fuse.Operand(g.ref(r), f"v{r[1]}" if r[0] == "op" else None)

    def _op(self, g, k):
        op, p = self.cap.ops[k], self.prog
        if k in self.fused:
            fwd = _fuse.RULES[op.cls][0]
            fwd(p, op.xp, *(self._operand(g, e) for e in op.inputs), var=f"v{k}", fix0=op.ndim0, indent=1)
            return
        clone = _clone(op)
        g.ns[f"op{k}"] = clone
        g.ns[f"f{k}"] = clone.forward
        held = [v for e in op.inputs for v in _vars_enc(e)]
        for name, e in op.init.items():
            if g.dynamic(e):
                p.line(f"op{k}.{name} = {g.expr(e)}", reads=_vars_enc(e))
                held += _vars_enc(e)
            else:
                setattr(clone, name, g.static_value(e))
        args = ", ".join(g.expr(e) for e in op.inputs)
        call = f"f{k}({args})"
        view = op.aliases or op.cls.__module__.endswith("ops.shape") or op.cls.__name__ == "GetItem"
        p.line(f"v{k} = {'_fix0(' + call + ')' if op.ndim0 else call}", reads=held, define=f"v{k}",
               alias=held if view else ())
        self.held[k] = held + [f"v{k}"]

    def _call(self, g, c):
        func, args, kwargs, out = self.cap.calls[c]
        g.ns[f"call{c}"] = func
        self.prog.line(f"r{c} = call{c}(*{g.expr(args)}, **{g.expr(kwargs)})",
                       escapes=_vars_enc(args) + _vars_enc(kwargs))
        self._bind_result(g, out, f"r{c}")

    def _bind_result(self, g, e, path):
        if e[0] == "out" and e[1][0] == "call":
            self.prog.line(f"{g.ref(e[1])} = {path}.array")
        elif e[0] == "tuple":
            for i, x in enumerate(e[1]):
                self._bind_result(g, x, f"{path}[{i}]")

    # ------------------------------------------------------------ backward
    def _backward(self, g, b):
        bw = self.cap.backwards[b]
        cap, p = self.cap, self.prog
        ops = cap.ops
        cur = {}    # ("node", k) | ("leaf", ref) -> the gradient summed so far (an Operand)

        def xp_of_key(key):
            if key[0] == "node":
                return ops[key[1]].xp
            t = cap.args[key[1][1]] if key[1][0] == "argt" else cap.ext[key[1][1]]
            return backend.get_array_module(t.array)

        def accumulate(key, val):
            if key in cur:    # the engine's `buffers[k] + g`
                cur[key] = p.ufunc(xp_of_key(key), "add", cur[key], val, indent=2)
            else:
                cur[key] = val

        if bw["check_pre"]:   # the function's first side effect: a failed check changes nothing
            for ref, was_none in bw["pre"]:
                p.line(f"if ({leaf_expr(ref)}.grad is None) is not {was_none}:\n"
                       f"    raise GuardFailed('.grad of {leaf_expr(ref)} was {'' if was_none else 'not '}None "
                       "when the capture ran backward')")
        p.line("_s = _Scope()")
        p.line("try:")
        for n, (r, gr) in enumerate(zip(bw["roots"], bw["grads"])):
            key = ("node", r[1]) if r[0] == "node" else ("leaf", r[1])
            var = f"gr{b}_{n}"
            if gr[0] == "ones":
                root = f"v{r[1]}" if r[0] == "node" else f"{leaf_expr(r[1])}.array"
                p.line(f"{var} = _ones_like({root})", 2, reads=[root] if r[0] == "node" else [], define=var)
            else:
                p.line(f"{var} = {g.ref(gr[1])}", 2, reads=_vars_ref(gr[1]), define=var, alias=_vars_ref(gr[1]))
            accumulate(key, _fuse.Operand(var, var))
        for ev in bw["events"]:
            if ev[0] == "leaf":
                gl = cur.pop(("leaf", ev[1]))
                p.line(f"_finish_leaf({leaf_expr(ev[1])}, {gl.code}, None, _s.handed)", 2,
                       escapes=[gl.var] if gl.var else [], copyable=[gl.var] if gl.var and gl.code == gl.var else [])
                continue
            _, k, nones = ev
            node = ops[k].node
            gy = cur.pop(("node", k))
            if k in self.fused:
                gxs = self._fused_backward(g, k, gy)
            else:
                g.ns[f"b{k}"] = g.ns[f"op{k}"].backward
                held = self.held[k]
                reads = ([gy.var] if gy.var else []) + held
                alias = ([gy.var] if gy.var else []) + (held if k in cap.bw_alias else [])
                p.line(f"gx{k} = b{k}({gy.code})", 2, reads=reads, define=f"gx{k}", alias=alias)
                gxs = [_fuse.Operand(f"gx{k}[{i}]", f"gx{k}") for i in range(len(node.next))]
                for i, nxt in enumerate(node.next):
                    if nxt is not None and nones[i]:
                        p.line(f"if gx{k}[{i}] is not None:\n"
                               f"    raise ReplayError('op #{k} ({ops[k].cls.__name__}): its backward returned a "
                               f"gradient for input {i} where the capture got None; report this as a bug')", 2,
                               reads=[f"gx{k}"])
            for i, nxt in enumerate(node.next):
                if nxt is None or nones[i]:
                    continue
                key = ("leaf", cap.leaf_ref(nxt)) if isinstance(nxt, Tensor) else ("node", cap.node_index[id(nxt)])
                accumulate(key, gxs[i])
        p.line("_s.done()", 2)
        p.line("finally:")
        p.line("_s.close()", 2)
        for ref in dict.fromkeys(ev[1] for ev in bw["events"] if ev[0] == "leaf"):
            p.line(f"{grad_name(ref)} = {leaf_expr(ref)}.grad")

    def _fused_backward(self, g, k, gy):
        op, p = self.cap.ops[k], self.prog
        ins = [self._operand(g, e) for e in op.inputs] + [None]
        nig = [n is not None for n in op.node.next]

        def ub(x, i):
            return x if op.in_shapes[i] == op.shape else p.unbroadcast(x, op.in_shapes[i], 2)
        return _fuse.RULES[op.cls][1](p, op.xp, gy, ins[0], ins[1], _fuse.Operand(f"v{k}", f"v{k}"), nig, ub, 2)


def _vars_ref(r):
    return [f"v{r[1]}"] if r[0] == "op" else []


def _vars_enc(e):
    """The op-output variables an encoded value reads."""
    kind = e[0]
    if kind in ("in", "array", "wrap"):
        return _vars_ref(e[1])
    if kind in ("tuple", "list"):
        return [v for x in e[1] for v in _vars_enc(x)]
    if kind == "dict":
        return [v for _, x in e[1] for v in _vars_enc(x)]
    return []
