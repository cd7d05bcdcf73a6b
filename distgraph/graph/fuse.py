"""Preallocated buffers and ``out=`` fusion for the generated tape.

The replay code is first built as a list of *instructions* (``Program``): ``Line`` is code
the tape emits as it is (a non-fused op's ``forward``/``backward``, a recorded call, a guard,
``_finish_leaf``), ``Step`` is one NumPy/CuPy ufunc call of a *fused* op.  A fused op is an
elementwise op whose forward and backward are plain ufuncs (``RULES`` below): its forward and
backward are inlined as the very ufunc calls eager makes (same operands, same order, so the same
bits), and each call may write into a buffer with ``out=``.

Where a Step writes (decided by ``plan``):

* **in place** into one of its operands, when that operand is a tape-owned array (a Step's
  result), every variable that may alias it is dead after this Step, and the result has the
  operand's shape, dtype and strides (an elementwise chain ``x * a + b`` then runs in one array);
* into **its own buffer**, allocated once per tape and reused on every replay, when nothing that
  may alias it outlives the replay;
* into a **fresh array** (no ``out=``) when something that may alias it escapes: it is returned,
  passed to a recorded call (``optimizer.step()``), handed to ``_finish_leaf`` (it may become a
  ``.grad``), or it is 0-d.

Aliasing is tracked conservatively: a non-fused op's output may alias its inputs when the capture
saw it share memory with them, or when the op is a view op; a non-fused backward's gradients
may alias its incoming gradient (and its saved arrays when the capture saw them shared).

The first replay runs the tape with every Step allocating fresh (exactly eager's computation) and
keeps the arrays; the buffers are those arrays (so shapes, dtypes and memory layouts are eager's),
and the code for later replays is generated from them.
"""
from __future__ import annotations

import re

import numpy as np

from distgraph.autograd.function import unbroadcast
from distgraph.autograd.ops import activation, elementwise

INF = float("inf")


class Operand:
    """A value a Step reads: its code, and the variable it is (None for constants and foreign values)."""
    __slots__ = ("code", "var")

    def __init__(self, code, var=None):
        self.code, self.var = code, var


class Step:
    __slots__ = ("var", "fn", "args", "fix0", "indent")

    def __init__(self, var, fn, args, fix0, indent):
        self.var, self.fn, self.args, self.fix0, self.indent = var, fn, args, fix0, indent

    @property
    def reads(self):
        return [a.var for a in self.args if a.var is not None]


class Line:
    """Code emitted as it is. ``reads``: variables it uses; ``escapes``: variables whose arrays it hands to
    something that may keep them; ``define``: the variable it binds, which may alias ``alias``;
    ``copyable``: escaping variables (array names in ``text``) that may be handed over as copies."""
    __slots__ = ("text", "indent", "reads", "escapes", "define", "alias", "copyable")

    def __init__(self, text, indent, reads=(), escapes=(), define=None, alias=(), copyable=()):
        self.text, self.indent = text, indent
        self.reads, self.escapes, self.define, self.alias = list(reads), list(escapes), define, list(alias)
        self.copyable = list(copyable)


class Program:
    def __init__(self, ns):
        self.ns = ns
        self.instrs = []
        self.n_tmp = 0

    def line(self, text, indent=1, **kw):
        self.instrs.append(Line(text, indent, **kw))

    def ufunc(self, xp, name, *args, var=None, fix0=False, indent=1):
        """Append a Step calling ``xp.<name>`` on ``args`` (Operands or Python numbers); returns its Operand."""
        fn = f"u_{'np' if xp is np else 'cp'}_{name}"
        self.ns.setdefault(fn, getattr(xp, name))
        if var is None:
            var = f"t{self.n_tmp}"
            self.n_tmp += 1
        ops = [a if isinstance(a, Operand) else Operand(repr(a)) for a in args]
        self.instrs.append(Step(var, fn, ops, fix0, indent))
        return Operand(var, var)

    def unbroadcast(self, g, shape, indent):
        """``unbroadcast(g, shape)``: ``g`` itself when the shapes agree (known from the capture)."""
        if shape is None:
            return None
        self.ns["_unbroadcast"] = unbroadcast
        var = f"t{self.n_tmp}"
        self.n_tmp += 1
        self.line(f"{var} = _unbroadcast({g.code}, {shape!r})", indent, reads=[g.var] if g.var else [],
                  define=var, alias=[g.var] if g.var else [])
        return Operand(var, var)


# ------------------------------------------------------------------ the fused ops
# forward(p, xp, x[, y]) and backward(p, xp, gy, x, y, out, nig, ub) read like the op classes in
# autograd/ops/elementwise.py and activation.py: the same ufuncs on the same operands, in the same order.
def _f_binary(name):
    return lambda p, xp, x, y, **kw: p.ufunc(xp, name, x, y, **kw)


