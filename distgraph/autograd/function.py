"""The op base class: one small class per op, forward and backward side by side.

An op subclass implements ``forward(*arrays) -> array`` and
``backward(gy) -> tuple`` (one gradient, or ``None``, per input), both on raw
NumPy/CuPy arrays through ``xp = get_array_module(x)``.  ``Function.apply``
runs the forward and, when grad mode is on and an input requires grad, records
the op as a node of the graph.

Class attributes an op may set:

* ``saves``: indices of the inputs whose arrays ``backward`` reads.  Their
  version counters are checked at backward time, so an in-place change after
  the forward raises instead of giving a wrong gradient.
* ``saves_output``: ``backward`` reads the output array (e.g. ``Exp``).

Where an op keeps what it saves: ``__slots__``.  Every op class declares ``__slots__``
naming each attribute it sets on ``self``, both its constructor's arguments and what
``forward`` saves for ``backward`` (``self.y = y``).  After a backward that does not retain
the graph, ``Node._release`` deletes exactly those slots (``_saved_slots``), which frees the
saved arrays while the output tensor (and so the node) may live on.  An attribute kept
anywhere else would never be freed, so the rule is checked early: ``Node.__init_subclass__``
refuses, at class creation, an op class whose instances would have a ``__dict__`` (a class,
or a base, without ``__slots__``); with slots, an undeclared ``self.x = ...`` raises
``AttributeError`` on its first run; and ``tests/test_structure.py`` checks every op class's
``self.<name> =`` statically against its slots.

Import order: this module imports ``Tensor`` from ``tensor`` (``apply`` builds the output
tensors); ``tensor`` imports nothing of it.
"""
from __future__ import annotations

import itertools
import threading
import traceback

import numpy as np

from distgraph.autograd import grad_mode
from distgraph.autograd.hooks import RemovableHandle  # noqa: F401 - re-exported: importers use function.RemovableHandle
from distgraph.autograd.tensor import Tensor, _make

_next_seq = itertools.count().__next__


class _TraceState(threading.local):
    """This thread's graph tracer (``distgraph.graph`` capturing a function), or ``None``.

    The tracer watches op applications (``before``/``after`` below) and backward passes
    (``engine.run_backward``); it never changes what they compute.
    """
    tracer = None


_tracing = _TraceState()


class Node:
    """A vertex of the backward graph.

    ``next`` holds, per input, where that input's gradient goes: the producing
    node, the leaf ``Tensor`` itself (its ``.grad`` accumulates), or ``None``.
    ``seq`` is a creation counter: the engine runs ready nodes latest-first,
    so the order of backward is the same on every rank.
    """

    __slots__ = ("next", "seq", "needs_input_grad", "_versions", "_hooks", "_released", "_trace")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dictoffset__:   # its instances have a __dict__: what forward saves there is never freed
            missing = [k.__qualname__ for k in cls.__mro__[:-1] if "__slots__" not in k.__dict__]
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__}: an op class must declare __slots__ naming every "
                f"attribute it sets (what forward saves is freed after backward only from slots); "
                f"no __slots__ in {', '.join(missing)}")

    # ``backward_streaming(gy, hand)``: a node that hands some input gradients over while its backward
    # still runs (``hand(i, gx)``, then None at i in what it returns): a compiled region, graph/region.py
    backward_streaming = None

    def backward(self, gy):
        raise NotImplementedError

    def name(self) -> str:
        return type(self).__name__ + "Backward"

    def __repr__(self):
        return f"<{self.name()}>"

    def register_hook(self, fn):
        hooks = getattr(self, "_hooks", None)
        if hooks is None:
            hooks = self._hooks = []
        hooks.append(fn)
        return RemovableHandle(hooks, fn)

    def link(self, next_):
        """Put a node built outside ``Function.apply`` into the graph (a checkpointed segment, a module's
        backward hook): ``next_`` as ``Node.next``, a fresh ``seq``, nothing saved to version-check."""
        self.next = list(next_)
        self.needs_input_grad = [n is not None for n in self.next]
        self.seq = _next_seq()
        self._released = False
        self._versions = []

    def _check_versions(self):
        for counter, expected in self._versions:
            if counter[0] != expected:
                raise RuntimeError(
                    f"{self.name()}: a tensor saved for backward was modified in place "
                    f"(version {counter[0]}, expected {expected}); use an out-of-place op "
                    "(e.g. `x = x + 1` instead of `x += 1`) or clone the tensor before changing it")

    def _release(self):
        """Drop saved arrays after backward when the graph is not retained."""
        for slot in _saved_slots(type(self)):
            try:
                delattr(self, slot)
            except AttributeError:
                pass
        self._released = True


_SAVED_SLOTS: dict = {}


def _saved_slots(cls):
    """The slots an op class adds to ``Node`` (what it saved), computed once per class."""
    slots = _SAVED_SLOTS.get(cls)
    if slots is None:
        declared = (k.__dict__.get("__slots__", ()) for k in cls.__mro__)
        slots = tuple(s for d in declared for s in ((d,) if isinstance(d, str) else d)
                      if s not in Node.__slots__ and s != "__weakref__")
        _SAVED_SLOTS[cls] = slots
    return slots


class Function(Node):
    """Base class of differentiable ops (see the module docstring)."""

    __slots__ = ()
    saves: tuple = ()
    saves_output: bool = False

    def forward(self, *arrays):
        raise NotImplementedError

    def apply(self, *inputs):
        """Run the op on ``inputs`` (Tensors, or raw scalars/arrays) and return a Tensor."""
        tracer = _tracing.tracer
        if tracer is not None:  # capturing (distgraph.graph): note the op's attributes before forward
            tracer.before_op(self)
        arrays = [x.array if isinstance(x, Tensor) else x for x in inputs]
        y = self.forward(*arrays)
        if isinstance(y, np.generic):  # NumPy turns 0-d results into scalars
            y = np.asarray(y)
        if tracer is not None:
            tracer.after_op(self, inputs, y)
        if not grad_mode.is_grad_enabled():
            return _make(y, None, False)
        nxt = []
        record = False
        for x in inputs:
            if isinstance(x, Tensor) and x.requires_grad:
                nxt.append(x.grad_fn or x)
                record = True
            else:
                nxt.append(None)
        if not record:
            return _make(y, None, False)
        self.next = nxt
        self.needs_input_grad = [n is not None for n in nxt]
        self.seq = _next_seq()
        self._released = False
        versions = []
        for i in self.saves:
            x = inputs[i]
            if isinstance(x, Tensor):
                versions.append((x._version, x._version[0]))
        out = _make(y, self, True)
        if self.saves_output:
            versions.append((out._version, 0))
        self._versions = versions
        if grad_mode._anomaly:
            self._trace = "".join(traceback.format_stack()[:-2])
        return out


def unbroadcast(g, shape):
    """Sum ``g`` down to ``shape``: the one rule for every broadcasting op."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if lead:
        g = g.reshape(shape)
    return g.reshape(shape) if g.shape != shape else g
