"""``dg.cuda``: is a GPU usable here, which one, and how much of its memory is in use.

PyTorch's names and semantics (``torch.cuda``).  Without CuPy or a GPU the
queries that only *count* (``device_count``, ``memory_allocated``, ...) return
0 and ``empty_cache`` does nothing, as in a CPU build of PyTorch; those that
need a device (``get_device_name``, ``set_device``, ...) raise a clear
``RuntimeError``.

Memory is CuPy's: distgraph allocates every device array from CuPy's default
memory pool, so ``memory_allocated`` is the pool's bytes in use and
``memory_reserved`` the bytes it holds from the driver (PyTorch's caching
allocator has the same two numbers).  CuPy keeps no peak, so the peak is
tracked by a CuPy memory hook that is installed by the first call of
``max_memory_allocated`` or ``reset_peak_memory_stats`` -- not before, because
a hook costs a Python call on every allocation.  Unlike PyTorch, the peak
therefore counts from that first call, and only allocations made by the
thread that installed it (CuPy's hooks are per thread).
"""
from __future__ import annotations

import threading

from distgraph import backend

__all__ = ["is_available", "device_count", "current_device", "set_device", "synchronize",
           "manual_seed", "manual_seed_all", "get_device_name", "get_device_capability",
           "get_device_properties", "mem_get_info", "memory_allocated", "max_memory_allocated",
           "reset_peak_memory_stats", "memory_reserved", "empty_cache", "is_bf16_supported",
           "DeviceProperties"]


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return backend.cupy() is not None


def device_count() -> int:
    """The number of CUDA devices CuPy sees (0 without CuPy or a GPU)."""
    cp = backend.cupy()
    return 0 if cp is None else cp.cuda.runtime.getDeviceCount()


def _index(device, what) -> int:
    """``None`` (the current device), an int, ``"cuda:N"`` or a Device -> the device index."""
    if device is None:
        cp = backend.require_cuda(backend.Device("cuda", 0))
        return cp.cuda.runtime.getDevice()
    d = backend.Device(device)
    if d.type != "cuda":
        raise ValueError(f"dg.cuda.{what}: expected a CUDA device (an int, 'cuda' or 'cuda:N'), "
                         f"got {device!r}")
    cp = backend.require_cuda(d)
    count = cp.cuda.runtime.getDeviceCount()
    if not 0 <= d.index < count:
        raise ValueError(f"dg.cuda.{what}: expected a device index in [0, {count}), got {d.index}")
    return d.index


def current_device() -> int:
    """The index of the current CUDA device of this thread."""
    return backend.require_cuda(backend.Device("cuda", 0)).cuda.runtime.getDevice()


def set_device(device) -> None:
    """Make ``device`` (an int or ``cuda:N``) current for this process."""
    d = backend.Device(device)
    backend.require_cuda(d).cuda.Device(d.index).use()


def synchronize(device=None) -> None:
    """Wait for everything queued on ``device``, on every stream (PyTorch's
    ``torch.cuda.synchronize``: ``cudaDeviceSynchronize``, not only the current stream,
    so work on NCCL's and other side streams is finished too); no-op without a GPU."""
    cp = backend.cupy()
    if cp is None:
        return
    with cp.cuda.Device(_index(device, "synchronize")):
        cp.cuda.runtime.deviceSynchronize()


def manual_seed(seed: int) -> None:
    """Seed the random generators (distgraph seeds every device together)."""
    backend.manual_seed(seed)


manual_seed_all = manual_seed


# ---------------------------------------------------------------- properties
class DeviceProperties:
    """What ``get_device_properties`` returns (a subset of PyTorch's fields)."""

    __slots__ = ("name", "major", "minor", "total_memory", "multi_processor_count")

    def __init__(self, name, major, minor, total_memory, multi_processor_count):
        self.name, self.major, self.minor = name, major, minor
        self.total_memory, self.multi_processor_count = total_memory, multi_processor_count

    def __repr__(self):
        return (f"_CudaDeviceProperties(name='{self.name}', major={self.major}, minor={self.minor}, "
                f"total_memory={self.total_memory >> 20}MB, "
                f"multi_processor_count={self.multi_processor_count})")


def get_device_properties(device=None) -> DeviceProperties:
    """Name, compute capability, memory and multiprocessor count of ``device``."""
    i = _index(device, "get_device_properties")
    p = backend.cupy().cuda.runtime.getDeviceProperties(i)
    name = p["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return DeviceProperties(name, int(p["major"]), int(p["minor"]), int(p["totalGlobalMem"]),
                            int(p["multiProcessorCount"]))


