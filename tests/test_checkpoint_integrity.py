"""dg.save / dg.load integrity: checksums, the header-size cap, malformed structure records, file modes."""
import io
import json
import os
import re
import stat
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import distgraph as dg
from distgraph.serialization import MAX_HEADER_BYTES, CheckpointError, load, save

stn = pytest.importorskip("safetensors.numpy")


def read_header(path):
    data = Path(path).read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_header(path, header, body):
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    Path(path).write_bytes(len(raw).to_bytes(8, "little") + raw + body)


def saved(tmp_path):
    path = tmp_path / "ck"
    save({"w": dg.randn(64, 8), "b": dg.zeros(8), "epoch": 3, "name": "run"}, path)
    return path


# ------------------------------------------------------------------- checksum
def test_save_records_a_crc32_that_load_checks(tmp_path):
    path = saved(tmp_path)
    header, _ = read_header(path)
    assert header["__metadata__"]["distgraph.checksum"].startswith("crc32:")
    assert load(path)["epoch"] == 3


@pytest.mark.parametrize("offset", [0, 100, -1], ids=["first-byte", "middle", "last-byte"])
def test_a_flipped_bit_in_the_tensors_is_an_error(tmp_path, offset):
    path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start + offset if offset >= 0 else len(data) + offset] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message and "use an older checkpoint or a good copy" in message, message
    recorded = read_header(path)[0]["__metadata__"]["distgraph.checksum"]
    got = re.search(r"the data read back has (crc32:[0-9a-f]{8})", message)
    assert f"recorded checksum {recorded}," in message and got and got.group(1) != recorded, message
    with open(path, "rb") as f, pytest.raises(CheckpointError, match="recorded checksum"):
        load(f)  # file objects are checked too


def test_an_edited_structure_record_is_an_error(tmp_path):
    path = saved(tmp_path)
    header, body = read_header(path)
    meta = header["__metadata__"]
    assert '["epoch", 3]' in meta["distgraph.structure"]
    meta["distgraph.structure"] = meta["distgraph.structure"].replace('["epoch", 3]', '["epoch", 2]')
    write_header(path, header, body)
    with pytest.raises(CheckpointError, match=r"recorded checksum crc32:[0-9a-f]{8}, the data read back has"):
        load(path)


def test_files_without_a_checksum_still_load_unchecked(tmp_path):
    path = saved(tmp_path)
    header, body = read_header(path)
    del header["__metadata__"]["distgraph.checksum"]
    write_header(path, header, body[:-1] + bytes([body[-1] ^ 1]))  # damage that only a checksum would see
    back = load(path)
    assert back["epoch"] == 3 and back["w"].shape == (64, 8)


@pytest.mark.parametrize("value", ["md5:0123", "crc32:XYZ", "crc32:0123456789", ""])
def test_a_malformed_checksum_record_is_an_error(tmp_path, value):
    path = saved(tmp_path)
    header, body = read_header(path)
    header["__metadata__"]["distgraph.checksum"] = value
    write_header(path, header, body)
    with pytest.raises(CheckpointError, match="expected 'crc32:' and 8 hex digits"):
        load(path)


class Stream:
    """A file object that can only be read forward (a pipe, a socket)."""

    def __init__(self, data):
        self._buf = io.BytesIO(data)

    def read(self, n=-1):
        return self._buf.read(n)


def test_unseekable_file_objects_load_and_are_checked(tmp_path):
    data = saved(tmp_path).read_bytes()
    assert load(Stream(data))["epoch"] == 3
    flipped = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(CheckpointError, match="recorded checksum"):
        load(Stream(flipped))


def test_the_checksum_covers_every_dtype_and_empty_tensors(tmp_path):
    obj = {"f16": dg.ones(3, dtype=dg.float16), "i32": np.arange(3, dtype=np.int32), "b": dg.tensor([True]),
           "empty": dg.zeros(0, 4), "scalar": dg.tensor(1.5), "u8": np.zeros(2, np.uint8)}
    save(obj, tmp_path / "c")
    back = load(tmp_path / "c")
    assert sorted(back) == sorted(obj) and back["scalar"].item() == 1.5


