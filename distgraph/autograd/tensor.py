"""``Tensor``: one NumPy (``cpu``) or CuPy (``cuda:N``) array plus its place in the graph.

``t.array`` is the raw array (as Chainer's ``Variable.array``); ``t.data`` is
PyTorch's: a Tensor sharing that array, outside the graph.

Where this module sits in the import order (``tests/test_structure.py`` keeps it acyclic)::

    backend, grad_mode, hooks -> tensor -> function -> engine -> ops/* -> distgraph.autograd

Everything above imports ``Tensor`` and ``_make`` from here, so this module imports none of
it.  Tensor's methods are one-line calls into the op functions (``x + y`` is
``_ops.add(x, y)``, ``t.sum()`` is ``_ops.sum(t)``) and into the backward engine
(``_engine.run_backward``): ``_ops`` and ``_engine`` are those two modules, handed to
``bind_layers`` by ``distgraph/autograd/__init__.py`` once they have loaded, which is before
any code outside ``distgraph.autograd`` can hold a Tensor.  Calling the ops through their
module also keeps the ops named ``sum``, ``max``, ``abs``, ``any``... out of this module's
namespace, so the builtins keep their meaning here.  A method whose op is missing from
``ops.__all__`` is caught by ``tests/test_structure.py``, not by its first caller.
"""
from __future__ import annotations

import weakref

import numpy as np

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.hooks import RemovableHandle
from distgraph.autograd.printing import array_body, with_suffixes


class _Unbound:
    """Stands in for ``_ops``/``_engine`` until ``bind_layers`` runs (only while ``distgraph.autograd``
    itself is being imported): a Tensor method called that early says why it cannot run."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attr):
        raise ImportError(f"distgraph.autograd.{self.name} has not finished loading, so Tensor methods that "
                          f"call it ({self.name}.{attr}) cannot run yet; do not use Tensor ops at import time "
                          "in a module that distgraph.autograd itself imports")


_ops = _Unbound("ops")        # distgraph.autograd.ops: every op function the methods call
_engine = _Unbound("engine")  # distgraph.autograd.engine: run_backward, for Tensor.backward


def bind_layers(ops, engine):
    """Give Tensor's methods the ops package and the engine (called once, by ``distgraph.autograd``)."""
    global _ops, _engine
    _ops, _engine = ops, engine


class Size(tuple):
    """PyTorch's ``torch.Size``: the tuple ``t.shape`` and ``t.size()`` return, with ``numel()``.

    It prints as the plain tuple ``(2, 3)`` (PyTorch prints ``torch.Size([2, 3])``), so shapes read
    the same in every message.
    """

    __slots__ = ()

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n