def get_device_name(device=None) -> str:
    """The name of ``device``, e.g. ``"NVIDIA H100 80GB HBM3"``."""
    return get_device_properties(device).name


def get_device_capability(device=None) -> tuple:
    """The compute capability ``(major, minor)`` of ``device``."""
    p = get_device_properties(device)
    return p.major, p.minor


def mem_get_info(device=None) -> tuple:
    """``(free, total)`` bytes of ``device`` as the driver sees them (``cudaMemGetInfo``)."""
    i = _index(device, "mem_get_info")
    cp = backend.cupy()
    with cp.cuda.Device(i):
        free, total = cp.cuda.runtime.memGetInfo()
    return int(free), int(total)


def is_bf16_supported() -> bool:
    """False: distgraph has no bfloat16 dtype yet (NumPy has none; see docs/gpu.md)."""
    return False


# -------------------------------------------------------------------- memory
def _pool():
    cp = backend.cupy()
    return None if cp is None else cp.get_default_memory_pool()


def _pool_bytes(device, what, method):
    """``pool.<method>()`` on ``device`` (CuPy's pool counts per device: the current one)."""
    cp = backend.cupy()
    if cp is None:
        return 0
    with cp.cuda.Device(_index(device, what)):
        return int(getattr(cp.get_default_memory_pool(), method)())


def memory_allocated(device=None) -> int:
    """Bytes of ``device`` memory held by live arrays (CuPy's pool, ``used_bytes``); 0 without a GPU."""
    return _pool_bytes(device, "memory_allocated", "used_bytes")


def memory_reserved(device=None) -> int:
    """Bytes of ``device`` memory the pool holds from the driver (``total_bytes``); 0 without a GPU."""
    return _pool_bytes(device, "memory_reserved", "total_bytes")


def empty_cache() -> None:
    """Give the pool's unused blocks back to the driver (``free_all_blocks``); no-op without a GPU."""
    pool = _pool()
    if pool is not None:
        pool.free_all_blocks()


class _PeakTracker:
    """Running and peak bytes per device, fed by a CuPy ``MemoryHook`` (see the module docstring)."""

    def __init__(self, cp):
        from cupy.cuda import memory_hook  # noqa: PLC0415 - only with CuPy

        tracker = self

        class Hook(memory_hook.MemoryHook):
            name = "distgraph_peak_memory"

            def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id, **kw):
                tracker.add(device_id, mem_size)

            def free_postprocess(self, device_id, mem_size, mem_ptr, pmem_id, **kw):
                tracker.add(device_id, -mem_size)

        self.cp = cp
        self.lock = threading.Lock()
        self.current: dict = {}
        self.peak: dict = {}
        self.hook = Hook()
        self.hook.__enter__()  # installed for the rest of the process, in this thread

    def _start(self, device_id):
        with self.cp.cuda.Device(device_id):
            used = int(self.cp.get_default_memory_pool().used_bytes())
        self.current[device_id] = used
        self.peak[device_id] = max(self.peak.get(device_id, 0), used)

    def add(self, device_id, nbytes):
        # Called inside CuPy's allocator: never call back into the pool from here.
        with self.lock:
            if device_id not in self.current:
                return  # not tracked yet: max()/reset() start a device from used_bytes
            cur = self.current[device_id] = self.current[device_id] + nbytes
            if cur > self.peak[device_id]:
                self.peak[device_id] = cur

    def reset(self, device_id):
        with self.lock:
            self._start(device_id)
            self.peak[device_id] = self.current[device_id]

    def max(self, device_id):
        with self.lock:
            if device_id not in self.current:
                self._start(device_id)
            return self.peak[device_id]


_tracker = None


def _peak_tracker():
    global _tracker
    if _tracker is None:
        _tracker = _PeakTracker(backend.cupy())
    return _tracker


def max_memory_allocated(device=None) -> int:
    """The most bytes ``memory_allocated`` has reached since tracking began; 0 without a GPU.

    Tracking begins at the first call of this function or of
    :func:`reset_peak_memory_stats` (PyTorch counts from the start of the process).
    """
    if backend.cupy() is None:
        return 0
    i = _index(device, "max_memory_allocated")
    return _peak_tracker().max(i)


def reset_peak_memory_stats(device=None) -> None:
    """Start the peak of ``max_memory_allocated`` again from the current use; no-op without a GPU."""
    if backend.cupy() is None:
        return
    _peak_tracker().reset(_index(device, "reset_peak_memory_stats"))
