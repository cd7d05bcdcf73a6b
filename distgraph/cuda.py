"""``dg.cuda``: is a GPU usable here, and which."""
from __future__ import annotations

from distgraph import backend


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return backend.cupy() is not None


def device_count() -> int:
    cp = backend.cupy()
    return 0 if cp is None else cp.cuda.runtime.getDeviceCount()


def current_device() -> int:
    return backend.require_cuda(backend.Device("cuda", 0)).cuda.runtime.getDevice()


def set_device(device) -> None:
    """Make ``device`` (an int or ``cuda:N``) current for this process."""
    d = backend.Device(device)
    backend.require_cuda(d).cuda.Device(d.index).use()


def synchronize() -> None:
    cp = backend.cupy()
    if cp is not None:
        cp.cuda.get_current_stream().synchronize()


def manual_seed(seed: int) -> None:
    backend.manual_seed(seed)
