"""dg.save / dg.load: round trips, atomic writes under SIGKILL, bad files, and files written by torch."""
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import distgraph as dg
from distgraph import optim
from distgraph.autograd import Parameter
from distgraph.serialization import CheckpointError, load, save


def _checkpoint():
    w = Parameter(dg.randn(4, 3))
    opt = optim.Adam([w], lr=0.01)
    (w * w).sum().backward()
    opt.step()
    return {
        "model": {"fc.weight": w, "fc.bias": dg.zeros(3, dtype=dg.float64), "bn.num_batches_tracked": dg.tensor(7)},
        "optimizer": opt.state_dict(),
        "epoch": 3, "loss": 0.25, "best": float("inf"), "name": "run-1", "note": None,
        "flags": [True, False], "shape": (2, (3, 4)), "mask": dg.tensor([True, False]),
        "scalar": dg.tensor(2.5), "array": np.arange(4, dtype=np.int32), "empty": dg.zeros(0, 5),
    }


def _assert_same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, dg.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
        np.testing.assert_array_equal(a.array, b.array)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip(tmp_path):
    obj = _checkpoint()
    path = tmp_path / "ck.safetensors"
    save(obj, path)
    back = load(path)
    _assert_same(obj, back)
    assert isinstance(back["model"]["fc.weight"], Parameter)
    assert isinstance(next(iter(back["optimizer"]["state"])), int)  # int keys survive (optimizer state)
    back["model"]["fc.bias"].array += 1  # loaded arrays are writable and not shared with the file


def test_file_objects_and_shared_tensors():
    t = dg.randn(3)
    buf = io.BytesIO()
    save({"a": t, "b": t}, buf)
    buf.seek(0)
    back = load(buf)
    assert back["a"] is back["b"]  # one tensor saved once stays one tensor
    np.testing.assert_array_equal(back["a"].array, t.array)


def test_optimizer_resume_through_checkpoint(tmp_path):
    def make():
        dg.manual_seed(0)
        p = Parameter(dg.randn(5))
        opt = optim.SGD([p], lr=0.1, momentum=0.9)
        sched = optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.5)
        return p, opt, sched

    def train(p, opt, sched, steps):
        for _ in range(steps):
            opt.zero_grad()
            (p * p).sum().backward()
            opt.step()
            sched.step()

    p, opt, sched = make()
    train(p, opt, sched, 6)
    p2, opt2, sched2 = make()
    train(p2, opt2, sched2, 3)
    save({"p": p2, "opt": opt2.state_dict(), "sched": sched2.state_dict()}, tmp_path / "c")
    ck = load(tmp_path / "c")
    p3, opt3, sched3 = make()
    p3.array[...] = ck["p"].array
    opt3.load_state_dict(ck["opt"])
    sched3.load_state_dict(ck["sched"])
    train(p3, opt3, sched3, 3)
    np.testing.assert_allclose(p3.array, p.array, rtol=1e-6)
    assert sched3.get_last_lr() == sched.get_last_lr()


def test_the_file_is_plain_safetensors(tmp_path):
    from safetensors.numpy import load_file
    save({"model": {"w": dg.ones(2, 2)}, "step": 1}, tmp_path / "c")
    tensors = load_file(str(tmp_path / "c"))
    assert list(tensors) == ["model.w"] and tensors["model.w"].shape == (2, 2)


def test_unsupported_values_name_their_place(tmp_path):
    with pytest.raises(TypeError, match=r"can't save a set at obj\['opt'\]\[0\]"):
        save({"opt": [{1, 2}]}, tmp_path / "x")
    with pytest.raises(TypeError, match="dict key"):
        save({dg.zeros(1): 1}, tmp_path / "x")
    assert not os.listdir(tmp_path)  # nothing left behind


