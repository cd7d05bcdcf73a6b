"""``dg.cuda``: PyTorch's names; 0 / no-op / clear errors without a GPU; the GPU logic on a fake CuPy.

Three tables:
  * CPU behaviour (no CuPy here): what a CPU build of PyTorch does -- counts are 0,
    ``empty_cache`` is a no-op, device queries raise a clear RuntimeError.
  * The same functions against ``tests/fake_cuda.FakeCupy``: proves distgraph's own
    logic (device selection, the peak tracker's arithmetic), not CuPy's API.
  * On a real GPU (marked ``gpu``, skipped here): the numbers move as arrays come and go.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

import distgraph as dg

sys.path.insert(0, str(Path(__file__).parent))
import fake_cuda  # noqa: E402

needs_no_gpu = pytest.mark.skipif(dg.cuda.is_available(), reason="checks the CPU-only behaviour")


# ------------------------------------------------------------ without a GPU
@needs_no_gpu
@pytest.mark.parametrize("fn, expected", [
    (dg.cuda.is_available, False),
    (dg.cuda.device_count, 0),
    (dg.cuda.memory_allocated, 0),
    (dg.cuda.max_memory_allocated, 0),
    (dg.cuda.memory_reserved, 0),
    (dg.cuda.is_bf16_supported, False),
    (dg.cuda.empty_cache, None),
    (dg.cuda.reset_peak_memory_stats, None),
    (dg.cuda.synchronize, None),
])
def test_counts_are_zero_and_noops_do_nothing_without_gpu(fn, expected):
    assert fn() == expected


@needs_no_gpu
@pytest.mark.parametrize("fn, args", [
    (dg.cuda.get_device_name, ()),
    (dg.cuda.get_device_name, (0,)),
    (dg.cuda.get_device_capability, ()),
    (dg.cuda.get_device_properties, ("cuda:0",)),
    (dg.cuda.mem_get_info, ()),
    (dg.cuda.current_device, ()),
    (dg.cuda.set_device, (0,)),
])
def test_device_queries_raise_a_clear_error_without_gpu(fn, args):
    with pytest.raises(RuntimeError, match=r"needs CuPy and a CUDA GPU.*device='cpu'"):
        fn(*args)


@pytest.mark.parametrize("fn", [dg.cuda.get_device_name, dg.cuda.memory_allocated])
def test_a_cpu_device_is_refused_by_name(fn):
    if not dg.cuda.is_available() and fn is dg.cuda.memory_allocated:
        assert fn("cpu") == 0  # no GPU: counts are 0 whatever is asked, as in PyTorch
        return
    with pytest.raises(ValueError, match=r"expected a CUDA device .* got 'cpu'"):
        fn("cpu")


def test_manual_seed_all_is_manual_seed():
    dg.cuda.manual_seed_all(3)
    a = dg.randn(4).numpy()
    dg.cuda.manual_seed(3)
    np.testing.assert_array_equal(a, dg.randn(4).numpy())


# ------------------------------------------------------------- on a fake CuPy
@pytest.fixture
def fake(monkeypatch):
    cp = fake_cuda.install(monkeypatch.setattr, monkeypatch.setitem, device_count=2)
    monkeypatch.setattr(dg.cuda, "_tracker", None)
    return cp


def test_fake_properties_and_device_selection(fake):
    assert dg.cuda.is_available() and dg.cuda.device_count() == 2
    assert dg.cuda.get_device_name() == "Fake GPU 0"
    assert dg.cuda.get_device_name("cuda:1") == "Fake GPU 1"
    assert dg.cuda.get_device_capability(1) == (9, 0)
    props = dg.cuda.get_device_properties(dg.device("cuda", 1))
    assert (props.total_memory, props.multi_processor_count) == (80 << 30, 132)
    assert "Fake GPU 1" in repr(props)
    dg.cuda.set_device(1)
    assert dg.cuda.current_device() == 1
    with pytest.raises(ValueError, match=r"expected a device index in \[0, 2\), got 5"):
        dg.cuda.get_device_name(5)


def test_fake_synchronize_waits_for_the_whole_device(fake):
    fake.events_complete = False
    pending = fake.cuda.get_current_stream().record()  # e.g. work on NCCL's own stream
    dg.cuda.synchronize(1)
    assert fake.device_syncs == {1: 1} and fake.syncs == 0  # the device, not one stream
    assert pending.done
    dg.cuda.synchronize()
    assert fake.device_syncs == {1: 1, 0: 1}


def test_fake_memory_counts_follow_the_pool(fake):
    fake.pool.malloc(1000)
    assert dg.cuda.memory_allocated() == 1000 and dg.cuda.memory_reserved() == 1000
    assert dg.cuda.memory_allocated(1) == 0  # the pool counts per device
    fake.pool.free(400)
    assert dg.cuda.memory_allocated() == 600 and dg.cuda.memory_reserved() == 1000
    dg.cuda.empty_cache()
    assert dg.cuda.memory_reserved() == 600
    assert dg.cuda.mem_get_info() == ((80 << 30) - 600, 80 << 30)


def test_fake_peak_tracks_from_the_first_call(fake):
    fake.pool.malloc(500)  # before tracking: counted in the starting point, not missed
    assert dg.cuda.max_memory_allocated() == 500
    fake.pool.malloc(300)
    fake.pool.free(300)
    fake.pool.malloc(100)
    assert dg.cuda.max_memory_allocated() == 800
    assert dg.cuda.memory_allocated() == 600
    dg.cuda.reset_peak_memory_stats()
    assert dg.cuda.max_memory_allocated() == 600
    fake.pool.free(600)
    assert dg.cuda.max_memory_allocated() == 600 and dg.cuda.memory_allocated() == 0
    assert len(fake_cuda.MemoryHook.installed) == 1  # one hook, installed once


def test_fake_peak_is_per_device(fake):
    assert dg.cuda.max_memory_allocated(0) == 0
    with fake.cuda.Device(1):
        fake.pool.malloc(64)  # device 1 is not tracked yet: ignored by the hook ...
    assert dg.cuda.max_memory_allocated(1) == 64  # ... and picked up from used_bytes on first ask
    assert dg.cuda.max_memory_allocated(0) == 0


# ---------------------------------------------------------------- real GPU
@pytest.mark.gpu
def test_gpu_memory_counts_move_with_arrays():
    if not dg.cuda.is_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    dg.cuda.synchronize()
    dg.cuda.reset_peak_memory_stats()
    base = dg.cuda.memory_allocated()
    x = dg.zeros(1 << 20, device="cuda")  # 4 MiB
    assert dg.cuda.memory_allocated() >= base + (4 << 20)
    assert dg.cuda.max_memory_allocated() >= base + (4 << 20)
    assert dg.cuda.memory_reserved() >= dg.cuda.memory_allocated()
    del x
    assert dg.cuda.memory_allocated() == base
    assert dg.cuda.max_memory_allocated() >= base + (4 << 20)
    dg.cuda.empty_cache()
    free, total = dg.cuda.mem_get_info()
    assert 0 < free <= total


@pytest.mark.gpu
def test_gpu_properties():
    if not dg.cuda.is_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    name = dg.cuda.get_device_name()
    assert isinstance(name, str) and name
    major, minor = dg.cuda.get_device_capability()
    assert major >= 3
    assert dg.cuda.get_device_properties().total_memory > 1 << 30
    assert dg.cuda.current_device() in range(dg.cuda.device_count())