# ------------------------------------------------------------ the header cap
def sparse_file(path, header_len):
    """A file whose length field announces ``header_len`` bytes, and that has them (as a hole: no disk used)."""
    with open(path, "wb") as f:
        f.write(header_len.to_bytes(8, "little"))
        f.truncate(8 + header_len)


@pytest.mark.parametrize("as_file_object", [False, True], ids=["path", "file-object"])
def test_a_header_over_the_cap_is_refused_before_it_is_read(tmp_path, as_file_object):
    path = tmp_path / "huge"
    sparse_file(path, MAX_HEADER_BYTES + 1)
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(CheckpointError) as info:
            if as_file_object:
                with open(path, "rb") as f:
                    load(f)
            else:
                load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"announces {MAX_HEADER_BYTES + 1} bytes, more than the {MAX_HEADER_BYTES}-byte limit" in str(info.value)
    assert "MAX_HEADER_BYTES" in str(info.value) and str(path) in str(info.value)
    assert peak < 1 << 20, f"expected the header not to be read, but {peak} bytes were allocated"
    assert time.monotonic() - start < 5


def test_the_cap_is_safetensors_own_limit():
    assert MAX_HEADER_BYTES == 100_000_000


# ------------------------------------------------- malformed structure records
ARRAYS = {"f": np.arange(2, dtype=np.float32), "i": np.arange(2, dtype=np.int64)}

