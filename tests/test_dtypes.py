"""Integer dtypes (uint8, int8, int16 with int32/int64/bool/floats): promotion, wrapping, bit ops vs torch."""
import itertools

import numpy as np
import pytest

import distgraph as dg
from dg_testing import to_numpy

torch = pytest.importorskip("torch")

NAMES = ["uint8", "int8", "int16", "int32", "int64", "bool", "float16", "float32", "float64"]
VALUES = np.array([0, 1, 5, 100], np.int64)


def _pair(name, zero_dim=False):
    v = VALUES[:1].reshape(()) if zero_dim else VALUES
    return dg.tensor(v).to(getattr(dg, name if name != "bool" else "bool_")), torch.tensor(v).to(getattr(torch, name))


def _same(got, want):
    assert str(want.dtype).replace("torch.", "") == dg.backend.dtype_name(got.dtype)
    np.testing.assert_array_equal(to_numpy(got).astype(np.float64), want.numpy().astype(np.float64))


@pytest.mark.parametrize("a, b", list(itertools.product(NAMES, NAMES)))
def test_promote_types_and_arithmetic_match_torch(a, b):
    want = torch.promote_types(getattr(torch, a), getattr(torch, b))
    assert dg.backend.dtype_name(dg.backend.promote_types(dg.backend.as_dtype(a), dg.backend.as_dtype(b))) == \
        str(want).replace("torch.", "")
    (da, ta), (db, tb) = _pair(a), _pair(b)
    if "bool" not in (a, b):
        _same(da + db, ta + tb)
    _same(da * db, ta * tb)
    (dz, tz) = _pair(b, zero_dim=True)
    _same(da * dz, ta * tz)   # a 0-dim tensor of the same category does not promote


@pytest.mark.parametrize("name", ["uint8", "int8", "int16"])
def test_new_dtypes_are_exported_and_kept(name):
    arr = np.array([1, 2, 3], dtype=name)
    assert dg.tensor(arr).dtype == getattr(dg, name) == np.dtype(name)
    assert dg.from_numpy(arr).dtype == np.dtype(name)
    assert dg.zeros(2, dtype=getattr(dg, name)).dtype == np.dtype(name)
    assert dg.short == dg.int16 and dg.int == dg.int32
    assert repr(dg.tensor(arr)).endswith(f"dtype={name})")


@pytest.mark.parametrize("scalar", [300, -1, 2, -129, 2.5, True])
@pytest.mark.parametrize("name", ["uint8", "int8", "int16"])
def test_scalar_operands_wrap_like_torch(name, scalar):
    d, t = _pair(name)
    cases = [lambda x: x + scalar, lambda x: x * scalar] + ([lambda x: x - scalar, lambda x: scalar - x]
                                                            if scalar is not True else [])
    for f in cases:
        _same(f(d), f(t))


def test_overflow_wraps_like_torch():
    for name, v in [("uint8", 255), ("int8", 127), ("int16", 32767)]:
        d, t = dg.tensor([v]).to(getattr(dg, name)), torch.tensor([v]).to(getattr(torch, name))
        _same(d + d, t + t)
        _same(-d, -t)
    d, t = dg.tensor([200], dtype=dg.uint8), torch.tensor([200], dtype=torch.uint8)
    _same(d.sum(), t.sum())


BITOPS = [lambda a, b: a & b, lambda a, b: a | b, lambda a, b: a ^ b, lambda a, b: ~a,
          lambda a, b: a << (b % 9), lambda a, b: a >> (b % 9), lambda a, b: 6 & a, lambda a, b: 6 | a,
          lambda a, b: 6 ^ a, lambda a, b: a & 3, lambda a, b: 1 << (b % 5), lambda a, b: 64 >> (b % 5)]


@pytest.mark.parametrize("k", range(len(BITOPS)))
@pytest.mark.parametrize("a, b", [("int64", "int64"), ("uint8", "int8"), ("int16", "uint8"), ("int32", "int64"),
                                  ("bool", "bool"), ("bool", "int64"), ("float32", "int64")])
def test_bit_ops_match_torch(k, a, b):
    op = BITOPS[k]
    vals = np.array([5, -3, 12, 0, 7], np.int64)
    da, ta = dg.tensor(vals).to(getattr(dg, a if a != "bool" else "bool_")), torch.tensor(vals).to(getattr(torch, a))
    db, tb = dg.tensor(vals[::-1].copy()).to(getattr(dg, b if b != "bool" else "bool_")), \
        torch.tensor(vals[::-1].copy()).to(getattr(torch, b))
    try:
        want = op(ta, tb)
    except Exception as e:
        with pytest.raises(type(e)):
            op(da, db)
        return
    _same(op(da, db), want)


