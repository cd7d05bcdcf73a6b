"""What a capture watches beyond ops and backward: host reads, whole Python calls, dropout.

While at least one thread captures, a few library entry points are wrapped:

* host reads of a tensor's value (``item``, ``tolist``, ``numpy``, ``bool(t)``, ``float(t)``,
  ``int(t)``, ``t.__index__``, ``np.asarray(t)``, ``f"{t}"``, ``repr(t)``) become *guards*;
* calls that change state outside the ops (``Optimizer.step``/``zero_grad``,
  ``LRScheduler.step``, ``Module.zero_grad``, ``nn.utils.clip_grad_norm_``/``clip_grad_value_``,
  ``GradScaler.unscale_``/``step``/``update``, BatchNorm's running-statistics update and batch count,
  DDP's buffer broadcast, ``dg.comm`` collectives)
  are recorded and *re-run as calls* on replay, so they read the learning rate, the step count
  and the gradients live, and every rank keeps issuing the same collectives;
* ``F.dropout`` in training draws its mask inside an op (``Dropout`` below) so that a replay
  draws fresh numbers from the same generator, exactly as eager does.

Why wrappers and not hooks: those entry points belong to ``tensor.py``, ``optim`` and ``nn``,
which have no hook for it yet (see docs/graph.md, "Hooks wanted").  Each wrapper looks at
*its own thread's* tracer and is a plain pass-through everywhere else; they are installed by
the first capture and removed by the last (``try/finally``).
"""
from __future__ import annotations

import contextlib
import functools
import threading

from distgraph import backend
from distgraph.autograd.function import Function, _tracing

_lock = threading.Lock()
_installed = 0
_saved = []  # (owner, name, original) restored when the last capture ends

READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__array__",
         "__format__", "__repr__")


class Dropout(Function):
    """``x * keep / (1 - p)``, ``keep ~ Bernoulli(1 - p)`` drawn in forward (so a replay redraws it).

    The mask is drawn with the very call eager ``F.dropout`` makes, from the same generator, so a
    capture and its replays give eager's numbers for the same seed."""
    __slots__ = ("p", "keep")

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        gen = backend.generator(backend.device_of(x))
        self.keep = keep = (gen.random(x.shape, dtype=backend.float32) >= self.p).astype(x.dtype) / (1 - self.p)
        return x * keep

    def backward(self, gy):
        return (gy * self.keep,)


def _read_wrapper(orig, kind):
    @functools.wraps(orig)
    def read(self, *args, **kwargs):
        tracer = _tracing.tracer
        if tracer is None or tracer.depth:
            return orig(self, *args, **kwargs)
        tracer.depth += 1          # a read made by another read (format -> item) counts once
        try:
            value = orig(self, *args, **kwargs)
        finally:
            tracer.depth -= 1
        tracer.record_read(self, kind, value)
        return value
    return read


def _call_wrapper(orig):
    @functools.wraps(orig)
    def call(*args, **kwargs):
        tracer = _tracing.tracer
        if tracer is None or tracer.depth or tracer.backward is not None:
            return orig(*args, **kwargs)
        # model.parameters() is a generator: replay needs the same tensors again
        args = tuple(list(a) if hasattr(a, "__next__") else a for a in args)
        c = tracer.record_call(orig, args, kwargs)
        tracer.depth += 1          # its own ops and reads run live on replay: not recorded
        try:
            result = orig(*args, **kwargs)
        finally:
            tracer.depth -= 1
        tracer.call_done(c, result)
        return result
    return call


def _dropout_wrapper(orig):
    @functools.wraps(orig)
    def dropout(input, p=0.5, training=True, inplace=False):
        from distgraph.autograd.tensor import Tensor
        tracer = _tracing.tracer
        if tracer is None or tracer.depth or not training or not 0 < p < 1 or not isinstance(input, Tensor):
            return orig(input, p, training, inplace)
        return Dropout(p).apply(input)
    return dropout


def _subclasses(cls):
    out, stack = [], [cls]
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(c.__subclasses__())
    return out


def _targets():
    """(owner, attribute name, wrapper maker) for everything a capture intercepts."""
    from distgraph import amp
    from distgraph.autograd.tensor import Tensor
    from distgraph.nn import functional, module, utils
    from distgraph.optim import lr_scheduler, optimizer
    out = [(Tensor, name, functools.partial(_read_wrapper, kind=name)) for name in READS]
    for base, names in ((optimizer.Optimizer, ("step", "zero_grad")), (lr_scheduler.LRScheduler, ("step",)),
                        (module.Module, ("zero_grad",))):
        for cls in _subclasses(base):
            out += [(cls, n, _call_wrapper) for n in names if n in cls.__dict__]
    plateau = getattr(__import__("distgraph.optim.lr_plateau", fromlist=["x"]), "ReduceLROnPlateau", None)
    if plateau is not None and "step" in plateau.__dict__ and plateau not in [o for o, _, _ in out]:
        out.append((plateau, "step", _call_wrapper))
    out += [(utils, n, _call_wrapper) for n in ("clip_grad_norm_", "clip_grad_value_")]
    out += [(amp.GradScaler, n, _call_wrapper) for n in ("unscale_", "step", "update")]
    out.append((functional, "dropout", _dropout_wrapper))
    # BatchNorm's running statistics and batch count, updated in place in training
    from distgraph.nn.layers import _BatchNorm
    out += [(functional, "_update_running_stats", _call_wrapper), (_BatchNorm, "_count_batch", _call_wrapper)]
    # DDP's per-forward buffer broadcast and collectives the function calls itself are
    # re-run on replay, so every rank keeps issuing the same collectives in the same order.
    from distgraph import comm
    from distgraph.nn.parallel.distributed import DistributedDataParallel
    out.append((DistributedDataParallel, "_sync_state", _call_wrapper))
    out += [(comm, n, _call_wrapper) for n in ("all_reduce", "broadcast", "all_gather", "reduce_scatter",
                                               "reduce", "barrier", "all_gather_object", "broadcast_object_list")
            if n in comm.__dict__]
    return out


def _install():
    for owner, name, make in _targets():
        orig = owner.__dict__[name]
        _saved.append((owner, name, orig))
        setattr(owner, name, make(orig))


def _uninstall():
    while _saved:
        owner, name, orig = _saved.pop()
        setattr(owner, name, orig)


@contextlib.contextmanager
def intercepting():
    """Install the wrappers for the duration of a capture (nested and concurrent captures share them)."""
    global _installed
    with _lock:
        if _installed == 0:
            try:
                _install()
            except Exception:
                _uninstall()
                raise
        _installed += 1
    try:
        yield
    finally:
        with _lock:
            _installed -= 1
            if _installed == 0:
                _uninstall()
