"""Checkpoints: ``dg.save(obj, path)`` and ``dg.load(path, map_location=None)``.

File format: ONE standard safetensors file. The tensors are its tensors (named
by their path in ``obj``: ``"model.fc.weight"``, ``"optimizer.state.0.exp_avg"``),
and the rest of ``obj`` (dicts, lists, tuples, numbers, strings, ``None``) is a
JSON document in the file's metadata under ``"distgraph.structure"``. Loading
runs no pickle, so a checkpoint from an untrusted source cannot execute code.
Any safetensors reader sees the tensors; ``dg.load`` of a safetensors file
written by another program returns its ``{name: Tensor}`` dict.

The metadata also holds a CRC32 of the tensors (names, dtypes, shapes, bytes)
and of the structure record, under ``"distgraph.checksum"``; ``dg.load``
verifies it, so flipped bits raise :class:`CheckpointError` instead of loading
as wrong values. (Files written before the checksum existed load unchecked.)
Every way a file can be damaged (empty, truncated, flipped bits, a header that
is not JSON, too large, or has fields of the wrong type, a malformed structure
record) raises ``CheckpointError`` naming the file and the problem.

Writes are atomic: the file is written under a temporary name in the same
directory, flushed and fsync'ed, then renamed over ``path`` (and the directory
fsync'ed), so a crash mid-save leaves the previous checkpoint intact. The file
gets the permissions ``open()`` would give it (``0o666`` less the umask).

``dg.load`` also reads files written by ``torch.save`` (when PyTorch is
installed; with ``weights_only=True``: tensors and plain containers only),
returning distgraph Tensors. ``bfloat16`` tensors become ``float32``.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
import uuid
import zlib

import numpy as np

from distgraph import backend
from distgraph.autograd import Parameter, Tensor
from distgraph.checkpoint_records import CheckpointError, _BytesSource, _decode, _load_torch, _show, _to_tensor

__all__ = ["save", "load", "CheckpointError", "MAX_HEADER_BYTES"]

_META_FORMAT, _META_STRUCTURE, _META_CHECKSUM = "distgraph.format", "distgraph.structure", "distgraph.checksum"
_FORMAT = "distgraph-checkpoint-1"
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # pickle protocol 2, then torch's magic number
_EXPECTED = "a Tensor, NumPy array, dict, list, tuple, str, int, float, bool or None"
# The largest JSON header dg.load reads: safetensors' own limit (its readers refuse larger ones), so a
# corrupt length field is refused before gigabytes are read and parsed.
MAX_HEADER_BYTES = 100_000_000


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
    structure = json.dumps(_encode(obj, arrays, memo, ()), allow_nan=False)
    metadata = {_META_FORMAT: _FORMAT, _META_STRUCTURE: structure, _META_CHECKSUM: _checksum(arrays, structure)}
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


def _checksum(arrays, structure):
    """``"crc32:<hex>"`` over the structure record and every tensor's name, dtype, shape and bytes.

    CRC32 rather than a cryptographic hash: it catches flipped bits at ~2 GB/s (SHA-256 runs at
    about half that), and a checkpoint is protected against accidents, not against forgery.
    """
    crc = zlib.crc32(structure.encode("utf-8"))
    for key in sorted(arrays):
        arr = arrays[key]  # native (little-endian) order, as safetensors writes and reads it
        crc = zlib.crc32(f"|{key}|{arr.dtype.str}|{arr.shape}|".encode("utf-8"), crc)
        crc = zlib.crc32(np.ascontiguousarray(arr).reshape(-1).view(np.uint8), crc)
    return f"crc32:{crc:08x}"


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
    # O_EXCL: never clobber another writer's temp file; mode 0o666 lets the umask (and a default ACL)
    # decide, as open() does. The mode the kernel gave is read back rather than computed from
    # os.umask(), which can only be read by changing it, for every thread of the process.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    try:
        _write_file(tmp, arrays, metadata)
        try:  # safetensors replaces the file with a private (0600) one of its own
            os.chmod(tmp, mode)
        except OSError:  # a file system without modes (some network mounts): keep what it gave
            pass
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
        CheckpointError: a damaged file (empty, truncated, a checksum that does not match, a header
            over ``MAX_HEADER_BYTES`` or with fields of the wrong type, a malformed structure
            record), or one of another format.
        TypeError, ValueError: a ``map_location`` that names no device (before the file is read).
        RuntimeError: a tensor saved on CUDA loaded where there is no GPU (pass ``map_location="cpu"``).
    """
    if pickle_module is not None or pickle_load_args:
        raise TypeError(f"dg.load: pickle_module and pickle arguments ({sorted(pickle_load_args)}) are not "
                        "supported: distgraph checkpoints are safetensors files, read without pickle")
    weights_only = True if weights_only is None else bool(weights_only)
    _check_map_location(map_location)
    if hasattr(f, "read"):
        name, head = getattr(f, "name", "<file object>"), f.read(9)
        if len(head) >= 8 and not _is_torch(head):  # refuse a huge header before reading the rest
            _check_header_length(struct.unpack("<Q", head[:8])[0], name)
        if getattr(f, "seekable", lambda: False)():  # one read, no copy of the whole file to prepend 9 bytes
            f.seek(-len(head), os.SEEK_CUR)
            data = f.read()
        else:
            data = head + f.read()
        size = len(data)
    else:
        name = os.fspath(f)
        if not os.path.exists(name):
            raise FileNotFoundError(f"dg.load: no such file: {name!r}")
        size, data = os.path.getsize(name), None
        with open(name, "rb") as fh:
            head = fh.read(9)
    if size == 0:
        raise CheckpointError(f"dg.load: {name} is empty (0 bytes): not a checkpoint")
    if _is_torch(head):
        return _load_torch(f if data is None else _BytesSource(data), name, map_location, weights_only)
    if size < 8:
        raise CheckpointError(f"dg.load: {name} is truncated: {size} bytes, shorter than a safetensors header")
    header_len = struct.unpack("<Q", head[:8])[0]
    _check_header_length(header_len, name)
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
    meta = header.pop("__metadata__", None) or {}
    end = max((info["data_offsets"][1] for info in header.values()), default=0)
    if 8 + header_len + end > size:
        raise CheckpointError(f"dg.load: {name} is truncated: its tensors need {8 + header_len + end} bytes, "
                              f"the file has {size} (an interrupted copy or download?)")
    arrays = _read_arrays(name, data, header, 8 + header_len)
    if _META_FORMAT not in meta:  # a safetensors file from another program: its tensors
        return {k: _to_tensor(a, "cpu", map_location) for k, a in arrays.items()}
    if meta[_META_FORMAT] != _FORMAT:
        raise CheckpointError(f"dg.load: {name} is in format {meta[_META_FORMAT]!r}, expected {_FORMAT!r}: "
                              "written by a newer distgraph? Load it with that version")
    structure = meta.get(_META_STRUCTURE)
    if structure is None:
        raise CheckpointError(f"dg.load: {name} is corrupt: its header has no {_META_STRUCTURE!r} record")
    _verify_checksum(meta, arrays, structure, name)
    try:
        return _decode(json.loads(structure), arrays, {}, map_location, name, "obj")
    except json.JSONDecodeError as e:
        raise CheckpointError(f"dg.load: {name} has a corrupt structure record: not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"dg.load: {name} has a corrupt structure record: nested too deeply to read") from None


def _is_torch(head):
    # torch.save writes a zip archive (or, before PyTorch 1.6, a pickle with a magic number); a
    # safetensors file has its JSON header ("{") right after the 8-byte length
    return head.startswith((b"PK\x03\x04", _TORCH_LEGACY_MAGIC)) and head[8:9] != b"{"


def _check_header_length(header_len, name):
    if header_len > MAX_HEADER_BYTES:
        raise CheckpointError(f"dg.load: {name} is corrupt or not a checkpoint: its header announces "
                              f"{header_len} bytes, more than the {MAX_HEADER_BYTES}-byte limit "
                              "(serialization.MAX_HEADER_BYTES, safetensors' own); it was not read")


def _check_map_location(map_location):
    """Refuse a ``map_location`` that names no device before any file is read (so that it can never be
    taken for a damaged file)."""
    if map_location is None or callable(map_location):
        return
    for target in (map_location.values() if isinstance(map_location, dict) else [map_location]):
        if not isinstance(target, (str, backend.Device)):
            raise TypeError(f"dg.load: map_location must be None, a device string, a Device, a dict of those "
                            f"or a function, got {type(target).__name__}")
        try:
            backend.Device(target)
        except ValueError:
            raise ValueError(f"dg.load: map_location {target!r} is not a device: expected 'cpu', 'cuda' "
                             "or 'cuda:N'") from None


def _counts(value, n=None):
    """True for a list of non-negative ints (of length ``n`` when given)."""
    return (isinstance(value, list) and (n is None or len(value) == n)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))


