"""``nn.utils.stateless.functional_call`` (also ``dg.func.functional_call``): call a module with some of
its parameters and buffers replaced by given tensors, for this one call."""
from __future__ import annotations

import contextlib

from distgraph.autograd.tensor import Tensor

__all__ = ["functional_call"]


def _merge(dicts):
    if isinstance(dicts, dict):
        return dict(dicts)
    if not isinstance(dicts, (tuple, list)) or not all(isinstance(d, dict) for d in dicts):
        raise ValueError("functional_call: expected a dict or a tuple of dicts of tensors, got "
                         f"{type(dicts).__name__}")
    merged, seen = {}, {}
    for d in dicts:
        for k in d:
            seen[k] = seen.get(k, 0) + 1
        merged.update(d)
    repeated = sorted(k for k, n in seen.items() if n > 1)
    if repeated:
        raise ValueError(f"{repeated} appeared in multiple dictionaries; behavior of functional call is ambiguous")
    return merged


def _named_tensors(module):
    """``{full name: tensor}`` over every parameter and buffer, tied ones under each of their names."""
    out = {}
    for prefix, m in module.named_modules(remove_duplicate=False):
        for store in (m._parameters, m._buffers):
            for name, t in store.items():
                if t is not None:
                    out[f"{prefix}.{name}" if prefix else name] = t
    return out


def _expand_tied(given, named):
    """Give every name tied to a given one (the same Parameter under several names) the same value."""
    groups = {}
    for name, t in named.items():
        groups.setdefault(id(t), []).append(name)
    out = dict(given)
    for key in given:
        if key not in named:
            continue
        tied = groups[id(named[key])]
        values = {id(given[k]) for k in tied if k in given}
        if len(values) > 1:
            raise ValueError(f"functional_call got multiple values for keys {sorted(k for k in tied if k in given)}, "
                             "which are tied. Consider using tie_weights=False")
        for k in tied:
            out.setdefault(k, given[key])
    return out


@contextlib.contextmanager
def _reparametrized(module, tensors, tie_weights, strict):
    named = _named_tensors(module)
    if tie_weights:
        tensors = _expand_tied(tensors, named)
    if strict:
        unexpected = sorted(k for k in tensors if k not in named)
        missing = sorted(k for k in named if k not in tensors)
        if unexpected or missing:
            lines = []
            if unexpected:
                lines.append("Unexpected key(s): " + ", ".join(f"'{k}'" for k in unexpected) + ".")
            if missing:
                lines.append("Missing key(s): " + ", ".join(f"'{k}'" for k in missing) + ".")
            raise RuntimeError(f"Error(s) in reparametrizing for {type(module).__name__}:\n\t" + "\n\t".join(lines))
    swapped, added = [], []
    try:
        for key, value in tensors.items():
            path, _, leaf = key.rpartition(".")
            owner = module.get_submodule(path) if path else module
            for store in (owner._parameters, owner._buffers):
                if leaf in store:
                    swapped.append((store, leaf, store[leaf]))
                    store[leaf] = value
                    break
            else:   # not a parameter or buffer (strict=False): a plain attribute, for this call only
                object.__setattr__(owner, leaf, value)
                added.append((owner, leaf))
        yield
    finally:
        for store, leaf, old in reversed(swapped):
            store[leaf] = old
        for owner, leaf in added:
            owner.__dict__.pop(leaf, None)


def functional_call(module, parameter_and_buffer_dicts, args=None, kwargs=None, *, tie_weights=True, strict=False):
    """``module(*args, **kwargs)`` with the parameters and buffers named in the dict(s) replaced, for this
    call only, by the given tensors (which may require grad: gradients flow to them, not to the module's
    own parameters).  The module is unchanged afterwards (in-place updates of a given buffer, e.g. batch
    norm's running statistics, land in the given tensor).

    Args:
        module: the module to call.
        parameter_and_buffer_dicts: ``{name: tensor}`` with ``state_dict()``-style names, or a tuple of
            such dicts (a name may appear in only one of them).
        args: positional arguments (a single non-tuple value is one argument).
        kwargs: keyword arguments.
        tie_weights: a Parameter registered under several names (tied weights) is replaced under all of
            them when one of its names is given.
        strict: every parameter and buffer must be given, and nothing else.

    Returns:
        What the module's call returns.

    Raises:
        ValueError: a name appears in several dicts, or tied names get different tensors.
        RuntimeError: with ``strict``, missing or unexpected names.
    """
    tensors = _merge(parameter_and_buffer_dicts)
    for k, v in tensors.items():
        if not isinstance(v, Tensor):
            raise TypeError(f"functional_call: the value for '{k}' must be a Tensor, got {type(v).__name__}")
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        args = (args,)
    with _reparametrized(module, tensors, tie_weights, strict):
        return module(*args, **(kwargs or {}))
