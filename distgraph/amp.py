"""Mixed precision: ``autocast`` regions and dynamic loss scaling (``GradScaler``).

Inside ``with dg.amp.autocast(dtype=dg.float16):`` matrix products (``matmul``,
``linear``, convolutions, ``einsum``, attention's products) run in the low
precision dtype, while ``softmax``/``log_softmax``, the norms, ``logsumexp``
and the losses run in float32, as PyTorch's autocast op lists do.  Casts are
recorded in the graph, so parameters keep float32 gradients.

bfloat16: NumPy has no bfloat16 type, so on the CPU ``autocast(dtype=bfloat16)``
raises; distgraph's dtypes are those NumPy and CuPy share.
"""
from __future__ import annotations

import functools

from distgraph import backend
from distgraph.autograd.ops._common import autocast_dtype, set_autocast_dtype

__all__ = ["autocast", "GradScaler"]


class autocast:  # noqa: N801 - PyTorch's name
    """Context manager and decorator: run eligible ops in ``dtype`` (float16)."""

    def __init__(self, device_type="cuda", dtype=None, enabled=True, cache_enabled=None):
        # PyTorch's signature: ``torch.autocast("cuda", dtype=...)``, ``torch.cuda.amp.autocast()``.
        # Its CPU default is bfloat16, which NumPy lacks: distgraph's default is float16 on every device.
        if str(device_type).split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"autocast: expected device_type 'cuda' or 'cpu', got {device_type!r}")
        if dtype is None:
            dtype = backend.float16
        if str(dtype) in ("bfloat16",) or getattr(dtype, "__name__", "") == "bfloat16":
            raise TypeError("autocast: bfloat16 is not available (NumPy has no bfloat16); use dtype=dg.float16")
        self.dtype = backend.as_dtype(dtype)
        if self.dtype != backend.float16:
            raise TypeError(f"autocast: expected a low-precision float dtype (float16), got "
                            f"{backend.dtype_name(self.dtype)}")
        self.enabled = enabled

    def __enter__(self):
        self._prev = autocast_dtype()
        set_autocast_dtype(self.dtype if self.enabled else None)
        return self

    def __exit__(self, *exc):
        set_autocast_dtype(self._prev)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with autocast(dtype=self.dtype, enabled=self.enabled):
                return fn(*args, **kwargs)
        return wrapper


def is_autocast_enabled() -> bool:
    return autocast_dtype() is not None


class GradScaler:
    """Dynamic loss scaling, PyTorch's ``GradScaler``.

    ``scaler.scale(loss).backward()``; ``scaler.step(opt)`` unscales the
    gradients (unless ``unscale_`` already did, e.g. before clipping) and skips
    the step when any is inf/NaN; ``scaler.update()`` halves the scale after a
    skipped step (``backoff_factor``) and doubles it after ``growth_interval``
    clean steps (``growth_factor``).  Under a process group the inf/NaN check
    is all-reduced, so every rank skips or steps together (``unscale_`` is then
    a collective: every rank must call it, in the same order).
    """

    def __init__(self, device="cpu", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        if growth_factor <= 1 or not 0 < backoff_factor < 1:
            raise ValueError(f"GradScaler: expected growth_factor > 1 and 0 < backoff_factor < 1, got "
                             f"{growth_factor} and {backoff_factor}")
        self._scale, self._growth_factor, self._backoff_factor = float(init_scale), growth_factor, backoff_factor
        self._growth_interval, self._growth_tracker = growth_interval, 0
        self._enabled = enabled
        self._per_optimizer = {}

    def is_enabled(self):
        return self._enabled

    def get_scale(self):
        return self._scale if self._enabled else 1.0

    def scale(self, outputs):
        """Multiply a tensor (or a list/tuple of them) by the current scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        return outputs * self._scale

    def unscale_(self, optimizer):
        """Divide this optimizer's gradients by the scale, in place, and record inf/NaN."""
        if not self._enabled:
            return
        state = self._per_optimizer.setdefault(id(optimizer), {})
        if state.get("unscaled"):
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update()")
        inv = 1.0 / self._scale
        found = None  # a 0-d float32 array on the gradients' device: nothing is read here
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.array
                xp = backend.get_array_module(g)
                g *= inv
                bad = xp.asarray(xp.logical_not(xp.isfinite(g).all()), dtype=backend.float32)
                if found is None:
                    found = bad
                else:
                    xp.maximum(found, backend.to_device(bad, backend.device_of(found)), out=found)
        state["found_inf"] = _agree(found)
        state["unscaled"] = True

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step()`` unless the gradients held inf/NaN; returns its result or None.

        Deciding costs one host read of the inf/NaN flag per step (as PyTorch's, without a
        capturable optimizer), however many parameters there are."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        state = self._per_optimizer.setdefault(id(optimizer), {})
        if not state.get("unscaled"):
            self.unscale_(optimizer)
        state["stepped"] = True
        if _found(state):
            return None
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None):
        """Adjust the scale for the next iteration (after every optimizer's ``step``)."""
        if not self._enabled:
            return
        if new_scale is not None:
            self._scale = float(new_scale.item() if hasattr(new_scale, "item") else new_scale)
        else:
            found = any(_found(s) for s in self._per_optimizer.values())
            if found:
                self._scale *= self._backoff_factor
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    self._scale *= self._growth_factor
                    self._growth_tracker = 0
        self._per_optimizer = {}

    def state_dict(self):
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state):
        """Restore ``state_dict()``'s state; a no-op on a disabled scaler (as PyTorch).

        Raises:
            RuntimeError: ``state`` is empty (saved from a disabled scaler) or lacks a key."""
        if not self._enabled:
            return
        if len(state) == 0:
            raise RuntimeError("GradScaler.load_state_dict: the source state dict is empty, possibly because it "
                               "was saved from a disabled instance of GradScaler; enable both or neither")
        missing = [k for k in ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
                   if k not in state]
        if missing:
            raise RuntimeError(f"GradScaler.load_state_dict: expected a GradScaler.state_dict(), missing {missing}")
        self._scale = float(state["scale"])
        self._growth_factor, self._backoff_factor = state["growth_factor"], state["backoff_factor"]
        self._growth_interval, self._growth_tracker = state["growth_interval"], state["_growth_tracker"]


def _agree(found):
    """Every rank's inf/NaN flag (a 0-d array, or None without gradients), max-reduced so
    that no rank steps alone; stays on the device (NCCL reduces a device array)."""
    if found is None:
        found = backend.xp_for(backend.CPU).zeros((), backend.float32)
    try:
        from distgraph import comm
        if comm.is_initialized() and comm.get_world_size() > 1:
            from distgraph.autograd.tensor import wrap
            t = wrap(found.reshape(1))
            comm.all_reduce(t, op=comm.ReduceOp.MAX)
            found = t.array.reshape(())
    except ImportError:
        pass
    return found


def _found(state) -> bool:
    """The optimizer's inf/NaN flag as a Python bool: the one host read of a step (cached)."""
    found = state.get("found_inf")
    if found is None:
        return False
    if not isinstance(found, bool):
        found = state["found_inf"] = float(found) != 0.0  # (NaN, never expected, counts as found)
    return found
