"""``dg.compile``: capture a function on its first calls, then replay it.

Per key (``guards.key``: argument shapes/dtypes/devices/requires_grad, grad mode, autocast,
the modules' training flags and parameter identities) a compiled function goes through:

1. **capture** (call 1): the function runs eagerly while a tracer records it;
2. **check** (call 2): it runs eagerly and is recorded again; the two records must agree
   (``tape.compare``), which tells parameters (the same object each call) from tensors made
   anew each call, and finds values that change from call to call where no op made them;
3. **replay** (call 3 on): the generated tape runs; its guards (host reads) are re-checked
   before any side effect.

Anything the tape cannot replay faithfully — a refusal during capture, two records that
disagree, a guard that fails — makes that key run eagerly from then on, with one warning
(``CaptureWarning``) saying why and what to change.  Results are always eager's.
"""
from __future__ import annotations

import functools
import types
import warnings
import weakref

from distgraph.autograd.function import _tracing
from distgraph.graph import guards
from distgraph.graph.capture import Capture
from distgraph.graph.intercept import intercepting
from distgraph.graph.region import NotRegion, Region
from distgraph.graph.tape import GuardFailed, Tape, compare
from distgraph.nn.module import Module
from distgraph.utils.logging import get_logger

log = get_logger("distgraph.graph")

MAX_CHECKS = 4  # captures to wait for two calls with different input values (see Verdict.unproven)


class _Config(types.SimpleNamespace):
    """``torch._dynamo.config``'s knobs a training script sets.  ``cache_size_limit`` (an alias of
    ``recompile_limit``, as in PyTorch) is the default number of tapes per function; the others are
    accepted and mean nothing here.  An unknown name raises, as PyTorch's config does."""

    def __setattr__(self, name, value):
        if name == "recompile_limit":
            name = "cache_size_limit"
        if name not in self.__dict__:
            raise AttributeError(f"distgraph._dynamo.config.{name} does not exist; known: "
                                 f"{', '.join(sorted(self.__dict__))}, recompile_limit")
        super().__setattr__(name, value)

    def __getattr__(self, name):
        if name == "recompile_limit":
            return self.cache_size_limit
        raise AttributeError(f"distgraph._dynamo.config.{name} does not exist")


config = _Config(cache_size_limit=8, suppress_errors=False, verbose=False, automatic_dynamic_shapes=True,
                 optimize_ddp=True, capture_scalar_outputs=False)

_everyone = weakref.WeakSet()   # every CompiledFunction, for reset()


class CaptureWarning(UserWarning):
    """A compiled function (or one of its keys) runs eagerly; the message says why."""


class CaptureError(RuntimeError):
    """``compile(..., fullgraph=True)``: the function cannot be replayed as one tape."""


class _Entry:
    __slots__ = ("prev", "tape", "eager", "checks", "replays")

    def __init__(self):
        self.prev, self.tape, self.eager, self.checks, self.replays = None, None, None, 0, 0


