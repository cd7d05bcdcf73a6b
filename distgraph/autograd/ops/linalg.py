"""Matrix products: ``matmul`` (with PyTorch's 1-D and batched broadcasting rules), its
special cases (mm, bmm, mv, dot, the add* fused forms), ``einsum`` (repeated subscripts
take a diagonal) and what is built on it (tensordot, kron), trace, cross, cdist; the inverse and
determinants (``inverse``, ``det``, ``slogdet``, ``logdet``: torch's functions and Tensor methods, also
``dg.linalg``'s).

Like PyTorch, the products refuse operands of different dtypes instead of promoting.
"""
from __future__ import annotations

import string
from collections import namedtuple

from distgraph import backend
from distgraph.autograd.function import Function, unbroadcast
from distgraph.autograd.ops._common import as_tensor, autocast_low, promote, xp_of
from distgraph.autograd.tensor import Tensor, wrap

__all__ = ["matmul", "mm", "bmm", "mv", "dot", "vdot", "inner", "outer", "ger", "addmm", "addmv", "addr", "baddbmm",
           "addbmm", "einsum", "tensordot", "kron", "trace", "cross", "cdist", "inverse", "det", "slogdet", "logdet"]


class MatMul(Function):
    """``a @ b``: 1-D operands are promoted to matrices (and the added dim removed),
    leading dims broadcast as batch dims."""
    __slots__ = ("a", "b")
    saves = (0, 1)

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        a, b = self.a, self.b
        xp = xp_of(gy)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if b.ndim == 1:
            gy = xp.expand_dims(gy, -1)
        if a.ndim == 1:
            gy = xp.expand_dims(gy, -2)
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = _reshape(unbroadcast(gy @ xp.swapaxes(b2, -1, -2), a2.shape), a.shape)
        if self.needs_input_grad[1]:
            gb = _reshape(unbroadcast(xp.swapaxes(a2, -1, -2) @ gy, b2.shape), b.shape)
        return ga, gb


def _reshape(g, shape):
    # reshape() always returns a view; skipping it when nothing changes keeps
    # the gradient a fresh array the engine can hand to .grad without a copy.
    return g if g.shape == shape else g.reshape(shape)


def _same_dtype(op, *tensors):
    """Tensors of one dtype (as PyTorch's products require), autocast applied."""
    ts = [as_tensor(t) for t in tensors]
    promote(op, *ts)  # device check
    ts = autocast_low(*ts)
    if len({t.array.dtype for t in ts}) > 1:
        got = ", ".join(backend.dtype_name(t.array.dtype) for t in ts)
        raise RuntimeError(f"{op}: expected operands of one dtype, got {got}; convert one with .to(dtype)")
    return ts


def matmul(input, other):
    """Matrix product with PyTorch's rules for 1-D and batched operands (low precision under autocast)."""
    a, b = _same_dtype("matmul", input, other)
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got {a.shape} @ {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if ka != kb:
        raise RuntimeError(f"matmul: expected a.shape[-1] == b.shape[-2], got {a.shape} @ {b.shape}")
    try:
        return MatMul().apply(a, b)
    except ValueError:
        raise RuntimeError(f"matmul: batch dimensions of {a.shape} and {b.shape} can't be broadcast") from None


def mm(input, mat2):
    """2-D matrix product."""
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected 2-D matrices, got {tuple(input.shape)} and {tuple(mat2.shape)}")
    if input.shape[1] != mat2.shape[0]:
        raise RuntimeError(f"mm: shapes {tuple(input.shape)} and {tuple(mat2.shape)} cannot be multiplied "
                           "(expected input.shape[1] == mat2.shape[0])")
    return matmul(input, mat2)


def bmm(input, mat2):
    """Batched product of 3-D tensors (no broadcasting)."""
    if input.ndim != 3 or mat2.ndim != 3 or input.shape[0] != mat2.shape[0] or input.shape[2] != mat2.shape[1]:
        raise RuntimeError(f"bmm: expected (b, n, m) and (b, m, p), got {tuple(input.shape)} and {tuple(mat2.shape)}")
    return matmul(input, mat2)


def mv(input, vec):
    """Matrix-vector product: ``input`` (n, m) times ``vec`` (m,)."""
    if input.ndim != 2 or vec.ndim != 1 or input.shape[1] != vec.shape[0]:
        raise RuntimeError(f"mv: expected a (n, m) matrix and a (m,) vector, got {tuple(input.shape)} and "
                           f"{tuple(vec.shape)}")
    return matmul(input, vec)


def dot(input, other):
    """Inner product of two 1-D tensors of the same size and dtype."""
    if input.ndim != 1 or other.ndim != 1 or input.shape[0] != other.shape[0]:
        raise RuntimeError(f"dot: expected two 1-D tensors of one size, got {tuple(input.shape)} and "
                           f"{tuple(other.shape)}")
    return matmul(input, other)


def vdot(input, other):
    """``dot`` with the first argument conjugated (the same for real tensors)."""
    return dot(input, other)


def inner(input, other):
    """Sum of products over the last dim of both (a plain product when either is 0-d)."""
    a, b = as_tensor(input), as_tensor(other)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.shape[-1] != b.shape[-1]:
        raise RuntimeError(f"inner: expected the last dims to match, got {tuple(a.shape)} and {tuple(b.shape)}")
    return tensordot(a, b, ([-1], [-1]))


def outer(input, vec2):
    """``out[i, j] = input[i] * vec2[j]`` for 1-D tensors."""
    a, b = as_tensor(input), as_tensor(vec2)
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"outer: expected two 1-D tensors, got {a.ndim} and {b.ndim} dims")
    return a.reshape(-1, 1) * b.reshape(1, -1)


