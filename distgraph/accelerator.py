"""``torch.accelerator``: the device-neutral way recent PyTorch scripts pick their device::

    device = dg.accelerator.current_accelerator().type if dg.accelerator.is_available() else "cpu"

distgraph's one accelerator type is CUDA (through CuPy); without CuPy or a GPU
``is_available()`` is False and ``current_accelerator()`` is None, as in PyTorch.
"""
from __future__ import annotations

import contextlib

from distgraph import backend, cuda

__all__ = ["is_available", "current_accelerator", "device_count", "current_device_index", "current_device_idx",
           "set_device_index", "set_device_idx", "synchronize", "device_index"]


def is_available() -> bool:
    """True when a CUDA GPU is usable through CuPy."""
    return cuda.is_available()


def current_accelerator(check_available: bool = False):
    """The accelerator's device type as a ``Device`` (``device(type='cuda')``), or None without one."""
    if not cuda.is_available():
        return None
    d = backend.Device.__new__(backend.Device)
    d.type, d.index = "cuda", None   # a device type, not a particular device, as PyTorch returns
    return d


def device_count() -> int:
    return cuda.device_count()


def current_device_index() -> int:
    """The index of the current accelerator device (-1 with none, as PyTorch)."""
    return cuda.current_device() if cuda.is_available() else -1


def set_device_index(device) -> None:
    """Make ``device`` (an int or ``"cuda:N"``) current."""
    if not cuda.is_available():
        raise RuntimeError("accelerator.set_device_index: no accelerator is available (CuPy sees no CUDA GPU)")
    cuda.set_device(device)


current_device_idx = current_device_index
set_device_idx = set_device_index


def synchronize(device=None) -> None:
    """Wait for the accelerator's queued work (a no-op without one)."""
    cuda.synchronize(device)


@contextlib.contextmanager
def device_index(device):
    """Within the block, ``device`` is the current accelerator device (``None``: unchanged)."""
    if device is None or not cuda.is_available():
        yield
        return
    prev = cuda.current_device()
    cuda.set_device(device)
    try:
        yield
    finally:
        cuda.set_device(prev)