def _f_unary(name):
    return lambda p, xp, x, **kw: p.ufunc(xp, name, x, **kw)


def _b_add(p, xp, gy, x, y, out, nig, ub, ind):
    return [ub(gy, 0) if nig[0] else None, ub(gy, 1) if nig[1] else None]


def _b_sub(p, xp, gy, x, y, out, nig, ub, ind):
    return [ub(gy, 0) if nig[0] else None, ub(p.ufunc(xp, "negative", gy, indent=ind), 1) if nig[1] else None]


def _b_mul(p, xp, gy, x, y, out, nig, ub, ind):
    return [ub(p.ufunc(xp, "multiply", gy, y, indent=ind), 0) if nig[0] else None,
            ub(p.ufunc(xp, "multiply", gy, x, indent=ind), 1) if nig[1] else None]


def _b_div(p, xp, gy, x, y, out, nig, ub, ind):
    gx = p.ufunc(xp, "true_divide", gy, y, indent=ind)                     # gy / y
    g1 = None
    if nig[1]:                                                              # -gx * x / y
        g1 = p.ufunc(xp, "true_divide", p.ufunc(xp, "multiply", p.ufunc(xp, "negative", gx, indent=ind), x,
                                                indent=ind), y, indent=ind)
        g1 = ub(g1, 1)
    return [ub(gx, 0) if nig[0] else None, g1]


def _b_neg(p, xp, gy, x, y, out, nig, ub, ind):
    return [p.ufunc(xp, "negative", gy, indent=ind)]


def _b_exp(p, xp, gy, x, y, out, nig, ub, ind):
    return [p.ufunc(xp, "multiply", gy, out, indent=ind)]


def _b_log(p, xp, gy, x, y, out, nig, ub, ind):
    return [p.ufunc(xp, "true_divide", gy, x, indent=ind)]


def _b_tanh(p, xp, gy, x, y, out, nig, ub, ind):                           # gy * (1 - out * out)
    t = p.ufunc(xp, "subtract", 1, p.ufunc(xp, "multiply", out, out, indent=ind), indent=ind)
    return [p.ufunc(xp, "multiply", gy, t, indent=ind)]


def _f_sigmoid(p, xp, x, **kw):                                             # 0.5 * (tanh(0.5 * x) + 1)
    t = p.ufunc(xp, "tanh", p.ufunc(xp, "multiply", 0.5, x, indent=kw["indent"]), indent=kw["indent"])
    return p.ufunc(xp, "multiply", 0.5, p.ufunc(xp, "add", t, 1, indent=kw["indent"]), **kw)


def _b_sigmoid(p, xp, gy, x, y, out, nig, ub, ind):                        # gy * y * (1 - y)
    a = p.ufunc(xp, "multiply", gy, out, indent=ind)
    return [p.ufunc(xp, "multiply", a, p.ufunc(xp, "subtract", 1, out, indent=ind), indent=ind)]


def _f_relu(p, xp, x, **kw):                                                # maximum(x, 0)
    return p.ufunc(xp, "maximum", x, 0, **kw)


def _b_relu(p, xp, gy, x, y, out, nig, ub, ind):                           # gy * (out > 0)
    return [p.ufunc(xp, "multiply", gy, p.ufunc(xp, "greater", out, 0, indent=ind), indent=ind)]


RULES = {
    elementwise.Add: (_f_binary("add"), _b_add),
    elementwise.Sub: (_f_binary("subtract"), _b_sub),
    elementwise.Mul: (_f_binary("multiply"), _b_mul),
    elementwise.Div: (_f_binary("true_divide"), _b_div),
    elementwise.Neg: (_f_unary("negative"), _b_neg),
    elementwise.Exp: (_f_unary("exp"), _b_exp),
    elementwise.Log: (_f_unary("log"), _b_log),
    elementwise.Tanh: (_f_unary("tanh"), _b_tanh),
    elementwise.Sigmoid: (_f_sigmoid, _b_sigmoid),
    activation.Relu: (_f_relu, _b_relu),
}


# ------------------------------------------------------------------ planning
def _buffer_able(a):
    return a is not None and hasattr(a, "strides") and not isinstance(a, np.generic) and a.ndim > 0


def _same_layout(a, b):
    return type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype and a.strides == b.strides


