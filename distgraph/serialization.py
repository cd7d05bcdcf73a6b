"""Checkpoints: ``dg.save(obj, path)`` and ``dg.load(path, map_location=None)``.

File format: ONE standard safetensors file. The tensors are its tensors (named
by their path in ``obj``: ``"model.fc.weight"``, ``"optimizer.state.0.exp_avg"``),
and the rest of ``obj`` (dicts, lists, tuples, numbers, strings, ``None``) is a
JSON document in the file's metadata under ``"distgraph.structure"``. Loading
runs no pickle, so a checkpoint from an untrusted source cannot execute code.
Any safetensors reader sees the tensors; ``dg.load`` of a safetensors file
written by another program returns its ``{name: Tensor}`` dict.

Writes are atomic: the file is written under a temporary name in the same
directory, flushed and fsync'ed, then renamed over ``path`` (and the directory
fsync'ed), so a crash mid-save leaves the previous checkpoint intact.

``dg.load`` also reads files written by ``torch.save`` (when PyTorch is
installed; with ``weights_only=True``: tensors and plain containers only),
returning distgraph Tensors. ``bfloat16`` tensors become ``float32``.
"""
from __future__ import annotations

import json
import math
import os
import struct
import uuid

import numpy as np

from distgraph import backend
from distgraph.autograd import Parameter, Tensor

__all__ = ["save", "load", "CheckpointError"]

_META_FORMAT, _META_STRUCTURE = "distgraph.format", "distgraph.structure"
_FORMAT = "distgraph-checkpoint-1"
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # pickle protocol 2, then torch's magic number
_EXPECTED = "a Tensor, NumPy array, dict, list, tuple, str, int, float, bool or None"


class CheckpointError(RuntimeError):
    """A file that can't be read as a checkpoint (truncated, corrupt, or of another format)."""


def _safetensors_numpy():
    try:
        import safetensors.numpy as stn
    except ImportError:
        raise ImportError("dg.save/dg.load need the safetensors package: pip install 'distgraph[io]'") from None
    return stn


# ------------------------------------------------------------------------ save
def save(obj, f):
    """Save ``obj`` (e.g. ``{"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3}``) to ``f``.

    Args:
        obj: nested dicts (keys: str, int, float, bool, None or tuples of those),
            lists and tuples of Tensors, NumPy arrays, numbers, strings and ``None``.
        f: a path (written atomically), or a binary file object (written as is).

    Raises:
        TypeError: a value of another type, naming where it is in ``obj``.
    """
    arrays, memo = {}, {}
    structure = _encode(obj, arrays, memo, ())
    metadata = {_META_FORMAT: _FORMAT, _META_STRUCTURE: json.dumps(structure, allow_nan=False)}
    stn = _safetensors_numpy()
    if hasattr(f, "write"):
        f.write(stn.save(arrays, metadata=metadata))
        return
    _write_atomic(os.fspath(f), arrays, metadata)


def _where(path):
    return "obj" + "".join(f"[{p!r}]" for p in path)


def _tensor_name(path, arrays):
    name = ".".join(str(p) for p in path) or "tensor"
    base, n = name, 1
    while name in arrays:
        n += 1
        name = f"{base}#{n}"
    return name


def _host(arr):
    arr = arr if isinstance(arr, np.ndarray) else arr.get()
    return arr if arr.flags.c_contiguous else arr.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)


def _encode(obj, arrays, memo, path):
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, Tensor):
        key = memo.get(id(obj))
        if key is None:  # the same Tensor twice (tied weights) is stored once
            key = memo[id(obj)] = _tensor_name(path, arrays)
            arrays[key] = _host(obj.array)
        return {"__tensor__": key, "device": str(obj.device), "requires_grad": bool(obj.requires_grad),
                "parameter": isinstance(obj, Parameter)}
    if isinstance(obj, np.ndarray):
        if obj.dtype not in backend.SUPPORTED_DTYPES:
            raise TypeError(f"dg.save: can't save the NumPy array of dtype {obj.dtype} at {_where(path)}: "
                            "expected float16/32/64, int32/64 or bool")
        key = _tensor_name(path, arrays)
        arrays[key] = _host(obj)
        return {"__ndarray__": key}
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else {"__float__": repr(v)}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not (k is None or isinstance(k, (str, int, float, bool, tuple, np.integer))):
                raise TypeError(f"dg.save: can't save the dict key {k!r} ({type(k).__name__}) at {_where(path)}: "
                                "expected str, int, float, bool, None or a tuple of those")
            items.append([_encode(k, arrays, memo, path + ("key",)), _encode(v, arrays, memo, path + (k,))])
        return {"__dict__": items}
    if isinstance(obj, list):
        return [_encode(v, arrays, memo, path + (i,)) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays, memo, path + (i,)) for i, v in enumerate(obj)]}
    raise TypeError(f"dg.save: can't save a {type(obj).__name__} at {_where(path)}: expected {_EXPECTED}")