class Tensor:
    """An n-dimensional array that can record the ops applied to it.

    Attributes:
        array: the NumPy or CuPy array.
        data: PyTorch's ``.data``, a detached Tensor sharing ``array``.
        grad: a Tensor holding the accumulated gradient, or ``None``.
        grad_fn: the node that produced this tensor (``None`` for leaves).
        requires_grad: whether ops on this tensor are recorded.
    """

    __slots__ = ("array", "grad", "grad_fn", "requires_grad", "_version", "_base", "_view_index", "_hooks",
                 "__weakref__")
    __array_ufunc__ = None  # make `np_array + tensor` defer to Tensor.__radd__

    def __init__(self, *data, dtype=None, device=None, requires_grad=False):
        # PyTorch's legacy constructor: ``Tensor(2, 3)`` is an uninitialised float32 tensor of that
        # shape, ``Tensor([1, 2])`` a float32 copy of the data (``dg.tensor`` infers the dtype instead).
        if len(data) == 1 and not isinstance(data[0], (int, np.integer)):
            src = data[0]
            t = tensor(src, dtype=dtype or (None if isinstance(src, (Tensor, np.ndarray)) else backend.float32),
                       device=device, requires_grad=requires_grad)
        else:
            shape = tuple(int(n) for n in data) if data else (0,)
            t = tensor(np.zeros(shape, backend.as_dtype(dtype) or backend.float32),
                       device=device, requires_grad=requires_grad)
        self.array, self.grad, self.grad_fn = t.array, None, None
        self.requires_grad, self._version, self._base, self._hooks = t.requires_grad, [0], None, None
        self._view_index = None

    # ------------------------------------------------------------ properties
    @property
    def data(self):
        """PyTorch's ``t.data``: a Tensor sharing this one's array, outside the graph.

        Writes through it (``p.data.add_(u)``, ``p.data.fill_(0)``) change ``t`` without
        being recorded or version-checked, exactly as in PyTorch; ``t.array`` is the raw array.
        """
        return _make(self.array, None, False)

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError(f"data: expected a Tensor, got {type(value).__name__}; wrap it with dg.tensor(...)")
        self.array = value.array

    @property
    def shape(self):
        return Size(self.array.shape)

    def size(self, dim=None):
        return Size(self.array.shape) if dim is None else self.array.shape[dim]

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def device(self):
        return backend.device_of(self.array)

    @property
    def is_cuda(self):
        return not isinstance(self.array, np.ndarray)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def ndim(self):
        return self.array.ndim

    def dim(self):
        return self.array.ndim

    def numel(self):
        return int(self.array.size)

    def element_size(self):
        return self.array.itemsize

    @property
    def nbytes(self):
        return int(self.array.nbytes)

    @property
    def T(self):
        return _ops.permute(self, tuple(range(self.array.ndim - 1, -1, -1)))

    @property
    def mT(self):
        return _ops.transpose(self, -2, -1)

    def is_floating_point(self):
        return backend.is_floating(self.array.dtype)

    def __len__(self):
        if self.array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __hash__(self):
        return id(self)

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.array.size} values is ambiguous")
        return bool(self.array.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if backend.category(self.array.dtype) != 1 or self.array.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __repr__(self):
        xp_arr = self.array if isinstance(self.array, np.ndarray) else self.array.get()
        body = array_body(xp_arr, "tensor(")
        extra = []
        if not isinstance(self.array, np.ndarray):
            extra.append(f"device='{self.device}'")
        if self.array.dtype not in (backend.float32, backend.int64, backend.bool_):
            extra.append(f"dtype={backend.dtype_name(self.array.dtype)}")
        if self.grad_fn is not None:
            extra.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return with_suffixes("tensor(" + body, extra, len("tensor("))

    # ----------------------------------------------------------- conversion
    def numpy(self):
        """The NumPy array (shared, not copied) of a CPU tensor."""
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on a Tensor that requires grad; use tensor.detach().numpy()")
        if not isinstance(self.array, np.ndarray):
            raise TypeError(f"can't convert a {self.device} tensor to NumPy; call .cpu() first")
        return self.array

    def __array__(self, dtype=None, copy=None):
        if not isinstance(self.array, np.ndarray):
            raise TypeError(f"can't convert a {self.device} tensor to NumPy; call .cpu() first")
        return self.array if dtype is None else self.array.astype(dtype, copy=False)

    def __dlpack__(self, *args, **kwargs):
        return self.array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def item(self):
        if self.array.size != 1:
            raise RuntimeError(f"item(): expected a tensor with one element, got shape {self.shape}")
        return self.array.item()

    def tolist(self):
        return self.array.tolist()

    def to(self, *args, dtype=None, device=None, copy=False, non_blocking=False, memory_format=None):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or ``to(other_tensor)``; differentiable.

        ``non_blocking`` and ``memory_format`` are accepted as in PyTorch; copies between host and
        GPU are made by CuPy on its current stream, and every layout here is contiguous.
        """
        for a in args:
            if isinstance(a, bool):   # to(device, dtype, non_blocking, copy) positionally
                continue
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, backend.Device, int)):
                device = a
            else:
                dtype = a
        out = self
        if device is not None:
            device = backend.Device(device)
            if device != self.device:
                out = _ops.ToDevice(device).apply(out)
        if dtype is not None:
            dtype = backend.as_dtype(dtype)
            if dtype != out.array.dtype:
                out = _ops.cast(out, dtype)
        if copy and out is self:
            out = _ops.clone(self)
        return out

    def cpu(self, memory_format=None):
        return self.to("cpu")

    def cuda(self, device=None, non_blocking=False, memory_format=None):
        return self.to(backend.Device("cuda" if device is None else device))

    def __format__(self, spec):
        # f"{loss:.4f}" formats a 0-d tensor's value, as in PyTorch; other tensors take no spec
        if self.array.ndim == 0:
            return format(self.item(), spec)
        if spec:
            raise TypeError(f"unsupported format string {spec!r} for a tensor of shape {self.shape}; "
                            "format t.item() (0-d tensors format directly)")
        return repr(self)

    def type_as(self, other):
        return self.to(dtype=other.dtype)

    def type(self, dtype=None, non_blocking=False):
        """``t.type()`` is PyTorch's type string (``'torch.FloatTensor'``); ``t.type(dtype)`` casts
        (``dtype`` may also be a legacy type such as ``dg.LongTensor`` or its string)."""
        from distgraph import types
        legacy = {c.type_name: c for c in (types.FloatTensor, types.DoubleTensor, types.HalfTensor,
                                           types.LongTensor, types.IntTensor, types.ShortTensor, types.CharTensor,
                                           types.ByteTensor, types.BoolTensor)}
        if dtype is None:
            for name, c in legacy.items():
                if c.dtype == self.array.dtype:
                    return name.replace("torch.", "torch.cuda.") if self.is_cuda else name
            return backend.dtype_name(self.array.dtype)
        if isinstance(dtype, str) and dtype in legacy:
            dtype = legacy[dtype]
        return self.to(dtype=getattr(dtype, "dtype", dtype))

    # PyTorch's ``new_*``: a tensor with this one's dtype and device unless told otherwise
    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return self._new(np.zeros, size, dtype, device, requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return self._new(np.ones, size, dtype, device, requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        return self._new(np.zeros, size, dtype, device, requires_grad)

    def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
        return self._new(lambda s, dt: np.full(s, fill_value, dt), (size,), dtype, device, requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        return tensor(data, dtype=dtype or self.array.dtype, device=device or self.device, requires_grad=requires_grad)

    def _new(self, make, size, dtype, device, requires_grad):
        if len(size) == 1 and isinstance(size[0], (tuple, list)):
            size = size[0]
        return tensor(make(tuple(int(s) for s in size), backend.as_dtype(dtype) or self.array.dtype),
                      device=device or self.device, requires_grad=requires_grad)

    def float(self):
        return self.to(dtype=backend.float32)

    def double(self):
        return self.to(dtype=backend.float64)

    def half(self):
        return self.to(dtype=backend.float16)

    def long(self):
        return self.to(dtype=backend.int64)

    def int(self):
        return self.to(dtype=backend.int32)

    def bool(self):
        return self.to(dtype=backend.bool_)

    def detach(self):
        """A tensor sharing this one's array (and version counter), outside the graph."""
        t = _make(self.array, None, False)
        t._version = self._version
        t._base = self
        return t

    def detach_(self):
        self.grad_fn, self.requires_grad = None, False
        return self

    def clone(self):
        return _ops.clone(self)

    def contiguous(self, memory_format=None):
        return self

    # --------------------------------------------------------------- autograd
    def requires_grad_(self, requires_grad=True):
        if requires_grad and not backend.is_floating(self.array.dtype):
            raise RuntimeError(
                f"only tensors of floating point dtype can require gradients, got "
                f"{backend.dtype_name(self.array.dtype)}; convert with .float() first")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf tensors; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient=None, retain_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        Args:
            gradient: d(loss)/d(self); required unless ``self`` has one element.
            retain_graph: keep the saved arrays so that backward can run again.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no grad_fn; "
                               "did you forget requires_grad=True on an input?")
        g = _grad_array(self, gradient)
        if inputs is not None:
            grads = _engine.run_backward([self], [g], retain_graph, inputs=list(inputs))
            for t, gi in zip(inputs, grads):
                if gi is not None:
                    t.grad = _make(gi.copy(), None, False) if t.grad is None else t.grad + gi
            return
        _engine.run_backward([self], [g], retain_graph)

    def register_hook(self, fn):
        """Call ``fn(grad)`` when this tensor's gradient is computed; a returned Tensor replaces it."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            return self.grad_fn.register_hook(fn)
        return self._add_hook("pre", fn)

    def register_post_accumulate_grad_hook(self, fn):
        """On a leaf: call ``fn(tensor)`` right after its ``.grad`` has been updated in backward."""
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        return self._add_hook("post", fn)

    def _add_hook(self, kind, fn):
        if self._hooks is None:
            self._hooks = {"pre": [], "post": []}
        self._hooks[kind].append(fn)
        return RemovableHandle(self._hooks[kind], fn)

    def retain_grad(self):
        """Keep ``.grad`` for this non-leaf tensor after backward."""
        if self.grad_fn is None:
            return
        ref = weakref.ref(self)

        def keep(g):
            t = ref()
            if t is not None:
                t.grad = _make(g.array.copy(), None, False) if t.grad is None else t.grad + g
        self.grad_fn.register_hook(keep)

    # -------------------------------------------------------------- operators
    def __add__(self, other): return _ops.add(self, other)
    def __radd__(self, other): return _ops.add(other, self)
    def __sub__(self, other): return _ops.sub(self, other)
    def __rsub__(self, other): return _ops.sub(other, self)
    def __mul__(self, other): return _ops.mul(self, other)
    def __rmul__(self, other): return _ops.mul(other, self)
    def __truediv__(self, other): return _ops.div(self, other)
    def __rtruediv__(self, other): return _ops.div(other, self)
    def __pow__(self, other): return _ops.pow(self, other)
    def __rpow__(self, other): return _ops.pow(other, self)
    def __matmul__(self, other): return _ops.matmul(self, other)
    def __rmatmul__(self, other): return _ops.matmul(other, self)
    def __neg__(self): return _ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return _ops.abs(self)
    def __eq__(self, other): return _ops.eq(self, other)
    def __ne__(self, other): return _ops.ne(self, other)
    def __lt__(self, other): return _ops.lt(self, other)
    def __le__(self, other): return _ops.le(self, other)
    def __gt__(self, other): return _ops.gt(self, other)
    def __ge__(self, other): return _ops.ge(self, other)
    def __and__(self, other): return _ops.bitwise_and(self, other)
    def __or__(self, other): return _ops.bitwise_or(self, other)
    def __xor__(self, other): return _ops.bitwise_xor(self, other)
    def __invert__(self): return self._invert()
    def __getitem__(self, index): return _ops.getitem(self, index)
    def __setitem__(self, index, value): _ops.setitem(self, index, value)
    def __iadd__(self, other): return self.add_(other)
    def __isub__(self, other): return self.sub_(other)
    def __imul__(self, other): return self.mul_(other)
    def __itruediv__(self, other): return self.div_(other)

    # ---------------------------------------------------------- elementwise
    def add(self, other, alpha=1): return _ops.add(self, other, alpha=alpha)
    def sub(self, other, alpha=1): return _ops.sub(self, other, alpha=alpha)
    def mul(self, other): return _ops.mul(self, other)
    def div(self, other): return _ops.div(self, other)
    def pow(self, exponent): return _ops.pow(self, exponent)
    def neg(self): return _ops.neg(self)
    def abs(self): return _ops.abs(self)
    def exp(self): return _ops.exp(self)
    def log(self): return _ops.log(self)
    def log1p(self): return _ops.log1p(self)
    def sqrt(self): return _ops.sqrt(self)
    def rsqrt(self): return _ops.rsqrt(self)
    def sin(self): return _ops.sin(self)
    def cos(self): return _ops.cos(self)
    def tanh(self): return _ops.tanh(self)
    def sigmoid(self): return _ops.sigmoid(self)
    def relu(self): return _ops.relu(self)
    def softmax(self, dim, dtype=None): return _ops.softmax(self, dim, dtype)
    def log_softmax(self, dim, dtype=None): return _ops.log_softmax(self, dim, dtype)
    def clamp(self, min=None, max=None): return _ops.clamp(self, min, max)
    clip = clamp
    def maximum(self, other): return _ops.maximum(self, other)
    def minimum(self, other): return _ops.minimum(self, other)
    def where(self, condition, other): return _ops.where(condition, self, other)
    def masked_fill(self, mask, value): return _ops.masked_fill(self, mask, value)
    def eq(self, other): return _ops.eq(self, other)
    def ne(self, other): return _ops.ne(self, other)
    def lt(self, other): return _ops.lt(self, other)
    def le(self, other): return _ops.le(self, other)
    def gt(self, other): return _ops.gt(self, other)
    def ge(self, other): return _ops.ge(self, other)
    def logical_not(self): return _ops.logical_not(self)
    def logical_and(self, other): return _ops.logical_and(self, other)
    def logical_or(self, other): return _ops.logical_or(self, other)
    def logical_xor(self, other): return _ops.logical_xor(self, other)
    def isnan(self): return _ops.isnan(self)
    def isfinite(self): return _ops.isfinite(self)

    # >>> math and bitwise methods (ops/math.py, ops/bitwise.py): add new ones above the closing marker
    def tan(self): return _ops.tan(self)
    def tan_(self): return _inplace(self, _ops.tan)
    def asin(self): return _ops.asin(self)
    def asin_(self): return _inplace(self, _ops.asin)
    def arcsin(self): return _ops.arcsin(self)
    def arcsin_(self): return _inplace(self, _ops.arcsin)
    def acos(self): return _ops.acos(self)
    def acos_(self): return _inplace(self, _ops.acos)
    def arccos(self): return _ops.arccos(self)
    def arccos_(self): return _inplace(self, _ops.arccos)
    def atan(self): return _ops.atan(self)
    def atan_(self): return _inplace(self, _ops.atan)
    def arctan(self): return _ops.arctan(self)
    def arctan_(self): return _inplace(self, _ops.arctan)
    def sinh(self): return _ops.sinh(self)
    def sinh_(self): return _inplace(self, _ops.sinh)
    def cosh(self): return _ops.cosh(self)
    def cosh_(self): return _inplace(self, _ops.cosh)
    def asinh(self): return _ops.asinh(self)
    def asinh_(self): return _inplace(self, _ops.asinh)
    def arcsinh(self): return _ops.arcsinh(self)
    def arcsinh_(self): return _inplace(self, _ops.arcsinh)
    def acosh(self): return _ops.acosh(self)
    def acosh_(self): return _inplace(self, _ops.acosh)
    def arccosh(self): return _ops.arccosh(self)
    def arccosh_(self): return _inplace(self, _ops.arccosh)
    def atanh(self): return _ops.atanh(self)
    def atanh_(self): return _inplace(self, _ops.atanh)
    def arctanh(self): return _ops.arctanh(self)
    def arctanh_(self): return _inplace(self, _ops.arctanh)
    def erf(self): return _ops.erf(self)
    def erf_(self): return _inplace(self, _ops.erf)
    def erfc(self): return _ops.erfc(self)
    def erfc_(self): return _inplace(self, _ops.erfc)
    def erfinv(self): return _ops.erfinv(self)
    def lgamma(self): return _ops.lgamma(self)
    def digamma(self): return _ops.digamma(self)
    def polygamma(self, n): return _ops.polygamma(n, self)
    def mvlgamma(self, p): return _ops.mvlgamma(self, p)
    def logit(self, eps=None): return _ops.logit(self, eps)
    def i0(self): return _ops.i0(self)
    def erfinv_(self): return _inplace(self, _ops.erfinv)
    def exp2(self): return _ops.exp2(self)
    def exp2_(self): return _inplace(self, _ops.exp2)
    def expm1(self): return _ops.expm1(self)
    def expm1_(self): return _inplace(self, _ops.expm1)
    def log2(self): return _ops.log2(self)
    def log2_(self): return _inplace(self, _ops.log2)
    def log10(self): return _ops.log10(self)
    def log10_(self): return _inplace(self, _ops.log10)
    def reciprocal(self): return _ops.reciprocal(self)
    def reciprocal_(self): return _inplace(self, _ops.reciprocal)
    def square(self): return _ops.square(self)
    def square_(self): return _inplace(self, _ops.square)
    def sinc(self): return _ops.sinc(self)
    def sinc_(self): return _inplace(self, _ops.sinc)
    def deg2rad(self): return _ops.deg2rad(self)
    def deg2rad_(self): return _inplace(self, _ops.deg2rad)
    def rad2deg(self): return _ops.rad2deg(self)
    def rad2deg_(self): return _inplace(self, _ops.rad2deg)
    def floor(self): return _ops.floor(self)
    def floor_(self): return _inplace(self, _ops.floor)
    def ceil(self): return _ops.ceil(self)
    def ceil_(self): return _inplace(self, _ops.ceil)
    def trunc(self): return _ops.trunc(self)
    def trunc_(self): return _inplace(self, _ops.trunc)
    def fix(self): return _ops.fix(self)
    def fix_(self): return _inplace(self, _ops.fix)
    def frac(self): return _ops.frac(self)
    def frac_(self): return _inplace(self, _ops.frac)
    def sign(self): return _ops.sign(self)
    def sign_(self): return _inplace(self, _ops.sign)
    def sgn(self): return _ops.sgn(self)
    def sgn_(self): return _inplace(self, _ops.sgn)
    def atan2(self, other): return _ops.atan2(self, other)
    def atan2_(self, other): return _inplace(self, _ops.atan2, other)
    def arctan2(self, other): return _ops.arctan2(self, other)
    def arctan2_(self, other): return _inplace(self, _ops.arctan2, other)
    def copysign(self, other): return _ops.copysign(self, other)
    def copysign_(self, other): return _inplace(self, _ops.copysign, other)
    def hypot(self, other): return _ops.hypot(self, other)
    def hypot_(self, other): return _inplace(self, _ops.hypot, other)
    def xlogy(self, other): return _ops.xlogy(self, other)
    def xlogy_(self, other): return _inplace(self, _ops.xlogy, other)
    def fmod(self, other): return _ops.fmod(self, other)
    def fmod_(self, other): return _inplace(self, _ops.fmod, other)
    def remainder(self, other): return _ops.remainder(self, other)
    def remainder_(self, other): return _inplace(self, _ops.remainder, other)
    def floor_divide(self, other): return _ops.floor_divide(self, other)
    def floor_divide_(self, other): return _inplace(self, _ops.floor_divide, other)
    def true_divide(self, other): return _ops.true_divide(self, other)
    def true_divide_(self, other): return _inplace(self, _ops.true_divide, other)
    def logaddexp(self, other): return _ops.logaddexp(self, other)
    def logaddexp2(self, other): return _ops.logaddexp2(self, other)
    def round(self, *, decimals=0): return _ops.round(self, decimals=decimals)
    def round_(self, *, decimals=0): return _inplace(self, _ops.round, decimals=decimals)
    def nan_to_num(self, nan=0.0, posinf=None, neginf=None): return _ops.nan_to_num(self, nan, posinf, neginf)
    def nan_to_num_(self, nan=0.0, posinf=None, neginf=None):
        return _inplace(self, _ops.nan_to_num, nan, posinf, neginf)
    def lerp(self, end, weight): return _ops.lerp(self, end, weight)
    def lerp_(self, end, weight): return _inplace(self, _ops.lerp, end, weight)
    def float_power(self, exponent): return _ops.float_power(self, exponent)
    def float_power_(self, exponent):
        if self.array.dtype != backend.float64:   # the result is float64: only a float64 tensor can hold it
            raise RuntimeError(f"float_power_: expected a float64 tensor (the result is float64), got "
                               f"{backend.dtype_name(self.array.dtype)}; use float_power (out of place)")
        return _inplace(self, _ops.float_power, exponent)
    def clamp_min(self, min): return _ops.clamp_min(self, min)
    def clamp_min_(self, min): return _inplace(self, _ops.clamp_min, min)
    def clamp_max(self, max): return _ops.clamp_max(self, max)
    def clamp_max_(self, max): return _inplace(self, _ops.clamp_max, max)
    def divide(self, other, *, rounding_mode=None): return _ops.div(self, other, rounding_mode=rounding_mode)
    def divide_(self, other, *, rounding_mode=None): return _inplace(self, _ops.div, other, rounding_mode=rounding_mode)
    def isinf(self): return _ops.isinf(self)
    def isposinf(self): return _ops.isposinf(self)
    def isneginf(self): return _ops.isneginf(self)
    def isreal(self): return _ops.isreal(self)
    def signbit(self): return _ops.signbit(self)
    def isclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        return _ops.isclose(self, other, rtol, atol, equal_nan)
    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        return _ops.allclose(self, other, rtol, atol, equal_nan)
    def equal(self, other): return _ops.equal(self, other)
    def bitwise_and(self, other): return _ops.bitwise_and(self, other)
    def bitwise_and_(self, other): return _inplace(self, _ops.bitwise_and, other)
    def bitwise_or(self, other): return _ops.bitwise_or(self, other)
    def bitwise_or_(self, other): return _inplace(self, _ops.bitwise_or, other)
    def bitwise_xor(self, other): return _ops.bitwise_xor(self, other)
    def bitwise_xor_(self, other): return _inplace(self, _ops.bitwise_xor, other)
    def bitwise_left_shift(self, other): return _ops.bitwise_left_shift(self, other)
    def bitwise_left_shift_(self, other): return _inplace(self, _ops.bitwise_left_shift, other)
    def bitwise_right_shift(self, other): return _ops.bitwise_right_shift(self, other)
    def bitwise_right_shift_(self, other): return _inplace(self, _ops.bitwise_right_shift, other)
    def bitwise_not(self): return _ops.bitwise_not(self)
    def bitwise_not_(self): return _inplace(self, _ops.bitwise_not)
    def byte(self): return self.to(dtype=backend.uint8)
    def char(self): return self.to(dtype=backend.int8)
    def short(self): return self.to(dtype=backend.int16)
    # operators: `//` and `%` are floor division and Python's remainder (the divisor's sign), as in PyTorch
    def __floordiv__(self, other): return _ops.floor_divide(self, other)
    def __rfloordiv__(self, other): return _ops.floor_divide(other, self)
    def __ifloordiv__(self, other): return _inplace(self, _ops.floor_divide, other)
    def __mod__(self, other): return _ops.remainder(self, other)
    def __rmod__(self, other): return _ops.remainder(other, self)
    def __imod__(self, other): return _inplace(self, _ops.remainder, other)
    def __rand__(self, other): return _ops.bitwise_and(other, self)
    def __ror__(self, other): return _ops.bitwise_or(other, self)
    def __rxor__(self, other): return _ops.bitwise_xor(other, self)
    def __iand__(self, other): return _inplace(self, _ops.bitwise_and, other)
    def __ior__(self, other): return _inplace(self, _ops.bitwise_or, other)
    def __ixor__(self, other): return _inplace(self, _ops.bitwise_xor, other)
    def __lshift__(self, other): return _ops.bitwise_left_shift(self, other)
    def __rlshift__(self, other): return _ops.bitwise_left_shift(other, self)
    def __ilshift__(self, other): return _inplace(self, _ops.bitwise_left_shift, other)
    def __rshift__(self, other): return _ops.bitwise_right_shift(self, other)
    def __rrshift__(self, other): return _ops.bitwise_right_shift(other, self)
    def __irshift__(self, other): return _inplace(self, _ops.bitwise_right_shift, other)
    def _invert(self):   # `~`: a floating tensor raises TypeError here, NotImplementedError in bitwise_not
        if self.is_floating_point():
            raise TypeError(f"~ is only implemented on integer and bool tensors, got "
                            f"{backend.dtype_name(self.array.dtype)}; use logical_not(x) or -x")
        return _ops.bitwise_not(self)
    def _view_dtype(self, dtype):   # the dtype form of view(): Tensor.view(dtype) dispatches here
        return _ops.bitwise._view_dtype(self, dtype)
    # <<< end of math and bitwise methods

    # ------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False, dtype=None, *, axis=None):
        return _ops.sum(self, dim, keepdim, dtype=dtype, axis=axis)
    def mean(self, dim=None, keepdim=False, *, dtype=None, axis=None):
        return _ops.mean(self, dim, keepdim, dtype=dtype, axis=axis)
    def amax(self, dim=(), keepdim=False, *, axis=None): return _ops.amax(self, dim, keepdim, axis=axis)
    def amin(self, dim=(), keepdim=False, *, axis=None): return _ops.amin(self, dim, keepdim, axis=axis)
    def max(self, dim=None, keepdim=False, *, axis=None): return _ops.max(self, dim, keepdim, axis=axis)
    def min(self, dim=None, keepdim=False, *, axis=None): return _ops.min(self, dim, keepdim, axis=axis)
    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None):
        return _ops.var(self, dim, unbiased, keepdim, correction=correction, axis=axis)
    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None):
        return _ops.std(self, dim, unbiased, keepdim, correction=correction, axis=axis)
    def logsumexp(self, dim, keepdim=False): return _ops.logsumexp(self, dim, keepdim)
    def prod(self, dim=None, keepdim=False, *, dtype=None): return _ops.prod(self, dim, keepdim, dtype=dtype)
    def norm(self, p="fro", dim=None, keepdim=False, dtype=None): return _ops.norm(self, p, dim, keepdim, dtype)
    def argmax(self, dim=None, keepdim=False, *, axis=None): return _ops.argmax(self, dim, keepdim, axis=axis)
    def argmin(self, dim=None, keepdim=False, *, axis=None): return _ops.argmin(self, dim, keepdim, axis=axis)
    def all(self, dim=None, keepdim=False, *, axis=None): return _ops.all(self, dim, keepdim, axis=axis)
    def any(self, dim=None, keepdim=False, *, axis=None): return _ops.any(self, dim, keepdim, axis=axis)

    # >>> reduction, scan, sort and linalg methods (ops/reduce.py, ops/cumulative.py, ops/sort.py, ops/linalg.py): add new ones above the closing marker
    def nansum(self, dim=None, keepdim=False, *, dtype=None): return _ops.nansum(self, dim, keepdim, dtype=dtype)
    def nanmean(self, dim=None, keepdim=False, *, dtype=None): return _ops.nanmean(self, dim, keepdim, dtype=dtype)
    def aminmax(self, *, dim=None, keepdim=False): return _ops.aminmax(self, dim=dim, keepdim=keepdim)
    def count_nonzero(self, dim=None): return _ops.count_nonzero(self, dim)
    def histc(self, bins=100, min=0, max=0): return _ops.histc(self, bins, min, max)
    def bincount(self, weights=None, minlength=0): return _ops.bincount(self, weights, minlength)
    def cumsum(self, dim, *, dtype=None): return _ops.cumsum(self, dim, dtype=dtype)
    def cumprod(self, dim, *, dtype=None): return _ops.cumprod(self, dim, dtype=dtype)
    def cummax(self, dim): return _ops.cummax(self, dim)
    def cummin(self, dim): return _ops.cummin(self, dim)
    def logcumsumexp(self, dim): return _ops.logcumsumexp(self, dim)
    def sort(self, dim=-1, descending=False, stable=False): return _ops.sort(self, dim, descending, stable)
    def argsort(self, dim=-1, descending=False, stable=False): return _ops.argsort(self, dim, descending, stable)
    def msort(self): return _ops.msort(self)
    def topk(self, k, dim=-1, largest=True, sorted=True): return _ops.topk(self, k, dim, largest, sorted)
    def kthvalue(self, k, dim=-1, keepdim=False): return _ops.kthvalue(self, k, dim, keepdim)
    def median(self, dim=None, keepdim=False): return _ops.median(self, dim, keepdim)
    def quantile(self, q, dim=None, keepdim=False, *, interpolation="linear"):
        return _ops.quantile(self, q, dim, keepdim, interpolation=interpolation)
    def nanmedian(self, dim=None, keepdim=False): return _ops.nanmedian(self, dim, keepdim)
    def mode(self, dim=-1, keepdim=False): return _ops.mode(self, dim, keepdim)
    def unique(self, sorted=True, return_inverse=False, return_counts=False, dim=None):
        return _ops.unique(self, sorted, return_inverse, return_counts, dim)
    def unique_consecutive(self, return_inverse=False, return_counts=False, dim=None):
        return _ops.unique_consecutive(self, return_inverse, return_counts, dim)
    def mm(self, mat2): return _ops.mm(self, mat2)
    def bmm(self, mat2): return _ops.bmm(self, mat2)
    def mv(self, vec): return _ops.mv(self, vec)
    def dot(self, other): return _ops.dot(self, other)
    def vdot(self, other): return _ops.vdot(self, other)
    def inner(self, other): return _ops.inner(self, other)
    def outer(self, vec2): return _ops.outer(self, vec2)
    def ger(self, vec2): return _ops.ger(self, vec2)
    def addmm(self, mat1, mat2, *, beta=1, alpha=1): return _ops.addmm(self, mat1, mat2, beta=beta, alpha=alpha)
    def addmv(self, mat, vec, *, beta=1, alpha=1): return _ops.addmv(self, mat, vec, beta=beta, alpha=alpha)
    def addr(self, vec1, vec2, *, beta=1, alpha=1): return _ops.addr(self, vec1, vec2, beta=beta, alpha=alpha)
    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
        return _ops.baddbmm(self, batch1, batch2, beta=beta, alpha=alpha)
    def addbmm(self, batch1, batch2, *, beta=1, alpha=1):
        return _ops.addbmm(self, batch1, batch2, beta=beta, alpha=alpha)
    def kron(self, other): return _ops.kron(self, other)
    def trace(self): return _ops.trace(self)
    def inverse(self): return _ops.inverse(self)
    def det(self): return _ops.det(self)
    def logdet(self): return _ops.logdet(self)
    def slogdet(self): return _ops.slogdet(self)
    def cross(self, other, dim=None): return _ops.cross(self, other, dim)
    # <<< end of reduction, scan, sort and linalg methods

    # ---------------------------------------------------------------- shape
    def reshape(self, *shape): return _ops.reshape(self, *shape)
    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
            return self._view_dtype(shape[0])     # view(dtype): the same bits as another dtype
        return _ops.reshape(self, *shape)
    def view_as(self, other): return _ops.reshape(self, other.shape)
    def reshape_as(self, other): return _ops.reshape(self, other.shape)
    def flatten(self, start_dim=0, end_dim=-1): return _ops.flatten(self, start_dim, end_dim)
    def unflatten(self, dim, sizes): return _ops.unflatten(self, dim, sizes)
    def squeeze(self, dim=None): return _ops.squeeze(self, dim)
    def unsqueeze(self, dim): return _ops.unsqueeze(self, dim)
    def transpose(self, dim0, dim1): return _ops.transpose(self, dim0, dim1)
    def t(self): return _ops.transpose(self, 0, 1) if self.ndim == 2 else self
    def permute(self, *dims): return _ops.permute(self, *dims)
    def expand(self, *sizes): return _ops.expand(self, *sizes)
    def expand_as(self, other): return _ops.expand(self, other.shape)
    def repeat(self, *sizes): return _ops.repeat(self, *sizes)
    def flip(self, *dims): return _ops.flip(self, dims[0] if len(dims) == 1 else dims)
    def split(self, split_size_or_sections, dim=0): return _ops.split(self, split_size_or_sections, dim)
    def chunk(self, chunks, dim=0): return _ops.chunk(self, chunks, dim)
    def index_select(self, dim, index): return _ops.index_select(self, dim, index)
    def gather(self, dim, index, *, sparse_grad=False): return _ops.gather(self, dim, index)
    def scatter_add(self, dim, index, src): return _ops.scatter_add(self, dim, index, src)
    def tril(self, diagonal=0): return _ops.tril(self, diagonal)
    def triu(self, diagonal=0): return _ops.triu(self, diagonal)
    def matmul(self, other): return _ops.matmul(self, other)

    # >>> indexing and shape methods (ops/shape.py, ops/index.py): add new ones above the closing marker
    def scatter(self, dim, index, src=None, *, value=None, reduce=None):
        return _ops.scatter(self, dim, index, src, value=value, reduce=reduce)
    def scatter_(self, dim, index, src=None, *, value=None, reduce=None):
        return _inplace(self, _ops.scatter, dim, index, src, value=value, reduce=reduce)
    def scatter_add_(self, dim, index, src): return _inplace(self, _ops.scatter_add, dim, index, src)
    def scatter_reduce(self, dim, index, src, reduce, *, include_self=True):
        return _ops.scatter_reduce(self, dim, index, src, reduce, include_self=include_self)
    def scatter_reduce_(self, dim, index, src, reduce, *, include_self=True):
        return _inplace(self, _ops.scatter_reduce, dim, index, src, reduce, include_self=include_self)
    def index_add(self, dim, index, source, *, alpha=1): return _ops.index_add(self, dim, index, source, alpha=alpha)
    def index_add_(self, dim, index, source, *, alpha=1):
        return _inplace(self, _ops.index_add, dim, index, source, alpha=alpha)
    def index_copy(self, dim, index, source): return _ops.index_copy(self, dim, index, source)
    def index_copy_(self, dim, index, source): return _inplace(self, _ops.index_copy, dim, index, source)
    def index_fill(self, dim, index, value): return _ops.index_fill(self, dim, index, value)
    def index_fill_(self, dim, index, value): return _inplace(self, _ops.index_fill, dim, index, value)
    def index_put(self, indices, values, accumulate=False): return _ops.index_put(self, indices, values, accumulate)
    def index_put_(self, indices, values, accumulate=False):
        return _inplace(self, _ops.index_put, indices, values, accumulate)
    def masked_select(self, mask): return _ops.masked_select(self, mask)
    def masked_scatter(self, mask, source): return _ops.masked_scatter(self, mask, source)
    def masked_scatter_(self, mask, source): return _inplace(self, _ops.masked_scatter, mask, source)
    def nonzero(self, *, as_tuple=False): return _ops.nonzero(self, as_tuple=as_tuple)
    def argwhere(self): return _ops.argwhere(self)
    def take(self, index): return _ops.take(self, index)
    def take_along_dim(self, indices, dim=None): return _ops.take_along_dim(self, indices, dim)
    def put(self, index, source, accumulate=False): return _ops.put(self, index, source, accumulate)
    def put_(self, index, source, accumulate=False): return _inplace(self, _ops.put, index, source, accumulate)
    def roll(self, shifts, dims=None): return _ops.roll(self, shifts, dims)
    def diag(self, diagonal=0): return _ops.diag(self, diagonal)
    def diagonal(self, offset=0, dim1=0, dim2=1): return _ops.diagonal(self, offset, dim1, dim2)
    def diag_embed(self, offset=0, dim1=-2, dim2=-1): return _ops.diag_embed(self, offset, dim1, dim2)
    def unfold(self, dimension, size, step): return _ops.unfold(self, dimension, size, step)
    def repeat_interleave(self, repeats=None, dim=None, *, output_size=None):
        return _ops.repeat_interleave(self, repeats, dim, output_size=output_size)
    def narrow(self, dim, start, length): return _ops.narrow(self, dim, start, length)
    def select(self, dim, index): return _ops.select(self, dim, index)
    def fliplr(self): return _ops.fliplr(self)
    def flipud(self): return _ops.flipud(self)
    def rot90(self, k=1, dims=(0, 1)): return _ops.rot90(self, k, dims)
    def movedim(self, source, destination): return _ops.movedim(self, source, destination)
    def moveaxis(self, source, destination): return _ops.movedim(self, source, destination)
    def swapaxes(self, axis0, axis1): return _ops.transpose(self, axis0, axis1)
    def swapdims(self, dim0, dim1): return _ops.transpose(self, dim0, dim1)
    def tile(self, *dims): return _ops.tile(self, dims[0] if len(dims) == 1 and not isinstance(dims[0], int) else dims)
    def broadcast_to(self, size): return _ops.expand(self, size)
    def unbind(self, dim=0): return _ops.unbind(self, dim)
    def tensor_split(self, indices_or_sections, dim=0): return _ops.tensor_split(self, indices_or_sections, dim)
    def hsplit(self, sections): return _ops.hsplit(self, sections)
    def vsplit(self, sections): return _ops.vsplit(self, sections)
    def dsplit(self, sections): return _ops.dsplit(self, sections)
    def is_contiguous(self, memory_format=None): return bool(self.array.flags.c_contiguous)
    def stride(self, dim=None):
        a = self.array
        if a.flags.c_contiguous:  # PyTorch's strides, whatever NumPy keeps for size-1 dims
            s, acc = [], 1
            for n in reversed(a.shape):
                s.append(acc)
                acc *= n if n > 1 else 1
            strides = tuple(reversed(s))
        else:
            strides = tuple(st // a.itemsize for st in a.strides)
        return strides if dim is None else strides[dim]
    # <<< end of indexing and shape methods

    # ---------------------------------------------------------------- in-place
    def add_(self, other, alpha=1): return _inplace(self, _ops.add, other, alpha=alpha)
    def sub_(self, other, alpha=1): return _inplace(self, _ops.sub, other, alpha=alpha)
    def mul_(self, other): return _inplace(self, _ops.mul, other)
    def div_(self, other): return _inplace(self, _ops.div, other)
    def clamp_(self, min=None, max=None): return _inplace(self, _ops.clamp, min, max)
    def masked_fill_(self, mask, value): return _inplace(self, _ops.masked_fill, mask, value)
    def relu_(self): return _inplace(self, _ops.relu)

    # >>> activation methods (ops/activation.py): add new ones above the closing marker
    # <<< end of activation methods

    def zero_(self):
        return self.fill_(0)

    def fill_(self, value):
        _check_inplace(self)
        self.array.fill(value.item() if isinstance(value, Tensor) else value)
        self._version[0] += 1
        return self

    def copy_(self, src):
        _check_inplace(self)
        src = src.array if isinstance(src, Tensor) else src
        self.array[...] = backend.to_device(backend.get_array_module(src).asarray(src), self.device)
        self._version[0] += 1
        return self

    # ---------------------------------------------------- in-place random fills
    # Each draws from the device's generator (``dg.manual_seed``) or ``generator=`` (a dg.Generator).
    def _fill_random(self, draw, generator=None):
        _check_inplace(self)
        from distgraph.random import numpy_generator
        gen = numpy_generator(generator, self.device)
        # A dg.Generator draws on the host: its numbers are uploaded to a device tensor.
        self.array[...] = backend.to_device(draw(gen, self.array.shape), self.device)
        self._version[0] += 1
        return self

    def uniform_(self, from_=0.0, to=1.0, *, generator=None):
        return self._fill_random(lambda g, s: g.uniform(from_, to, s), generator)

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        return self._fill_random(lambda g, s: backend.normal(g, mean, std, s), generator)

    def bernoulli_(self, p=0.5, *, generator=None):
        p = p.array if isinstance(p, Tensor) else p
        return self._fill_random(lambda g, s: g.random(s) < p, generator)

    def exponential_(self, lambd=1.0, *, generator=None):
        return self._fill_random(lambda g, s: g.exponential(1.0 / lambd, s), generator)

    def geometric_(self, p, *, generator=None):
        return self._fill_random(lambda g, s: g.geometric(p, s), generator)

    def log_normal_(self, mean=1.0, std=2.0, *, generator=None):
        return self._fill_random(lambda g, s: backend.lognormal(g, mean, std, s), generator)

    def cauchy_(self, median=0.0, sigma=1.0, *, generator=None):
        return self._fill_random(lambda g, s: median + sigma * backend.standard_cauchy(g, s), generator)

    def random_(self, from_=0, to=None, *, generator=None):
        """Integers uniform on ``[from_, to)``; ``random_(n)`` is ``[0, n)``; ``random_()`` spans the dtype
        (up to 2**24 for float32, 2**53 for float64, as PyTorch)."""
        if to is None and from_ == 0:
            to = 2 ** {2: 11, 4: 24, 8: 53}[self.array.itemsize] if self.is_floating_point() else \
                int(np.iinfo(self.array.dtype).max) + 1 if self.array.dtype != backend.bool_ else 2
        elif to is None:
            from_, to = 0, from_
        return self._fill_random(lambda g, s: g.integers(from_, to, s), generator)

    def fill_diagonal_(self, fill_value, wrap=False):
        """Write ``fill_value`` on the main diagonal (all dims of equal length for >2-d; ``wrap``
        restarts it below a tall matrix's square, as NumPy/PyTorch)."""
        _check_inplace(self)
        if self.ndim < 2 or (self.ndim > 2 and len(set(self.shape)) != 1):
            raise RuntimeError(f"fill_diagonal_: expected a 2-d tensor or one with all dims equal, got "
                               f"shape {self.shape}")
        backend.get_array_module(self.array).fill_diagonal(self.array, fill_value, wrap=wrap)
        self._version[0] += 1
        return self

    def pin_memory(self, device=None):
        """A page-locked copy in PyTorch; here the tensor itself (CuPy pins its staging buffers)."""
        return self

    def is_pinned(self, device=None):
        return False

    def share_memory_(self):
        """Accepted: distgraph's ranks are MPI processes, which share no tensors."""
        return self

    def is_shared(self):
        return False


class Parameter(Tensor):
    """A Tensor that a ``Module`` registers as a parameter (``requires_grad=True`` by default).

    ``Parameter(t)`` shares ``t``'s array.
    """

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty((0,), np.float32)
        arr = data.array if isinstance(data, Tensor) else tensor(data).array
        self.array, self.grad, self.grad_fn = arr, None, None
        self.requires_grad, self._version, self._base, self._hooks = False, [0], None, None
        self._view_index = None
        if requires_grad:
            self.requires_grad_()

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def wrap(array, requires_grad=False, grad_fn=None) -> "Tensor":
    """A Tensor around a raw NumPy/CuPy ``array`` the framework computed itself (a mask, a bucket
    view): no copy, no checks; in no graph unless ``grad_fn`` (a ``Node`` put in the graph with
    ``Node.link``) produced it. Internal: user code calls ``dg.tensor``/``dg.as_tensor``."""
    return _make(array, grad_fn, requires_grad or grad_fn is not None)


def bump_version(*tensors):
    """Record an in-place change of each tensor's storage made outside an autograd op (an optimizer
    step, a collective, running statistics), so that a saved-tensor check notices it."""
    for t in tensors:
        t._version[0] += 1


def zero_grads(params, set_to_none=True):
    """What ``Module.zero_grad`` and ``Optimizer.zero_grad`` do: each gradient to ``None`` (default),
    or detached and filled with zeros in place (PyTorch's ``set_to_none=False``)."""
    for p in params:
        g = p.grad
        if g is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            g.grad_fn, g.requires_grad = None, False
            g.array.fill(0)
            bump_version(g)


def _make(data, grad_fn, requires_grad):
    """Build a Tensor around ``data`` without checks (the engine's fast path)."""
    t = Tensor.__new__(Tensor)
    t.array = data
    t.grad = None
    t.grad_fn = grad_fn
    t.requires_grad = requires_grad
    t._version = [0]
    t._base = None
    t._view_index = None
    t._hooks = None
    return t


def _grad_array(t, gradient):
    if gradient is None:
        if t.array.size != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for scalar outputs, got shape {t.shape}; "
                "pass `gradient=` (d loss / d output) to backward")
        return backend.get_array_module(t.array).ones_like(t.array)
    g = gradient.array if isinstance(gradient, Tensor) else gradient
    g = backend.to_device(np.asarray(g) if not hasattr(g, "shape") else g, t.device)
    if tuple(g.shape) != t.shape:
        raise RuntimeError(f"backward: gradient has shape {tuple(g.shape)}, expected the output's shape {t.shape}")
    return g.astype(t.array.dtype, copy=True)


