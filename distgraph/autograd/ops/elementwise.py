"""Elementwise ops: arithmetic, unary maths, selection, casts, comparisons (activations: ``activation.py``).

Each op class holds forward and backward side by side; the public function
below it handles operands (scalars, arrays, dtype promotion, devices).
"""
from __future__ import annotations

import numpy as np

from distgraph import backend
from distgraph.autograd.function import Function, unbroadcast
from distgraph.autograd.ops._common import SCALARS, as_tensor, cast, promote, result_type, xp_of
from distgraph.autograd.tensor import Tensor, _make

__all__ = [
    "add", "sub", "mul", "div", "true_divide", "pow", "neg", "abs", "exp", "log", "log1p", "sqrt",
    "rsqrt", "sin", "cos", "tanh", "sigmoid", "clamp", "clip", "maximum", "minimum", "where", "masked_fill", "clone", "cast",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not",
    "isnan", "isfinite", "isinf", "isposinf", "isneginf", "isreal", "signbit", "isclose", "equal", "allclose",
    "ToDevice",
]


def _shape(x):
    return x.shape if hasattr(x, "shape") else ()


# ================================================================ arithmetic
class Add(Function):
    __slots__ = ("xs", "ys")

    def forward(self, x, y):
        self.xs, self.ys = _shape(x), _shape(y)
        return x + y

    def backward(self, gy):
        nig = self.needs_input_grad
        return (unbroadcast(gy, self.xs) if nig[0] else None,
                unbroadcast(gy, self.ys) if nig[1] else None)


class Sub(Function):
    __slots__ = ("xs", "ys")

    def forward(self, x, y):
        self.xs, self.ys = _shape(x), _shape(y)
        return x - y

    def backward(self, gy):
        nig = self.needs_input_grad
        return (unbroadcast(gy, self.xs) if nig[0] else None,
                unbroadcast(-gy, self.ys) if nig[1] else None)


class Mul(Function):
    __slots__ = ("x", "y")
    saves = (0, 1)

    def forward(self, x, y):
        self.x, self.y = x, y
        return x * y

    def backward(self, gy):
        nig = self.needs_input_grad
        return (unbroadcast(gy * self.y, _shape(self.x)) if nig[0] else None,
                unbroadcast(gy * self.x, _shape(self.y)) if nig[1] else None)


class Div(Function):
    __slots__ = ("x", "y")
    saves = (0, 1)

    def forward(self, x, y):
        self.x, self.y = x, y
        return x / y

    def backward(self, gy):
        nig = self.needs_input_grad
        gx = gy / self.y
        return (unbroadcast(gx, _shape(self.x)) if nig[0] else None,
                unbroadcast(-gx * self.x / self.y, _shape(self.y)) if nig[1] else None)


class Pow(Function):
    __slots__ = ("x", "p", "out")
    saves = (0, 1)
    saves_output = True

    def forward(self, x, p):
        self.x, self.p = x, p
        self.out = y = x ** p
        return y

    def backward(self, gy):
        nig = self.needs_input_grad
        x, p = self.x, self.p
        gx = gp = None
        if nig[0]:
            gx = unbroadcast(gy * p * x ** (p - 1), _shape(x))
        if nig[1]:
            xp = xp_of(gy)
            logx = xp.log(xp.where(x > 0, x, 1))  # d/dp x**p = x**p log x; 0 where x <= 0
            gp = unbroadcast(gy * self.out * logx, _shape(p))
        return gx, gp


class Neg(Function):
    __slots__ = ()

    def forward(self, x):
        return -x

    def backward(self, gy):
        return (-gy,)


class Abs(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).abs(x)

    def backward(self, gy):
        return (gy * xp_of(gy).sign(self.x),)


def _binary(cls, a, b, name):
    # Fast path: two tensors of one dtype on the host, or a tensor and a
    # Python scalar that does not promote it.
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if ta and tb:
        fast = a.array.dtype == b.array.dtype and type(a.array) is np.ndarray and type(b.array) is np.ndarray
    elif ta and type(b) in SCALARS:
        fast = backend.scalar_category(b) <= backend.category(a.array.dtype)
    elif tb and type(a) in SCALARS:
        fast = backend.scalar_category(a) <= backend.category(b.array.dtype)
    else:
        fast = False
    if not fast:
        (a, b), _ = promote(name, a, b)
    a, b = _wrap_int(a, b), _wrap_int(b, a)
    try:
        return cls().apply(a, b)
    except ValueError as e:
        if "broadcast" not in str(e):
            raise
        raise RuntimeError(f"{name}: shapes {_shape(_arr(a))} and {_shape(_arr(b))} can't be "
                           "broadcast together (trailing dims must match or be 1)") from None


