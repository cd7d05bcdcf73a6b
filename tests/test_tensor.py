"""Tensor API, creation, dtype promotion (PyTorch's documented rules) and bad-input errors."""
import numpy as np
import pytest

import distgraph as dg

from dg_testing import to_numpy


# ------------------------------------------------------------------ promotion
# Each expectation is an example from PyTorch's "Type promotion" documentation.
int_tensor = lambda: dg.ones(1, dtype=dg.int32)  # noqa: E731
long_tensor = lambda: dg.ones(1, dtype=dg.int64)  # noqa: E731
float_tensor = lambda: dg.ones(1, dtype=dg.float32)  # noqa: E731
double_tensor = lambda: dg.ones(1, dtype=dg.float64)  # noqa: E731
bool_tensor = lambda: dg.ones(1, dtype=dg.bool)  # noqa: E731
long_zerodim = lambda: dg.tensor(1, dtype=dg.int64)  # noqa: E731


@pytest.mark.parametrize("expr, expected", [
    (lambda: int_tensor() + 5, dg.int32),
    (lambda: int_tensor() + long_zerodim(), dg.int32),
    (lambda: long_tensor() + int_tensor(), dg.int64),
    (lambda: bool_tensor() + long_tensor(), dg.int64),
    (lambda: float_tensor() + double_tensor(), dg.float64),
    (lambda: bool_tensor() + int_tensor(), dg.int32),
    (lambda: dg.add(long_tensor(), float_tensor()), dg.float32),
    (lambda: int_tensor() + 5.5, dg.float32),
    (lambda: double_tensor() * 2.5, dg.float64),
    (lambda: dg.ones(2, dtype=dg.float16) * 3.0, dg.float16),
    (lambda: dg.ones(2, dtype=dg.float16) + dg.ones(2, dtype=dg.int64), dg.float16),
    (lambda: float_tensor() + dg.tensor(1.0, dtype=dg.float64), dg.float32),
    (lambda: int_tensor() + dg.tensor(1.0, dtype=dg.float64), dg.float64),
    (lambda: int_tensor() / int_tensor(), dg.float32),
    (lambda: dg.exp(long_tensor()), dg.float32),
    (lambda: dg.ones(3, dtype=dg.bool).sum(), dg.int64),
    (lambda: float_tensor() + np.ones(1), dg.float64),
    (lambda: np.ones(1, dtype=np.float32) + float_tensor(), dg.float32),
])
def test_type_promotion_follows_pytorch(expr, expected):
    assert expr().dtype == expected


