"""``gradcheck``: compare the engine's gradients with central finite differences."""
from __future__ import annotations

import numpy as np

from distgraph.autograd import grad_mode
from distgraph.autograd.tensor import Tensor, _make


def _outputs(fn, inputs):
    out = fn(*inputs)
    return [o for o in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(o, Tensor)]


def _host(a):
    return a if isinstance(a, np.ndarray) else a.get()


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Check d fn / d inputs against central differences (use float64 inputs).

    The scalar checked is ``sum(out_i * v_i)`` with fixed random weights
    ``v_i``, so every output element matters.  Returns True, or raises
    ``AssertionError`` naming the input with analytic and numeric values.
    """
    from distgraph.autograd import grad
    diff = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    rng = np.random.default_rng(seed)
    outs = _outputs(fn, inputs)
    weights = [rng.standard_normal(o.shape) for o in outs]

    def objective():
        with grad_mode.no_grad():
            total = 0.0
            for o, v in zip(_outputs(fn, inputs), weights):
                total += float((_host(o.array).astype(np.float64) * v).sum())
            return total

    live = [(o, v) for o, v in zip(outs, weights) if o.requires_grad]
    if not live:
        raise AssertionError("gradcheck: no output requires grad")
    grad_outputs = [_make(_to_like(o.array, v).astype(o.array.dtype), None, False) for o, v in live]
    analytic = grad([o for o, _ in live], diff, grad_outputs=grad_outputs, allow_unused=True)
    for k, (t, ga) in enumerate(zip(diff, analytic)):
        ga = np.zeros(t.shape) if ga is None else _host(ga.array)
        if ga.shape != t.shape:
            raise AssertionError(f"gradcheck: input {k} has shape {t.shape}, its gradient {ga.shape}")
        gn = np.zeros(t.shape)
        flat = t.array.reshape(-1)
        for i in range(flat.size):
            old = flat[i].item()
            flat[i] = old + eps
            hi = objective()
            flat[i] = old - eps
            lo = objective()
            flat[i] = old
            gn.reshape(-1)[i] = (hi - lo) / (2 * eps)
        if not np.allclose(ga, gn, atol=atol, rtol=rtol):
            worst = np.unravel_index(np.argmax(np.abs(ga - gn)), ga.shape) if ga.size else ()
            raise AssertionError(
                f"gradcheck: gradient of input {k} (shape {t.shape}) differs from finite differences; "
                f"worst at {worst}: analytic {ga[worst]!r} vs numeric {gn[worst]!r}\n"
                f"analytic:\n{ga}\nnumeric:\n{gn}")
    return True


def _to_like(arr, v):
    from distgraph import backend
    return backend.to_device(v, backend.device_of(arr))
