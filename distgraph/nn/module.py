"""``Module``: PyTorch's container of parameters, buffers and sub-modules.

Assigning a ``Parameter`` or a ``Module`` to an attribute registers it, in
assignment order; that order is what ``parameters()`` yields and what
``DistributedDataParallel`` relies on being the same on every rank.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.function import RemovableHandle
from distgraph.autograd.tensor import Parameter, Tensor, zero_grads
from distgraph.nn import hooks


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """``load_state_dict``'s result; prints as PyTorch's when every key matched."""
    __slots__ = ()

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _type_name(value):
    return type(value).__module__.split(".")[0] + "." + type(value).__name__


class Module:
    """Base class of every layer and model."""

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_pre_hooks", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward(); define it in the subclass")

    def __call__(self, *args, **kwargs):
        d = self.__dict__
        if "_compiled_call" in d:   # Module.compile()
            return d["_compiled_call"](*args, **kwargs)
        return self._call_eager(*args, **kwargs)

    def _call_eager(self, *args, **kwargs):
        d = self.__dict__
        if not (d["_forward_pre_hooks"] or d["_forward_hooks"] or d["_backward_hooks"]
                or d["_backward_pre_hooks"]):
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    def _call_with_hooks(self, args, kwargs):
        for hook, with_kwargs, _ in list(self._forward_pre_hooks.values()):
            r = hook(self, args, kwargs) if with_kwargs else hook(self, args)
            if r is not None:
                if with_kwargs:
                    args, kwargs = r
                else:
                    args = r if isinstance(r, tuple) else (r,)
        backward = (self._backward_hooks or self._backward_pre_hooks) and grad_mode.is_grad_enabled()
        if backward:
            call, args = hooks.hooked_inputs(self, args)
        try:
            out = self.forward(*args, **kwargs)
        except Exception:
            for hook, with_kwargs, always in list(self._forward_hooks.values()):
                if always:
                    hook(self, args, kwargs, None) if with_kwargs else hook(self, args, None)
            raise
        for hook, with_kwargs, _ in list(self._forward_hooks.values()):
            r = hook(self, args, kwargs, out) if with_kwargs else hook(self, args, out)
            if r is not None:
                out = r
        if backward:
            out = hooks.hooked_outputs(call, out)
        return out

    def compile(self, *args, **kwargs):
        """Compile this module's calls in place (PyTorch's ``Module.compile``): ``dg.compile`` of its call
        with the same arguments; the module stays itself (same class, same ``state_dict()`` keys)."""
        from distgraph.graph import compile as compile_
        object.__setattr__(self, "_compiled_call", compile_(self._call_eager, *args, **kwargs))

    # ------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        # PyTorch's rules: re-assigning a parameter or sub-module keeps its place in the registration
        # order (and so in state_dict() and DDP's buckets); a registered name only takes a value of its
        # kind (or None), anything else raises instead of silently unregistering it.
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() has run; "
                                 "call super().__init__() first in your module's __init__")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            d.pop(name, None)
            buffers.pop(name, None)
            modules.pop(name, None)
            self._non_persistent_buffers.discard(name)
            params[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{_type_name(value)}' as parameter '{name}' (nn.Parameter or None "
                                f"expected); wrap it: self.{name} = nn.Parameter(value), or write into it with "
                                f"self.{name}.data.copy_(value)")
            params[name] = None
        elif isinstance(value, Module):
            d.pop(name, None)
            params.pop(name, None)
            buffers.pop(name, None)
            self._non_persistent_buffers.discard(name)
            modules[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{_type_name(value)}' as child module '{name}' (nn.Module or None "
                                "expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{_type_name(value)}' as buffer '{name}' (Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter {name!r} (Parameter or None expected)")
        self.__dict__.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """A tensor that is state but not a parameter (e.g. running means); saved in
        ``state_dict`` unless ``persistent=False``."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign {type(tensor).__name__} as buffer {name!r} (Tensor or None expected)")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        mod = self
        for part in target.split(".") if target else []:
            if part not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no submodule {part!r} (looking up {target!r})")
            mod = mod._modules[part]
        return mod

    # ---------------------------------------------------------------- traversal
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        memo = set() if memo is None else memo
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store, prefix, recurse, remove_duplicate=True):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, v in getattr(m, store).items():
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield mprefix + ("." if mprefix else "") + name, v

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ------------------------------------------------------------------- modes
    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode): expected a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of every parameter: to ``None`` (default) or to zeros in place."""
        zero_grads(self.parameters(), set_to_none)

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def _apply_to_tensors(self, fn):
        """Replace every parameter's and buffer's array with ``fn(array)`` (keeping the objects)."""
        with grad_mode.no_grad():
            for m in self.modules():
                for store in (m._parameters, m._buffers):
                    for t in store.values():
                        if t is None:
                            continue
                        t.array = fn(t.array, isinstance(t, Parameter))
                        if t.grad is not None:
                            t.grad.array = fn(t.grad.array, True)
        return self

    def to(self, *args, device=None, dtype=None, non_blocking=False, memory_format=None):
        """Move parameters and buffers to ``device`` and/or cast floating ones to ``dtype`` (in place)."""
        for a in args:
            if isinstance(a, (str, backend.Device)) or isinstance(a, int):
                device = a
            else:
                dtype = a
        device = backend.Device(device) if device is not None else None
        dtype = backend.as_dtype(dtype) if dtype is not None else None
        if dtype is not None and not backend.is_floating(dtype):
            raise TypeError(f"Module.to only accepts floating dtypes, got {backend.dtype_name(dtype)}")

        def move(arr, is_param):
            if device is not None:
                arr = backend.to_device(arr, device)
            if dtype is not None and backend.is_floating(arr.dtype):
                arr = arr.astype(dtype, copy=False)
            return arr
        return self._apply_to_tensors(move)

    def cuda(self, device=None, non_blocking=False):
        return self.to(backend.Device("cuda" if device is None else device))

    def to_empty(self, *, device, recurse=True):
        """Parameters and buffers replaced by uninitialised ones of the same shapes on ``device`` (PyTorch's
        way to materialise a module built on the ``meta`` device; initialise them afterwards)."""
        dev = backend.Device(device)
        return self._apply_to_tensors(lambda arr, is_param: backend.to_device(
            backend.get_array_module(arr).empty_like(arr), dev))

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(dtype=backend.float32)

    def double(self):
        return self.to(dtype=backend.float64)

    def half(self):
        return self.to(dtype=backend.float16)

    # -------------------------------------------------------------- state dict
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Parameters and persistent buffers by dotted name (PyTorch's keys), detached."""
        out = OrderedDict() if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                out[prefix + name] = b if keep_vars else b.detach()
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(out, prefix + name + ".", keep_vars)
        return out

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Copy values into parameters and buffers in place.

        Raises:
            RuntimeError: naming missing and unexpected keys (when ``strict``) and any shape mismatch.
        """
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v.array if isinstance(v, Tensor) else v
            shape = tuple(getattr(arr, "shape", ()))
            if shape != t.shape:
                errors.append(f"size mismatch for {k}: copying a param with shape {shape} from the checkpoint, "
                              f"the shape in the current model is {t.shape}")
                continue
            with grad_mode.no_grad():
                t.copy_(arr)
        if strict and (missing or unexpected):
            if unexpected:   # (PyTorch's order: missing, unexpected, then size mismatches)
                errors.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing))
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------- hooks
    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        """``hook(module, args)`` (or ``hook(module, args, kwargs)``) before forward; may return
        replacement args (or ``(args, kwargs)``)."""
        return _DictHandle(self._forward_pre_hooks, hook, (hook, with_kwargs, False), prepend)

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False, always_call=False):
        """``hook(module, args, output)`` (or ``hook(module, args, kwargs, output)``) after forward;
        may return a replacement output. ``always_call``: also when forward raises (output None)."""
        return _DictHandle(self._forward_hooks, hook, (hook, with_kwargs, always_call), prepend)

    def register_full_backward_hook(self, hook, prepend=False):
        """``hook(module, grad_input, grad_output)`` once the gradients of the module's tensor inputs
        are computed; may return a replacement ``grad_input`` tuple (see ``nn/hooks.py``)."""
        return _DictHandle(self._backward_hooks, hook, hook, prepend)

    def register_full_backward_pre_hook(self, hook, prepend=False):
        """``hook(module, grad_output)`` before the module's gradients are computed; may return a
        replacement ``grad_output`` tuple."""
        return _DictHandle(self._backward_pre_hooks, hook, hook, prepend)

    register_backward_hook = register_full_backward_hook

    def get_parameter(self, target):
        mod, _, name = target.rpartition(".")
        owner = self.get_submodule(mod)
        if name not in owner._parameters:
            raise AttributeError(f"{type(owner).__name__} has no parameter {name!r} (looking up {target!r})")
        return owner._parameters[name]

    def get_buffer(self, target):
        mod, _, name = target.rpartition(".")
        owner = self.get_submodule(mod)
        if name not in owner._buffers:
            raise AttributeError(f"{type(owner).__name__} has no buffer {name!r} (looking up {target!r})")
        return owner._buffers[name]

    def share_memory(self):
        """Accepted (PyTorch moves tensors to shared memory for its multiprocessing; ranks here are
        MPI processes that share nothing)."""
        return self

    def _get_name(self):
        return type(self).__name__

    # -------------------------------------------------------------------- repr
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        if not lines:
            return f"{type(self).__name__}({extra})"
        inner = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {inner}\n)"

    def __dir__(self):
        return list(super().__dir__()) + list(self._parameters) + list(self._buffers) + list(self._modules)


class _DictHandle(RemovableHandle):
    """Hook handle for a dict of hooks keyed by a counter (ordered, removable)."""
    _next = 0

    def __init__(self, hooks: dict, fn, entry=None, prepend=False):
        _DictHandle._next += 1
        self._key = _DictHandle._next
        hooks[self._key] = fn if entry is None else entry
        if prepend:
            hooks.move_to_end(self._key, last=False)
        super().__init__(hooks, fn)

    __slots__ = ("_key",)

    def remove(self):
        self._hooks.pop(self._key, None)
