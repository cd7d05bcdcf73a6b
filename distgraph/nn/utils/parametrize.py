"""``nn.utils.parametrize``: a parameter computed from other tensors on every access.

After ``register_parametrization(m, "weight", P())`` the tensor that was ``m.weight`` lives on
as ``m.parametrizations.weight.original`` (a Parameter, so ``state_dict()`` keys are PyTorch's
``parametrizations.weight.original``) and ``m.weight`` is ``P()(original)``, recomputed each
time it is read.  The read goes through a property of a class made for this one module
(``ParametrizedLinear``, a subclass of ``Linear``), as in PyTorch; assigning ``m.weight = X``
calls ``P().right_inverse(X)`` and writes the result into the original.
"""
from __future__ import annotations

import contextlib
import threading

from distgraph.autograd import grad_mode
from distgraph.autograd.tensor import Parameter, Tensor
from distgraph.nn.container import ModuleDict, ModuleList

__all__ = ["ParametrizationList", "cached", "is_parametrized", "register_parametrization",
           "remove_parametrizations", "type_before_parametrizations"]

# The cache of ``cached()``: per thread (grad mode is per thread too), only while the context is open.
_cache = threading.local()


@contextlib.contextmanager
def cached():
    """Within this context a parametrized tensor is computed once, on its first read, and the same
    Tensor is returned by later reads (useful when a layer reads its weight many times, as an RNN
    does over time steps).  Nested contexts share the outermost one's cache."""
    outer = getattr(_cache, "store", None)
    if outer is None:
        _cache.store = {}
    try:
        yield
    finally:
        if outer is None:
            _cache.store = None


def _check_like(what, original, value):
    if not isinstance(value, Tensor):
        raise ValueError(f"{what} must return a Tensor, got {type(value).__name__}")
    if value.dtype != original.dtype:
        raise ValueError(f"{what} may not change the dtype of the tensor, unless `unsafe` flag is enabled.\n"
                         f"unparametrized dtype: {original.dtype}\nparametrized dtype: {value.dtype}")
    if value.shape != original.shape:
        raise ValueError(f"{what} may not change the shape of the tensor, unless `unsafe` flag is enabled.\n"
                         f"unparametrized shape: {original.shape}\nparametrized shape: {value.shape}")


def _register_tensor(module, name, tensor):
    if isinstance(tensor, Parameter):
        module.register_parameter(name, tensor)
    else:
        module.register_buffer(name, tensor)


class ParametrizationList(ModuleList):
    """The parametrizations of one tensor, applied in order, and the tensor(s) they start from.

    ``original`` holds ``right_inverse`` of the tensor it replaced (the tensor itself when no
    parametrization has a ``right_inverse``); when the first ``right_inverse`` returns a sequence,
    the tensors are ``original0``, ``original1``, ... and the first parametrization's forward takes
    them all.  They stay Parameters (or buffers) as the replaced tensor was.
    """

    def __init__(self, modules, original, unsafe=False):
        if len(modules) == 0:
            raise ValueError("ParametrizationList requires one or more modules.")
        super().__init__(modules)
        self.unsafe = unsafe
        with grad_mode.no_grad():
            new = original
            for m in reversed(list(self)):
                if hasattr(m, "right_inverse"):
                    new = m.right_inverse(new)
        if isinstance(new, Tensor):
            self.is_tensor, self.ntensors = True, 1
            if not unsafe:
                _check_like("When `right_inverse` outputs one tensor, it", original, new)
            original.array = new.array    # in place (PyTorch's set_): an optimizer holding it keeps working
            _register_tensor(self, "original", original)
        else:
            if not isinstance(new, (tuple, list)) or not all(isinstance(t, Tensor) for t in new):
                raise ValueError(f"'right_inverse' must return a Tensor or a Sequence of tensors (list, tuple...), "
                                 f"got {type(new).__name__}")
            self.is_tensor, self.ntensors = False, len(new)
            for i, t in enumerate(new):
                if isinstance(original, Parameter):
                    t = Parameter(t.detach(), requires_grad=original.requires_grad)
                _register_tensor(self, f"original{i}", t)

    def originals(self):
        return [self.original] if self.is_tensor else [getattr(self, f"original{i}") for i in range(self.ntensors)]

    def right_inverse(self, value):
        """Write ``value`` into the original tensor(s): each parametrization's ``right_inverse``, last first."""
        with grad_mode.no_grad():
            for m in reversed(list(self)):
                if not hasattr(m, "right_inverse"):
                    raise RuntimeError(f"parametrization {type(m).__name__} does not implement right_inverse.")
                value = m.right_inverse(value)
            if self.is_tensor:
                if not isinstance(value, Tensor):
                    raise ValueError(f"`right_inverse` should return a tensor, got {type(value).__name__}")
                if not self.unsafe:
                    _check_like("The tensor returned by `right_inverse`", self.original, value)
                self.original.array = value.array
            else:
                if not isinstance(value, (tuple, list)) or len(value) != self.ntensors:
                    raise ValueError(f"'right_inverse' must return a sequence of {self.ntensors} tensors, "
                                     f"got {type(value).__name__}")
                for t, v in zip(self.originals(), value):
                    t.array = v.array

    def forward(self):
        x = self[0](*self.originals())
        for m in list(self)[1:]:
            x = m(x)
        return x


def _parametrized_property(name):
    def get(self):
        plist = self.parametrizations[name]
        store = getattr(_cache, "store", None)
        if store is None:
            return plist()
        key = (id(self), name)
        if key not in store:
            store[key] = plist()
        return store[key]

    def set_(self, value):
        self.parametrizations[name].right_inverse(value)
    return property(get, set_)


