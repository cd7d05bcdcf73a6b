"""``nn.utils.weight_norm``: the hook-based weight normalisation, ``w = g * v / ||v||``.

``weight_norm(m)`` replaces the parameter ``weight`` with ``weight_g`` (the norms) and ``weight_v``
(the direction), PyTorch's ``state_dict()`` keys, and recomputes ``m.weight`` from them in a forward
pre-hook.  ``nn.utils.parametrizations.weight_norm`` is the newer form of the same maths.
"""
from __future__ import annotations

from distgraph.autograd import grad_mode
from distgraph.autograd.tensor import Parameter

__all__ = ["weight_norm", "remove_weight_norm"]


def norm_except_dim(v, dim):
    """The 2-norm of ``v`` over every dimension but ``dim``, kept as size-1 dimensions; ``dim=-1``
    (which is what ``dim=None`` becomes) means the norm of the whole tensor, a 0-d tensor (PyTorch's rule:
    -1 is not the last dimension here)."""
    if dim == -1:
        return (v * v).sum().sqrt()
    dim = dim % v.ndim
    others = tuple(d for d in range(v.ndim) if d != dim)
    return (v * v).sum(dim=others, keepdim=True).sqrt() if others else v.abs()


def _weight_norm(v, g, dim):
    """``w = v * (g / ||v||)``, the norm taken by ``norm_except_dim(v, dim)``."""
    return v * (g / norm_except_dim(v, dim))


class WeightNorm:
    """The forward pre-hook of ``weight_norm``: sets ``module.<name>`` from ``<name>_g`` and ``<name>_v``."""

    def __init__(self, name, dim):
        self.name, self.dim = name, -1 if dim is None else dim

    def compute_weight(self, module):
        return _weight_norm(getattr(module, self.name + "_v"), getattr(module, self.name + "_g"), self.dim)

    def __call__(self, module, inputs):
        setattr(module, self.name, self.compute_weight(module))


def _find_hook(module, cls, name):
    for key, entry in module._forward_pre_hooks.items():
        hook = entry[0] if isinstance(entry, tuple) else entry
        if isinstance(hook, cls) and hook.name == name:
            return key, hook
    return None, None


def weight_norm(module, name="weight", dim=0):
    """Reparametrize ``module.<name>`` as ``g * v / ||v||`` with parameters ``<name>_g`` and ``<name>_v``.

    Args:
        module: the module whose parameter is normalised.
        name: the parameter's name.
        dim: the dimension kept by the norm (one ``g`` per slice along it); ``None`` (or -1) takes one
            norm over the whole tensor.

    Returns:
        ``module``, with a forward pre-hook that recomputes ``module.<name>`` before each call.

    Raises:
        RuntimeError: ``weight_norm`` is already applied to ``name``.
    """
    if _find_hook(module, WeightNorm, name)[1] is not None:
        raise RuntimeError(f"Cannot register two weight_norm hooks on the same parameter {name}")
    fn = WeightNorm(name, dim)
    weight = getattr(module, name)
    if not isinstance(weight, Parameter):
        raise ValueError(f"weight_norm: '{name}' of {type(module).__name__} is not a Parameter")
    del module._parameters[name]
    with grad_mode.no_grad():
        g = norm_except_dim(weight, fn.dim)
    module.register_parameter(name + "_g", Parameter(g))
    module.register_parameter(name + "_v", Parameter(weight.detach()))
    setattr(module, name, fn.compute_weight(module))
    module.register_forward_pre_hook(fn)
    return module


def remove_weight_norm(module, name="weight"):
    """Fold ``<name>_g`` and ``<name>_v`` back into one parameter ``<name>`` and drop the hook.

    Raises:
        ValueError: ``module`` has no ``weight_norm`` on ``name``.
    """
    key, fn = _find_hook(module, WeightNorm, name)
    if fn is None:
        raise ValueError(f"weight_norm of '{name}' not found in {module}")
    with grad_mode.no_grad():
        weight = fn.compute_weight(module)
    module.__dict__.pop(name, None)
    del module._parameters[name + "_g"], module._parameters[name + "_v"]
    module.register_parameter(name, Parameter(weight))
    del module._forward_pre_hooks[key]
    return module