def _check_inplace(t):
    if t.requires_grad and t.grad_fn is None and grad_mode.is_grad_enabled():
        raise RuntimeError(
            "a leaf tensor that requires grad is being used in an in-place operation; "
            "wrap the update in `with dg.no_grad():` or use an out-of-place op")


def _inplace(t, fn, *args, **kwargs):
    """Run ``fn(t, *args)`` and write its result into ``t``'s array.

    Outside the graph this is a plain write.  Inside it, ``t`` takes the op's
    node as its ``grad_fn``; the op sees a copy of the old values when it
    saves them, and bumping ``t``'s version makes any *other* node that saved
    ``t`` raise at backward time.
    """
    _check_inplace(t)
    recording = grad_mode.is_grad_enabled() and (
        t.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args))
    if recording and t._base is not None and t._base.requires_grad:
        return _inplace_on_view(t, fn, *args, **kwargs)
    src = t
    if recording:
        src = _make(t.array.copy(), t.grad_fn, t.requires_grad)
    out = fn(src, *args, **kwargs)
    if out.array.dtype != t.array.dtype and backend.category(out.array.dtype) > backend.category(t.array.dtype):
        raise RuntimeError(
            f"result type {backend.dtype_name(out.array.dtype)} can't be cast to the desired output type "
            f"{backend.dtype_name(t.array.dtype)}")
    t.array[...] = out.array
    t._version[0] += 1
    if recording:
        t.grad_fn, t.requires_grad = out.grad_fn, out.requires_grad
    return t


