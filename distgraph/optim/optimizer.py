"""``Optimizer``: the base class of every optimizer (PyTorch's ``torch.optim.Optimizer``).

An optimizer holds ``param_groups`` (a list of dicts: ``"params"`` plus that
group's options) and ``state`` (a per-parameter dict of buffers). Subclasses
implement ``step()`` as in-place updates of the raw arrays ``p.array`` (NumPy or
CuPy, chosen from the data), so that no autograd graph is recorded and the
same code runs on CPU and GPU.

``state_dict()`` has PyTorch's layout::

    {"state": {0: {"momentum_buffer": Tensor}, 1: {...}},
     "param_groups": [{"lr": 0.1, ..., "params": [0, 1]}]}

Differences from PyTorch: the per-parameter step counter ``state["step"]`` is a
Python ``int`` (PyTorch keeps a float tensor; loading one of those is accepted);
``foreach``/``fused`` are accepted for signature compatibility and ignored.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import chain

import numpy as np

from distgraph import backend
from distgraph.autograd import Tensor, enable_grad
from distgraph.autograd.tensor import bump_version, zero_grads

__all__ = ["Optimizer", "required"]


class _Required:
    """Sentinel for an option every param group must give (e.g. a missing default ``lr``)."""

    def __repr__(self):
        return "<required parameter>"


required = _Required()


def as_state_tensor(array) -> Tensor:
    """Wrap a raw NumPy/CuPy array as a Tensor that shares it (no copy, no graph)."""
    from distgraph.autograd.creation import from_dlpack, from_numpy
    if isinstance(array, np.generic):  # NumPy turns 0-d results into scalars
        array = np.asarray(array)
    return from_numpy(array) if isinstance(array, np.ndarray) else from_dlpack(array)


_blas = None  # SciPy's BLAS module once looked up, False when SciPy is missing
_AXPY_MIN_SIZE = 1 << 14  # below this, NumPy's two passes cost less than the call


def axpy_(y, alpha, x):
    """``y += alpha * x`` in place; returns ``y``.

    For large C-contiguous NumPy float arrays it calls BLAS ``axpy`` (through
    SciPy, when installed): one pass over memory and no temporary, like
    PyTorch's ``add_(x, alpha=...)``. Everything else (CuPy, small or strided
    arrays) takes the plain ``xp`` path.
    """
    global _blas
    if (type(y) is np.ndarray and y.size >= _AXPY_MIN_SIZE and type(x) is np.ndarray and x.shape == y.shape
            and x.dtype == y.dtype and y.dtype.char in "fd" and y.flags.c_contiguous and x.flags.c_contiguous):
        if _blas is None:
            try:
                from scipy.linalg import blas as _scipy_blas
                _blas = _scipy_blas
            except ImportError:
                _blas = False
        if _blas:
            axpy = _blas.saxpy if y.dtype.char == "f" else _blas.daxpy
            axpy(x.reshape(-1), y.reshape(-1), a=alpha)
            return y
    y += x if alpha == 1 else alpha * x
    return y


def check_option(opt_name, name, value, low=0.0, high=None, high_open=False):
    """Raise ``ValueError("SGD: invalid lr -1 (expected >= 0)")`` unless ``low <= value`` (``< / <= high``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{opt_name}: invalid {name} {value!r} (expected a number)") from None
    ok = v >= low and (high is None or (v < high if high_open else v <= high))
    if not ok:
        if high is None:
            expected = f">= {low:g}"
        else:
            expected = f"in [{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{opt_name}: invalid {name} {value!r} (expected {expected})")


