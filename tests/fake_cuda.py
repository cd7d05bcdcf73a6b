"""A fake CUDA array and a fake ``cupy`` module, for running GPU-buffer code paths on a CPU.

As in mpi4py's own tests, :class:`FakeCudaArray` is *host* memory that
describes itself through ``__cuda_array_interface__`` (version 3) and has the
few CuPy methods the comm layer calls (``.get(out=)``, ``.set()``,
``.data.ptr``, ``.device.id``, in-place division).  It refuses implicit
conversion to NumPy, as CuPy does, so code that treats it as a host array
fails loudly instead of passing by accident.

:func:`install` makes ``distgraph.backend.cupy()`` return a :class:`FakeCupy`
and puts fake ``cupy``, ``cupy.cuda``, ``cupy.cuda.memory_hook`` and
``cupyx`` modules into ``sys.modules``; the fakes count what was asked of
them (stream synchronisations, pinned allocations, copies each way).

What this proves, and what it does not:

* It proves the *decisions* of code that is handed a device array: which path
  it takes (direct CUDA-aware hand-off versus staging through host buffers),
  that it synchronises the stream before MPI reads, that it copies inputs
  down and results back (and only results), that mpi4py accepts an object
  exposing ``__cuda_array_interface__`` as a buffer and reads pointer, shape
  and dtype from it -- with real MPI processes.
* It does *not* prove anything about real device memory, CUDA streams, pinned
  memory, CUDA-aware MPI handling a real device pointer, NCCL, or that CuPy's
  methods have the signatures the fakes assume (``get(out=)``, ``set()``,
  ``MemoryHook`` callbacks): those run only on a GPU (benchmarks/gpu_suite.sh).
"""
from __future__ import annotations

import sys
import types

import numpy as np


class _Ptr:
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr


class _DeviceId:
    __slots__ = ("id",)

    def __init__(self, i):
        self.id = i


class FakeCudaArray:
    """Host memory posing as a C-contiguous CuPy array on device ``device_id``."""

    def __init__(self, host, device_id=0, cupy=None):
        self._host = np.ascontiguousarray(host)
        self.device = _DeviceId(device_id)
        self._cupy = cupy  # the FakeCupy that counts this array's copies, if any

    @classmethod
    def empty(cls, shape, dtype, **kw):
        return cls(np.empty(shape, dtype=dtype), **kw)

    # what code reads off an array
    shape = property(lambda self: self._host.shape)
    dtype = property(lambda self: self._host.dtype)
    size = property(lambda self: self._host.size)
    ndim = property(lambda self: self._host.ndim)
    nbytes = property(lambda self: self._host.nbytes)
    flags = property(lambda self: self._host.flags)
    data = property(lambda self: _Ptr(self._host.ctypes.data))

    @property
    def __cuda_array_interface__(self):
        return {"shape": self._host.shape, "typestr": self._host.dtype.str,
                "data": (self._host.ctypes.data, False), "strides": None, "version": 3,
                "stream": None}

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (FakeCudaArray, "
                        "like cupy.ndarray): use .get()")

    # CuPy's copies between host and device
    def get(self, stream=None, order="C", out=None):
        if self._cupy is not None:
            self._cupy.downloads += 1
        if out is None:
            return self._host.copy()
        out[...] = self._host
        return out

    def set(self, arr, stream=None):
        if self._cupy is not None:
            self._cupy.uploads += 1
        self._host[...] = arr

    def __itruediv__(self, v):
        if self._host.dtype.kind != "f":
            raise TypeError(f"FakeCudaArray: in-place true division of {self._host.dtype}")
        self._host /= v
        return self

    def view(self, dtype):
        return FakeCudaArray(self._host.view(dtype), self.device.id, self._cupy)

    def reshape(self, *shape):
        return FakeCudaArray(self._host.reshape(*shape), self.device.id, self._cupy)

    def host(self):
        """The host memory behind the fake (test helper, not a CuPy method)."""
        return self._host


# ----------------------------------------------------------- the fake module
class _Event:
    """A recorded event; ``done`` stays False until the test (or a synchronisation) sets it,
    so code that must wait for asynchronous copies can be caught not waiting."""

    def __init__(self, cupy):
        self._cupy = cupy
        self.done = cupy.events_complete
        cupy.events.append(self)


class _Stream:
    def __init__(self, cupy):
        self._cupy = cupy

    def synchronize(self):
        self._cupy.syncs += 1

    def record(self, event=None):
        return _Event(self._cupy)


class _DeviceCtx:
    def __init__(self, cupy, i):
        self._cupy, self.id = cupy, i

    def use(self):
        self._cupy.current = self.id

    def __enter__(self):
        self._prev = self._cupy.current
        self._cupy.current = self.id
        return self

    def __exit__(self, *exc):
        self._cupy.current = self._prev
        return False