# ------------------------------------------------------------------- bad files
@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"\x01\x02", "truncated"),
    (b"\xff" * 8 + b"{}", "header announces"),
    (b"\x04\x00\x00\x00\x00\x00\x00\x00nope", "header is not valid JSON"),
    (b"\x02\x00\x00\x00\x00\x00\x00\x00[]", "not a JSON object"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load(path)


def test_truncated_and_corrupt_checkpoints(tmp_path):
    path = tmp_path / "ck"
    save({"w": dg.randn(100, 10)}, path)
    data = path.read_bytes()
    (tmp_path / "cut").write_bytes(data[:len(data) - 100])
    with pytest.raises(CheckpointError, match=r"truncated: its tensors need \d+ bytes, the file has \d+"):
        load(tmp_path / "cut")
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["distgraph.structure"] = json.dumps({"__dict__": [["w", {"__tensor__": "gone"}]]})

    def write(header):
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        (tmp_path / "ref").write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])
    write(header)
    with pytest.raises(CheckpointError, match="recorded checksum"):  # the edit changed what the checksum covers
        load(tmp_path / "ref")
    del header["__metadata__"]["distgraph.checksum"]  # as written before checksums: the structure is checked
    write(header)
    with pytest.raises(CheckpointError, match=r"refers to tensor 'gone' at obj\['w'\]"):
        load(tmp_path / "ref")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "missing")


def test_map_location(tmp_path):
    save({"w": dg.ones(2)}, tmp_path / "c")
    assert load(tmp_path / "c", map_location="cpu")["w"].device == dg.device("cpu")
    assert load(tmp_path / "c", map_location={"cuda:0": "cpu"})["w"].device == dg.device("cpu")
    with pytest.raises(TypeError, match="map_location"):
        load(tmp_path / "c", map_location=3.5)
    if not dg.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            load(tmp_path / "c", map_location="cuda:0")


# ------------------------------------------------------------------- atomicity
_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import distgraph as dg
    from distgraph import serialization

    real = serialization._write_file
    def slow_write(path, arrays, metadata):
        with open(path, "wb") as f:   # half a file, then hang until killed
            f.write(b"partial" * 1000)
            f.flush()
        print("writing", flush=True)
        time.sleep(60)
        real(path, arrays, metadata)
    serialization._write_file = slow_write
    serialization.save({"w": dg.full((1000,), 2.0), "epoch": 2}, sys.argv[1])
""")


def test_kill_mid_save_leaves_old_checkpoint(tmp_path):
    path = tmp_path / "ck.safetensors"
    save({"w": dg.ones(1000), "epoch": 1}, path)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert child.stdout.readline().strip() == b"writing"
        time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    back = load(path)
    assert back["epoch"] == 1 and float(back["w"].array.sum()) == 1000.0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ck.safetensors"]
    assert all(n.startswith(".ck.safetensors.") and n.endswith(".tmp") for n in leftovers)


def test_failed_save_keeps_old_file_and_cleans_up(tmp_path, monkeypatch):
    from distgraph import serialization
    path = tmp_path / "ck"
    save({"epoch": 1}, path)

    def boom(p, arrays, metadata):
        open(p, "wb").write(b"junk")
        raise OSError("disk full")
    monkeypatch.setattr(serialization, "_write_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save({"epoch": 2}, path)
    assert load(path) == {"epoch": 1} and os.listdir(tmp_path) == ["ck"]


# ---------------------------------------------------------- files from PyTorch
def test_load_torch_files(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    lin = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    sd = lin.state_dict()
    torch.save(sd, tmp_path / "model.pt")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "model.safetensors"))
    save_file({"half": torch.ones(2, dtype=torch.bfloat16) * 1.5}, str(tmp_path / "bf16.safetensors"))
    for name in ("model.pt", "model.safetensors"):
        back = load(tmp_path / name)
        assert set(back) == set(sd)
        for k, v in sd.items():
            assert isinstance(back[k], dg.Tensor) and back[k].shape == tuple(v.shape)
            np.testing.assert_array_equal(back[k].array, v.numpy())
        assert back["1.num_batches_tracked"].dtype == dg.int64
    half = load(tmp_path / "bf16.safetensors")["half"]
    assert half.dtype == dg.float32 and half.tolist() == [1.5, 1.5]
    with open(tmp_path / "bf16.safetensors", "rb") as f:
        assert load(f)["half"].tolist() == [1.5, 1.5]
    opt = torch.optim.Adam(lin.parameters())
    lin(torch.randn(4, 3)).sum().backward()
    opt.step()
    torch.save({"opt": opt.state_dict(), "epoch": 5}, tmp_path / "opt.pt")
    back = load(tmp_path / "opt.pt")
    assert back["epoch"] == 5 and back["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert isinstance(back["opt"]["state"][0]["exp_avg"], dg.Tensor)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="torch.save file but could not be read"):
        load(tmp_path / "cut.pt")
