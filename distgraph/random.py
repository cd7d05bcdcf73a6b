"""Random state, PyTorch's ``torch.random`` / ``torch.Generator`` names.

distgraph draws from one NumPy ``Generator`` per device (``dg.manual_seed`` seeds
them all).  A ``dg.Generator`` is a separate stream for the places that take
``generator=`` (``randn``/``rand``/``randint``/``randperm``, ``random_split``,
samplers and loaders).  Streams differ from PyTorch's: the same seed gives other
numbers than torch (the rules, shapes and dtypes are PyTorch's).
"""
from __future__ import annotations

import contextlib
import json

import numpy as np

from distgraph import backend

__all__ = ["Generator", "manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state", "fork_rng",
           "default_generator"]

_initial_seed = None


def _state_tensor(state: dict):
    from distgraph.autograd.tensor import wrap
    return wrap(np.frombuffer(json.dumps(state).encode(), dtype=np.uint8).copy())


def _state_dict(t) -> dict:
    arr = t.array if hasattr(t, "array") else np.asarray(t)
    try:
        return json.loads(bytes(np.asarray(arr, dtype=np.uint8)).decode())
    except (ValueError, UnicodeDecodeError):
        raise RuntimeError("set_rng_state: expected a state returned by get_rng_state()/get_state() "
                           "of distgraph, got something else") from None


class Generator:
    """``Generator(device="cpu")``: an independent random stream (PyTorch's ``torch.Generator``)."""

    def __init__(self, device="cpu"):
        self.device = backend.Device(device)
        self._seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        self._rng = np.random.default_rng(self._seed)

    def manual_seed(self, seed):
        self._seed = int(seed)
        self._rng = np.random.default_rng(self._seed)
        return self

    def seed(self):
        """Re-seed from fresh entropy; returns the new seed."""
        return self.manual_seed(int(np.random.SeedSequence().entropy % (2 ** 63)))._seed

    def initial_seed(self):
        return self._seed

    def get_state(self):
        return _state_tensor(self._rng.bit_generator.state)

    def set_state(self, state):
        self._rng.bit_generator.state = _state_dict(state)
        return self

    def numpy_generator(self) -> np.random.Generator:
        """The NumPy generator behind this stream (what distgraph's functions draw from)."""
        return self._rng

    def __repr__(self):
        return f"<distgraph.Generator device={self.device}>"


def manual_seed(s):
    """Seed every device's generator (PyTorch's ``torch.manual_seed``)."""
    global _initial_seed
    _initial_seed = int(s)
    backend.manual_seed(s)
    return default_generator


def seed():
    """Seed every device's generator from fresh entropy; returns the seed."""
    s = int(np.random.SeedSequence().entropy % (2 ** 63))
    manual_seed(s)
    return s


def initial_seed():
    """The seed last given to ``manual_seed`` (or drawn by ``seed``)."""
    global _initial_seed
    if _initial_seed is None:
        _initial_seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        backend.manual_seed(_initial_seed)
    return _initial_seed


def get_rng_state():
    """The CPU generator's state as a uint8 Tensor (give it back to ``set_rng_state``)."""
    return _state_tensor(backend.generator(backend.CPU).bit_generator.state)


def set_rng_state(new_state):
    backend.generator(backend.CPU).bit_generator.state = _state_dict(new_state)


@contextlib.contextmanager
def fork_rng(devices=None, enabled=True, **kwargs):
    """Within the block, draws do not advance the generators outside it (PyTorch's ``fork_rng``)."""
    if not enabled:
        yield
        return
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


class _DefaultGenerator(Generator):
    """``torch.default_generator``: the CPU stream ``dg.manual_seed`` seeds."""

    def __init__(self):
        self.device = backend.CPU

    @property
    def _rng(self):
        return backend.generator(backend.CPU)

    def manual_seed(self, seed):
        manual_seed(seed)
        return self

    def initial_seed(self):
        return initial_seed()

    def get_state(self):
        return get_rng_state()

    def set_state(self, state):
        set_rng_state(state)
        return self


default_generator = _DefaultGenerator()


def numpy_generator(generator, device=backend.CPU) -> np.random.Generator:
    """What a ``generator=`` argument means: a ``dg.Generator``'s stream, or the device's own when None."""
    if generator is None:
        return backend.generator(backend.Device(device))
    if isinstance(generator, Generator):
        return generator.numpy_generator()
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"generator: expected a distgraph Generator or None, got {type(generator).__name__}")
