"""Elementwise maths, integer division and bit ops against PyTorch.

Each case is one function of the library (``torch`` or ``distgraph``) run on the same
inputs: forward values, dtypes, shapes and input gradients must agree with torch, and
the gradient must agree with central differences in float64 (``gradcheck``)."""
import numpy as np
import pytest

import distgraph as dg
from distgraph.autograd import gradcheck
from dg_testing import to_numpy

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)


def _u(lo, hi, shape=(3, 4)):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def _off_integers(shape=(3, 4)):
    """Values at least 0.15 from any integer (and from the .5 ties), away from rounding kinks."""
    whole = RNG.integers(-3, 3, shape)
    return (whole + RNG.choice([0.2, 0.35, 0.65, 0.8], shape)).astype(np.float32)


def _lib_tensors(lib, arrays, device="cpu", grad=True):
    out = []
    for a in arrays:
        t = torch.tensor(a) if lib is torch else dg.tensor(a, device=device)
        out.append(t.requires_grad_() if grad and a.dtype.kind == "f" else t)
    return out


def compare(fn, arrays, device="cpu", grad=True, gradcheck_it=True, rtol=1e-5, atol=1e-6):
    """Run ``fn(lib, *tensors)`` with torch and distgraph; compare output and gradients."""
    tt = _lib_tensors(torch, arrays)
    dt = _lib_tensors(dg, arrays, device)
    want, got = fn(torch, *tt), fn(dg, *dt)
    assert tuple(got.shape) == tuple(want.shape)
    assert str(want.dtype).replace("torch.", "") == dg.backend.dtype_name(got.dtype), (want.dtype, got.dtype)
    np.testing.assert_allclose(to_numpy(got).astype(np.float64), want.detach().numpy().astype(np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)
    if not grad or not want.requires_grad:
        return
    assert got.requires_grad
    w = RNG.standard_normal(tuple(want.shape)).astype(np.float32)
    try:
        (want * torch.tensor(w).to(want.dtype)).sum().backward()
    except RuntimeError:   # torch has no derivative for this op (floor_divide): neither may we
        with pytest.raises(RuntimeError):
            (got * dg.tensor(w, device=device).to(got.dtype)).sum().backward()
        return
    (got * dg.tensor(w, device=device).to(got.dtype)).sum().backward()
    for a, b in zip(tt, dt):
        if a.requires_grad:
            ga = a.grad if a.grad is not None and not a.grad._is_zerotensor() else torch.zeros_like(a)
            gb = to_numpy(b.grad) if b.grad is not None else np.zeros(a.shape)
            np.testing.assert_allclose(gb, ga.numpy(), rtol=1e-4, atol=1e-5)
    if gradcheck_it:
        wide = [dg.tensor(a.astype(np.float64) if a.dtype.kind == "f" else a, device=device) for a in arrays]
        for t in wide:
            if t.is_floating_point():
                t.requires_grad_()
        assert gradcheck(lambda *xs: fn(dg, *xs), wide)


UNARY = [
    ("tan", lambda L, x: L.tan(x), (-1.2, 1.2)),
    ("asin", lambda L, x: L.asin(x), (-0.9, 0.9)),
    ("arcsin", lambda L, x: L.arcsin(x), (-0.9, 0.9)),
    ("acos", lambda L, x: L.acos(x), (-0.9, 0.9)),
    ("arccos", lambda L, x: L.arccos(x), (-0.9, 0.9)),
    ("atan", lambda L, x: L.atan(x), (-3, 3)),
    ("sinh", lambda L, x: L.sinh(x), (-2, 2)),
    ("cosh", lambda L, x: L.cosh(x), (-2, 2)),
    ("asinh", lambda L, x: L.asinh(x), (-3, 3)),
    ("acosh", lambda L, x: L.acosh(x), (1.2, 3)),
    ("atanh", lambda L, x: L.atanh(x), (-0.9, 0.9)),
    ("erf", lambda L, x: L.erf(x), (-2, 2)),
    ("erfc", lambda L, x: L.erfc(x), (-2, 2)),
    ("erfinv", lambda L, x: L.erfinv(x), (-0.9, 0.9)),
    ("exp2", lambda L, x: L.exp2(x), (-2, 2)),
    ("expm1", lambda L, x: L.expm1(x), (-2, 2)),
    ("log2", lambda L, x: L.log2(x), (0.2, 3)),
    ("log10", lambda L, x: L.log10(x), (0.2, 3)),
    ("reciprocal", lambda L, x: L.reciprocal(x), (0.3, 2)),
    ("square", lambda L, x: L.square(x), (-2, 2)),
    ("sinc", lambda L, x: L.sinc(x), (-2, 2)),
    ("deg2rad", lambda L, x: L.deg2rad(x), (-200, 200)),
    ("rad2deg", lambda L, x: L.rad2deg(x), (-3, 3)),
    ("floor", lambda L, x: L.floor(x), None),
    ("ceil", lambda L, x: L.ceil(x), None),
    ("round", lambda L, x: L.round(x), None),
    ("round_decimals", lambda L, x: L.round(x * 10, decimals=1), None),
    ("round_neg_decimals", lambda L, x: L.round(x * 10, decimals=-1), None),
    ("trunc", lambda L, x: L.trunc(x), None),
    ("fix", lambda L, x: L.fix(x), None),
    ("frac", lambda L, x: L.frac(x), None),
    ("sign", lambda L, x: L.sign(x), None),
    ("sgn", lambda L, x: L.sgn(x), None),
    ("nan_to_num", lambda L, x: L.nan_to_num(L.log(x), nan=0.5, posinf=3.0), (-1, 2)),
    ("clamp_min", lambda L, x: L.clamp_min(x, 0.1), (-1, 1)),
    ("clamp_max", lambda L, x: L.clamp_max(x, 0.1), (-1, 1)),
    ("clamp_min_tensor", lambda L, x: L.clamp_min(x, x[0]), (-1, 1)),
    ("method_floor", lambda L, x: x.floor() + x.frac() * x.sign(), None),
    ("method_trig", lambda L, x: x.tan() + x.atan() + x.sinh() + x.erf() + x.expm1() + x.square(), (-1, 1)),
    ("method_clamp", lambda L, x: x.clamp_min(-0.5).clamp_max(0.5) + x.reciprocal().log2(), (0.3, 2)),
]


@pytest.mark.parametrize("name, fn, domain", UNARY, ids=[c[0] for c in UNARY])
def test_unary_matches_torch(name, fn, domain, device):
    x = _off_integers() if domain is None else _u(*domain)
    # nan_to_num's input has NaN (log of a negative) and -inf (log 0): its numeric gradient is undefined there
    compare(fn, [x], device, gradcheck_it=name != "nan_to_num")


def test_nan_to_num_defaults_and_gradient(device):
    x = np.array([np.nan, np.inf, -np.inf, 1.5], np.float32)
    compare(lambda L, x: L.nan_to_num(x * 1.0), [x], device, gradcheck_it=False)


BINARY = [
    ("atan2", lambda L, a, b: L.atan2(a, b), (-2, 2), (-2, 2)),
    ("arctan2", lambda L, a, b: L.arctan2(a, b), (-2, 2), (0.5, 2)),
    ("copysign", lambda L, a, b: L.copysign(a, b), (-2, 2), (-2, 2)),
    ("logaddexp", lambda L, a, b: L.logaddexp(a, b), (-3, 3), (-3, 3)),
    ("logaddexp2", lambda L, a, b: L.logaddexp2(a, b), (-3, 3), (-3, 3)),
    ("hypot", lambda L, a, b: L.hypot(a, b), (0.5, 2), (-2, -0.5)),
    ("xlogy", lambda L, a, b: L.xlogy(a, b), (-2, 2), (0.3, 2)),
    ("fmod", lambda L, a, b: L.fmod(a, b), (-5, 5), (0.7, 1.3)),
    ("fmod_neg", lambda L, a, b: L.fmod(a, -b), (-5, 5), (0.7, 1.3)),
    ("remainder", lambda L, a, b: L.remainder(a, b), (-5, 5), (0.7, 1.3)),
    ("remainder_neg", lambda L, a, b: L.remainder(a, -b), (-5, 5), (0.7, 1.3)),
    ("mod_op", lambda L, a, b: a % b + a % -1.5, (-5, 5), (0.7, 1.3)),
    ("rmod_op", lambda L, a, b: 3.5 % b + (-3.5) % b, (-5, 5), (0.7, 1.3)),
    ("floordiv_op", lambda L, a, b: a // b + a // -0.75 + 2.5 // b, (-5, 5), (0.7, 1.3)),
    ("floor_divide", lambda L, a, b: L.floor_divide(a, b), (-5, 5), (0.7, 1.3)),
    ("div_floor", lambda L, a, b: L.div(a, b, rounding_mode="floor"), (-5, 5), (-1.3, -0.7)),
    ("div_trunc", lambda L, a, b: L.div(a, b, rounding_mode="trunc"), (-5, 5), (-1.3, -0.7)),
    ("div_none", lambda L, a, b: L.div(a, b, rounding_mode=None), (-5, 5), (0.7, 1.3)),
    ("true_divide", lambda L, a, b: L.true_divide(a, b), (-5, 5), (0.7, 1.3)),
    ("float_power", lambda L, a, b: L.float_power(a, b), (0.5, 2), (-2, 2)),
    ("float_power_scalar", lambda L, a, b: L.float_power(a, 3) + L.float_power(2, b), (0.5, 2), (-2, 2)),
    ("lerp_scalar", lambda L, a, b: L.lerp(a, b, 0.3) + L.lerp(a, b, 0.8), (-2, 2), (-2, 2)),
    ("lerp_tensor", lambda L, a, b: L.lerp(a, b, L.sigmoid(a * b)), (-2, 2), (-2, 2)),
    ("methods", lambda L, a, b: a.fmod(b) + a.remainder(b) + a.atan2(b) + a.lerp(b, 0.4) + a.hypot(b), (0.5, 2),
     (0.7, 1.3)),
]


@pytest.mark.parametrize("name, fn, da, db", BINARY, ids=[c[0] for c in BINARY])
def test_binary_matches_torch(name, fn, da, db, device):
    a = _u(*da)
    if "div" in name or "mod" in name or "remainder" in name or "fmod" in name:
        a = _off_integers() * 1.5   # quotients away from whole numbers: the rounding kinks
    compare(fn, [a, _u(*db)], device)


@pytest.mark.parametrize("name, fn, da, db", BINARY[:3], ids=[c[0] for c in BINARY[:3]])
def test_binary_broadcasts(name, fn, da, db, device):
    compare(fn, [_u(*da, shape=(3, 1)), _u(*db, shape=(4,))], device)


def test_lerp_weight_gradient_and_broadcast(device):
    compare(lambda L, a, b, w: L.lerp(a, b, w), [_u(-1, 1, (2, 3)), _u(-1, 1, (3,)), _u(0, 1, (2, 1))], device)


def test_xlogy_zero_and_nan():
    a = np.array([0.0, 0.0, 1.0, 2.0], np.float32)
    b = np.array([0.0, np.nan, 2.0, np.nan], np.float32)
    compare(lambda L, a, b: L.xlogy(a, b), [a, b], grad=False)
    compare(lambda L, a: L.xlogy(a, 3.0) + L.xlogy(2.0, L.exp(a)), [_u(-1, 1)], gradcheck_it=True)


# ------------------------------------------------------ dtypes of the results
INT_INPUTS = {
    "int64": np.array([3, -4, 5, 0], np.int64),
    "uint8": np.array([200, 3, 7, 0], np.uint8),
    "bool": np.array([True, False, True, True]),
}
FLOAT_OF_INT = ["tan", "asin", "atan", "sinh", "cosh", "erf", "erfc", "erfinv", "exp2", "expm1", "log2", "log10",
                "reciprocal", "sinc", "deg2rad", "rad2deg", "sqrt", "exp"]
KEEP_INT = ["floor", "ceil", "round", "trunc", "fix", "sign", "sgn", "nan_to_num", "square", "abs", "neg"]


@pytest.mark.parametrize("kind", list(INT_INPUTS))
@pytest.mark.parametrize("name", FLOAT_OF_INT + KEEP_INT + ["frac", "isinf", "isposinf", "isneginf", "isnan",
                                                            "isfinite", "isreal", "signbit", "bitwise_not"])
def test_unary_dtype_on_integer_and_bool_inputs(name, kind):
    x = INT_INPUTS[kind]
    try:
        want = getattr(torch, name)(torch.tensor(x))
    except Exception as e:   # torch has no kernel for this dtype: we must raise the same type
        with pytest.raises(type(e)):
            getattr(dg, name)(dg.tensor(x))
        return
    got = getattr(dg, name)(dg.tensor(x))
    assert str(want.dtype).replace("torch.", "") == dg.backend.dtype_name(got.dtype)
    np.testing.assert_allclose(to_numpy(got).astype(np.float64), want.numpy().astype(np.float64), rtol=1e-5,
                               equal_nan=True)


BINARY_NAMES = ["atan2", "copysign", "logaddexp", "logaddexp2", "fmod", "remainder", "hypot", "xlogy",
                "float_power", "floor_divide", "true_divide", "bitwise_and", "bitwise_or", "bitwise_xor",
                "bitwise_left_shift", "bitwise_right_shift", "isclose"]
OPERANDS = {
    "int64": np.array([7, -7, 5, 9], np.int64),
    "uint8": np.array([200, 3, 7, 9], np.uint8),
    "int8": np.array([-7, 3, 7, 100], np.int8),
    "bool": np.array([True, False, True, True]),
    "float32": np.array([1.5, -2.5, 0.3, 4.0], np.float32),
}
OTHERS = {"int64": np.array([2, 3, -2, 1], np.int64), "uint8": np.array([2, 3, 5, 1], np.uint8),
          "int8": np.array([2, -3, 5, 1], np.int8), "bool": np.array([True, True, True, True]),
          "float32": np.array([0.7, -1.5, 2.0, 0.25], np.float32), "scalar_int": 3, "scalar_float": 2.5}


def _run_binary(lib, name, a, b):
    ta = torch.tensor(a) if lib is torch else dg.tensor(a)
    tb = b if not isinstance(b, np.ndarray) else (torch.tensor(b) if lib is torch else dg.tensor(b))
    return getattr(lib, name)(ta, tb)


@pytest.mark.parametrize("other", list(OTHERS))
@pytest.mark.parametrize("kind", list(OPERANDS))
@pytest.mark.parametrize("name", BINARY_NAMES)
def test_binary_dtypes_values_and_errors(name, kind, other):
    a, b = OPERANDS[kind], OTHERS[other]
    try:
        want = _run_binary(torch, name, a, b)
    except Exception as e:
        with pytest.raises(type(e)):
            _run_binary(dg, name, a, b)
        return
    got = _run_binary(dg, name, a, b)
    assert str(want.dtype).replace("torch.", "") == dg.backend.dtype_name(got.dtype)
    np.testing.assert_allclose(to_numpy(got).astype(np.float64), want.numpy().astype(np.float64), rtol=1e-5,
                               equal_nan=True)


@pytest.mark.parametrize("mode", ["floor", "trunc", None])
@pytest.mark.parametrize("kind", list(OPERANDS))
@pytest.mark.parametrize("other", list(OTHERS))
def test_div_rounding_modes_match_torch(mode, kind, other):
    a, b = OPERANDS[kind], OTHERS[other]

    def run(lib):
        ta = torch.tensor(a) if lib is torch else dg.tensor(a)
        tb = b if not isinstance(b, np.ndarray) else (torch.tensor(b) if lib is torch else dg.tensor(b))
        return lib.div(ta, tb, rounding_mode=mode)
    try:
        want = run(torch)
    except Exception as e:
        with pytest.raises(type(e)):
            run(dg)
        return
    got = run(dg)
    assert str(want.dtype).replace("torch.", "") == dg.backend.dtype_name(got.dtype)
    np.testing.assert_allclose(to_numpy(got).astype(np.float64), want.numpy().astype(np.float64), rtol=1e-6)


NEGATIVE = np.array([-7, -6, -1, 0, 1, 6, 7], np.int64)
DIVISORS = [3, -3, 2.5, -2.5]


@pytest.mark.parametrize("divisor", DIVISORS)
@pytest.mark.parametrize("dtype", ["int64", "int32", "int8", "float32", "float64"])
def test_floordiv_and_mod_operators_with_negative_operands(divisor, dtype):
    t, d = torch.tensor(NEGATIVE).to(getattr(torch, dtype)), dg.tensor(NEGATIVE).to(getattr(dg, dtype))
    cases = [lambda x: x // divisor, lambda x: x % divisor, lambda x: divisor // (x + 10),
             lambda x: divisor % (x + 10), lambda x: x // (x * 0 + int(divisor)),
             lambda x: x % (x * 0 + int(divisor)), lambda x: (x - 20) % (x + 10)]
    for case in cases:
        want, got = case(t), case(d)
        assert str(want.dtype).replace("torch.", "") == dg.backend.dtype_name(got.dtype)
        np.testing.assert_allclose(to_numpy(got), want.numpy(), rtol=1e-6)


def test_inplace_floordiv_and_mod():
    t, d = torch.tensor(NEGATIVE), dg.tensor(NEGATIVE)
    t //= 2
    d //= 2
    np.testing.assert_array_equal(to_numpy(d), t.numpy())
    t %= -3
    d %= -3
    np.testing.assert_array_equal(to_numpy(d), t.numpy())
    assert d.dtype == dg.int64


@pytest.mark.parametrize("op", [lambda x: x // 0, lambda x: x % 0, lambda x: dg.fmod(x, 0) if isinstance(x, dg.Tensor)
                                else torch.fmod(x, 0), lambda x: x // (x * 0)])
def test_integer_division_by_zero_raises_like_torch(op):
    with pytest.raises(RuntimeError):
        op(torch.tensor([1, 2]))
    with pytest.raises(RuntimeError):
        op(dg.tensor([1, 2]))
    np.testing.assert_array_equal(to_numpy(op(dg.tensor([1.0, -1.0]))), op(torch.tensor([1.0, -1.0])).numpy())


def test_rounding_ops_have_zero_gradient_but_require_grad():
    cases = {"floor": lambda L, x: L.floor(x), "ceil": lambda L, x: L.ceil(x), "round": lambda L, x: L.round(x),
             "trunc": lambda L, x: L.trunc(x), "sign": lambda L, x: L.sign(x),
             "div_trunc": lambda L, x: L.div(x, 2, rounding_mode="trunc"),
             "div_floor": lambda L, x: L.div(x, 2, rounding_mode="floor")}
    for name, fn in cases.items():
        for lib in (torch, dg):
            x = lib.tensor([1.3, -2.7], requires_grad=True)
            y = fn(lib, x)
            assert y.requires_grad, name
            y.sum().backward()
            np.testing.assert_array_equal(np.asarray(x.grad.tolist()), [0.0, 0.0])


def test_floor_divide_has_no_derivative_like_torch():
    for lib in (torch, dg):
        x = lib.tensor([1.3, -2.7], requires_grad=True)
        y = x // 2
        assert y.requires_grad
        with pytest.raises(RuntimeError):
            y.sum().backward()
        with pytest.raises(RuntimeError):
            (3.0 % x).sum().backward()


def test_bad_rounding_mode_and_argument_types():
    for lib in (torch, dg):
        with pytest.raises(RuntimeError):
            lib.div(lib.tensor([1.0]), 2, rounding_mode="round")
        with pytest.raises(TypeError):
            lib.atan2(lib.tensor([1.0]), 2.0)
        with pytest.raises(TypeError):
            lib.isclose(lib.tensor([1.0]), 1.0)
        with pytest.raises(RuntimeError):
            lib.lerp(lib.tensor([1.0]), lib.tensor([1.0], dtype=lib.float64), 0.5)
        with pytest.raises(NotImplementedError):
            lib.lerp(lib.tensor([1]), lib.tensor([2]), 0.5)
        with pytest.raises(RuntimeError):
            lib.allclose(lib.tensor([1.0]), lib.tensor([1.0], dtype=lib.float64))


# ---------------------------------------------------------------- predicates
def test_predicates_and_closeness_match_torch():
    x = np.array([0.0, -0.0, 1.5, -np.inf, np.inf, np.nan], np.float32)
    y = np.array([1e-9, 0.0, 1.50001, -np.inf, 1.0, np.nan], np.float32)
    t, d = (torch.tensor(x), torch.tensor(y)), (dg.tensor(x), dg.tensor(y))
    for name in ["isinf", "isposinf", "isneginf", "isnan", "isfinite", "isreal", "signbit"]:
        want, got = getattr(torch, name)(t[0]), getattr(dg, name)(d[0])
        assert got.dtype == dg.bool
        np.testing.assert_array_equal(to_numpy(got), want.numpy())
        np.testing.assert_array_equal(to_numpy(getattr(d[0], name)()), want.numpy())
    for kw in [{}, {"equal_nan": True}, {"rtol": 0, "atol": 1e-8}]:
        np.testing.assert_array_equal(to_numpy(dg.isclose(*d, **kw)), torch.isclose(*t, **kw).numpy())
        assert dg.allclose(*d, **kw) == torch.allclose(*t, **kw)
        assert d[0][2:3].allclose(d[1][2:3], **kw) == t[0][2:3].allclose(t[1][2:3], **kw)
    np.testing.assert_array_equal(to_numpy(dg.signbit(dg.tensor(1.0))), torch.signbit(torch.tensor(1.0)).numpy())
    assert dg.isinf(dg.tensor(1.0)).shape == ()
    assert dg.equal(dg.tensor([1, 2]), dg.tensor([1.0, 2.0])) == torch.equal(torch.tensor([1, 2]),
                                                                            torch.tensor([1.0, 2.0]))
    assert dg.equal(dg.tensor([1, 2]), dg.tensor([1])) is False
    assert dg.tensor([1, 2]).equal(dg.tensor([1, 3])) is False


# ------------------------------------------------------------------ in-place
def test_inplace_math_methods_match_torch():
    x = _off_integers()
    for name in ["floor_", "ceil_", "round_", "trunc_", "frac_", "sign_", "tan_", "sinh_", "erf_", "exp2_",
                 "expm1_", "square_", "reciprocal_", "deg2rad_", "sgn_", "fix_", "nan_to_num_"]:
        t, d = torch.tensor(x), dg.tensor(x)
        assert getattr(d, name)() is d
        getattr(t, name)()
        np.testing.assert_allclose(to_numpy(d), t.numpy(), rtol=1e-5, atol=1e-6)
    t, d = torch.tensor(x), dg.tensor(x)
    t.clamp_min_(0.1).clamp_max_(0.5).fmod_(0.3).lerp_(torch.ones_like(t), 0.25).remainder_(0.2)
    d.clamp_min_(0.1).clamp_max_(0.5).fmod_(0.3).lerp_(dg.ones_like(d), 0.25).remainder_(0.2)
    np.testing.assert_allclose(to_numpy(d), t.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError):
        torch.tensor(x).float_power_(2)
    with pytest.raises(RuntimeError):
        dg.tensor(x).float_power_(2)


def test_inplace_op_records_gradient():
    a = dg.tensor([0.3, 1.7], requires_grad=True)
    ta = torch.tensor([0.3, 1.7], requires_grad=True)
    y, ty = a * 2, ta * 2
    y.sinh_()
    ty.sinh_()
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(to_numpy(a.grad), ta.grad.numpy(), rtol=1e-5)
