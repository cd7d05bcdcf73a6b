"""Tensor factories: ``zeros``, ``ones``, ``full``, ``arange``, ``randn``, ``from_numpy``, ``from_dlpack``..."""
from __future__ import annotations

import numpy as np

from distgraph import backend
from distgraph.autograd.tensor import Tensor, _make, tensor

__all__ = ["tensor", "as_tensor", "zeros", "ones", "full", "empty", "arange", "linspace", "eye",
           "rand", "randn", "randint", "randperm", "zeros_like", "ones_like", "full_like", "empty_like",
           "rand_like", "randn_like", "randint_like", "from_numpy", "from_dlpack", "manual_seed", "tril_indices",
           "triu_indices", "multinomial"]

manual_seed = backend.manual_seed


def _sizes(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(n) for n in size)


def _finish(arr, requires_grad):
    t = _make(arr, None, False)
    if requires_grad:
        t.requires_grad_()
    return t


def _make_on(device, dtype, build):
    dev = backend.Device(device) if device is not None else backend.CPU
    xp = backend.xp_for(dev)
    if dev.type == "cuda":
        with xp.cuda.Device(dev.index):
            return build(xp, dev)
    return build(xp, dev)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    """A tensor of ``size`` filled with ``fill_value`` (dtype inferred from it, as PyTorch)."""
    if dtype is None:
        dtype = backend._DEFAULT_FOR_CATEGORY[backend.scalar_category(fill_value)]
    dtype = backend.as_dtype(dtype)
    size = tuple(size) if isinstance(size, (tuple, list)) else (int(size),)
    return _finish(_make_on(device, dtype, lambda xp, d: xp.full(size, fill_value, dtype)), requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return full(_sizes(size), 0, dtype=dtype or backend.default_float(), device=device, requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return full(_sizes(size), 1, dtype=dtype or backend.default_float(), device=device, requires_grad=requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    dtype = backend.as_dtype(dtype or backend.default_float())
    size = _sizes(size)
    return _finish(_make_on(device, dtype, lambda xp, d: xp.empty(size, dtype)), requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    """``[start, end)`` by ``step``: int64 when all are ints, else the default float dtype."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = backend.int64 if all(isinstance(v, int) for v in (start, end, step)) else backend.default_float()
    dtype = backend.as_dtype(dtype)
    return _finish(_make_on(device, dtype, lambda xp, d: xp.arange(start, end, step).astype(dtype)), requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    dtype = backend.as_dtype(dtype or backend.default_float())
    return _finish(_make_on(device, dtype, lambda xp, d: xp.linspace(start, end, steps).astype(dtype)),
                   requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    dtype = backend.as_dtype(dtype or backend.default_float())
    return _finish(_make_on(device, dtype, lambda xp, d: xp.eye(n, m, dtype=dtype)), requires_grad)


def tril_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    """The (2, N) row and column indices of the lower triangle of a ``row x col`` matrix (diagonal
    ``offset`` and below), row by row, as PyTorch's (int64 by default)."""
    dtype = backend.as_dtype(dtype or backend.int64)
    return _finish(_make_on(device, dtype, lambda xp, d: xp.stack(xp.tril_indices(row, offset, col)).astype(dtype)),
                   False)


def triu_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    """The (2, N) indices of the upper triangle (diagonal ``offset`` and above), row by row."""
    dtype = backend.as_dtype(dtype or backend.int64)
    return _finish(_make_on(device, dtype, lambda xp, d: xp.stack(xp.triu_indices(row, offset, col)).astype(dtype)),
                   False)


def _draw(generator, dev, draw):
    """``draw(gen)`` from ``generator`` (a dg.Generator, which draws on the host: its numbers are
    uploaded to the device) or, when None, from the device's own generator (``manual_seed``)."""
    if generator is None:
        return draw(backend.generator(dev))
    from distgraph.random import numpy_generator
    return backend.to_device(draw(numpy_generator(generator, dev)), dev)


def _random(size, generator, dtype, device, requires_grad, draw):
    dtype = backend.as_dtype(dtype or backend.default_float())
    if not backend.is_floating(dtype):
        raise TypeError(f"expected a floating dtype for random floats, got {backend.dtype_name(dtype)}")
    size = _sizes(size)
    wide = dtype if dtype != backend.float16 else backend.float32  # generators draw float32/64

    def build(xp, dev):
        return _draw(generator, dev, lambda gen: draw(gen, size, wide)).astype(dtype, copy=False)
    return _finish(_make_on(device, dtype, build), requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform on ``[0, 1)`` from ``generator`` or the device's generator (see ``manual_seed``)."""
    return _random(size, generator, dtype, device, requires_grad, lambda g, s, dt: g.random(s, dtype=dt))


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal from ``generator`` or the device's generator (see ``manual_seed``)."""
    return _random(size, generator, dtype, device, requires_grad, lambda g, s, dt: g.standard_normal(s, dtype=dt))


def randint(*args, size=None, generator=None, dtype=None, device=None, requires_grad=False, **_ignored):
    """Integers uniform on ``[low, high)``: ``randint(high, size)`` or ``randint(low, high, size)``
    (``size`` a tuple, positional or keyword); int64 unless ``dtype`` is given.  Drawn from
    ``generator`` (a dg.Generator) or the device's generator (see ``manual_seed``).

    Raises:
        TypeError: ``size`` is missing or not a tuple/list.
        RuntimeError: ``low >= high``.
    """
    if size is None and args and isinstance(args[-1], (tuple, list)):
        *args, size = args
    if size is None or not isinstance(size, (tuple, list)) or len(args) not in (1, 2):
        raise TypeError(f"randint: expected randint(high, size) or randint(low, high, size) with size a tuple "
                        f"of ints, got arguments {tuple(args)} and size={size!r}")
    low, high = (0, args[0]) if len(args) == 1 else args
    if low >= high:
        raise RuntimeError(f"randint: expected low < high, got low={low}, high={high}")
    dtype = backend.as_dtype(dtype or backend.int64)
    size = tuple(int(n) for n in size)
    return _finish(_make_on(device, dtype, lambda xp, d: _draw(generator, d, lambda g: g.integers(
        int(low), int(high), size=size)).astype(dtype)), requires_grad)


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False):
    """A random permutation of ``range(n)`` (int64 unless ``dtype``), from ``generator`` or the
    device's generator (see ``manual_seed``)."""
    dtype = backend.as_dtype(dtype or backend.int64)
    return _finish(_make_on(device, dtype, lambda xp, d: _draw(generator, d, lambda g: backend.permutation(g, n))
                            .astype(dtype)), requires_grad)


def multinomial(input, num_samples, replacement=False, *, generator=None):
    """Indices drawn from the categories weighted by ``input``'s last dim (1-D: one row, 2-D: one draw per row),
    as PyTorch's: ``num_samples`` per row, with or without replacement (then in draw order: a weighted
    sample without replacement, drawn with the Gumbel top-k trick).  int64, no gradient.

    Raises:
        RuntimeError: not 1-D or 2-D, a negative, infinite or NaN weight, a row summing to 0, or more
            samples than categories without replacement (zero-weight categories are drawn last, as PyTorch's).
    """
    from distgraph.autograd.tensor import Tensor
    w = input.array if isinstance(input, Tensor) else np.asarray(input, dtype=np.float64)
    if w.ndim not in (1, 2):
        raise RuntimeError(f"multinomial: prob_dist must be 1 or 2 dim, got {w.ndim} dims")
    if num_samples <= 0:
        raise RuntimeError(f"multinomial: cannot sample n_sample <= 0 samples, got {num_samples}")
    xp = backend.get_array_module(w)
    rows = w.reshape(1, -1).astype(np.float64) if w.ndim == 1 else w.astype(np.float64)
    if bool((rows < 0).any()) or not bool(xp.isfinite(rows).all()):
        raise RuntimeError("multinomial: probability tensor contains either `inf`, `nan` or element < 0")
    if bool((rows.sum(-1) <= 0).any()):
        raise RuntimeError("multinomial: invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement and num_samples > rows.shape[-1]:
        raise RuntimeError(f"multinomial: cannot sample n_sample > prob_dist.size(-1) samples without replacement "
                           f"(asked for {num_samples} of {rows.shape[-1]} categories)")
    dev = backend.device_of(w)
    n, k = rows.shape
    u = _draw(generator, dev, lambda g: g.random((n, num_samples if replacement else k)))
    if replacement:   # inverse cdf
        cdf = xp.cumsum(rows / rows.sum(-1, keepdims=True), -1)
        idx = xp.stack([xp.searchsorted(cdf[r], u[r], side="right") for r in range(n)]).clip(0, k - 1)
    else:             # top-k of log w + Gumbel noise: a draw without replacement, in order
        with np.errstate(divide="ignore"):
            keys = xp.log(rows) - xp.log(-xp.log(xp.clip(u, 1e-300, 1.0)))
        idx = xp.argsort(-keys, axis=-1, kind="stable")[:, :num_samples]
    idx = idx.astype(np.int64)
    return _finish(idx[0] if w.ndim == 1 else idx, False)


def _like(t, dtype, device):
    return dict(dtype=dtype or t.dtype, device=device or t.device)


def zeros_like(input, *, dtype=None, device=None, requires_grad=False):
    return zeros(input.shape, **_like(input, dtype, device), requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False):
    return ones(input.shape, **_like(input, dtype, device), requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False):
    return full(input.shape, fill_value, **_like(input, dtype, device), requires_grad=requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad=False):
    return empty(input.shape, **_like(input, dtype, device), requires_grad=requires_grad)


def rand_like(input, *, dtype=None, device=None, requires_grad=False):
    return rand(input.shape, **_like(input, dtype, device), requires_grad=requires_grad)


def randn_like(input, *, dtype=None, device=None, requires_grad=False):
    return randn(input.shape, **_like(input, dtype, device), requires_grad=requires_grad)


def randint_like(input, low, high=None, *, dtype=None, device=None, requires_grad=False):
    """``randint_like(t, high)`` or ``randint_like(t, low, high)``: ``t``'s shape, dtype and device."""
    bounds = (low,) if high is None else (low, high)
    return randint(*bounds, input.shape, **_like(input, dtype, device), requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares memory when ``data`` is already a suitable array or Tensor."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device or dtype) else data
    if isinstance(data, np.ndarray) and data.dtype in backend.SUPPORTED_DTYPES and dtype is None and (
            device is None or backend.Device(device) == backend.CPU):
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with ``array`` (no copy)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    backend.as_dtype(array.dtype)
    return _make(array, None, False)


def from_dlpack(obj) -> Tensor:
    """Zero-copy import of any DLPack producer (NumPy, CuPy, PyTorch, another Tensor)."""
    dev_type, dev_id = obj.__dlpack_device__()
    if int(dev_type) == 1:  # kDLCPU
        arr = np.from_dlpack(obj)
    else:
        arr = backend.require_cuda(backend.Device("cuda", int(dev_id))).from_dlpack(obj)
    backend.as_dtype(arr.dtype)
    return _make(arr, None, False)
