"""Elementwise maths beyond the basics: rounding, trig/hyperbolic, special functions, integer division.

Integer and bool inputs of the float functions (``tan``, ``erf``, ``atan2``...) promote
to the default float (float32), as in PyTorch; rounding, ``sign``, ``fmod``,
``remainder`` and the rounded divisions keep integer dtypes.  Where PyTorch has no
kernel for a dtype (``frac`` of an int, ``logaddexp`` of ints) ``NotImplementedError``
is raised, as there.
"""
from __future__ import annotations

import math as _math

import numpy as np

from distgraph import backend
from distgraph.autograd.function import Function, unbroadcast
from distgraph.autograd.ops._common import as_tensor, cast, promote, xp_of
from distgraph.autograd.ops.elementwise import _floating, _shape, clamp, log, mul, pow
from distgraph.autograd.tensor import Tensor, _make

__all__ = [
    "tan", "asin", "arcsin", "acos", "arccos", "atan", "arctan", "sinh", "cosh", "asinh", "arcsinh", "acosh",
    "arccosh", "atanh", "arctanh", "erf", "erfc", "erfinv", "exp2", "expm1", "log2", "log10", "reciprocal",
    "square", "sinc", "deg2rad", "rad2deg", "floor", "ceil", "round", "trunc", "fix", "frac", "sign", "sgn",
    "nan_to_num", "atan2", "arctan2", "copysign", "logaddexp", "logaddexp2", "hypot", "xlogy", "float_power",
    "lerp", "fmod", "remainder", "floor_divide", "clamp_min", "clamp_max", "lgamma", "digamma", "polygamma",
    "mvlgamma", "logit", "i0",
]


# ================================================================== operands
def _xp(*xs):
    return xp_of(next((x for x in xs if hasattr(x, "dtype") and hasattr(x, "shape")), xs[0]))


def _dtype(*xs):
    """The dtype of the first array among ``xs`` (the others may be Python numbers)."""
    return next((x.dtype for x in xs if hasattr(x, "dtype") and hasattr(x, "shape")), np.result_type(*xs))


def _wrap_ints(ops, dtype):
    """Python ints beside an integer tensor wrap into its dtype (``uint8 - 1`` is 255, as in PyTorch)."""
    if backend.category(dtype) != 1:
        return ops
    return [backend.wrap_int(o, dtype) if type(o) is int else o for o in ops]


def _operands(op, *xs):
    ops, dt = promote(op, *xs)
    return _wrap_ints(ops, dt), dt


def _require_tensors(op, **named):
    for name, x in named.items():
        if not isinstance(x, Tensor):
            raise TypeError(f"{op}: expected argument '{name}' to be a Tensor, got {type(x).__name__}; "
                            "wrap it with dg.tensor(...)")


def _not_implemented(op, dtype):
    raise NotImplementedError(f"{op}: not implemented for {backend.dtype_name(dtype)} tensors; "
                              "convert with .float() first")


def _to_float(ops, dtype):
    """Integer/bool operands of a float-valued binary op become the default float (scalars Python floats)."""
    if backend.is_floating(dtype):
        return ops
    return [cast(o, backend.default_float()) if isinstance(o, Tensor) else (None if o is None else float(o))
            for o in ops]


def _check_int_divisor(op, x, y):
    """Integer division by zero raises (as PyTorch's ZeroDivisionError); float division gives inf/nan."""
    if backend.category(_dtype(x, y)) == 1 and bool((_xp(x, y).asarray(y) == 0).any()):
        raise RuntimeError(f"{op}: integer division by zero (ZeroDivisionError): the divisor has a zero "
                           "element; divide floats to get inf/nan instead")


def _zeros_for(gy, shape, nig):
    return _xp(gy).zeros(shape, gy.dtype) if nig else None


