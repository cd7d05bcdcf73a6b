"""``nn.utils.spectral_norm``: the hook-based spectral normalisation, ``w = w_orig / sigma(w_orig)``.

``sigma`` is the largest singular value of the weight seen as a matrix (``dim`` first, the other
dimensions flattened), estimated by power iteration on the buffers ``weight_u`` and ``weight_v``:
``n_power_iterations`` steps before each forward in training mode, none in eval mode.  The parameter
becomes ``weight_orig``; ``state_dict()`` keys are PyTorch's (``weight_orig``, ``weight_u``, ``weight_v``).
``nn.utils.parametrizations.spectral_norm`` is the newer form.
"""
from __future__ import annotations

from distgraph.autograd import grad_mode
from distgraph.autograd.tensor import Parameter
from distgraph.nn.functional import normalize
from distgraph.nn.utils.weight_norm import _find_hook

__all__ = ["spectral_norm", "remove_spectral_norm"]


def weight_to_matrix(weight, dim):
    """``weight`` as a matrix: dimension ``dim`` becomes the rows, the others are flattened into columns."""
    if dim != 0:
        weight = weight.permute(dim, *(d for d in range(weight.ndim) if d != dim))
    return weight.reshape(weight.shape[0], -1)


def default_dim(module):
    """0, or 1 for transposed convolutions (whose weight is ``(in, out, *kernel)``)."""
    from distgraph.nn.conv import _ConvTransposeNd
    return 1 if isinstance(module, _ConvTransposeNd) else 0


class SpectralNorm:
    """The forward pre-hook of ``spectral_norm``: sets ``module.<name>`` to ``<name>_orig / sigma``."""

    def __init__(self, name="weight", n_power_iterations=1, dim=0, eps=1e-12):
        if n_power_iterations <= 0:
            raise ValueError(f"Expected n_power_iterations to be positive, but got n_power_iterations="
                             f"{n_power_iterations}")
        self.name, self.n_power_iterations, self.dim, self.eps = name, n_power_iterations, dim, eps

    def compute_weight(self, module, do_power_iteration):
        weight = getattr(module, self.name + "_orig")
        u, v = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        w = weight_to_matrix(weight, self.dim)
        if do_power_iteration:
            # In place: the buffers carry the estimate from one step to the next (and into state_dict).
            with grad_mode.no_grad():
                for _ in range(self.n_power_iterations):
                    v.copy_(normalize(w.t().mv(u), dim=0, eps=self.eps))
                    u.copy_(normalize(w.mv(v), dim=0, eps=self.eps))
            u, v = u.clone(), v.clone()   # the graph below must not see later in-place updates
        sigma = u.dot(w.mv(v))
        return weight / sigma

    def __call__(self, module, inputs):
        setattr(module, self.name, self.compute_weight(module, do_power_iteration=module.training))


def spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12, dim=None):
    """Divide ``module.<name>`` by its spectral norm, estimated by power iteration, before each forward.

    Args:
        module: the module whose parameter is normalised.
        name: the parameter's name.
        n_power_iterations: power-iteration steps per forward in training mode.
        eps: added safety in the normalisations of ``u`` and ``v``.
        dim: the dimension that becomes the matrix's rows (default 0; 1 for ``ConvTranspose``).

    Returns:
        ``module``, with parameter ``<name>_orig``, buffers ``<name>_u`` and ``<name>_v`` (random unit
        vectors to start) and a forward pre-hook.

    Raises:
        RuntimeError: ``spectral_norm`` is already applied to ``name``.
        ValueError: ``n_power_iterations`` is not positive.
    """
    if _find_hook(module, SpectralNorm, name)[1] is not None:
        raise RuntimeError(f"Cannot register two spectral_norm hooks on the same parameter {name}")
    fn = SpectralNorm(name, n_power_iterations, default_dim(module) if dim is None else dim, eps)
    weight = module._parameters[name]
    with grad_mode.no_grad():
        h, w = weight_to_matrix(weight, fn.dim).shape
        u = normalize(weight.new_empty(h).normal_(0, 1), dim=0, eps=fn.eps)
        v = normalize(weight.new_empty(w).normal_(0, 1), dim=0, eps=fn.eps)
    del module._parameters[name]
    module.register_parameter(name + "_orig", weight)
    setattr(module, name, weight.data)
    module.register_buffer(name + "_u", u)
    module.register_buffer(name + "_v", v)
    module.register_forward_pre_hook(fn)
    return module


def remove_spectral_norm(module, name="weight"):
    """Make ``module.<name>`` a plain parameter again, holding the current normalised weight.

    Raises:
        ValueError: ``module`` has no ``spectral_norm`` on ``name``.
    """
    key, fn = _find_hook(module, SpectralNorm, name)
    if fn is None:
        raise ValueError(f"spectral_norm of '{name}' not found in {module}")
    with grad_mode.no_grad():
        weight = fn.compute_weight(module, do_power_iteration=False)
    module.__dict__.pop(name, None)
    del module._parameters[name + "_orig"], module._buffers[name + "_u"], module._buffers[name + "_v"]
    module.register_parameter(name, Parameter(weight.detach()))
    del module._forward_pre_hooks[key]
    return module
