"""``nn.utils``: gradient clipping and flat parameter vectors; parametrizations, weight and spectral norm,
``functional_call`` in the submodules."""
from __future__ import annotations

import math

import numpy as np

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.tensor import Tensor, wrap

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters"]


def _params(parameters):
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale all gradients together so their joint ``norm_type``-norm is at most ``max_norm``
    (``foreach`` is accepted: there is one code path).

    Returns the total norm before clipping (a 0-d Tensor).
    """
    grads = [p.grad.array for p in _params(parameters) if p.grad is not None]
    if not grads:
        return wrap(np.zeros((), np.float32))
    xp = backend.get_array_module(grads[0])
    norm_type = float(norm_type)
    if norm_type == math.inf:
        total = xp.max(xp.stack([xp.abs(g).max() for g in grads]))
    else:
        total = sum(float((xp.abs(g.astype(xp.float64)) ** norm_type).sum()) for g in grads) ** (1 / norm_type)
        total = xp.asarray(total, dtype=grads[0].dtype)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} is non-finite; "
                           "pass error_if_nonfinite=False to clip anyway")
    coef = float(max_norm) / (float(total) + 1e-6)
    if coef < 1:
        with grad_mode.no_grad():
            for g in grads:
                g *= coef
    return wrap(xp.asarray(total))


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place (``foreach`` accepted)."""
    for p in _params(parameters):
        if p.grad is not None:
            xp = backend.get_array_module(p.grad.array)
            xp.clip(p.grad.array, -clip_value, clip_value, out=p.grad.array)


def parameters_to_vector(parameters):
    """All parameters flattened and concatenated into one (differentiable) vector."""
    from distgraph.autograd.ops.shape import cat
    return cat([p.reshape(-1) for p in _params(parameters)])


def vector_to_parameters(vec, parameters):
    """Copy slices of ``vec`` into the parameters (in place, no graph)."""
    i = 0
    with grad_mode.no_grad():
        for p in _params(parameters):
            n = p.numel()
            p.copy_(vec.array[i:i + n].reshape(p.shape))
            i += n
    if i != vec.numel():
        raise RuntimeError(f"vector_to_parameters: vector has {vec.numel()} elements, parameters {i}")


# ``torch.nn.utils.rnn``: packed sequences live in nn/utils_rnn.py; registered under PyTorch's path
# so ``from distgraph.nn.utils.rnn import pack_padded_sequence`` works.
import sys as _sys  # noqa: E402

from distgraph.nn import utils_rnn as rnn  # noqa: E402

_sys.modules[__name__ + ".rnn"] = rnn

# ``torch.nn.utils``' submodules: parametrizations, the hook-based weight/spectral norms, functional_call.
from distgraph.nn.utils import parametrize, parametrizations, stateless  # noqa: E402
from distgraph.nn.utils.spectral_norm import remove_spectral_norm, spectral_norm  # noqa: E402
from distgraph.nn.utils.weight_norm import remove_weight_norm, weight_norm  # noqa: E402

__all__ += ["remove_spectral_norm", "remove_weight_norm", "spectral_norm", "weight_norm"]