class CompiledFunction:
    """A function that replays its recorded tape for keys it has seen twice (see the module docstring).

    Attributes:
        fn: the wrapped function (or module).
        stats: counts of ``captures``, ``replays`` and ``eager`` calls.
    """

    def __init__(self, fn, *, fullgraph=False, cache_size=None, fuse=True, cuda_graphs=False):
        self.fn = fn
        self.fuse, self.cuda_graphs = fuse, cuda_graphs
        self.fullgraph = fullgraph
        self.cache_size = cache_size
        self._cache = {}
        self._modules = None
        self._warned = set()
        self.stats = {"captures": 0, "replays": 0, "eager": 0}
        functools.update_wrapper(self, fn, updated=())
        _everyone.add(self)

    def reset(self):
        """Forget every tape and eager verdict (the next calls capture anew), as ``compiler.reset()``."""
        self._cache.clear()
        self._warned.clear()
        self._modules = None

    def __getattr__(self, name):  # the wrapped function's attributes (a bound method's __self__, ...)
        if name == "fn":
            raise AttributeError(name)
        return getattr(self.fn, name)

    # ------------------------------------------------------------ calling
    def __call__(self, *args, **kwargs):
        if _tracing.tracer is not None:   # inside another capture: let the outer tracer see the ops
            return self.fn(*args, **kwargs)
        if self._modules is None:
            self._modules = guards.find_modules(self.fn, (), {})
        modules = self._modules
        if any(_is_module(a) for a in list(args) + list(kwargs.values())):
            modules = modules + [m for m in guards.find_modules(None, args, kwargs) if m not in modules]
        tensors = []
        key = guards.key(args, kwargs, modules, tensors)
        entry = self._cache.get(key)
        if entry is None:
            limit = config.cache_size_limit if self.cache_size is None else self.cache_size
            if len(self._cache) >= limit:
                self._give_up("cache", f"more than {limit} different argument shapes/flags: the new ones run "
                              "eagerly (raise cache_size, or pad inputs to a few shapes)")
                self.stats["eager"] += 1
                return self.fn(*args, **kwargs)
            entry = self._cache[key] = _Entry()
        if entry.tape is not None and not entry.tape.busy():
            try:
                out = entry.tape.run(tensors)
                self.stats["replays"] += 1
                entry.replays += 1
                return out
            except GuardFailed as e:
                entry.tape = None
                entry.eager = (f"a guard failed on replay ({e}): the function's Python code depends on "
                               "tensor values; it runs eagerly from now on")
                self._give_up(entry.eager, entry.eager)
        if entry.eager is not None or entry.tape is not None:   # (a busy region: this call runs eagerly)
            self.stats["eager"] += 1
            return self.fn(*args, **kwargs)
        return self._capture(entry, args, kwargs, tensors, modules)

    def _capture(self, entry, args, kwargs, tensors, modules):
        cap = Capture(tensors)
        cap.watch_module_state(guards.module_tensors(modules))
        for m in modules:
            d = m.__dict__
            if d["_forward_pre_hooks"] or d["_forward_hooks"] or d["_backward_hooks"] or d["_backward_pre_hooks"]:
                cap.refuse(f"module {type(m).__name__} has forward/backward hooks, which a replay would not call")
        self.stats["captures"] += 1
        with intercepting():
            _tracing.tracer = cap
            try:
                out = self.fn(*args, **kwargs)
                cap.finish(out)
            finally:
                _tracing.tracer = None
        if cap.refusal is not None:
            entry.eager = cap.refusal
            self._give_up(cap.refusal, cap.refusal)
            return out
        if entry.prev is None:
            entry.prev = cap
            return out
        verdict = compare(entry.prev, cap)
        if verdict.refusal is not None:
            entry.eager = verdict.refusal
            self._give_up(verdict.refusal, verdict.refusal)
        elif (verdict.unproven or verdict.retry) and entry.checks < MAX_CHECKS:
            entry.checks += 1      # wait for a call with other input values (see Verdict.unproven)
            entry.prev = cap
        elif verdict.retry:
            entry.eager = "the leaves' .grad (None or not) differs from call to call before backward"
            self._give_up(entry.eager, entry.eager)
        elif verdict.unproven:
            entry.eager = ("tensors made inside the function by raw array code kept their values, but every "
                           "call so far had the same input values, so they may depend on the inputs")
            self._give_up(entry.eager, entry.eager)
        elif cap.region_out is not None:   # a forward whose backward runs outside (region.py)
            try:
                entry.tape = Region(Tape(cap, verdict, op_instances=True), cap, verdict, cap.region_out)
            except NotRegion as e:
                entry.eager = ("the function returns a tensor that requires grad but runs no backward (it runs "
                               f"outside), and {e}")
                self._give_up(entry.eager, entry.eager)
            entry.prev = None
        else:
            entry.tape = Tape(cap, verdict, fuse=self.fuse, cuda_graphs=self.cuda_graphs)
            entry.prev = None
            log.info("compile: %s captured as a tape of %d ops", getattr(self.fn, "__qualname__", self.fn),
                     entry.tape.n_ops)
        return out

    def _give_up(self, key, reason):
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        if self.fullgraph:
            raise CaptureError(f"compile({name}, fullgraph=True): {reason}")
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"compile: {name} runs eagerly (same results, no replay): {reason}", CaptureWarning,
                          stacklevel=4)

    # ------------------------------------------------------------ inspecting
    def tapes(self):
        """The replayable tapes, one per key (``tape.source`` is the generated code)."""
        return [e.tape for e in self._cache.values() if e.tape is not None]

    def eager_reasons(self):
        """Why each key that runs eagerly does."""
        return [e.eager for e in self._cache.values() if e.eager is not None]


def _is_module(x):
    return isinstance(x, Module)


class OptimizedModule(Module):
    """What ``compile(module)`` returns, as PyTorch's: a ``Module`` whose forward is the compiled
    call of the original, kept as the child ``_orig_mod`` (so ``state_dict()`` keys start with
    ``_orig_mod.``, as PyTorch's do; save ``model._orig_mod.state_dict()`` for plain keys).  Attributes
    it does not have itself are read from and written to the original (``model.fc1``,
    ``model.foo = 3``); ``stats``, ``tapes()`` and ``eager_reasons()`` are the compiled call's."""

    def __init__(self, mod, compiled):
        super().__init__()
        self._modules["_orig_mod"] = mod
        object.__setattr__(self, "_compiled", compiled)

    def forward(self, *args, **kwargs):
        return self._compiled(*args, **kwargs)

    def __getattr__(self, name):
        modules = self.__dict__.get("_modules")
        if modules is None or "_orig_mod" not in modules:
            raise AttributeError(name)
        if name == "_orig_mod":
            return modules["_orig_mod"]
        return getattr(modules["_orig_mod"], name)

    def __setattr__(self, name, value):
        if name in self.__dict__ or hasattr(type(self), name):
            super().__setattr__(name, value)
        else:
            setattr(self._orig_mod, name, value)

    def __delattr__(self, name):
        if name in self.__dict__:
            super().__delattr__(name)
        else:
            delattr(self._orig_mod, name)

    def __len__(self):
        return len(self._orig_mod)

    @property
    def stats(self):
        return self._compiled.stats

    def tapes(self):
        return self._compiled.tapes()

    def eager_reasons(self):
        return self._compiled.eager_reasons()

    def reset(self):
        self._compiled.reset()