MALFORMED = [  # (id, structure record (an object, or raw JSON text), what the error must say)
    ("tensor-name-an-int", {"__tensor__": 5}, r"at obj: expected '__tensor__' to be a str; got 5 \(int\)"),
    ("tensor-missing", {"__tensor__": "gone"}, r"refers to tensor 'gone' at obj, which the file does not contain"),
    ("device-an-int", {"__tensor__": "f", "device": 3}, r"expected 'device' to be a str; got 3"),
    ("device-unknown", {"__tensor__": "f", "device": "tpu:0"},
     r"expected 'device' to be 'cpu' or 'cuda:N'; got 'tpu:0'"),
    ("device-bad-index", {"__tensor__": "f", "device": "cuda:x"}, r"'cpu' or 'cuda:N'; got 'cuda:x'"),
    ("requires-grad-a-str", {"__tensor__": "f", "requires_grad": "yes"}, r"expected 'requires_grad' to be a bool"),
    ("parameter-an-int", {"__tensor__": "f", "parameter": 1}, r"expected 'parameter' to be a bool; got 1"),
    ("int-requires-grad", {"__tensor__": "i", "requires_grad": True}, r"dtype int64, but only floating point"),
    ("int-parameter", {"__tensor__": "i", "parameter": True}, r"dtype int64, but only floating point"),
    ("tensor-extra-key", {"__tensor__": "f", "shape": [2]}, r"got the extra key\(s\) \['shape'\]"),
    ("ndarray-name-a-list", {"__ndarray__": ["f"]}, r"expected the tensor's name \(a string\); got \['f'\]"),
    ("ndarray-missing", {"__ndarray__": "gone"}, r"refers to tensor 'gone'"),
    ("ndarray-extra-key", {"__ndarray__": "f", "device": "cpu"}, r"extra key\(s\) \['device'\]"),
    ("tuple-a-str", {"__tuple__": "ab"}, r"expected \{'__tuple__': \[item, \.\.\.\]\}; got '__tuple__': 'ab'"),
    ("tuple-an-object", {"__tuple__": {"a": 1}}, r"expected \{'__tuple__'"),
    ("dict-an-object", {"__dict__": {"a": 1}}, r"expected \{'__dict__': \[\[key, value\], \.\.\.\]\}"),
    ("dict-pair-too-short", {"__dict__": [["a"]]}, r"expected entry 0 of '__dict__' to be \[key, value\]; got \['a'\]"),
    ("dict-pair-too-long", {"__dict__": [["a", 1], ["b", 1, 2]]}, r"entry 1 of '__dict__'"),
    ("dict-pair-a-str", {"__dict__": ["a"]}, r"entry 0 of '__dict__' to be \[key, value\]; got 'a'"),
    ("dict-key-a-list", {"__dict__": [[["a"], 1]]},
     r"expected dict key 0 to be a str, int, float, bool, None or a tuple"),
    ("dict-key-a-tensor", {"__dict__": [[{"__tensor__": "f"}, 1]]}, r"dict key 0 to be a str"),
    ("dict-key-a-dict", {"__dict__": [[{"__dict__": []}, 1]]}, r"dict key 0 to be a str"),
    ("dict-key-a-tuple-of-lists", {"__dict__": [[{"__tuple__": [[1]]}, 1]]}, r"dict key 0 to be a str"),
    ("dict-key-twice", {"__dict__": [["a", 1], ["a", 2]]}, r"dict key 'a' appears twice"),
    ("float-a-number", {"__float__": 5}, r"expected \{'__float__': 'inf' \| '-inf' \| 'nan'\}; got 5"),
    ("float-a-word", {"__float__": "lots"}, r"got 'lots'"),
    ("unknown-record", {"weird": 1}, r"expected one of .*; got keys \['weird'\]"),
    ("empty-record", {}, r"got keys \[\]"),
    ("two-records-in-one", {"__tuple__": [], "__dict__": []}, r"got keys \['__dict__', '__tuple__'\]"),
    ("nested-tensor-name", {"__dict__": [["model", {"__dict__": [["w", {"__tensor__": 7}]]}]]},
     r"at obj\['model'\]\['w'\]: expected '__tensor__' to be a str"),
    ("nested-in-a-tuple", {"__tuple__": [1, [2, {"__float__": None}]]}, r"at obj\[1\]\[1\]: expected \{'__float__'"),
    ("nested-in-a-key", {"__dict__": [[{"__tuple__": [{"__float__": []}]}, 1]]}, r"at obj \(key 0\)\[0\]"),
    ("not-json", "{'a': 1}", r"corrupt structure record: not valid JSON"),
    ("truncated-json", '{"__dict__": [["a", 1]', r"corrupt structure record: not valid JSON"),
    ("nested-too-deeply-to-parse", "[" * 100_000 + "]" * 100_000, r"nested too deeply"),
    ("nested-too-deeply-to-decode", "[" * 900 + "]" * 900, r"nested too deeply"),
]


def old_style_file(path, structure):
    """A distgraph file as written before checksums (so its structure record is decoded as it is)."""
    text = structure if isinstance(structure, str) else json.dumps(structure)
    stn.save_file(ARRAYS, str(path), metadata={"distgraph.format": "distgraph-checkpoint-1",
                                               "distgraph.structure": text})