def test_promoted_op_differentiates_through_the_cast():
    a = dg.ones(2, dtype=dg.float32, requires_grad=True)
    b = dg.tensor([2.0, 3.0], dtype=dg.float64, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == dg.float32 and b.grad.dtype == dg.float64
    np.testing.assert_allclose(a.grad.numpy(), [2, 3])


# --------------------------------------------------------------------- tensor API
def test_conversions_and_properties():
    t = dg.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.shape == (2, 2) and t.dtype == dg.float32 and t.device == dg.device("cpu")
    assert t.is_leaf and not t.requires_grad and t.grad is None and t.grad_fn is None
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert t[1, 0].item() == 3.0 and isinstance(t.sum().item(), float)
    assert np.asarray(t) is t.array
    assert t.to(dg.float64).dtype == dg.float64 and t.double().dtype == dg.float64
    assert t.to("cpu") is t and t.cpu() is t
    c = t.clone()
    c.array[0, 0] = 9
    assert t.array[0, 0] == 1.0
    assert dg.tensor(3).dtype == dg.int64 and dg.tensor(True).dtype == dg.bool
    assert dg.tensor(np.arange(3, dtype=np.float64)).dtype == dg.float64
    assert "grad_fn=<MulBackward>" in repr(dg.ones(2, requires_grad=True) * 2)


def test_numpy_requires_detach_when_grad_is_needed():
    t = dg.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        t.numpy()
    assert t.detach().numpy().tolist() == [1.0, 1.0]


def test_numpy_arrays_and_scalars_are_accepted_as_operands():
    t = dg.tensor([1.0, 2.0, 3.0])
    np.testing.assert_allclose((t + np.ones(3)).numpy(), [2, 3, 4])
    np.testing.assert_allclose((np.ones(3) - t).numpy(), [0, -1, -2])
    np.testing.assert_allclose((t * np.float32(2)).numpy(), [2, 4, 6])
    np.testing.assert_allclose(dg.maximum(t, [2.0, 2.0, 2.0]).numpy(), [2, 2, 3])
    assert isinstance(np.ones(3) + t, dg.Tensor)


def test_from_numpy_shares_memory_and_dlpack_roundtrip():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = dg.from_numpy(a)
    a[0, 0] = 42
    assert t.array[0, 0] == 42
    back = np.from_dlpack(t)
    assert np.shares_memory(back, a)
    t2 = dg.from_dlpack(a)
    assert np.shares_memory(t2.array, a) and t2.shape == (2, 3)
    with pytest.raises(TypeError, match="unsupported dtype"):
        dg.from_numpy(np.zeros(2, dtype=np.complex64))


def test_dlpack_with_torch_when_installed():
    torch = pytest.importorskip("torch")
    tt = torch.arange(4, dtype=torch.float32)
    t = dg.from_dlpack(tt)
    tt[0] = 7
    assert t.array[0] == 7
    back = torch.from_dlpack(t)
    assert back.data_ptr() == tt.data_ptr()


# ---------------------------------------------------------------------- creation
def test_creation_functions(device):
    assert to_numpy(dg.zeros(2, 3, device=device)).tolist() == [[0, 0, 0], [0, 0, 0]]
    assert dg.ones((2,), device=device).dtype == dg.float32
    assert dg.full((2,), 7).dtype == dg.int64 and dg.full((2,), 7.0).dtype == dg.float32
    assert dg.full((1,), True).dtype == dg.bool
    assert dg.empty(3, 2, device=device).shape == (3, 2)
    assert to_numpy(dg.arange(5, device=device)).tolist() == [0, 1, 2, 3, 4]
    assert dg.arange(5).dtype == dg.int64 and dg.arange(0, 1, 0.25).dtype == dg.float32
    np.testing.assert_allclose(to_numpy(dg.linspace(0, 1, 5, device=device)), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(to_numpy(dg.eye(3, device=device)), np.eye(3))
    x = dg.randn(100, 100, device=device)
    assert x.dtype == dg.float32 and abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    u = dg.rand(1000, device=device, dtype=dg.float64)
    assert u.dtype == dg.float64 and 0 <= float(u.min()) and float(u.max()) < 1
    r = dg.randint(3, 7, (1000,), device=device)
    assert r.dtype == dg.int64 and set(to_numpy(r).tolist()) == {3, 4, 5, 6}
    like = dg.zeros_like(x, dtype=dg.float64)
    assert like.shape == x.shape and like.dtype == dg.float64
    assert dg.ones_like(x).shape == x.shape and dg.full_like(x, 2.0).array.flat[0] == 2
    assert dg.randn_like(x).shape == x.shape and dg.rand_like(x).shape == x.shape
    assert dg.empty_like(x).shape == x.shape and dg.randint_like(x, 5).dtype == x.dtype  # as PyTorch: keeps the dtype


def test_manual_seed_reproduces_every_generator():
    dg.manual_seed(123)
    a, b = dg.randn(5), dg.rand(3)
    dg.manual_seed(123)
    assert np.array_equal(dg.randn(5).numpy(), a.numpy()) and np.array_equal(dg.rand(3).numpy(), b.numpy())


def test_max_with_dim_returns_values_and_indices():
    t = dg.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    values, indices = t.max(dim=1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0] and indices.dtype == dg.int64
    assert t.min(0, keepdim=True).indices.tolist() == [[0, 1, 0]]
    assert t.argmax().item() == 3 and t.argmin(1).tolist() == [0, 1]


# -------------------------------------------------------------------- bad input
def test_shape_mismatch_names_op_and_shapes():
    with pytest.raises(RuntimeError, match=r"add: shapes \(3,\) and \(4,\)"):
        dg.ones(3) + dg.ones(4)
    with pytest.raises(RuntimeError, match=r"matmul: expected a.shape\[-1\] == b.shape\[-2\], got \(2, 3\) @ \(4, 5\)"):
        dg.ones(2, 3) @ dg.ones(4, 5)
    with pytest.raises(RuntimeError, match=r"reshape: shape \[5\] is invalid for an input of shape \(2, 3\)"):
        dg.ones(2, 3).reshape(5)
    with pytest.raises(RuntimeError, match=r"cat: sizes must match except in dimension 0"):
        dg.cat([dg.ones(2, 3), dg.ones(2, 4)])
    with pytest.raises(RuntimeError, match=r"expand: the expanded size \(4\) must match the existing size \(3\)"):
        dg.ones(3).expand(2, 4)


def test_unsupported_dtype_names_supported_ones():
    with pytest.raises(TypeError, match="float32.*int64.*bool"):
        dg.zeros(2, dtype="complex64")
    with pytest.raises(TypeError, match="unsupported dtype"):
        dg.tensor(np.zeros(2, dtype=np.complex128))


def test_mean_of_integer_tensor_is_refused_like_pytorch():
    with pytest.raises(RuntimeError, match="mean.*floating point"):
        dg.arange(4).mean()


def test_cuda_device_without_gpu_is_a_clear_error():
    if dg.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="needs CuPy and a CUDA GPU.*device='cpu'"):
        dg.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="needs CuPy"):
        dg.ones(2).cuda()


def test_mixing_devices_names_both(device):
    if device == "cpu":
        pytest.skip("needs a GPU to have two devices")
    with pytest.raises(RuntimeError, match="same device, got cuda:0 and cpu"):
        dg.ones(2, device="cuda") + dg.ones(2)


def test_indexing_errors_are_clear():
    with pytest.raises(IndexError, match=r"index 5 is out of bounds for dimension 0 with size 2"):
        dg.ones(2, 3)[5]
    with pytest.raises(IndexError, match="out of range"):
        dg.ones(2, 3).sum(dim=4)