def reset():
    """Forget every compiled function's tapes (``torch.compiler.reset()``): the next calls capture anew."""
    for f in list(_everyone):
        f.reset()


def is_compiling() -> bool:
    """Whether the code runs inside a capture (``torch.compiler.is_compiling()``): a compiled function's
    first calls, whose ops are being recorded.  A replay runs no Python, so this is never seen True there."""
    return isinstance(_tracing.tracer, Capture)


def disable(fn=None, recursive=True, *, reason=None):
    """``torch.compiler.disable``: ``fn`` runs eagerly.  Where PyTorch breaks the graph around it, a
    capture that reaches ``fn`` gives up for that call's key (which then runs eagerly, with one
    ``CaptureWarning`` naming ``fn``): the results are the same, only that key is not replayed.
    ``recursive`` is accepted (nothing ``fn`` calls is replayed either way)."""
    if fn is None:
        return lambda f: disable(f, recursive, reason=reason)
    name = getattr(fn, "__qualname__", repr(fn))

    @functools.wraps(fn)
    def eager_only(*args, **kwargs):
        cap = _tracing.tracer
        if isinstance(cap, Capture):
            cap.refuse(f"it calls {name}, marked compiler.disable" + (f" ({reason})" if reason else ""))
        return fn(*args, **kwargs)
    return eager_only


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None, options=None,
            disable=False, cache_size=None):
    """Capture ``model`` (a function or module) and replay it as a static tape of array operations.

    PyTorch's ``torch.compile`` signature. The first call for a key records the ops (forward,
    ``loss.backward()``, ``optimizer.step()``), the second checks the record, later calls replay it
    without building the autograd graph. Usable as ``@dg.compile`` and ``@dg.compile(...)``.

    Args:
        model: the function or module.
        fullgraph: raise ``CaptureError`` instead of falling back to eager.
        mode: ``"reduce-overhead"`` or ``"max-autotune"`` (as in PyTorch, the modes that use CUDA graphs):
            on CuPy arrays, runs of fused elementwise ops are launched as CUDA graphs
            (``distgraph/graph/cudagraph.py``); ``None``, ``"default"`` and ``"max-autotune-no-cudagraphs"``
            do not.  Any other name raises ``RuntimeError``, as in PyTorch.
        options: ``{"fuse": False}`` turns off preallocated buffers and ``out=`` fusion of elementwise
            ops in the replay (on by default; see ``distgraph/graph/fuse.py``); ``{"triton.cudagraphs":
            True}`` turns CUDA graphs on as ``mode="reduce-overhead"`` does. Other keys are ignored.
            Giving both ``mode`` and ``options`` raises ``RuntimeError``, as in PyTorch.
        dynamic, backend: accepted for PyTorch compatibility; ignored (there is one backend).
        disable: return ``model`` unchanged.
        cache_size: tapes kept per function (one per argument shapes/flags key); default
            ``distgraph._dynamo.config.cache_size_limit`` (8, as PyTorch's).

    Returns:
        For a module, an ``OptimizedModule`` (a ``Module`` holding it as ``_orig_mod``, as PyTorch's);
        for a function, a ``CompiledFunction``; ``model`` itself when ``disable``.
    """
    if model is None:
        return lambda m: compile(m, fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=mode,
                                 options=options, disable=disable, cache_size=cache_size)
    if disable:
        return model
    if not callable(model):
        raise TypeError(f"compile: expected a function or a module, got {type(model).__name__}")
    if mode is not None and options is not None:
        raise RuntimeError("compile: either mode or options can be given, not both (as in torch.compile)")
    if mode not in _MODES:
        raise RuntimeError(f"compile: unrecognized mode={mode!r}; expected one of "
                           f"{', '.join(repr(m) for m in _MODES if m is not None)} (or None)")
    options = options or {}
    fuse = bool(options.get("fuse", True))
    cuda_graphs = bool(options.get("triton.cudagraphs", _MODES[mode]))
    compiled = CompiledFunction(model, fullgraph=fullgraph, cache_size=cache_size, fuse=fuse, cuda_graphs=cuda_graphs)
    return OptimizedModule(model, compiled) if _is_module(model) else compiled


# torch.compile's modes -> whether they launch CUDA graphs
_MODES = {None: False, "default": False, "lite": False, "reduce-overhead": True, "max-autotune": True,
          "max-autotune-no-cudagraphs": False}