def _parse_header(raw, name):
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"dg.load: {name} is not a checkpoint: expected a safetensors file (dg.save) or "
                              "a torch.save file, but its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"dg.load: {name} is not a checkpoint: its header is not a JSON object")
    for key, info in header.items():
        if key == "__metadata__":
            if info is None or (isinstance(info, dict) and all(isinstance(v, str) for v in info.values())):
                continue
            problem = f"expected an object of strings, got {_show(info)}"
        elif not isinstance(info, dict):
            problem = f"expected an object with dtype, shape and data_offsets, got {_show(info)}"
        elif not {"dtype", "shape", "data_offsets"} <= set(info):
            problem = f"missing {sorted({'dtype', 'shape', 'data_offsets'} - set(info))}"
        elif not isinstance(info["dtype"], str):
            problem = f"expected 'dtype' to be a string, got {_show(info['dtype'])}"
        elif not _counts(info["shape"]):
            problem = f"expected 'shape' to be a list of non-negative integers, got {_show(info['shape'])}"
        elif not (_counts(offsets := info["data_offsets"], 2) and offsets[0] <= offsets[1]):
            problem = f"expected 'data_offsets' to be [begin, end], 0 <= begin <= end, got {_show(offsets)}"
        else:
            continue
        raise CheckpointError(f"dg.load: {name} has a corrupt header entry {key!r}: {problem}")
    return header