def ger(input, vec2):
    """Alias of ``outer``."""
    return outer(input, vec2)


def _fused(input, product, beta, alpha):
    """``beta * input + alpha * product``; with ``beta == 0`` the input is not read (NaN in it is ignored)."""
    out = product if alpha == 1 else product * alpha
    x = as_tensor(input, like=product)
    if beta == 0:
        shape = _broadcast_shape(x.shape, out.shape)
        return out if tuple(shape) == tuple(out.shape) else out.expand(*shape)
    return out + (x if beta == 1 else x * beta)


def _broadcast_shape(a, b):
    import numpy as np
    return np.broadcast_shapes(tuple(a), tuple(b))


def addmm(input, mat1, mat2, *, beta=1, alpha=1):
    """``beta * input + alpha * (mat1 @ mat2)``."""
    return _fused(input, mm(mat1, mat2), beta, alpha)


def addmv(input, mat, vec, *, beta=1, alpha=1):
    """``beta * input + alpha * (mat @ vec)``."""
    return _fused(input, mv(mat, vec), beta, alpha)


def addr(input, vec1, vec2, *, beta=1, alpha=1):
    """``beta * input + alpha * outer(vec1, vec2)``."""
    return _fused(input, outer(vec1, vec2), beta, alpha)


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * bmm(batch1, batch2)``."""
    return _fused(input, bmm(batch1, batch2), beta, alpha)


def addbmm(input, batch1, batch2, *, beta=1, alpha=1):
    """``beta * input + alpha * sum_b batch1[b] @ batch2[b]``."""
    return _fused(input, bmm(batch1, batch2).sum(0), beta, alpha)


def tensordot(a, b, dims=2):
    """Contract the last ``dims`` dims of ``a`` with the first ``dims`` of ``b``, or the dim lists
    ``dims = (dims_a, dims_b)``."""
    a, b = as_tensor(a), as_tensor(b)
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        if dims < 0:
            raise RuntimeError(f"tensordot: expected dims >= 0, got {dims}")
        da, db = list(range(a.ndim - dims, a.ndim)), list(range(dims))
    else:
        da, db = dims
        da, db = ([da], [db]) if isinstance(da, int) else (list(da), list(db))
    da, db = [d % a.ndim for d in da], [d % b.ndim for d in db]
    if len(da) != len(db) or any(a.shape[i] != b.shape[j] for i, j in zip(da, db)):
        raise RuntimeError(f"tensordot: contracted dims of {tuple(a.shape)} (dims {da}) and {tuple(b.shape)} "
                           f"(dims {db}) do not match in size")
    letters = iter(string.ascii_letters)
    sa = [next(letters) for _ in range(a.ndim)]
    sb = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(da, db):
        sb[j] = sa[i]
    out = [c for k, c in enumerate(sa) if k not in da] + [c for k, c in enumerate(sb) if k not in db]
    return einsum(f"{''.join(sa)},{''.join(sb)}->{''.join(out)}", a, b)


def kron(input, other):
    """Kronecker product: ``out[i*n + k] = a[i] * b[k]`` in every dim (the shorter padded with 1s)."""
    a, b = as_tensor(input), as_tensor(other)
    nd = max(a.ndim, b.ndim)
    a = a.reshape(*([1] * (nd - a.ndim) + list(a.shape)))
    b = b.reshape(*([1] * (nd - b.ndim) + list(b.shape)))
    sa, sb = string.ascii_letters[:nd], string.ascii_letters[nd:2 * nd]
    y = einsum(f"{sa},{sb}->{''.join(x + y for x, y in zip(sa, sb))}", a, b)
    return y.reshape(*[m * n for m, n in zip(a.shape, b.shape)])


def trace(input):
    """Sum of the main diagonal of a 2-D tensor (integers sum in int64)."""
    from distgraph.autograd.ops.shape import diagonal
    x = as_tensor(input)
    if x.ndim != 2:
        raise RuntimeError(f"trace: expected a 2-D tensor, got {x.ndim} dims")
    return diagonal(x).sum()


def cross(input, other, dim=None):
    """Cross product of 3-vectors along ``dim`` (by default the first dim of size 3); broadcasts."""
    from distgraph.autograd.ops.shape import movedim, stack
    (a, b), _ = promote("cross", input, other)
    shape = _broadcast_shape(a.shape, b.shape)
    a, b = a.expand(*shape), b.expand(*shape)
    if dim is None:
        dim = next((i for i, n in enumerate(shape) if n == 3), None)
        if dim is None:
            raise RuntimeError(f"cross: expected a dim of size 3, got shape {tuple(shape)}")
    dim = dim % max(len(shape), 1)
    if shape[dim] != 3:
        raise RuntimeError(f"cross: expected dim {dim} to have size 3, got shape {tuple(shape)}")
    a, b = movedim(a, dim, -1), movedim(b, dim, -1)
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    y = stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)
    return movedim(y, -1, dim)


def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """p-norm distances between the rows of ``x1`` (.., P, M) and ``x2`` (.., R, M): (.., P, R);
    the gradient at a zero distance is 0."""
    from distgraph.autograd.ops.reduce import norm
    a, b = as_tensor(x1), as_tensor(x2)
    if a.ndim < 2 or b.ndim < 2:
        raise RuntimeError(f"cdist: expected tensors of at least 2 dims, got {a.ndim} and {b.ndim}")
    if a.shape[-1] != b.shape[-1]:
        raise RuntimeError(f"cdist: expected x1 and x2 to have the same number of columns, got "
                           f"{a.shape[-1]} and {b.shape[-1]}")
    if p < 0:
        raise RuntimeError(f"cdist: expected p >= 0, got {p}")
    if not backend.is_floating(a.array.dtype):
        raise RuntimeError(f"cdist: expected floating point inputs, got {backend.dtype_name(a.array.dtype)}")
    diff = a.unsqueeze(-2) - b.unsqueeze(-3)
    return norm(diff, p, -1)


class Einsum(Function):
    """``einsum`` in explicit form; the gradient of operand k is an einsum of the
    output gradient with the other operands."""
    __slots__ = ("ins", "out", "xs", "saves")

    def __init__(self, ins, out):
        self.ins, self.out = ins, out
        self.saves = tuple(range(len(ins)))

    def forward(self, *xs):
        self.xs = xs
        return xp_of(xs[0]).einsum(",".join(self.ins) + "->" + self.out, *xs)

    def backward(self, gy):
        xp = xp_of(gy)
        grads = []
        for k, sub in enumerate(self.ins):
            if not self.needs_input_grad[k]:
                grads.append(None)
                continue
            others = [s for i, s in enumerate(self.ins) if i != k]
            known = set(self.out).union(*others)
            keep = "".join(c for c in dict.fromkeys(sub) if c in known)
            args = [gy] + [x for i, x in enumerate(self.xs) if i != k]
            g = xp.einsum(",".join([self.out] + others) + "->" + keep, *args)
            # indices summed only inside operand k: its gradient is constant along them
            shape = self.xs[k].shape
            g = g.reshape([shape[sub.index(c)] if c in keep else 1 for c in dict.fromkeys(sub)])
            g = xp.broadcast_to(g, [shape[sub.index(c)] for c in dict.fromkeys(sub)])
            grads.append(xp.ascontiguousarray(g).reshape(shape))
        return tuple(grads)


def _parse(equation, shapes):
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise ValueError(f"einsum: equation {equation!r} has {len(ins)} operands, got {len(shapes)} tensors")
    free = [c for c in string.ascii_letters if c not in eq]
    ell = ""
    if "..." in eq:
        n = max(len(s) - (len(t) - 3) for t, s in zip(ins, shapes) if "..." in t)
        ell = "".join(free[:n])
        ins = [t.replace("...", ell[n - (len(s) - (len(t) - 3)):]) if "..." in t else t
               for t, s in zip(ins, shapes)]
    if not arrow:
        counts = {}
        for t in ins:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        rhs = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        rhs = rhs.replace("...", ell)
    sizes = {}
    for t, s in zip(ins, shapes):
        if len(t) != len(s):
            raise RuntimeError(f"einsum: subscripts {t!r} do not match an operand of shape {tuple(s)}")
        for c, n in zip(t, s):
            if sizes.setdefault(c, n) != n:
                raise RuntimeError(f"einsum: subscript {c!r} stands for sizes {sizes[c]} and {n}; "
                                   "they must be equal")
    if len(set(rhs)) != len(rhs) or any(c not in sizes for c in rhs):
        raise RuntimeError(f"einsum: output subscripts {rhs!r} must be distinct and appear in an input")
    return ins, rhs


class EinsumDiagonal(Function):
    """Operand subscripts with a repeated letter (``"ii"``, ``"bii"``): take that diagonal
    (``"ii->i"``); the gradient puts ``gy`` back on the diagonal, zeros elsewhere."""
    __slots__ = ("sub", "uniq", "shape")

    def __init__(self, sub):
        self.sub, self.uniq = sub, "".join(dict.fromkeys(sub))

    def forward(self, x):
        self.shape = x.shape
        return xp_of(x).einsum(f"{self.sub}->{self.uniq}", x).copy()

    def backward(self, gy):
        xp = xp_of(gy)
        free = iter(c for c in string.ascii_letters if c not in self.sub)
        seen, out, eyes, subs = set(), [], [], []
        for c, n in zip(self.sub, self.shape):
            if c in seen:  # a repeat: a new letter tied to the first by an identity matrix
                c2 = next(free)
                eyes.append(xp.eye(n, dtype=gy.dtype))
                subs.append(c + c2)
                c = c2
            seen.add(c)
            out.append(c)
        return (xp.einsum(",".join([self.uniq] + subs) + "->" + "".join(out), gy, *eyes),)


def einsum(equation, *operands):
    """Einstein summation, e.g. ``einsum("bij,bjk->bik", a, b)``; supports ``...``."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ops, _ = promote("einsum", *operands)
    ops = list(autocast_low(*ops))
    ins, out = _parse(equation, [o.shape for o in ops])
    for k, sub in enumerate(ins):
        if len(set(sub)) != len(sub):
            for c in set(sub):
                if len({n for ch, n in zip(sub, ops[k].shape) if ch == c}) > 1:
                    raise RuntimeError(f"einsum: subscript {c!r} is repeated in operand {k} over dims of "
                                       f"different sizes {tuple(ops[k].shape)}")
            ops[k], ins[k] = EinsumDiagonal(sub).apply(ops[k]), "".join(dict.fromkeys(sub))
    return Einsum(ins, out).apply(*ops)


