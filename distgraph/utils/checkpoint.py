"""Gradient checkpointing, PyTorch's ``torch.utils.checkpoint``: trade compute for memory.

``checkpoint(fn, *args)`` runs ``fn`` without recording its graph, so none of
its intermediate arrays are kept; when backward reaches it, ``fn`` runs again
(with the random state it first saw, so dropout draws the same mask) and the
gradient is propagated through that recomputed segment.  Parameters used inside
``fn`` get their ``.grad`` during that inner pass, and their
post-accumulate-grad hooks (DDP's bucket hooks) fire then, in the order the
engine reaches them.

Differences from PyTorch: there is one implementation, so ``use_reentrant`` is
accepted and ignored (it behaves like ``use_reentrant=False``: the segment is
recomputed even when no input requires grad, so parameters inside still get
gradients); CuPy's generators have no settable state, so on a GPU a checkpointed
segment draws its random numbers from a generator seeded from the device's
stream when the segment first runs, and seeded the same when it is recomputed.
"""
from __future__ import annotations

import numpy as np

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.engine import run_backward
from distgraph.autograd.function import Node
from distgraph.autograd.packing import pack, unpack
from distgraph.autograd.tensor import Tensor, wrap

__all__ = ["checkpoint", "checkpoint_sequential"]


def _rng_snapshot(devices, fork=True):
    """What replays each device's random stream: NumPy's generator state; for a generator
    without a settable state (CuPy's bit generators), ``fork`` draws a seed from it and
    continues on a fresh generator with that seed, which the recomputation seeds again
    (without ``fork``: the generator object itself, to put back afterwards)."""
    states = {}
    for d in devices:
        gen = backend.generator(d)
        state = getattr(getattr(gen, "bit_generator", None), "state", None)
        if isinstance(state, dict):
            states[d] = ("state", state)
        elif fork:
            seed = int(gen.integers(0, 2**62))
            backend.set_generator(d, backend.new_generator(d, seed))
            states[d] = ("seed", seed)
        else:
            states[d] = ("object", gen)
    return states


def _rng_restore(states):
    for d, (kind, value) in states.items():
        if kind == "state":
            backend.generator(d).bit_generator.state = value
        elif kind == "seed":
            backend.set_generator(d, backend.new_generator(d, value))
        else:
            backend.set_generator(d, value)


class _Recompute(Node):
    """The node standing for a whole checkpointed segment (its one, possibly packed, output)."""

    __slots__ = ("fn", "args", "kwargs", "rng", "devices", "layout")

    def name(self):
        return "CheckpointBackward"

    def backward(self, gy):
        inputs = [wrap(a.array, a.requires_grad) if isinstance(a, Tensor) else a for a in self.args]
        saved_now = _rng_snapshot(self.devices, fork=False) if self.rng is not None else None
        try:
            if self.rng is not None:
                _rng_restore(self.rng)
            with grad_mode.enable_grad():
                out = self.fn(*inputs, **self.kwargs)
        finally:
            if saved_now is not None:
                _rng_restore(saved_now)
        outs = (out,) if self.layout is None else tuple(out)
        roots, grads = [], []
        for i, o in enumerate(outs):
            if not (isinstance(o, Tensor) and o.requires_grad):
                continue
            if self.layout is None:
                g = gy
            else:
                g = unpack(gy, [self.layout[i]], [o])[0]
            roots.append(o)
            grads.append(g)
        if roots:
            run_backward(roots, grads)
        grads_in = []
        for a, orig in zip(inputs, self.args):
            if isinstance(orig, Tensor) and orig.requires_grad:
                grads_in.append(a.grad.array if a.grad is not None else None)
        return grads_in + [None]


def checkpoint(function, *args, use_reentrant=None, preserve_rng_state=True, **kwargs):
    """Run ``function(*args, **kwargs)`` now without keeping its graph; recompute it in backward.

    Args:
        function: any callable of tensors (a module, a block of layers).
        args: its arguments; tensors among them receive gradients.
        use_reentrant: accepted for PyTorch compatibility; ignored (see the module docstring).
        preserve_rng_state: replay the random state in the recomputation (same dropout masks).

    Returns:
        What ``function`` returns: a Tensor or a tuple of them.
    """
    kwargs.pop("determinism_check", None)
    kwargs.pop("debug", None)
    if not grad_mode.is_grad_enabled():
        return function(*args, **kwargs)
    tensors = [a for a in args if isinstance(a, Tensor)]
    devices = sorted({str(t.device) for t in tensors} | {"cpu"})
    devices = [backend.Device(d) for d in devices]
    rng = _rng_snapshot(devices) if preserve_rng_state else None
    with grad_mode.no_grad():
        out = function(*args, **kwargs)
    single = isinstance(out, Tensor)
    outs = (out,) if single else tuple(out)
    floats = [o for o in outs if isinstance(o, Tensor) and backend.is_floating(o.dtype)]
    if not floats:
        return out
    node = _Recompute()
    node.fn, node.args, node.kwargs, node.rng, node.devices = function, args, kwargs, rng, devices
    # the extra leaf makes the segment part of the graph even when no argument requires grad:
    # parameters inside the function still need their gradients
    anchor = wrap(np.zeros((), np.float32), requires_grad=True)
    node.link([a.grad_fn or a for a in args if isinstance(a, Tensor) and a.requires_grad] + [anchor])
    if single:
        node.layout = None
        return wrap(out.array, grad_fn=node)
    # several outputs: one packed array stands for all of them (autograd.packing), so the
    # engine sums every output's gradient before the segment is recomputed once
    index = [i for i, o in enumerate(outs) if isinstance(o, Tensor) and backend.is_floating(o.dtype)]
    views, layout = pack(node, [outs[i] for i in index])
    node.layout = dict(zip(index, layout))
    results = list(outs)
    for i, v in zip(index, views):
        results[i] = v
    return tuple(results) if isinstance(out, tuple) else results


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """Split ``functions`` (a ``Sequential`` or a list of modules) into ``segments`` runs and
    checkpoint every run but the last, as PyTorch's ``checkpoint_sequential``."""
    fns = list(functions.children()) if hasattr(functions, "children") else list(functions)
    if not 0 < segments <= max(len(fns), 1):
        raise ValueError(f"checkpoint_sequential: expected 1 <= segments <= {len(fns)} (the number of "
                         f"functions), got {segments}")
    size = len(fns) // segments

    def run(start, end):
        def forward(x):
            for f in fns[start:end + 1]:
                x = f(x)
            return x
        return forward

    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run(start, end), input, **kwargs)
    return run(end + 1, len(fns) - 1)(input)