def _verify_checksum(meta, arrays, structure, name):
    expected = meta.get(_META_CHECKSUM)
    if expected is None:  # written before dg.save recorded checksums
        return
    if re.fullmatch(r"crc32:[0-9a-f]{8}", expected) is None:
        raise CheckpointError(f"dg.load: {name} is corrupt: its {_META_CHECKSUM!r} record is {expected!r}, "
                              "expected 'crc32:' and 8 hex digits")
    got = _checksum(arrays, structure)
    if got != expected:
        raise CheckpointError(f"dg.load: {name} is corrupt: dg.save recorded checksum {expected}, the data read "
                              f"back has {got} (bits flipped on disk or in a copy); use an older checkpoint or "
                              "a good copy of this file")


_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
                 "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}


def _raw_array(raw, dtype, shape, key, name):
    try:
        if dtype == "BF16":  # NumPy has no bfloat16: widen to float32 (bf16 is float32's top 16 bits)
            return (np.frombuffer(raw, dtype="<u2").astype("<u4") << 16).view("<f4").reshape(shape)
        if dtype not in _NUMPY_DTYPES:
            raise CheckpointError(f"dg.load: {name}: tensor {key!r} has dtype {dtype}, which distgraph can't read")
        return np.frombuffer(raw, dtype=_NUMPY_DTYPES[dtype]).reshape(shape).copy()
    except ValueError as e:
        raise CheckpointError(f"dg.load: {name} is corrupt: tensor {key!r} of shape {shape} does not fit its "
                              f"{len(raw)} bytes ({e})") from None


def _read_arrays(name, data, header, data_start):
    stn = _safetensors_numpy()
    bf16 = {k for k, info in header.items() if info["dtype"] == "BF16"}
    try:
        if data is not None:
            if bf16:  # safetensors' NumPy reader refuses the whole file: decode it here
                return {k: _raw_array(data[data_start + i["data_offsets"][0]:data_start + i["data_offsets"][1]],
                                      i["dtype"], i["shape"], k, name)
                        for k, i in header.items()}
            arrays = stn.load(data)
        else:
            from safetensors import safe_open
            arrays = {}
            with safe_open(name, framework="np") as fh:
                for k in fh.keys():
                    if k not in bf16:
                        arrays[k] = fh.get_tensor(k)
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error type for malformed files
        raise CheckpointError(f"dg.load: {name} is corrupt: {e}") from None
    for k in bf16:
        start, stop = header[k]["data_offsets"]
        with open(name, "rb") as fh:
            fh.seek(data_start + start)
            arrays[k] = _raw_array(fh.read(stop - start), "BF16", header[k]["shape"], k, name)
    return arrays