def _arr(x):
    return x.array if isinstance(x, Tensor) else x


def _wrap_int(x, other):
    """A Python int beside an integer tensor wraps into its dtype (``uint8 + 300`` adds 44), as in PyTorch."""
    if type(x) is int and isinstance(other, Tensor) and backend.category(other.array.dtype) == 1:
        return backend.wrap_int(x, other.array.dtype)
    return x


def add(input, other, *, alpha=1):
    """``input + alpha * other``, broadcasting."""
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(Add, input, other, "add")


def sub(input, other, *, alpha=1):
    """``input - alpha * other``, broadcasting."""
    if alpha != 1:
        other = mul(other, alpha)
    return _binary(Sub, input, other, "sub")


def mul(input, other):
    """``input * other``, broadcasting."""
    return _binary(Mul, input, other, "mul")


def div(input, other, *, rounding_mode=None):
    """``input / other``: true division (integer inputs give the default float), or with ``rounding_mode``
    ``'trunc'`` (toward zero) or ``'floor'`` (down), which keep integer dtypes and have zero gradient."""
    if rounding_mode is not None:
        from distgraph.autograd.ops.math import _div_rounded
        return _div_rounded(input, other, rounding_mode)
    (a, b), dt = promote("div", input, other)
    if not backend.is_floating(dt):
        a = cast(a, backend.default_float()) if isinstance(a, Tensor) else float(a)
        b = cast(b, backend.default_float()) if isinstance(b, Tensor) else float(b)
    return _binary(Div, a, b, "div")


def true_divide(input, other):
    """``input / other``, always true division (``div`` without a rounding mode)."""
    return div(input, other)


def pow(input, exponent):
    """``input ** exponent``; d/dexponent is taken as 0 where ``input <= 0``."""
    return _binary(Pow, input, exponent, "pow")


def neg(input):
    x = as_tensor(input)
    if x.array.dtype == backend.bool_:
        raise RuntimeError("neg: the `-` operator is not supported on bool tensors; to invert a mask use `~` "
                           "or logical_not()")
    return Neg().apply(x)


def abs(input):
    """``|x|``; gradient ``sign(x)`` (0 at 0, as in PyTorch)."""
    x = as_tensor(input)
    if x.array.dtype == backend.bool_:
        raise NotImplementedError("abs: not implemented for bool tensors; convert with .int() first")
    return Abs().apply(x)


# ======================================================= unary float maths
def _floating(x):
    """Unary float ops promote integer inputs to the default float (as PyTorch)."""
    x = as_tensor(x)
    if not backend.is_floating(x.array.dtype):
        x = cast(x, backend.default_float())
    return x