@pytest.mark.parametrize("structure,message", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_structure_records_are_checkpoint_errors(tmp_path, structure, message):
    path = tmp_path / "bad"
    old_style_file(path, structure)
    with pytest.raises(CheckpointError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_well_formed_old_style_records_load(tmp_path):
    old_style_file(tmp_path / "ok", {"__dict__": [["w", {"__tensor__": "f", "parameter": True}],
                                                  [{"__tuple__": [1, "a"]}, {"__float__": "-inf"}],
                                                  ["n", {"__ndarray__": "i"}], ["x", [None, True, 2.5]]]})
    back = load(tmp_path / "ok")
    assert isinstance(back["w"], dg.nn.Parameter) and back["w"].requires_grad
    assert back[(1, "a")] == float("-inf") and back["n"].tolist() == [0, 1] and back["x"] == [None, True, 2.5]


MALFORMED_HEADERS = [  # (id, edit of the safetensors header, what the error must say)
    ("entry-a-number", lambda h: h.update(t=5), r"corrupt header entry 't': expected an object with dtype"),
    ("entry-missing-fields", lambda h: h.update(t={"dtype": "F32"}), r"missing \['data_offsets', 'shape'\]"),
    ("dtype-an-int", lambda h: h["w"].update(dtype=4), r"expected 'dtype' to be a string, got 4"),
    ("shape-a-str", lambda h: h["w"].update(shape="64x8"), r"expected 'shape' to be a list of non-negative"),
    ("shape-negative", lambda h: h["w"].update(shape=[-64, 8]), r"expected 'shape'"),
    ("shape-of-bools", lambda h: h["w"].update(shape=[True, 8]), r"expected 'shape'"),
    ("offsets-one", lambda h: h["w"].update(data_offsets=[0]), r"expected 'data_offsets' to be \[begin, end\]"),
    ("offsets-reversed", lambda h: h["w"].update(data_offsets=[8, 0]), r"0 <= begin <= end, got \[8, 0\]"),
    ("offsets-a-str", lambda h: h["w"].update(data_offsets="0,8"), r"expected 'data_offsets'"),
    ("offsets-floats", lambda h: h["w"].update(data_offsets=[0.0, 8.0]), r"expected 'data_offsets'"),
    ("offsets-wrong-size", lambda h: h["w"].update(data_offsets=[0, 8]), r"is corrupt"),
    ("metadata-a-list", lambda h: h.update(__metadata__=[1]), r"'__metadata__': expected an object of strings"),
    ("metadata-value-an-int", lambda h: h["__metadata__"].update(x=1), r"expected an object of strings"),
    ("format-newer", lambda h: h["__metadata__"].update({"distgraph.format": "distgraph-checkpoint-9"}),
     r"in format 'distgraph-checkpoint-9', expected 'distgraph-checkpoint-1'"),
    ("structure-missing", lambda h: h["__metadata__"].pop("distgraph.structure"),
     r"has no 'distgraph.structure' record"),
    ("header-a-list", lambda h: (h.clear(), h.update(x=[])), r"corrupt header entry 'x'"),
]


@pytest.mark.parametrize("edit,message", [m[1:] for m in MALFORMED_HEADERS], ids=[m[0] for m in MALFORMED_HEADERS])
def test_malformed_headers_are_checkpoint_errors(tmp_path, edit, message):
    path = saved(tmp_path)
    header, body = read_header(path)
    edit(header)
    write_header(path, header, body)
    with pytest.raises(CheckpointError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match=message):
        load(io.BytesIO(path.read_bytes()))


def test_a_bad_map_location_is_refused_before_the_file_is_read(tmp_path):
    (tmp_path / "junk").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"map_location 'tpu' is not a device: expected 'cpu', 'cuda' or 'cuda:N'"):
        load(tmp_path / "junk", map_location="tpu")
    with pytest.raises(TypeError, match="map_location must be"):
        load(tmp_path / "junk", map_location={"cuda:0": 0.5})


# ----------------------------------------------------------------- file modes
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_get_the_mode_open_would_give_them(tmp_path, umask):
    old = os.umask(umask)
    try:
        save({"w": dg.ones(3)}, tmp_path / "ck")
        save({"w": dg.zeros(3)}, tmp_path / "ck")  # and over an existing file
        with open(tmp_path / "by-open", "wb"):
            pass
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "ck").st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(os.stat(tmp_path / "by-open").st_mode), \
        f"expected mode {0o666 & ~umask:o} (0666 less the umask {umask:03o}), got {mode:o}"
    assert sorted(os.listdir(tmp_path)) == ["by-open", "ck"]  # written through a temporary file, renamed
    assert load(tmp_path / "ck")["w"].tolist() == [0.0, 0.0, 0.0]