def _inject_class(module):
    """Give ``module`` a class of its own (a subclass of its class) to hang the properties on."""
    cls = module.__class__

    def __setattr__(self, name, value):   # noqa: N807
        if is_parametrized(self, name):
            if isinstance(value, Parameter):   # PyTorch: the name is taken by the parametrization
                raise KeyError(f"attribute '{name}' already exists")
            object.__setattr__(self, name, value)   # the property's setter: right_inverse
        else:
            super(new_cls, self).__setattr__(name, value)

    def __getstate__(self):   # noqa: N807
        raise RuntimeError("Serialization of parametrized modules is only supported through state_dict(); "
                           "remove the parametrizations first, or save and load the state_dict")

    new_cls = type(f"Parametrized{cls.__name__}", (cls,), {"__setattr__": __setattr__, "__getstate__": __getstate__})
    module.__class__ = new_cls


def is_parametrized(module, tensor_name=None):
    """Whether ``module`` has a parametrization (on ``tensor_name``, when given)."""
    p = module.__dict__.get("_modules", {}).get("parametrizations")
    if not isinstance(p, ModuleDict):
        return False
    return len(p) > 0 if tensor_name is None else tensor_name in p


def type_before_parametrizations(module):
    """The module's class before any parametrization was registered on it."""
    return type(module).__bases__[0] if is_parametrized(module) else type(module)


def register_parametrization(module, tensor_name, parametrization, *, unsafe=False):
    """Make ``module.<tensor_name>`` be ``parametrization(original)``, recomputed on every read.

    Args:
        module: the module owning the parameter or buffer ``tensor_name``.
        tensor_name: the parameter or buffer to parametrize (or one already parametrized: the new
            parametrization is then applied after the existing ones).
        parametrization: a Module; ``forward(X)`` computes the tensor from the original. An optional
            ``right_inverse(Y)`` gives the original(s) for a value ``Y``: it runs once here, on the
            current value, and again on each assignment ``module.<tensor_name> = Y``.
        unsafe: skip the checks that the parametrization keeps shape and dtype.

    Returns:
        ``module``.

    Raises:
        ValueError: ``tensor_name`` is no parameter, buffer or parametrized tensor of ``module``, or
            (unless ``unsafe``) the parametrization changes its shape or dtype.
    """
    parametrization.train(module.training)
    if is_parametrized(module, tensor_name):
        if not unsafe:
            with grad_mode.no_grad():
                y = getattr(module, tensor_name)
                x = parametrization(y)
                _check_like("Registering a parametrization", y, x)
                if hasattr(parametrization, "right_inverse"):
                    _check_like("parametrization.right_inverse", y, parametrization.right_inverse(x))
        plist = module.parametrizations[tensor_name]
        plist.append(parametrization)
        plist.unsafe |= unsafe
        return module
    if tensor_name not in module._parameters and tensor_name not in module._buffers:
        raise ValueError(f"Module '{module}' does not have a parameter, a buffer, or a parametrized element "
                         f"with name '{tensor_name}'")
    original = module._parameters.get(tensor_name, module._buffers.get(tensor_name))
    if original is None:
        raise ValueError(f"register_parametrization: '{tensor_name}' of {type(module).__name__} is None")
    shape, dtype = original.shape, original.dtype
    plist = ParametrizationList([parametrization], original, unsafe=unsafe)
    if not unsafe:
        with grad_mode.no_grad():
            y = plist()
        if not isinstance(y, Tensor):
            raise ValueError(f"A parametrization must return a tensor. Got {type(y).__name__}.")
        if y.dtype != dtype or y.shape != shape:
            raise ValueError("Registering a parametrization may not change the shape or dtype of the tensor, "
                             f"unless `unsafe` flag is enabled.\nunparametrized: {shape} {dtype}\n"
                             f"parametrized: {y.shape} {y.dtype}")
    delattr(module, tensor_name)
    if not is_parametrized(module):
        _inject_class(module)
        module.add_module("parametrizations", ModuleDict())
    setattr(type(module), tensor_name, _parametrized_property(tensor_name))
    module.parametrizations[tensor_name] = plist
    return module


def remove_parametrizations(module, tensor_name, leave_parametrized=True):
    """Undo ``register_parametrization`` on ``tensor_name``: all its parametrizations go.

    With ``leave_parametrized`` the tensor keeps its current (parametrized) value, written into the
    original Parameter object when there is one original (so optimizers holding it keep working);
    otherwise the original itself comes back.

    Raises:
        ValueError: no parametrization on ``tensor_name``, or ``leave_parametrized=False`` when the
            tensor is parametrized by several originals.
    """
    if not is_parametrized(module, tensor_name):
        raise ValueError(f"Module {module} does not have a parametrization on {tensor_name}")
    plist = module.parametrizations[tensor_name]
    if plist.is_tensor:
        original = plist.original
        if leave_parametrized:
            with grad_mode.no_grad():
                value = getattr(module, tensor_name)
            original.array = value.array
    else:
        if not leave_parametrized:
            raise ValueError("Cannot leave unparametrized (`leave_parametrized=False`) a tensor that is "
                             "parametrized in terms of a sequence of tensors.")
        with grad_mode.no_grad():
            value = getattr(module, tensor_name)
        first = plist.original0
        original = Parameter(value, requires_grad=first.requires_grad) if isinstance(first, Parameter) else value
    delattr(type(module), tensor_name)
    del module.parametrizations[tensor_name]
    _register_tensor(module, tensor_name, original)
    if not is_parametrized(module):
        delattr(module, "parametrizations")
        module.__class__ = type(module).__bases__[0]
    return module