def test_bit_functions_and_inplace_forms():
    v = np.array([5, -3, 12, 70], np.int64)
    d, t = dg.tensor(v), torch.tensor(v)
    for name in ["bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift"]:
        _same(getattr(dg, name)(d, 3), getattr(torch, name)(t, 3))
        _same(getattr(d, name)(d), getattr(t, name)(t))
    _same(d << 70, t << 70)
    _same(d >> 70, t >> 70)
    _same(dg.bitwise_not(d), torch.bitwise_not(t))
    d2, t2 = dg.tensor(v), torch.tensor(v)
    d2 &= 6
    t2 &= 6
    d2 |= 1
    t2 |= 1
    d2 ^= 3
    t2 ^= 3
    d2 <<= 2
    t2 <<= 2
    d2 >>= 1
    t2 >>= 1
    _same(d2, t2)
    for lib in (torch, dg):
        with pytest.raises(NotImplementedError):
            lib.bitwise_and(lib.tensor([1.0]), lib.tensor([1.0]))
        with pytest.raises(TypeError):
            ~lib.tensor([1.0])


def test_view_dtype_reinterprets_bits_like_torch():
    x = np.array([[1.0, -2.0, 0.5, 3.0]], np.float32)
    d, t = dg.tensor(x), torch.tensor(x)
    for name in ["int32", "int16", "uint8", "int64", "float16", "float64", "float32"]:
        got, want = d._view_dtype(getattr(dg, name)), t.view(getattr(torch, name))
        assert tuple(got.shape) == tuple(want.shape)
        np.testing.assert_array_equal(to_numpy(got), want.numpy())
    v = d._view_dtype(dg.int32)
    v.fill_(0)
    assert float(d.sum()) == 0.0   # shares memory
    for bad in [lambda T, L: T(np.zeros(3, np.float32)).view(L.int64) if L is torch
                else dg.tensor(np.zeros(3, np.float32))._view_dtype(dg.int64),
                lambda T, L: T(np.float32(1.0)).view(L.int16) if L is torch
                else dg.tensor(np.float32(1.0))._view_dtype(dg.int16)]:
        with pytest.raises(RuntimeError):
            bad(torch.tensor, torch)
        with pytest.raises(RuntimeError):
            bad(dg.tensor, dg)


def test_type_conversion_methods():
    d, t = dg.tensor([1.5, 300.0]), torch.tensor([1.5, 300.0])
    for m in ["byte", "char", "short", "int", "long", "bool", "half", "double"]:
        _same(getattr(d, m)(), getattr(t, m)())
    assert d.type() == t.type() == "torch.FloatTensor"
    assert d.byte().type() == t.byte().type()
    _same(d.type(dg.int16), t.type(torch.int16))
    _same(d.type("torch.ShortTensor"), t.type("torch.ShortTensor"))


def test_new_factories_keep_dtype():
    d, t = dg.tensor([1, 2], dtype=dg.int8), torch.tensor([1, 2], dtype=torch.int8)
    _same(d.new_zeros(2, 3), t.new_zeros(2, 3))
    _same(d.new_ones((2,)), t.new_ones((2,)))
    _same(d.new_full((2,), 7), t.new_full((2,), 7))
    _same(d.new_tensor([3, 4]), t.new_tensor([3, 4]))
    assert d.new_empty(3).dtype == dg.int8
    assert d.new_zeros(2, dtype=dg.float32).dtype == dg.float32


def test_randint_signatures_match_torch():
    for args, kw in [((10, (3,)), {}), ((3, 10, (2, 2)), {}), ((3, 10), {"size": (4,)}), ((10,), {"size": (2,)}),
                     ((5, (3,)), {"dtype": "float32"}), ((5, (3,)), {"dtype": "uint8"})]:
        kd = {k: (getattr(dg, v) if k == "dtype" else v) for k, v in kw.items()}
        kt = {k: (getattr(torch, v) if k == "dtype" else v) for k, v in kw.items()}
        got, want = dg.randint(*args, **kd), torch.randint(*args, **kt)
        assert tuple(got.shape) == tuple(want.shape)
        assert str(want.dtype).replace("torch.", "") == dg.backend.dtype_name(got.dtype)
        lo, hi = (0, args[0]) if len(args) == 1 or isinstance(args[1], tuple) else args[:2]
        assert to_numpy(got).min() >= lo and to_numpy(got).max() < hi
    for lib in (torch, dg):
        with pytest.raises(RuntimeError):
            lib.randint(5, 3, (3,))
        with pytest.raises(TypeError):
            lib.randint(5, 3)
    x = dg.zeros(2, 3)
    got = dg.randint_like(x, 10)
    assert got.shape == (2, 3) and got.dtype == dg.float32 and to_numpy(got).max() < 10
    assert to_numpy(dg.randint_like(x, 3, 5)).min() >= 3
    assert dg.randint(5, (3,), dtype=dg.float32, requires_grad=True).requires_grad