# ------------------------------------------------------------------ inverse, determinants
def _mT(a):
    return a.swapaxes(-1, -2)


def _square(op, A):
    x = as_tensor(A)
    if not backend.is_floating(x.array.dtype):
        raise RuntimeError(f"linalg.{op}: expected a floating point input, got {backend.dtype_name(x.array.dtype)}; "
                           "convert with .float()")
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise RuntimeError(f"linalg.{op}: A must be batches of square matrices, but they are "
                           f"{x.shape[-2] if x.ndim > 1 else 1} by {x.shape[-1] if x.ndim else 1} matrices")
    return x


class Inverse(Function):
    """``Y = A^-1``; ``gA = -Y^T gY Y^T``."""
    __slots__ = ("y",)

    def forward(self, a):
        self.y = xp_of(a).linalg.inv(a)
        return self.y

    def backward(self, gy):
        yt = _mT(self.y)
        return (-(yt @ gy @ yt),)


def inverse(input):
    """The inverse of (batches of) square matrices (``torch.inverse``, ``torch.linalg.inv``)."""
    return Inverse().apply(_square("inv", input))


class Det(Function):
    """``d = det(A)``; ``gA = gd * d * A^-T``."""
    __slots__ = ("a", "d")

    def forward(self, a):
        self.a, self.d = a, xp_of(a).linalg.det(a)
        return self.d

    def backward(self, gd):
        xp = xp_of(self.a)
        return ((gd * self.d)[..., None, None] * _mT(xp.linalg.inv(self.a)),)