def _inplace_on_view(t, fn, *args, **kwargs):
    """In-place op on ``t = base[index]`` where the base is in the graph (``y[:, 0] += 1``):
    the new values are written into the base by a recorded ``setitem``, and ``t`` becomes
    ``base[index]`` of the updated base (PyTorch's CopySlices, for views made by basic indexing)."""
    base, index = t._base, t._view_index
    if index is None:
        raise RuntimeError("in-place ops are supported on views made by basic indexing (x[i], x[a:b], ...) "
                           "of a tensor that requires grad, not on reshape/permute/expand views; use the "
                           "out-of-place op")
    out = fn(_make(t.array.copy(), t.grad_fn, t.requires_grad), *args, **kwargs)
    if out.array.dtype != t.array.dtype and backend.category(out.array.dtype) > backend.category(t.array.dtype):
        raise RuntimeError(
            f"result type {backend.dtype_name(out.array.dtype)} can't be cast to the desired output type "
            f"{backend.dtype_name(t.array.dtype)}")
    _ops.setitem(base, index, out.to(dtype=t.array.dtype))     # writes through t's memory; bumps the shared version
    t.grad_fn, t.requires_grad = _ops.getitem(base, index).grad_fn, True
    return t


def tensor(data, dtype=None, device=None, requires_grad=False):
    """Build a tensor from a list, scalar, NumPy/CuPy array or Tensor (always copies).

    Python floats become the default float dtype (``float32`` unless ``set_default_dtype``), ints ``int64``; a
    NumPy array keeps its dtype.
    """
    if isinstance(data, Tensor):
        arr = data.array.copy()
    elif isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__"):
        arr = data.copy()
    else:
        arr = np.array(data)
        # (only without a dtype: ``tensor([0.1], dtype=float64)`` must not pass through float32)
        if arr.dtype == np.float64 and not isinstance(data, np.generic) and dtype is None:
            arr = arr.astype(backend.default_float())
    if arr.dtype not in backend.SUPPORTED_DTYPES:
        if dtype is None and arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        elif dtype is None:
            backend.as_dtype(arr.dtype)  # raises with the supported list
    if dtype is not None:
        arr = arr.astype(backend.as_dtype(dtype), copy=False)
    if device is not None:
        arr = backend.to_device(arr, backend.Device(device))
    t = _make(arr, None, False)
    if requires_grad:
        t.requires_grad_()
    return t

