"""The decoding half of ``dg.load``: what a structure record means, where tensors go
(``map_location``), and files written by ``torch.save``.  The file format and the checks on the
file's header are in :mod:`distgraph.serialization`."""
from __future__ import annotations

import numpy as np

from distgraph import backend
from distgraph.autograd import Parameter, Tensor

__all__ = ["CheckpointError"]


class CheckpointError(RuntimeError):
    """A file that can't be read as a checkpoint (truncated, corrupt, or of another format)."""


class _BytesSource:
    def __init__(self, data):
        self.data = data


def _show(value):
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def _target_device(saved, map_location):
    if map_location is None:
        target = saved
    elif isinstance(map_location, dict):
        target = map_location.get(saved, saved)
    elif isinstance(map_location, (str, backend.Device)):
        target = map_location
    elif callable(map_location):
        # PyTorch's ``map_location=lambda storage, loc: storage`` (stay on the CPU) or
        # ``lambda storage, loc: storage.cuda(rank)``: the device of what it returns is the target
        moved = map_location(Tensor(np.zeros(0, np.float32)), str(saved))
        target = moved.device if isinstance(moved, Tensor) else "cpu"
    else:
        raise TypeError(f"dg.load: map_location must be None, a device string, a Device, a dict or a function, "
                        f"got {type(map_location).__name__}")
    device = backend.Device(target)
    if device.type == "cuda" and backend.cupy() is None:
        raise RuntimeError(f"dg.load: a tensor was saved on {saved}, but CUDA is not available here; "
                           "pass map_location='cpu' to load it on the CPU")
    return device


def _to_tensor(arr, saved_device, map_location):
    from distgraph.utils.data.collate import wrap_array
    arr = np.array(arr, copy=True) if not arr.flags.writeable else arr
    arr = backend.to_device(arr, _target_device(saved_device, map_location))
    return wrap_array(arr)


# ------------------------------------------------------- structure records
# A structure record is JSON: null, booleans, numbers, strings and lists stand for themselves, and an
# object is one of these records (dg.save writes no other):
_RECORDS = {
    "__tensor__": "{'__tensor__': name, 'device': str, 'requires_grad': bool, 'parameter': bool}",
    "__ndarray__": "{'__ndarray__': name}",
    "__tuple__": "{'__tuple__': [item, ...]}",
    "__dict__": "{'__dict__': [[key, value], ...]}",
    "__float__": "{'__float__': 'inf' | '-inf' | 'nan'}",
}
_TENSOR_FIELDS = {"__tensor__": str, "device": str, "requires_grad": bool, "parameter": bool}


def _malformed(name, where, problem):
    return CheckpointError(f"dg.load: {name} has a malformed structure record at {where}: {problem} "
                           "(the file is corrupt, or was not written by dg.save)")


def _decode(node, arrays, memo, map_location, name, where):
    if isinstance(node, list):
        return [_decode(v, arrays, memo, map_location, name, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    kinds = [k for k in _RECORDS if k in node]
    if len(kinds) != 1:
        raise _malformed(name, where, f"expected one of {', '.join(_RECORDS.values())}; got keys {sorted(node)}")
    kind, value = kinds[0], node[kinds[0]]
    extra = sorted(set(node) - (set(_TENSOR_FIELDS) if kind == "__tensor__" else {kind}))
    if extra:
        raise _malformed(name, where, f"expected {_RECORDS[kind]}; got the extra key(s) {extra}")
    if kind == "__tensor__":
        return _decode_tensor(node, arrays, memo, map_location, name, where)
    if kind == "__ndarray__":
        return np.array(_named_array(value, arrays, name, where), copy=True)
    if kind == "__float__":
        try:
            if isinstance(value, str):
                return float(value)
        except ValueError:
            pass
        raise _malformed(name, where, f"expected {_RECORDS[kind]}; got {_show(value)}")
    if not isinstance(value, list):
        raise _malformed(name, where, f"expected {_RECORDS[kind]}; got {kind!r}: {_show(value)}")
    if kind == "__tuple__":
        return tuple(_decode(v, arrays, memo, map_location, name, f"{where}[{i}]") for i, v in enumerate(value))
    out = {}
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise _malformed(name, where, f"expected entry {i} of '__dict__' to be [key, value]; got {_show(pair)}")
        key = _decode(pair[0], arrays, memo, map_location, name, f"{where} (key {i})")
        if not _plain_key(key):
            raise _malformed(name, where, f"expected dict key {i} to be a str, int, float, bool, None or a tuple "
                                          f"of those; got {_show(key)}")
        if key in out:
            raise _malformed(name, where, f"dict key {key!r} appears twice")
        out[key] = _decode(pair[1], arrays, memo, map_location, name, f"{where}[{key!r}]")
    return out


def _plain_key(key):
    if key is None or isinstance(key, (str, int, float)):  # (bool is an int)
        return True
    return isinstance(key, tuple) and all(_plain_key(k) for k in key)


def _named_array(key, arrays, name, where):
    if not isinstance(key, str):
        raise _malformed(name, where, f"expected the tensor's name (a string); got {_show(key)}")
    if key not in arrays:
        raise CheckpointError(f"dg.load: {name} is corrupt: its structure refers to tensor {key!r} at {where}, "
                              "which the file does not contain")
    return arrays[key]


def _decode_tensor(node, arrays, memo, map_location, name, where):
    for field, kind in _TENSOR_FIELDS.items():
        if field in node and not isinstance(node[field], kind):
            raise _malformed(name, where, f"expected {field!r} to be a {kind.__name__}; got {_show(node[field])}")
    key = node["__tensor__"]
    arr = _named_array(key, arrays, name, where)
    if key in memo:  # the same Tensor twice (tied weights)
        return memo[key]
    device, parameter = node.get("device", "cpu"), node.get("parameter", False)
    requires_grad = node.get("requires_grad", parameter)
    try:
        backend.Device(device)
    except ValueError:
        raise _malformed(name, where, f"expected 'device' to be 'cpu' or 'cuda:N'; got {device!r}") from None
    if requires_grad and arr.dtype.kind != "f":
        raise _malformed(name, where, f"'requires_grad' is true for a tensor of dtype {arr.dtype}, but only "
                                      "floating point tensors can require gradients")
    t = _to_tensor(arr, device, map_location)
    if parameter:
        t = Parameter(t, requires_grad=requires_grad)
    elif requires_grad:
        t.requires_grad_()
    memo[key] = t
    return t


# ---------------------------------------------------------- torch.save files
def _load_torch(f, name, map_location, weights_only=True):
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"dg.load: {name} was written by torch.save; reading it needs PyTorch "
                              "(pip install torch), or re-save it as safetensors") from None
    import io
    source = io.BytesIO(f.data) if isinstance(f, _BytesSource) else f
    try:
        obj = torch.load(source, map_location="cpu", weights_only=weights_only)
    except Exception as e:
        raise CheckpointError(f"dg.load: {name} looks like a torch.save file but could not be read "
                              f"(truncated or corrupt?): {e}") from None
    return _from_torch(obj, torch, map_location)


def _from_torch(obj, torch, map_location):
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        arr = t.numpy().copy()
        out = _to_tensor(arr, "cpu", map_location)
        return Parameter(out, requires_grad=obj.requires_grad) if isinstance(obj, torch.nn.Parameter) else out
    if isinstance(obj, dict):
        return {k: _from_torch(v, torch, map_location) for k, v in obj.items()}
    if isinstance(obj, torch.Size):
        return tuple(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_from_torch(v, torch, map_location) for v in obj)
    return obj