def det(input):
    """The determinant of (batches of) square matrices."""
    return Det().apply(_square("det", input))


class LogAbsDet(Function):
    """``log |det A|``; ``gA = g * A^-T``."""
    __slots__ = ("a",)

    def forward(self, a):
        self.a = a
        return xp_of(a).linalg.slogdet(a)[1]

    def backward(self, g):
        return (g[..., None, None] * _mT(xp_of(self.a).linalg.inv(self.a)),)


_SlogdetResult = namedtuple("slogdet", ["sign", "logabsdet"])


def slogdet(input):
    """``(sign, log |det A|)``, a named pair (``.sign``, ``.logabsdet``); the sign has no gradient."""
    x = _square("slogdet", input)
    xp = xp_of(x.array)
    sign = wrap(xp.asarray(xp.linalg.slogdet(x.array)[0], dtype=x.array.dtype))
    return _SlogdetResult(sign, LogAbsDet().apply(x))


def logdet(input):
    """``log det A``: NaN where the determinant is negative, as PyTorch's."""
    sign, logabs = slogdet(input)
    xp = xp_of(sign.array)
    return logabs + as_tensor(xp.where(sign.array < 0, xp.nan, xp.where(sign.array == 0, -xp.inf, 0.0))
                              .astype(logabs.array.dtype))