def _write_file(path, arrays, metadata):
    """Write the safetensors file (a seam for tests that simulate a crash mid-write)."""
    _safetensors_numpy().save_file(arrays, path, metadata=metadata)


def _write_atomic(path, arrays, metadata):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"dg.save: directory {directory!r} does not exist; create it first")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    # O_EXCL: never clobber another writer's temp file; mode 0o666 lets the umask decide, as open() does
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        _write_file(tmp, arrays, metadata)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data must be on disk before the rename makes it the checkpoint
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# ------------------------------------------------------------------------ load
def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None, **pickle_load_args):
    """Load what ``dg.save`` saved (or a ``.safetensors`` file, or a ``torch.save`` file).

    Args:
        f: a path, or a binary file object.
        map_location: where tensors go: ``None`` (the device they were saved from),
            ``"cpu"``, ``"cuda:N"``, a ``Device``, or a dict mapping saved devices
            to new ones (``{"cuda:1": "cuda:0"}``).
        weights_only: accepted as PyTorch's. A distgraph checkpoint holds only tensors and plain
            containers (no pickle), so it loads the same either way; for a ``torch.save`` file it is
            passed on to ``torch.load`` (``None`` means ``True``, PyTorch's default since 2.6).
        mmap: accepted; files are read into memory.

    Raises:
        CheckpointError: an empty, truncated or corrupt file, or one of another format.
        RuntimeError: a tensor saved on CUDA loaded where there is no GPU (pass ``map_location="cpu"``).
    """
    if pickle_module is not None or pickle_load_args:
        raise TypeError(f"dg.load: pickle_module and pickle arguments ({sorted(pickle_load_args)}) are not "
                        "supported: distgraph checkpoints are safetensors files, read without pickle")
    weights_only = True if weights_only is None else bool(weights_only)
    if hasattr(f, "read"):
        name, data = getattr(f, "name", "<file object>"), f.read()
        size, head = len(data), data[:9]
    else:
        name = os.fspath(f)
        if not os.path.exists(name):
            raise FileNotFoundError(f"dg.load: no such file: {name!r}")
        size, data = os.path.getsize(name), None
        with open(name, "rb") as fh:
            head = fh.read(9)
    if size == 0:
        raise CheckpointError(f"dg.load: {name} is empty (0 bytes): not a checkpoint")
    # torch.save writes a zip archive (or, before PyTorch 1.6, a pickle with a magic number); a
    # safetensors file has its JSON header ("{") right after the 8-byte length
    if head.startswith((b"PK\x03\x04", _TORCH_LEGACY_MAGIC)) and head[8:9] != b"{":
        return _load_torch(f if data is None else _BytesSource(data), name, map_location, weights_only)
    if size < 8:
        raise CheckpointError(f"dg.load: {name} is truncated: {size} bytes, shorter than a safetensors header")
    header_len = struct.unpack("<Q", head[:8])[0]
    if header_len > size - 8:
        raise CheckpointError(f"dg.load: {name} is truncated or not a checkpoint: its header announces "
                              f"{header_len} bytes, but the file has only {size - 8} after the length field")
    if data is None:
        with open(name, "rb") as fh:
            fh.seek(8)
            raw_header = fh.read(header_len)
    else:
        raw_header = data[8:8 + header_len]
    header = _parse_header(raw_header, name)
    end = max((info["data_offsets"][1] for k, info in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end > size:
        raise CheckpointError(f"dg.load: {name} is truncated: its tensors need {8 + header_len + end} bytes, "
                              f"the file has {size} (an interrupted copy or download?)")
    arrays = _read_arrays(name, data, header, 8 + header_len)
    meta = header.get("__metadata__") or {}
    if meta.get(_META_FORMAT) != _FORMAT:
        return {k: _to_tensor(a, "cpu", map_location) for k, a in arrays.items()}
    try:
        structure = json.loads(meta[_META_STRUCTURE])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"dg.load: {name} has a corrupt distgraph structure record ({e})") from None
    return _decode(structure, arrays, {}, map_location, name)


class _BytesSource:
    def __init__(self, data):
        self.data = data


def _parse_header(raw, name):
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"dg.load: {name} is not a checkpoint: expected a safetensors file (dg.save) or "
                              "a torch.save file, but its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"dg.load: {name} is not a checkpoint: its header is not a JSON object")
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= set(info)
                and len(info["data_offsets"]) == 2):
            raise CheckpointError(f"dg.load: {name} has a corrupt header entry for tensor {key!r}: {info!r}")
    return header


