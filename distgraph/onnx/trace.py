"""Recording one forward run as a list of ops, the input of ``dg.onnx.export``.

Every differentiable op goes through ``Function.apply``; while a ``Tracer`` is active on this
thread, a wrapper around ``apply`` hands it each op with its inputs and output after the op
has run, in grad mode or not.  Tensors are matched to the values of the graph by the identity
of their array (``t.detach()`` and ``t.data`` share it, so they stay connected); any other
tensor an op reads is a *constant* of the trace, copied as it was when the op read it.

Modules whose forward has a single ONNX op (``nn.LSTM``) are traced as one call: the ops
inside them are not recorded, the call is, with its arguments and outputs.

Why a wrapper around ``apply`` and not a hook of the engine: the autograd graph keeps neither
the ops that need no gradient nor their constant inputs (``x - running_mean`` with a buffer),
so it cannot be walked back into a complete graph.  The wrapper is installed only while some
thread traces, and forwards straight to the real ``apply`` on every other thread.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading

import numpy as np

from distgraph import backend
from distgraph.autograd.function import Function
from distgraph.autograd.tensor import Tensor
from distgraph.onnx.errors import TracingError

_local = threading.local()
_lock = threading.Lock()
_installed = {"count": 0}                 # exports tracing now, on any thread
_original_apply = Function.apply          # captured once: a thread inside the wrapper always finds it
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Val(int):
    """An op input that is a value of the graph: the value's index in ``Tracer.values``."""
    __slots__ = ()


@dataclasses.dataclass(frozen=True)
class Const:
    """A constant input of an op: a host copy of the array it read."""
    array: np.ndarray


@dataclasses.dataclass
class Value:
    """A tensor of the graph: a model input, a parameter or buffer, or an op's output."""
    kind: str            # "input" | "param" | "op"
    name: str            # the input name, the state_dict name, or "" for op outputs
    array: object        # the traced array (kept alive so that its id stays unique)


@dataclasses.dataclass
class Op:
    """One recorded op: a ``Function`` (``fn``) or an opaque module call (``module``)."""
    fn: object
    inputs: list         # per input: a Val, a Const, a Python scalar or None
    arrays: dict         # array attributes of ``fn`` a converter reads, resolved like inputs
    outputs: list        # Vals
    where: str           # module path and source line, for error messages
    module: object = None
    kwargs: dict = None  # module calls: keyword arguments, resolved like inputs

    @property
    def name(self) -> str:
        return type(self.module if self.module is not None else self.fn).__name__


def _host(a):
    return a if isinstance(a, np.ndarray) else np.asarray(backend.to_device(a, backend.CPU))


def _same_view(a, base) -> bool:
    """Whether ``a`` is a view of ``base`` with the same shape, strides and data (so the same values)."""
    if base is None or not _is_array(base) or a.shape != base.shape or a.dtype != base.dtype or a.strides != base.strides:
        return False
    ptr = (lambda x: x.__array_interface__["data"][0]) if isinstance(a, np.ndarray) else (lambda x: x.data.ptr)
    return type(a) is type(base) and ptr(a) == ptr(base)


def _is_array(a):
    return isinstance(a, np.ndarray) or hasattr(a, "__cuda_array_interface__")