class Exp(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = xp_of(x).exp(x)
        return y

    def backward(self, gy):
        return (gy * self.out,)


class Log(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).log(x)

    def backward(self, gy):
        return (gy / self.x,)


class Log1p(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).log1p(x)

    def backward(self, gy):
        return (gy / (1 + self.x),)


class Sqrt(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = xp_of(x).sqrt(x)
        return y

    def backward(self, gy):
        return (gy / (2 * self.out),)


class Rsqrt(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = 1 / xp_of(x).sqrt(x)
        return y

    def backward(self, gy):
        return (-0.5 * gy * self.out ** 3,)


class Sin(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).sin(x)

    def backward(self, gy):
        return (gy * xp_of(gy).cos(self.x),)


class Cos(Function):
    __slots__ = ("x",)
    saves = (0,)

    def forward(self, x):
        self.x = x
        return xp_of(x).cos(x)

    def backward(self, gy):
        return (-gy * xp_of(gy).sin(self.x),)


class Tanh(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        self.out = y = xp_of(x).tanh(x)
        return y

    def backward(self, gy):
        return (gy * (1 - self.out * self.out),)


class Sigmoid(Function):
    __slots__ = ("out",)
    saves_output = True

    def forward(self, x):
        # 0.5 * (1 + tanh(x / 2)) is exact and never overflows, unlike 1 / (1 + exp(-x)).
        self.out = y = 0.5 * (xp_of(x).tanh(0.5 * x) + 1)
        return y

    def backward(self, gy):
        y = self.out
        return (gy * y * (1 - y),)


def exp(input): return Exp().apply(_floating(input))
def log(input): return Log().apply(_floating(input))
def log1p(input): return Log1p().apply(_floating(input))
def sqrt(input): return Sqrt().apply(_floating(input))
def rsqrt(input): return Rsqrt().apply(_floating(input))
def sin(input): return Sin().apply(_floating(input))
def cos(input): return Cos().apply(_floating(input))
def tanh(input): return Tanh().apply(_floating(input))
def sigmoid(input): return Sigmoid().apply(_floating(input))


# ==================================================== selection and binary max
class Where(Function):
    __slots__ = ("cond", "xs", "ys")

    def __init__(self, cond):
        self.cond = cond

    def forward(self, x, y):
        self.xs, self.ys = _shape(x), _shape(y)
        return xp_of(self.cond).where(self.cond, x, y)

    def backward(self, gy):
        nig = self.needs_input_grad
        zero = gy.dtype.type(0)
        xp = xp_of(gy)
        return (unbroadcast(xp.where(self.cond, gy, zero), self.xs) if nig[0] else None,
                unbroadcast(xp.where(self.cond, zero, gy), self.ys) if nig[1] else None)


class Maximum(Function):
    """Binary max; on ties each input gets half the gradient (as PyTorch)."""
    __slots__ = ("x", "y", "lesser")
    saves = (0, 1)

    def __init__(self, lesser=False):
        self.lesser = lesser

    def forward(self, x, y):
        self.x, self.y = x, y
        xp = xp_of(x)
        return xp.minimum(x, y) if self.lesser else xp.maximum(x, y)

    def backward(self, gy):
        x, y = self.x, self.y
        wins = (x < y) if self.lesser else (x > y)
        w = wins + 0.5 * (x == y)
        nig = self.needs_input_grad
        return (unbroadcast(gy * w.astype(gy.dtype, copy=False), _shape(x)) if nig[0] else None,
                unbroadcast(gy * (1 - w).astype(gy.dtype, copy=False), _shape(y)) if nig[1] else None)


def where(condition, input=None, other=None):
    """``input`` where ``condition`` else ``other`` (broadcasting); ``where(condition)`` alone is
    ``nonzero(condition, as_tuple=True)``, as PyTorch's."""
    if input is None and other is None:
        from distgraph.autograd.ops.index import nonzero
        return nonzero(condition, as_tuple=True)
    if input is None or other is None:
        raise TypeError("where: expected where(condition, input, other) or where(condition)")
    cond = as_tensor(condition)
    if cond.array.dtype != backend.bool_:
        raise TypeError(f"where: expected a bool condition, got {backend.dtype_name(cond.array.dtype)}")
    (x, y), _ = promote("where", input, other)
    like = x if isinstance(x, Tensor) else y
    if isinstance(like, Tensor):
        cond = as_tensor(cond.array, like)
    return Where(cond.array).apply(x, y)


def masked_fill(input, mask, value):
    """``value`` where ``mask`` else ``input``; the result keeps ``input``'s dtype."""
    x = as_tensor(input)
    v = value.item() if isinstance(value, Tensor) and value.array.ndim == 0 and not value.requires_grad else value
    if type(v) in SCALARS:
        v = x.array.dtype.type(v).item()
        return where(mask, v, x) if backend.scalar_category(v) <= backend.category(x.array.dtype) \
            else cast(where(mask, v, x), x.array.dtype)
    return where(mask, cast(as_tensor(v, x), x.array.dtype), x)


def maximum(input, other):
    """Elementwise max of two tensors (ties split the gradient evenly)."""
    return _binary(Maximum, input, other, "maximum")


def minimum(input, other):
    """Elementwise min of two tensors (ties split the gradient evenly)."""
    (a, b), _ = promote("minimum", input, other)
    return Maximum(lesser=True).apply(a, b)


def clamp(input, min=None, max=None):
    """Clamp to ``[min, max]``; the gradient passes where ``min <= x <= max``
    (scalar bounds), and goes to a tensor bound where it is the one chosen."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    x = as_tensor(input)
    dt = result_type(x, min, max)     # an integer tensor with a float bound gives float32, as PyTorch
    if dt != x.array.dtype:
        x = cast(x, dt)
    if min is not None:
        x = where(x < min, min, x) if not type(min) in SCALARS else where(x < min, x.array.dtype.type(min).item(), x)
    if max is not None:
        x = where(x > max, max, x) if not type(max) in SCALARS else where(x > max, x.array.dtype.type(max).item(), x)
    return x


clip = clamp


# ====================================================== casting and copying
class Cast(Function):
    __slots__ = ("dtype", "src")

    def __init__(self, dtype):
        self.dtype = dtype

    def forward(self, x):
        self.src = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return (gy.astype(self.src),)


class Clone(Function):
    __slots__ = ()

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return (gy,)


class ToDevice(Function):
    __slots__ = ("device", "src")

    def __init__(self, device):
        self.device = device

    def forward(self, x):
        self.src = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, gy):
        return (backend.to_device(gy, self.src),)


def clone(input):
    """A copy that stays in the graph (gradient passes through)."""
    return Clone().apply(as_tensor(input))


# ======================================================= comparison and logic
def _compare(fn, a, b, name):
    (a, b), _ = promote(name, a, b)
    return _make(fn(a.array if isinstance(a, Tensor) else a, b.array if isinstance(b, Tensor) else b), None, False)


def eq(input, other):
    if other is None:
        return False
    return _compare(lambda x, y: x == y, input, other, "eq")


def ne(input, other):
    if other is None:
        return True
    return _compare(lambda x, y: x != y, input, other, "ne")


def lt(input, other): return _compare(lambda x, y: x < y, input, other, "lt")
def le(input, other): return _compare(lambda x, y: x <= y, input, other, "le")
def gt(input, other): return _compare(lambda x, y: x > y, input, other, "gt")
def ge(input, other): return _compare(lambda x, y: x >= y, input, other, "ge")


def logical_and(input, other):
    return _compare(lambda x, y: xp_of(x).logical_and(x, y), input, other, "logical_and")


def logical_or(input, other):
    return _compare(lambda x, y: xp_of(x).logical_or(x, y), input, other, "logical_or")


def logical_xor(input, other):
    return _compare(lambda x, y: xp_of(x).logical_xor(x, y), input, other, "logical_xor")


def logical_not(input):
    x = as_tensor(input).array
    return _make(xp_of(x).logical_not(x), None, False)


def isnan(input):
    x = as_tensor(input).array
    return _flags(x, xp_of(x).isnan(x))


def isfinite(input):
    x = as_tensor(input).array
    return _flags(x, xp_of(x).isfinite(x))


def _flags(x, values):
    """A bool result tensor (NumPy returns 0-d results as scalars: make them arrays again)."""
    return _make(xp_of(x).asarray(values), None, False)


def _float_flags(input, fn):
    x = as_tensor(input).array
    return _flags(x, fn(xp_of(x), x) if backend.is_floating(x.dtype) else xp_of(x).zeros(x.shape, bool))


def isinf(input): return _float_flags(input, lambda xp, x: xp.isinf(x))
def isposinf(input): return _float_flags(input, lambda xp, x: xp.isposinf(x))
def isneginf(input): return _float_flags(input, lambda xp, x: xp.isneginf(x))


def isreal(input):
    """True everywhere: every distgraph dtype is real."""
    x = as_tensor(input).array
    return _flags(x, xp_of(x).ones(x.shape, bool))


def signbit(input):
    """True where the sign bit is set (``-0.0`` included)."""
    x = as_tensor(input).array
    return _flags(x, xp_of(x).signbit(x) if backend.is_floating(x.dtype) else x < 0)


def equal(input, other) -> bool:
    """True when both have the same shape and elements (values compare across dtypes)."""
    return input.shape == other.shape and bool((as_tensor(input).array == as_tensor(other).array).all())


def _close_operands(op, input, other):
    for name, t in (("input", input), ("other", other)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected argument '{name}' to be a Tensor, got {type(t).__name__}")
    a, b = input.array, other.array
    if a.dtype != b.dtype:
        raise RuntimeError(f"{op}: expected both tensors of one dtype, got {backend.dtype_name(a.dtype)} and "
                           f"{backend.dtype_name(b.dtype)}; convert one with .to(other.dtype)")
    if type(a) is not type(b):
        raise RuntimeError(f"{op}: expected both tensors on one device, got {input.device} and {other.device}")
    return a, b


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``|input - other| <= atol + rtol * |other|`` elementwise (equal infinities are close)."""
    a, b = _close_operands("isclose", input, other)
    return _flags(a, xp_of(a).isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """Whether ``isclose`` holds everywhere."""
    a, b = _close_operands("allclose", input, other)
    return bool(xp_of(a).isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan).all())

