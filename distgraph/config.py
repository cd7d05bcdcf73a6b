"""Process-wide switches PyTorch scripts set at the top: threads, determinism, ``torch.backends.*``
flags, and ``compile``.

Threads: distgraph's CPU work is NumPy's BLAS; ``set_num_threads`` sets its pool size through
threadpoolctl when that package is installed (it comes with scikit-learn), and otherwise says so
once in the log (set ``OMP_NUM_THREADS`` before starting Python instead).
"""
from __future__ import annotations

import os
import sys
import types
import warnings

from distgraph.utils.logging import get_logger

__all__ = ["set_num_threads", "get_num_threads", "set_num_interop_threads", "get_num_interop_threads",
           "use_deterministic_algorithms", "are_deterministic_algorithms_enabled", "set_float32_matmul_precision",
           "get_float32_matmul_precision", "set_default_dtype", "get_default_dtype"]

_log = get_logger("distgraph.config")
_deterministic = False
_warned = set()


def _once(key, msg):
    if key not in _warned:
        _warned.add(key)
        _log.info(msg)


def _threadpoolctl():
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl


def set_num_threads(n: int) -> None:
    """Size of the BLAS thread pool (PyTorch's intra-op threads)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: expected a positive number of threads, got {n}")
    tp = _threadpoolctl()
    if tp is None:
        _once("threads", "set_num_threads: threadpoolctl is not installed, so the BLAS pool keeps its size; "
                         "set OMP_NUM_THREADS before starting Python")
        return
    tp.threadpool_limits(n)


def get_num_threads() -> int:
    tp = _threadpoolctl()
    if tp is not None:
        sizes = [p["num_threads"] for p in tp.threadpool_info()]
        if sizes:
            return max(sizes)
    return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))


def set_num_interop_threads(n: int) -> None:
    """Accepted: distgraph runs ops on the calling thread, there is no inter-op pool."""


def get_num_interop_threads() -> int:
    return 1


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Recorded and reported by ``are_deterministic_algorithms_enabled``: distgraph's ops are
    deterministic on the CPU already (NumPy), and its backward order is fixed by the graph."""
    global _deterministic
    _deterministic = bool(mode)


def are_deterministic_algorithms_enabled() -> bool:
    return _deterministic


def set_default_dtype(d) -> None:
    """The dtype of floating tensors made without one: Python floats in ``tensor()``, the factories
    (``zeros``, ``randn``, ``arange`` of floats ...), new layers' parameters.  As PyTorch, only floating
    dtypes (float16, float32, float64)."""
    from distgraph import backend
    try:
        dtype = backend.as_dtype(d)
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or not backend.is_floating(dtype):
        raise TypeError(f"set_default_dtype: only floating-point types are supported as the default type, got {d!r}")
    backend.set_default_float(dtype)


def get_default_dtype():
    """The dtype of floating tensors made without one (float32 unless ``set_default_dtype``)."""
    from distgraph import backend
    return backend.default_float()


_matmul_precision = "highest"


def set_float32_matmul_precision(precision: str) -> None:
    """Recorded (``get_float32_matmul_precision``): NumPy computes float32 products in float32 always;
    on a GPU, CuPy's cuBLAS uses TF32 only where its own settings say so.  As PyTorch, a name other than
    ``"highest"``, ``"high"`` or ``"medium"`` only warns."""
    global _matmul_precision
    if precision not in ("highest", "high", "medium"):
        warnings.warn(f"{precision} is not one of 'highest', 'high', or 'medium'; the "
                      "set_float32_matmul_precision call has no effect", UserWarning, stacklevel=2)
        return
    _matmul_precision = precision


def get_float32_matmul_precision() -> str:
    return _matmul_precision


# ------------------------------------------------------------ torch.backends
def _flags(name, doc, **attrs):
    mod = types.ModuleType(f"distgraph.backends.{name}", doc)
    mod.__dict__.update(attrs)
    sys.modules[mod.__name__] = mod
    return mod


def _false():
    return False


backends = types.ModuleType("distgraph.backends", "PyTorch's ``torch.backends`` switches: accepted and "
                            "recorded; CuPy chooses its own kernels.")
backends.cudnn = _flags("cudnn", "cuDNN switches (recorded; CuPy picks its kernels)", benchmark=False,
                        deterministic=False, enabled=True, allow_tf32=True, is_available=_false,
                        version=lambda: None)
backends.mps = _flags("mps", "Apple MPS: never available in distgraph", is_available=_false, is_built=_false)
backends.cuda = _flags("cuda", "CUDA switches (recorded)", matmul=types.SimpleNamespace(allow_tf32=False,
                       allow_fp16_reduced_precision_reduction=True), is_built=lambda: True)
backends.mkldnn = _flags("mkldnn", "oneDNN: not used (NumPy's BLAS is)", enabled=False, is_available=_false)
backends.openmp = _flags("openmp", "OpenMP", is_available=lambda: True)
sys.modules["distgraph.backends"] = backends