class _Runtime:
    def __init__(self, cupy):
        self._cupy = cupy

    def getDeviceCount(self):
        return self._cupy.device_count

    def deviceSynchronize(self):
        self._cupy.device_syncs[self._cupy.current] = self._cupy.device_syncs.get(self._cupy.current, 0) + 1
        for e in self._cupy.events:
            e.done = True

    def getDevice(self):
        return self._cupy.current

    def getDeviceProperties(self, i):
        return {"name": f"Fake GPU {i}".encode(), "major": 9, "minor": 0,
                "totalGlobalMem": 80 << 30, "multiProcessorCount": 132}

    def memGetInfo(self):
        pool = self._cupy.pool
        return (80 << 30) - pool.total[self._cupy.current], 80 << 30


class MemoryHook:
    """Stand-in for ``cupy.cuda.memory_hook.MemoryHook``: ``with hook`` (or ``__enter__``) installs it."""

    name = "MemoryHook"
    installed: list = []

    def __enter__(self):
        MemoryHook.installed.append(self)
        return self

    def __exit__(self, *exc):
        MemoryHook.installed.remove(self)
        return False


class _Pool:
    """A per-device byte counter with CuPy's pool methods; ``malloc``/``free`` fire the hooks."""

    def __init__(self, cupy):
        self._cupy = cupy
        self.used: dict = {}
        self.total: dict = {}

    def _dev(self):
        return self._cupy.current

    def used_bytes(self):
        return self.used.get(self._dev(), 0)

    def total_bytes(self):
        return self.total.get(self._dev(), 0)

    def free_all_blocks(self, stream=None):
        d = self._dev()
        self.total[d] = self.used.get(d, 0)

    def malloc(self, n):
        d = self._dev()
        self.used[d] = self.used.get(d, 0) + n
        self.total[d] = max(self.total.get(d, 0), self.used[d])
        for h in list(MemoryHook.installed):
            h.malloc_postprocess(device_id=d, size=n, mem_size=n, mem_ptr=0, pmem_id=0)

    def free(self, n):
        d = self._dev()
        self.used[d] -= n
        for h in list(MemoryHook.installed):
            h.free_postprocess(device_id=d, mem_size=n, mem_ptr=0, pmem_id=0)


class FakeCupy(types.ModuleType):
    """The attributes of ``cupy`` that distgraph's backend, cuda and comm modules touch."""

    def __init__(self, device_count=1):
        super().__init__("cupy")
        self.device_count = device_count
        self.current = 0
        self.syncs = self.downloads = self.uploads = self.pinned = 0
        self.device_syncs: dict = {}  # device id -> runtime.deviceSynchronize() calls
        self.events: list = []        # every recorded _Event
        self.events_complete = True   # False: new events stay pending until deviceSynchronize()
        self.pool = _Pool(self)
        hook_mod = types.ModuleType("cupy.cuda.memory_hook")
        hook_mod.MemoryHook = MemoryHook
        cuda = types.ModuleType("cupy.cuda")
        cuda.runtime = _Runtime(self)
        cuda.Device = lambda i=None: _DeviceCtx(self, self.current if i is None else i)
        cuda.get_current_stream = lambda: _Stream(self)
        cuda.memory_hook = hook_mod
        self.cuda = cuda
        self.cupyx = types.ModuleType("cupyx")
        self.cupyx.empty_pinned = self._empty_pinned

    def _empty_pinned(self, shape, dtype=np.float64, order="C"):
        self.pinned += 1
        return np.empty(shape, dtype=dtype, order=order)

    def get_default_memory_pool(self):
        return self.pool

    def get_array_module(self, *arrays):
        return np

    def asarray(self, a):
        return FakeCudaArray(np.asarray(a), self.current, self)

    def array(self, a):
        return self.asarray(a)

    def counts(self):
        return {"syncs": self.syncs, "downloads": self.downloads, "uploads": self.uploads,
                "pinned": self.pinned}


def install(setattr_fn=None, setitem_fn=None, device_count=1):
    """Make ``distgraph.backend.cupy()`` return a new :class:`FakeCupy`; return it.

    In pytest pass ``monkeypatch.setattr`` and ``monkeypatch.setitem`` so that
    everything is undone after the test; in a standalone program leave them out.
    """
    from distgraph import backend
    fake = FakeCupy(device_count)
    set_attr = setattr_fn or (lambda obj, name, value: setattr(obj, name, value))
    set_item = setitem_fn or (lambda d, k, v: d.__setitem__(k, v))
    set_attr(backend, "cupy", lambda: fake)
    for name, mod in (("cupy", fake), ("cupy.cuda", fake.cuda),
                      ("cupy.cuda.memory_hook", fake.cuda.memory_hook), ("cupyx", fake.cupyx)):
        set_item(sys.modules, name, mod)
    MemoryHook.installed = []
    return fake


def fake_array(host, cupy=None, device_id=0):
    """A :class:`FakeCudaArray` over a copy of ``host`` whose copies ``cupy`` counts."""
    return FakeCudaArray(np.array(host), device_id, cupy)