def plan(instrs, arrays, copy_out=False):
    """Decide, for every Step, ``("inplace", var)``, ``("buffer", root)`` or ``("fresh",)``.

    ``arrays``: each Step variable's array from a replay that allocated every Step fresh.
    ``copy_out``: a Line's ``copyable`` escapes hand over a copy, so the storage they alias may still be
    a buffer (longer runs of buffered Steps, for CUDA graphs).
    Returns the plan, the set of variables whose arrays become buffers and ``{Line index: [variables
    to copy there]}``.
    """
    last = {}
    for i, ins in enumerate(instrs):
        for v in ins.reads:
            last[v] = i
        for v in getattr(ins, "escapes", ()):
            last[v] = i if copy_out and v in ins.copyable else INF
    storage_vars = {}   # root var -> every var that may alias that storage
    alias = {}          # var -> roots it may alias
    owner = {}          # root -> the var that currently holds the storage's value
    out = {}
    for i, ins in enumerate(instrs):
        if isinstance(ins, Line):
            if ins.define is not None:
                roots = set().union(*(alias.get(v, ()) for v in ins.alias))
                alias[ins.define] = roots
                for r in roots:
                    storage_vars[r].append(ins.define)
            continue
        a = arrays.get(ins.var)
        target = None
        if _buffer_able(a):
            for op in ins.args:
                u = op.var
                if u is None or u not in alias or len(alias[u]) != 1:
                    continue
                (r,) = alias[u]
                if owner.get(r) == u and _same_layout(arrays.get(u), a) and \
                        all(last.get(v, -1) <= i for v in storage_vars[r]):
                    target = r
                    break
        if target is None:
            target = ins.var
            storage_vars[target] = []
            out[ins.var] = ("buffer", target) if _buffer_able(a) else ("fresh",)
        else:
            out[ins.var] = ("inplace", owner[target])
        owner[target] = ins.var
        alias[ins.var] = {target}
        storage_vars[target].append(ins.var)
    buffers = set()
    for root, vs in storage_vars.items():
        if out.get(root, ("",))[0] != "buffer":
            continue
        if any(last.get(v, -1) == INF for v in vs):
            out[root] = ("fresh",)        # something that may alias it outlives the replay
        else:
            buffers.add(root)
    copies = {}
    if copy_out:
        for i, ins in enumerate(instrs):
            want = [v for v in getattr(ins, "copyable", ()) if alias.get(v, set()) & buffers]
            if want:
                copies[i] = want
    return out, buffers, copies


def _last_uses(instrs):
    last, defined = {}, {}
    for i, ins in enumerate(instrs):
        for v in ins.reads:
            last[v] = i
        for v in getattr(ins, "escapes", ()):
            last[v] = INF
        d = ins.var if isinstance(ins, Step) else ins.define
        if d is not None:
            defined[d] = i
    dels = {}
    for v, i in defined.items():
        j = last.get(v, i)
        if j != INF:
            dels.setdefault(max(i, j), []).append(v)
    return dels


def _with_copies(text, names):
    for v in names:
        text = re.sub(rf"\b{v}\b", f"_copy({v})", text)
    return text


def source(instrs, header, mode, steps_plan=None, fuse=True, segments=None, copies=None):
    """The replay function's code. ``mode``: ``"first"`` (every Step fresh, arrays kept in ``_M``) or
    ``"steady"`` (Steps as planned; without ``fuse`` every Step is fresh).  ``segments``: ``{start: (end,
    name, inputs, binds)}``, runs of Steps replaced by one call of the ``cudagraph.Segment`` ``name``;
    ``copies``: ``{Line index: variables}`` handed over as ``_copy(v)`` there (``plan(copy_out=True)``)."""
    lines = [header]
    dels = _last_uses(instrs)
    segments = segments or {}
    skip_to, unbound = 0, set()       # unbound: variables of a segment that only its graph uses
    for i, ins in enumerate(instrs):
        pad = "    " * ins.indent
        if i < skip_to:
            pass
        elif i in segments:
            end, name, inputs, binds = segments[i]
            lines.append(f"{pad}{name}(({''.join(c + ', ' for c in inputs)}))")
            lines += [f"{pad}{var} = {buf}" for var, buf in binds]
            unbound = {s.var for s in instrs[i:end]} - {var for var, _ in binds}
            skip_to = end
        elif isinstance(ins, Line):
            text = _with_copies(ins.text, copies[i]) if copies and mode == "steady" and i in copies else ins.text
            lines += [pad + t for t in text.split("\n")]
        else:
            call = f"{ins.fn}({', '.join(a.code for a in ins.args)}"
            how = steps_plan[ins.var] if mode == "steady" and fuse else ("fresh",)
            if how[0] == "inplace":
                call += f", out={how[1]})"
            elif how[0] == "buffer":
                call += f", out=B_{ins.var})"
            else:
                call += ")"
                if ins.fix0:
                    call = f"_fix0({call})"
            lines.append(f"{pad}{ins.var} = {call}")
            if mode == "first":
                lines.append(f"{pad}_M[{ins.var!r}] = {ins.var}")
        for v in dels.get(i, ()):
            if v not in unbound:
                lines.append(f"{pad}del {v}")
    return "\n".join(lines) + "\n"
