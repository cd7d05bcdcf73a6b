"""``nn.utils.parametrizations``: weight norm and spectral norm as parametrizations.

Both go through ``nn.utils.parametrize``: the original tensors live under
``module.parametrizations.weight`` (``state_dict()`` keys ``parametrizations.weight.original0`` /
``original1`` for weight norm, ``parametrizations.weight.original`` and the power-iteration vectors
``parametrizations.weight.0._u`` / ``._v`` for spectral norm, as in PyTorch).
``orthogonal`` is not provided (it needs a matrix exponential / Householder products).
"""
from __future__ import annotations

from distgraph.autograd import grad_mode
from distgraph.autograd.tensor import Tensor
from distgraph.nn.functional import normalize
from distgraph.nn.module import Module
from distgraph.nn.utils import parametrize
from distgraph.nn.utils.spectral_norm import default_dim, weight_to_matrix
from distgraph.nn.utils.weight_norm import _weight_norm, norm_except_dim

__all__ = ["weight_norm", "spectral_norm"]


class _WeightNorm(Module):
    """``forward(g, v) = v * g / ||v||`` (norm over all dimensions but ``dim``; ``dim=None``: the whole
    tensor); ``right_inverse(w) = (||w||, w)``."""

    def __init__(self, dim=0):
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, weight_g, weight_v):
        return _weight_norm(weight_v, weight_g, self.dim)

    def right_inverse(self, weight):
        return norm_except_dim(weight, self.dim), weight


def weight_norm(module, name="weight", dim=0):
    """Parametrize ``module.<name>`` as ``g * v / ||v||``: ``original0`` is ``g``, ``original1`` is ``v``.

    Args:
        module: the module whose parameter is normalised.
        name: the parameter's name.
        dim: the dimension kept by the norm; ``None`` takes one norm over the whole tensor.

    Returns:
        ``module``.
    """
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)
    return module


class _SpectralNorm(Module):
    """``forward(w) = w / sigma``, ``sigma = u . (W v)`` with ``W`` the weight as a matrix (``dim`` first)
    and ``u``, ``v`` its leading singular vectors estimated by power iteration (buffers ``_u``, ``_v``,
    updated in place on each forward in training mode).  A 1-d weight is just normalised."""

    def __init__(self, weight, n_power_iterations=1, dim=0, eps=1e-12):
        super().__init__()
        ndim = weight.ndim
        if dim >= ndim or dim < -ndim:
            raise IndexError(f"Dimension out of range (expected to be in range of [-{ndim}, {ndim - 1}] "
                             f"but got {dim})")
        if n_power_iterations <= 0:
            raise ValueError(f"Expected n_power_iterations to be positive, but got n_power_iterations="
                             f"{n_power_iterations}")
        self.dim = dim % ndim
        self.eps, self.n_power_iterations = eps, n_power_iterations
        if ndim > 1:
            with grad_mode.no_grad():
                w = weight_to_matrix(weight, self.dim)
                h, k = w.shape
                self.register_buffer("_u", normalize(w.new_empty(h).normal_(0, 1), dim=0, eps=eps))
                self.register_buffer("_v", normalize(w.new_empty(k).normal_(0, 1), dim=0, eps=eps))
                self._power_method(w, 15)   # start from a good estimate (PyTorch does 15 steps too)

    def _power_method(self, w, n):
        with grad_mode.no_grad():
            for _ in range(n):
                self._u.copy_(normalize(w.mv(self._v), dim=0, eps=self.eps))
                self._v.copy_(normalize(w.t().mv(self._u), dim=0, eps=self.eps))

    def forward(self, weight):
        if weight.ndim == 1:
            return normalize(weight, dim=0, eps=self.eps)
        w = weight_to_matrix(weight, self.dim)
        if self.training:
            self._power_method(w, self.n_power_iterations)
        u, v = self._u.clone(), self._v.clone()   # later in-place steps must not change this graph
        return weight / u.dot(w.mv(v))

    def right_inverse(self, value):
        return value


def spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12, dim=None):
    """Parametrize ``module.<name>`` as itself divided by its spectral norm (power iteration).

    Args:
        module: the module whose parameter is normalised.
        name: the parameter's name.
        n_power_iterations: power-iteration steps per forward in training mode (none in eval mode).
        eps: added safety in the normalisations of ``u`` and ``v``.
        dim: the dimension that becomes the matrix's rows (default 0; 1 for ``ConvTranspose``).

    Returns:
        ``module``.

    Raises:
        ValueError: ``module`` has no tensor ``name``, or ``n_power_iterations`` is not positive.
        IndexError: ``dim`` is out of range.
    """
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    dim = default_dim(module) if dim is None else dim
    parametrize.register_parametrization(module, name, _SpectralNorm(weight, n_power_iterations, dim, eps))
    return module