class Optimizer:
    """Base class of all optimizers.

    Args:
        params: an iterable of Tensors, of ``(name, Tensor)`` pairs, or of dicts
            (param groups: ``{"params": [...], "lr": ...}``, options missing from
            a group are taken from ``defaults``).
        defaults: the default options of every group.

    Raises:
        TypeError: ``params`` is a single Tensor, a set, or holds a non-Tensor.
        ValueError: ``params`` is empty, a parameter is in two groups, or a
            required option (``lr``) is missing.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = defaultdict(dict)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            f"or dicts, but got a {type(params).__name__}; wrap it in a list: [param]")
        if isinstance(params, (set, frozenset)):
            params = {"params": params}  # refused by add_param_group: a set has no stable order
        groups = [params] if isinstance(params, dict) else list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: optimizer got an empty parameter list; "
                             "did the model have no parameters, or was a generator used up already?")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------ param groups
    def add_param_group(self, param_group: dict):
        """Add a group of parameters (with its own options) to optimize, e.g. a newly unfrozen layer."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                            "ordering of tensors in sets will change between runs; use a list instead")
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names; some param names are missing")
            group["param_names"] = names
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: optimizer can only optimize Tensors, but param {i} of the group "
                                f"is a {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (param {i} of the group); "
                                 "optimize the leaf it was computed from, or .detach() it")
        group["params"] = params
        for key, default in self.defaults.items():
            if default is required and key not in group:
                raise ValueError(f"{name}: parameter group didn't specify a value of required "
                                 f"optimization parameter {key}")
            group.setdefault(key, default)
        self._validate_group(group)
        ids = {id(p) for p in params}
        if len(ids) != len(params):
            raise ValueError(f"{name}: a parameter group contains the same parameter twice")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if ids & seen:
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _validate_group(self, group):
        """Subclasses check a group's options here (run for every group, not only the defaults)."""

    # ----------------------------------------------------------------- stepping
    def zero_grad(self, set_to_none: bool = True):
        """Reset the gradients of every parameter: to ``None`` (default) or to zeros in place."""
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure=None):
        """Perform one update of every parameter that has a gradient.

        Args:
            closure: an optional callable that re-evaluates the model and returns
                the loss (called with gradients enabled, before the update).

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        self._opt_called = True  # lets an LR scheduler warn when it is stepped before the optimizer
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad.array, self.state[p], group)
                    bump_version(p)  # an in-place change of p: keep autograd's version check honest
        return loss

    def _update(self, p, g, state, group):
        """Update the raw array ``p.array`` in place from gradient array ``g`` (subclasses)."""
        raise NotImplementedError

    # ------------------------------------------------------------- state dicts
    def state_dict(self) -> dict:
        """The optimizer's state, with parameters replaced by their index (PyTorch's layout).

        Indices count parameters across all groups in order. The buffers are
        the optimizer's own Tensors (not copies): ``dg.save`` them, or copy them.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: s for p, s in self.state.items() if id(p) in index and s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict):
        """Load a ``state_dict()`` (ours, or PyTorch's loaded through ``dg.load``).

        Buffers are copied onto each parameter's device (and dtype, for floating
        parameters); group options are replaced by the saved ones.

        Raises:
            ValueError: the number of groups, or of parameters in a group, differs.
            KeyError: ``state_dict`` lacks ``"state"`` or ``"param_groups"``.
        """
        name = type(self).__name__
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise KeyError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups', "
                               f"missing {key!r} (keys: {sorted(map(str, state_dict))})")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: loaded state dict has {len(saved_groups)} parameter "
                             f"groups, this optimizer has {len(self.param_groups)}")
        for i, (g, s) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has {len(s['params'])} "
                                 f"parameters in the loaded state dict, {len(g['params'])} here")
        id_map = dict(zip(chain.from_iterable(s["params"] for s in saved_groups),
                          chain.from_iterable(g["params"] for g in self.param_groups)))
        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            k = int(k) if isinstance(k, str) and k.isdigit() else k
            if k in id_map:
                p = id_map[k]
                state[p] = {key: _cast_state(p, key, val) for key, val in v.items()}
            else:
                state[k] = v
        new_groups = []
        for g, s in zip(self.param_groups, saved_groups):
            new = {k: (tuple(v) if k == "betas" else v) for k, v in s.items() if k != "params"}
            new["params"] = g["params"]
            new_groups.append(new)
        self.state, self.param_groups = state, new_groups

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _cast_state(p, key, value):
    """A loaded state value, moved to ``p``'s device (and float dtype); ``step`` becomes a number."""
    if key == "step":
        if isinstance(value, Tensor):
            value = value.item()
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return int(value)
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, Tensor):
        value = value.array
    if isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__"):
        arr = backend.to_device(value, p.device)
        if backend.is_floating(p.array.dtype) and backend.is_floating(arr.dtype):
            arr = arr.astype(p.array.dtype, copy=False)
        return as_state_tensor(arr.copy())
    return value