_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
                 "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


def _raw_array(raw, dtype, shape, key, name):
    if dtype == "BF16":  # NumPy has no bfloat16: widen to float32 (bf16 is float32's top 16 bits)
        return (np.frombuffer(raw, dtype="<u2").astype("<u4") << 16).view("<f4").reshape(shape)
    if dtype not in _NUMPY_DTYPES:
        raise CheckpointError(f"dg.load: {name}: tensor {key!r} has dtype {dtype}, which distgraph can't read")
    return np.frombuffer(raw, dtype=_NUMPY_DTYPES[dtype]).reshape(shape).copy()


def _read_arrays(name, data, header, data_start):
    stn = _safetensors_numpy()
    bf16 = {k for k, info in header.items() if k != "__metadata__" and info["dtype"] == "BF16"}
    try:
        if data is not None:
            if bf16:  # safetensors' NumPy reader refuses the whole file: decode it here
                return {k: _raw_array(data[data_start + i["data_offsets"][0]:data_start + i["data_offsets"][1]],
                                      i["dtype"], i["shape"], k, name)
                        for k, i in header.items() if k != "__metadata__"}
            arrays = stn.load(data)
        else:
            from safetensors import safe_open
            arrays = {}
            with safe_open(name, framework="np") as fh:
                for k in fh.keys():
                    if k not in bf16:
                        arrays[k] = fh.get_tensor(k)
    except Exception as e:  # safetensors raises its own error type for malformed files
        raise CheckpointError(f"dg.load: {name} is corrupt: {e}") from None
    for k in bf16:
        start, stop = header[k]["data_offsets"]
        with open(name, "rb") as fh:
            fh.seek(data_start + start)
            arrays[k] = _raw_array(fh.read(stop - start), "BF16", header[k]["shape"], k, name)
    return arrays


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


def _decode(node, arrays, memo, map_location, name):
    if isinstance(node, list):
        return [_decode(v, arrays, memo, map_location, name) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        key = node["__tensor__"]
        if key not in memo:
            if key not in arrays:
                raise CheckpointError(f"dg.load: {name} is corrupt: its structure refers to tensor {key!r}, "
                                      "which the file does not contain")
            t = _to_tensor(arrays[key], node.get("device", "cpu"), map_location)
            if node.get("parameter"):
                t = Parameter(t, requires_grad=node.get("requires_grad", True))
            elif node.get("requires_grad"):
                t.requires_grad_()
            memo[key] = t
        return memo[key]
    if "__ndarray__" in node:
        return np.array(arrays[node["__ndarray__"]], copy=True)
    if "__tuple__" in node:
        return tuple(_decode(v, arrays, memo, map_location, name) for v in node["__tuple__"])
    if "__dict__" in node:
        return {_decode(k, arrays, memo, map_location, name): _decode(v, arrays, memo, map_location, name)
                for k, v in node["__dict__"]}
    if "__float__" in node:
        return float(node["__float__"])
    raise CheckpointError(f"dg.load: {name} is corrupt: unknown structure record {sorted(node)}")


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