# ========================================================= trig and hyperbolic
class Tan(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = xp_of(x).tan(x)
        return y

    def backward(self, gy):
        return (gy * (1 + self.out * self.out),)


class Asin(Function):
    __slots__ = ("x", "sign")
    saves = (0,)

    def __init__(self, sign=1):   # sign=-1 is acos: d acos = -d asin
        self.sign = sign

    def forward(self, x):
        self.x = x
        xp = xp_of(x)
        return xp.arcsin(x) if self.sign > 0 else xp.arccos(x)

    def backward(self, gy):
        return (self.sign * gy / xp_of(gy).sqrt(1 - self.x * self.x),)


class Atan(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).arctan(x)

    def backward(self, gy):
        return (gy / (1 + self.x * self.x),)


class Sinh(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).sinh(x)

    def backward(self, gy):
        return (gy * xp_of(gy).cosh(self.x),)


class Cosh(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).cosh(x)

    def backward(self, gy):
        return (gy * xp_of(gy).sinh(self.x),)


class Asinh(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).arcsinh(x)

    def backward(self, gy):
        return (gy / xp_of(gy).sqrt(self.x * self.x + 1),)


class Acosh(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).arccosh(x)

    def backward(self, gy):
        return (gy / xp_of(gy).sqrt(self.x * self.x - 1),)


class Atanh(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).arctanh(x)

    def backward(self, gy):
        return (gy / (1 - self.x * self.x),)


class Sinc(Function):
    """``sin(pi x) / (pi x)``, 1 at 0; d/dx = ``(cos(pi x) - sinc x) / x``, 0 at 0."""
    __slots__ = ("x", "out")
    saves = (0,)
    saves_output = True

    def forward(self, x):
        self.x = x
        self.out = y = xp_of(x).sinc(x).astype(x.dtype, copy=False)
        return y

    def backward(self, gy):
        xp, x = xp_of(gy), self.x
        safe = xp.where(x == 0, 1, x)
        return (gy * xp.where(x == 0, 0, (xp.cos(_math.pi * x) - self.out) / safe),)


# ===================================================== exponential and special
class Exp2(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = xp_of(x).exp2(x)
        return y

    def backward(self, gy):
        return (gy * self.out * _math.log(2),)


class Expm1(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = xp_of(x).expm1(x)
        return y

    def backward(self, gy):
        return (gy * (self.out + 1),)


class LogBase(Function):
    """``log2`` / ``log10``: d/dx = ``1 / (x ln b)``."""
    __slots__ = ("x", "base")
    saves = (0,)

    def __init__(self, base):
        self.base = base

    def forward(self, x):
        self.x = x
        xp = xp_of(x)
        return xp.log2(x) if self.base == 2 else xp.log10(x)

    def backward(self, gy):
        return (gy / (self.x * _math.log(self.base)),)


class Erf(Function):
    """``erf`` (``erfc`` with ``complement``): d/dx erf = ``2/sqrt(pi) exp(-x^2)``."""
    __slots__ = ("x", "complement")
    saves = (0,)

    def __init__(self, complement=False):
        self.complement = complement

    def forward(self, x):
        self.x = x
        y = backend.special("erfc", x) if self.complement else backend.erf(x)
        return y.astype(x.dtype, copy=False)

    def backward(self, gy):
        g = gy * (2 / _math.sqrt(_math.pi)) * xp_of(gy).exp(-self.x * self.x)
        return (-g if self.complement else g,)


class Erfinv(Function):
    """d/dx erfinv = ``sqrt(pi)/2 exp(erfinv(x)^2)``."""
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = backend.special("erfinv", x).astype(x.dtype, copy=False)
        return y

    def backward(self, gy):
        return (gy * (_math.sqrt(_math.pi) / 2) * xp_of(gy).exp(self.out * self.out),)


class Polygamma(Function):
    """The ``n``-th derivative of digamma (``n = -1``: ``lgamma``; ``0``: ``digamma``); its derivative is the
    next one.  SciPy's (cupyx's) on the host (GPU)."""
    __slots__ = ("x", "n")
    saves = (0,)

    def __init__(self, n):
        self.n = n

    def forward(self, x):
        self.x = x
        if self.n == -1:
            return backend.special("gammaln", x)
        return backend.special("digamma", x) if self.n == 0 else backend.special("polygamma", self.n, x)

    def backward(self, gy):
        n, x = self.n + 1, self.x
        d = backend.special("digamma", x) if n == 0 else backend.special("polygamma", n, x)
        return (gy * d,)


class I0(Function):
    """The modified Bessel function of order 0; d/dx i0 = i1."""
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return backend.special("i0", x)

    def backward(self, gy):
        return (gy * backend.special("i1", self.x),)


class Reciprocal(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = 1 / x
        return y

    def backward(self, gy):
        return (-gy * self.out * self.out,)


def _unary(cls, *args):
    return lambda input: cls(*args).apply(_floating(input))


tan = _unary(Tan)
asin = arcsin = _unary(Asin)
acos = arccos = _unary(Asin, -1)
atan = arctan = _unary(Atan)
sinh = _unary(Sinh)
cosh = _unary(Cosh)
asinh = arcsinh = _unary(Asinh)
acosh = arccosh = _unary(Acosh)
atanh = arctanh = _unary(Atanh)
sinc = _unary(Sinc)
exp2 = _unary(Exp2)
expm1 = _unary(Expm1)
log2 = _unary(LogBase, 2)
log10 = _unary(LogBase, 10)
erf = _unary(Erf)
erfc = _unary(Erf, True)
erfinv = _unary(Erfinv)
reciprocal = _unary(Reciprocal)
lgamma = _unary(Polygamma, -1)
digamma = _unary(Polygamma, 0)
i0 = _unary(I0)
for _f, _doc in [(tan, "tan x"), (asin, "arcsin x"), (acos, "arccos x"), (atan, "arctan x"), (sinh, "sinh x"),
                 (cosh, "cosh x"), (asinh, "arsinh x"), (acosh, "arcosh x"), (atanh, "artanh x"),
                 (sinc, "sin(pi x) / (pi x), 1 at 0"), (exp2, "2 ** x"), (expm1, "exp(x) - 1"),
                 (log2, "log2 x"), (log10, "log10 x"), (erf, "the error function"), (erfc, "1 - erf x"),
                 (erfinv, "the inverse error function"), (reciprocal, "1 / x"),
                 (lgamma, "log |gamma(x)|"), (digamma, "d/dx lgamma(x)"), (i0, "modified Bessel function I0")]:
    _f.__doc__ = f"Elementwise {_doc}; integer inputs give float32."
del _f, _doc


def polygamma(n, input):
    """The ``n``-th derivative of ``digamma`` (``n >= 0``), elementwise."""
    if int(n) != n or n < 0:
        raise RuntimeError(f"polygamma(n, x): n must be a non-negative integer, got {n!r}")
    return Polygamma(int(n)).apply(_floating(input))


def mvlgamma(input, p):
    """The multivariate log-gamma of dimension ``p``: ``p(p-1)/4 log(pi) + sum_j lgamma(x - j/2)``."""
    x = _floating(input)
    if p < 1:
        raise RuntimeError(f"mvlgamma: p has to be greater than or equal to 1, got {p}")
    out = lgamma(x) + p * (p - 1) / 4 * _math.log(_math.pi)
    for j in range(1, p):
        out = out + lgamma(x - j / 2)
    return out


def logit(input, eps=None):
    """``log(x / (1 - x))``; with ``eps``, ``x`` is first clamped to ``[eps, 1 - eps]``."""
    x = _floating(input)
    if eps is not None:
        x = clamp(x, eps, 1 - eps)
    return log(x / (1 - x))


def square(input):
    """``x * x``; integer dtypes stay integer, bool gives int64 (as PyTorch)."""
    return pow(input, 2)


def deg2rad(input):
    return mul(_floating(input), _math.pi / 180)


def rad2deg(input):
    return mul(_floating(input), 180 / _math.pi)


# ================================================================== rounding
class _Rounding(Function):
    """Piecewise-constant ops: their gradient is zero everywhere (PyTorch's convention)."""
    __slots__ = ()

    def backward(self, gy):
        return (xp_of(gy).zeros_like(gy),)


class Floor(_Rounding):
    __slots__ = ()

    def forward(self, x):
        return xp_of(x).floor(x)


class Ceil(_Rounding):
    __slots__ = ()

    def forward(self, x):
        return xp_of(x).ceil(x)


class Trunc(_Rounding):
    __slots__ = ()

    def forward(self, x):
        return xp_of(x).trunc(x)


class Round(_Rounding):
    """Round half to even, at ``decimals`` digits (``x * 10^d`` rounded, then scaled back)."""
    __slots__ = ("decimals",)

    def __init__(self, decimals=0):
        self.decimals = decimals

    def forward(self, x):
        xp, d = xp_of(x), self.decimals
        if d == 0:
            return xp.rint(x)
        scale = x.dtype.type(10.0 ** builtins_abs(d))
        return xp.rint(x * scale) / scale if d > 0 else xp.rint(x / scale) * scale


class Sign(_Rounding):
    __slots__ = ()

    def forward(self, x):
        return xp_of(x).sign(x)


class Frac(Function):
    __slots__ = ()

    def forward(self, x):
        return x - xp_of(x).trunc(x)

    def backward(self, gy):
        return (gy,)


builtins_abs = abs


def _rounding(op, cls, input, *args):
    x = as_tensor(input)
    dt = x.array.dtype
    if dt == backend.bool_:
        _not_implemented(op, dt)
    if not backend.is_floating(dt):
        return _make(x.array.copy(), None, False)  # integers are already whole
    return cls(*args).apply(x)


def floor(input):
    """Largest integer <= x; zero gradient; integer tensors are returned as a copy."""
    return _rounding("floor", Floor, input)


def ceil(input):
    """Smallest integer >= x; zero gradient."""
    return _rounding("ceil", Ceil, input)


def trunc(input):
    """``x`` rounded toward zero; zero gradient."""
    return _rounding("trunc", Trunc, input)


fix = trunc


def round(input, *, decimals=0):
    """Round half to even (``round(2.5) == 2``), at ``decimals`` decimal digits; zero gradient."""
    x = as_tensor(input)
    if decimals != 0 and not backend.is_floating(x.array.dtype):
        _not_implemented("round(decimals=)", x.array.dtype)
    return _rounding("round", Round, x, int(decimals))


def frac(input):
    """``x - trunc(x)`` (keeps the sign of ``x``); gradient 1."""
    x = as_tensor(input)
    if not backend.is_floating(x.array.dtype):
        _not_implemented("frac", x.array.dtype)
    return Frac().apply(x)


def sign(input):
    """-1, 0 or 1 by the sign of x (bool stays bool); zero gradient."""
    x = as_tensor(input)
    if x.array.dtype == backend.bool_:
        return _make(x.array.copy(), None, False)
    return Sign().apply(x)


sgn = sign


class NanToNum(Function):
    """NaN, +inf and -inf replaced by finite values; the gradient passes where ``x`` is finite."""
    __slots__ = ("x", "nan", "posinf", "neginf")
    saves = (0,)

    def __init__(self, nan, posinf, neginf):
        self.nan, self.posinf, self.neginf = nan, posinf, neginf

    def forward(self, x):
        self.x = x
        return xp_of(x).nan_to_num(x, nan=self.nan, posinf=self.posinf, neginf=self.neginf)

    def backward(self, gy):
        return (gy * xp_of(gy).isfinite(self.x),)


def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN -> ``nan``, +inf -> ``posinf`` (default: the dtype's max), -inf -> ``neginf`` (its min)."""
    x = as_tensor(input)
    if not backend.is_floating(x.array.dtype):
        return _make(x.array.copy(), None, False)
    return NanToNum(nan, posinf, neginf).apply(x)


# ============================================================ binary float maths
class Atan2(Function):
    """``atan2(a, b)``, the angle of (b, a): d/da = ``b / (a^2 + b^2)``, d/db = ``-a / (a^2 + b^2)``."""
    __slots__ = ("a", "b")
    saves = (0, 1)

    def forward(self, a, b):
        self.a, self.b = a, b
        return xp_of(a).arctan2(a, b)

    def backward(self, gy):
        a, b, nig = self.a, self.b, self.needs_input_grad
        g = gy / (a * a + b * b)
        return (unbroadcast(g * b, _shape(a)) if nig[0] else None,
                unbroadcast(-g * a, _shape(b)) if nig[1] else None)


class Copysign(Function):
    """``|a|`` with the sign of ``b``: d/da = ``out / a`` (0 at a = 0); ``b`` gets zero gradient."""
    __slots__ = ("a", "bs", "out")
    saves = (0,)
    saves_output = True

    def forward(self, a, b):
        self.a, self.bs = a, _shape(b)
        self.out = y = _xp(a, b).copysign(a, b)
        return y

    def backward(self, gy):
        xp, a, nig = xp_of(gy), self.a, self.needs_input_grad
        ga = gy * xp.where(a == 0, 0, self.out / xp.where(a == 0, 1, a))
        return (unbroadcast(ga, _shape(a)) if nig[0] else None, _zeros_for(gy, self.bs, nig[1]))


class LogAddExp(Function):
    """``log(e^a + e^b)`` (``log2(2^a + 2^b)`` with ``base=2``): d/da = ``base^(a - out)``."""
    __slots__ = ("a", "b", "out", "base")
    saves = (0, 1)
    saves_output = True

    def __init__(self, base=None):
        self.base = base

    def forward(self, a, b):
        self.a, self.b = a, b
        xp = xp_of(a)
        self.out = y = xp.logaddexp2(a, b) if self.base == 2 else xp.logaddexp(a, b)
        return y

    def backward(self, gy):
        xp, nig = xp_of(gy), self.needs_input_grad
        power = xp.exp2 if self.base == 2 else xp.exp
        return (unbroadcast(gy * power(self.a - self.out), _shape(self.a)) if nig[0] else None,
                unbroadcast(gy * power(self.b - self.out), _shape(self.b)) if nig[1] else None)


class Hypot(Function):
    """``sqrt(a^2 + b^2)``: d/da = ``a / out``."""
    __slots__ = ("a", "b", "out")
    saves = (0, 1)
    saves_output = True

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = y = xp_of(a).hypot(a, b)
        return y

    def backward(self, gy):
        nig = self.needs_input_grad
        return (unbroadcast(gy * self.a / self.out, _shape(self.a)) if nig[0] else None,
                unbroadcast(gy * self.b / self.out, _shape(self.b)) if nig[1] else None)


class Xlogy(Function):
    """``a * log(b)``, 0 where ``a == 0`` (unless b is NaN): d/da = ``log b`` (0 at a = 0), d/db = ``a / b``."""
    __slots__ = ("a", "b")
    saves = (0, 1)

    def forward(self, a, b):
        self.a, self.b = a, b
        xp = _xp(a, b)
        zero = xp.logical_and(xp.equal(a, 0), xp.logical_not(xp.isnan(b)))
        return xp.where(zero, 0, a * xp.log(b)).astype(_dtype(a, b), copy=False)

    def backward(self, gy):
        xp, a, b, nig = xp_of(gy), self.a, self.b, self.needs_input_grad
        zero = xp.logical_and(xp.equal(a, 0), xp.logical_not(xp.isnan(b)))
        return (unbroadcast(gy * xp.where(zero, 0, xp.log(b)), _shape(a)) if nig[0] else None,
                unbroadcast(gy * a / b, _shape(b)) if nig[1] else None)


class Lerp(Function):
    """``start + w (end - start)`` (PyTorch's two-sided form, exact at w = 0 and w = 1):
    d/dstart = ``1 - w``, d/dend = ``w``, d/dw = ``end - start``."""
    __slots__ = ("s", "e", "w")
    saves = (0, 1, 2)

    def forward(self, s, e, w):
        self.s, self.e, self.w = s, e, w
        xp, diff = xp_of(s), e - s
        return xp.where(xp.abs(w) < 0.5, s + w * diff, e - diff * (1 - w)).astype(s.dtype, copy=False)

    def backward(self, gy):
        s, e, w, nig = self.s, self.e, self.w, self.needs_input_grad
        return (unbroadcast(gy * (1 - w), _shape(s)) if nig[0] else None,
                unbroadcast(gy * w, _shape(e)) if nig[1] else None,
                unbroadcast(gy * (e - s), _shape(w)) if nig[2] else None)


def _float_binary(op, cls, input, other, *args, ints=True, scalars=True):
    if not scalars:
        _require_tensors(op, input=input, other=other)
    elif not isinstance(input, Tensor):
        _require_tensors(op, input=input)
    ops, dt = _operands(op, input, other)
    if not ints and not backend.is_floating(dt):
        _not_implemented(op, dt)
    return cls(*args).apply(*_to_float(ops, dt))


def atan2(input, other):
    """The angle of the point ``(other, input)`` in ``(-pi, pi]``; integer inputs give float32."""
    return _float_binary("atan2", Atan2, input, other, scalars=False)


arctan2 = atan2


def copysign(input, other):
    """``|input|`` with the sign of ``other`` (a tensor or a number); always floating."""
    return _float_binary("copysign", Copysign, input, other)


def logaddexp(input, other):
    """``log(exp(input) + exp(other))`` without overflow (floating tensors only)."""
    return _float_binary("logaddexp", LogAddExp, input, other, ints=False, scalars=False)


def logaddexp2(input, other):
    """``log2(2**input + 2**other)`` without overflow (floating tensors only)."""
    return _float_binary("logaddexp2", LogAddExp, input, other, 2, ints=False, scalars=False)


def hypot(input, other):
    """``sqrt(input**2 + other**2)`` (floating tensors only)."""
    return _float_binary("hypot", Hypot, input, other, ints=False, scalars=False)


def xlogy(input, other):
    """``input * log(other)``, 0 where ``input == 0`` (NaN ``other`` stays NaN); integers give float32."""
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        raise TypeError("xlogy: expected at least one Tensor argument, got two numbers")
    ops, dt = _operands("xlogy", input, other)
    return Xlogy().apply(*_to_float(ops, dt))


def float_power(input, exponent):
    """``input ** exponent`` computed in float64 (the result is always float64)."""
    wide = [cast(as_tensor(v), backend.float64) if isinstance(v, Tensor) or not isinstance(v, (int, float))
            else float(v) for v in (input, exponent)]
    return pow(*wide)


def lerp(input, end, weight):
    """``input + weight * (end - input)``; ``weight`` a number or a tensor of ``input``'s dtype."""
    _require_tensors("lerp", input=input, end=end)
    dt = input.array.dtype
    if not backend.is_floating(dt):
        _not_implemented("lerp", dt)
    for name, t in (("end", end), ("weight", weight)):
        if isinstance(t, Tensor) and t.array.dtype != dt:
            raise RuntimeError(f"lerp: expected {name} of dtype {backend.dtype_name(dt)} (input's), got "
                               f"{backend.dtype_name(t.array.dtype)}; convert it with .to(input.dtype)")
    if not isinstance(weight, Tensor):
        weight = float(weight)
    (s, e, w), _ = promote("lerp", input, end, weight)
    return Lerp().apply(s, e, w)


# ============================================================ integer division
class Fmod(Function):
    """C's ``fmod`` (the sign of the dividend) or, with ``floor``, Python's ``%`` (the sign of
    the divisor): d/da = 1, d/db = ``-trunc(a / b)`` (``-floor(a / b)``)."""
    __slots__ = ("a", "b", "floor", "scalar_a")
    saves = (0, 1)

    def __init__(self, floor=False):
        self.floor = floor

    def forward(self, a, b):
        _check_int_divisor("remainder" if self.floor else "fmod", a, b)
        self.a, self.b, self.scalar_a = a, b, not hasattr(a, "shape")
        xp = _xp(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            return xp.remainder(a, b) if self.floor else xp.fmod(a, b)

    def backward(self, gy):
        xp, a, b, nig = xp_of(gy), self.a, self.b, self.needs_input_grad
        gb = None
        if nig[1] and self.scalar_a:   # PyTorch has no derivative for `number % tensor` either
            raise RuntimeError("remainder: the derivative of `number % tensor` with respect to the tensor is "
                               "not implemented; write it as a tensor op, e.g. `x - x.div(y, rounding_mode="
                               "'floor') * y`")
        if nig[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                q = xp.floor_divide(a, b) if self.floor else xp.trunc(a / b)
            gb = unbroadcast(-gy * q, _shape(b))
        return (unbroadcast(gy, _shape(a)) if nig[0] else None, gb)


class DivRounded(Function):
    """``a / b`` rounded toward zero (``trunc``) or down (``floor``); zero gradient, as PyTorch
    (which has no derivative at all for ``floor_divide``: with ``differentiable=False`` backward raises)."""
    __slots__ = ("mode", "shapes", "differentiable")

    def __init__(self, mode, differentiable=True):
        self.mode, self.differentiable = mode, differentiable

    def forward(self, a, b):
        _check_int_divisor(f"div(rounding_mode={self.mode!r})", a, b)
        self.shapes = (_shape(a), _shape(b))
        xp = _xp(a, b)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            q = xp.floor_divide(a, b)
            if self.mode == "floor":
                return q
            if backend.is_floating(_dtype(a, b)):
                return xp.trunc(a / b).astype(_dtype(a, b), copy=False)
            inexact = xp.logical_and(xp.remainder(a, b) != 0, xp.less(a, 0) != xp.less(b, 0))
            return q + inexact.astype(q.dtype)   # floor -> toward zero for negative quotients

    def backward(self, gy):
        if not self.differentiable:
            raise RuntimeError("floor_divide (and `//`): the derivative is not implemented (as in PyTorch); "
                               "use div(a, b, rounding_mode='floor'), whose gradient is zero")
        return tuple(_zeros_for(gy, s, n) for s, n in zip(self.shapes, self.needs_input_grad))


def _integer_binary(op, cls, input, other, *args):
    ops, dt = _operands(op, input, other)
    if dt == backend.bool_:
        _not_implemented(op, dt)
    return cls(*args).apply(*ops)


def fmod(input, other):
    """Remainder of ``input / other`` with the sign of ``input`` (C's ``fmod``); gradient 1 wrt input.

    Raises:
        RuntimeError: an integer divisor is zero.
    """
    _require_tensors("fmod", input=input)
    return _integer_binary("fmod", Fmod, input, other)


def remainder(input, other):
    """Python's ``%``: the remainder with the sign of ``other``; gradient 1 wrt input.

    Raises:
        RuntimeError: an integer divisor is zero.
    """
    return _integer_binary("remainder", Fmod, input, other, True)


def _div_rounded(input, other, rounding_mode, differentiable=True):
    """``div(..., rounding_mode=)`` for ``'trunc'`` and ``'floor'`` (integer dtypes stay integer)."""
    if rounding_mode not in ("trunc", "floor"):
        raise RuntimeError(f"div: expected rounding_mode to be None, 'trunc' or 'floor', got {rounding_mode!r}")
    return _integer_binary(f"div(rounding_mode={rounding_mode!r})", DivRounded, input, other, rounding_mode,
                           differentiable)


def floor_divide(input, other):
    """``input // other``, rounded down (Python's ``//``); like PyTorch it has no derivative
    (backward through it raises; ``div(..., rounding_mode='floor')`` has a zero gradient).

    Raises:
        RuntimeError: an integer divisor is zero.
    """
    return _div_rounded(input, other, "floor", differentiable=False)


# ===================================================================== clamps
def clamp_min(input, min):
    """``max(input, min)``; see ``clamp``."""
    return clamp(input, min=min)


def clamp_max(input, max):
    """``min(input, max)``; see ``clamp``."""
    return clamp(input, max=max)