class Tracer:
    """Collects the ops of one forward run (see the module docstring).

    Args:
        array_slots: per ``Function`` class, the names of array attributes that hold op inputs
            (``Where.cond``, ``EmbeddingLookup.idx``), resolved to graph values like inputs.
        opaque: module classes recorded as one call.
        rewrites: per ``Function`` class, ``fn(op, inputs, out) -> pseudo-op or None``: an op that
            reads an array computed outside any ``Function`` (``TakeAlong`` at sort's order) is
            recorded as the pseudo-op that computes it, when the rule recognises it; the arrays in
            the pseudo-op's ``extra_outputs`` (the sort indices) become further outputs.
    """

    def __init__(self, array_slots: dict, opaque: tuple = (), rewrites: dict = None):
        self.array_slots, self.opaque, self.rewrites = array_slots, tuple(opaque), dict(rewrites or {})
        self.values: list[Value] = []
        self.ops: list[Op] = []
        self._by_array = {}            # id(array) -> (value id, version counter, version)
        self._module_stack: list[str] = []
        self._opaque_depth = 0
        self._pending = []             # (module, args, kwargs) of opaque calls in progress

    # ------------------------------------------------------------ values
    def add_value(self, tensor: Tensor, kind: str, name: str = "") -> Val:
        vid = Val(len(self.values))
        self.values.append(Value(kind, name, tensor.array))
        self._by_array[id(tensor.array)] = (vid, tensor._version, tensor._version[0])
        return vid

    def ref(self, x):
        """What an op input is: a Val, a Const, or the Python object itself (scalars, None)."""
        if isinstance(x, Tensor):
            return self._ref_array(x.array)
        if _is_array(x):
            return self._ref_array(x)
        if isinstance(x, (tuple, list)):
            return type(x)(self.ref(v) for v in x)
        if isinstance(x, np.generic):
            return x.item()
        return x

    def _ref_array(self, a):
        entry = self._by_array.get(id(a))
        if entry is None and _same_view(a, getattr(a, "base", None)) and id(a.base) in self._by_array:
            entry = self._by_array[id(a.base)]   # a no-op view (``idx.reshape(-1)`` of a 1-D index): the same value
        if entry is None:
            return Const(_host(a).copy())
        vid, counter, version = entry
        if counter[0] == version:
            return vid
        # Written in place after it was recorded (``relu_``, ``x += 1`` under no_grad): the new
        # content is the output of the op that computed it, the latest value holding it.
        for j in range(len(self.values) - 1, -1, -1):
            v = self.values[j].array
            if v is not a and v.shape == a.shape and v.dtype == a.dtype and bool((v == a).all()):
                self._by_array[id(a)] = (Val(j), counter, counter[0])
                return Val(j)
        raise TracingError(
            f"ONNX export: a tensor of shape {tuple(a.shape)} was modified in place by an op that "
            f"distgraph does not trace ({self.where()}); expected out-of-place ops in forward(): use "
            f"e.g. `x = x + y` instead of `x += y`, or nn.ReLU(inplace=False)")

    # ------------------------------------------------------------ recording
    def where(self) -> str:
        path = ".".join(p for p in self._module_stack if p) or "the model's forward"
        frame = sys._getframe(1)
        while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
            frame = frame.f_back
        line = f", {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}" if frame else ""
        return f"module '{path}'{line}" if path != "the model's forward" else path + line

    def record(self, fn, inputs, out):
        if self._opaque_depth:
            return
        rewrite = self.rewrites.get(type(fn))
        fn = (rewrite(fn, inputs, out) or fn) if rewrite is not None else fn
        refs = [self.ref(x) for x in inputs]
        arrays = {s: self.ref(getattr(fn, s, None)) for s in self.array_slots.get(type(fn), ())}
        vids = [self.add_value(out, "op")] + [self.add_array(a) for a in getattr(fn, "extra_outputs", ())]
        self.ops.append(Op(fn, refs, arrays, vids, self.where()))

    def add_array(self, array) -> Val:
        """An op output that no ``Tensor`` holds yet (``sort``'s indices, wrapped after the op ran)."""
        vid = Val(len(self.values))
        self.values.append(Value("op", "", array))
        self._by_array[id(array)] = (vid, [0], 0)
        return vid

    def enter_module(self, name, module, args, kwargs):
        self._module_stack.append(name)
        if isinstance(module, self.opaque):
            if not self._opaque_depth:
                self._pending.append((module, self.ref(args), self.ref(kwargs), self.where()))
            self._opaque_depth += 1

    def exit_module(self, module, output):
        if isinstance(module, self.opaque):
            self._opaque_depth -= 1
            if not self._opaque_depth and output is not None:
                mod, args, kwargs, where = self._pending.pop()
                outs = [self.add_value(t, "op") for t in flatten(output)]
                self.ops.append(Op(None, list(args), {}, outs, where, module=mod, kwargs=kwargs))
        self._module_stack.pop()


def flatten(obj) -> list:
    """The tensors of a (nested) tuple/list/dict output, in order."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in flatten(o)]
    if isinstance(obj, dict):
        return [t for k in obj for t in flatten(obj[k])]
    return []


# ---------------------------------------------------------------- the apply wrapper
def _traced_apply(self, *inputs):
    out = _original_apply(self, *inputs)
    tracer = getattr(_local, "tracer", None)
    if tracer is not None:
        tracer.record(self, inputs, out)
    return out


class tracing:
    """``with tracing(tracer, model):`` records the ops this thread runs into ``tracer``."""

    def __init__(self, tracer: Tracer, model):
        self.tracer, self.model, self.handles = tracer, model, []

    def __enter__(self):
        if getattr(_local, "tracer", None) is not None:
            raise TracingError("ONNX export: export() was called while another export traces on this thread")
        with _lock:
            if _installed["count"] == 0:
                Function.apply = _traced_apply
            _installed["count"] += 1
        tr = self.tracer
        for name, m in self.model.named_modules():
            self.handles.append(m.register_forward_pre_hook(
                lambda mod, args, kwargs, name=name: tr.enter_module(name, mod, args, kwargs), with_kwargs=True))
            self.handles.append(m.register_forward_hook(
                lambda mod, args, output: tr.exit_module(mod, output), always_call=True))
        _local.tracer = tr
        return tr

    def __exit__(self, *exc):
        _local.tracer = None
        for h in self.handles:
            h.remove()
        with _lock:
            _installed["count"] -= 1
            if _installed["count"] == 0:
                Function.apply = _original_apply
