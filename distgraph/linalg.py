"""``torch.linalg`` names: norms (vector, matrix, the dispatching ``norm``), singular values,
``cross``, ``vecdot``, ``matmul``; inverses, determinants and solves (``inv``, ``det``, ``slogdet``,
``solve``, ``solve_triangular``), ``cholesky``, ``eigh``/``eigvalsh``, each with its gradient
(well defined where the matrix is invertible, positive definite, or has distinct eigenvalues)."""
from __future__ import annotations

from collections import namedtuple

from distgraph import backend
from distgraph.autograd.function import Function, unbroadcast
from distgraph.autograd.ops import amax, amin, cast, sum
from distgraph.autograd.ops._common import as_tensor, xp_of
from distgraph.autograd.ops.elementwise import abs
from distgraph.autograd.ops.linalg import _mT, _square, cross as _cross, det, inverse as inv, logdet, matmul, slogdet
from distgraph.autograd.ops.reduce import norm as _vector_p_norm

__all__ = ["norm", "vector_norm", "matrix_norm", "svdvals", "cross", "vecdot", "matmul", "inv", "det", "slogdet",
           "logdet", "solve", "solve_triangular", "cholesky", "eigh", "eigvalsh"]

_INF = float("inf")


class SingularValues(Function):
    """Singular values of (batched) matrices, descending; ``gA = U diag(gs) V^T``
    (well defined where the singular values are distinct)."""
    __slots__ = ("u", "vh")

    def forward(self, a):
        u, s, vh = xp_of(a).linalg.svd(a, full_matrices=False)
        self.u, self.vh = u, vh
        return s

    def backward(self, gs):
        return ((self.u * gs[..., None, :]) @ self.vh,)


def _floating(op, x, dtype):
    x = as_tensor(x)
    if dtype is not None:
        x = cast(x, backend.as_dtype(dtype))
    if not backend.is_floating(x.array.dtype):
        raise RuntimeError(f"linalg.{op}: expected a floating point input, got {backend.dtype_name(x.array.dtype)}; "
                           "convert with .float() or pass dtype=")
    return x


def svdvals(A):
    """Singular values of ``A`` (.., m, n), in descending order."""
    x = _floating("svdvals", A, None)
    if x.ndim < 2:
        raise RuntimeError(f"linalg.svdvals: expected a tensor of at least 2 dims, got {x.ndim}")
    return SingularValues().apply(x)


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """``(sum |x|^ord)^(1/ord)`` over ``dim`` (all elements when None); ``ord`` may be inf, -inf or 0."""
    x = _floating("vector_norm", x, dtype)
    if isinstance(ord, str):
        raise RuntimeError(f"linalg.vector_norm: expected a number for ord, got {ord!r}")
    if dim is None:  # all elements; keepdim keeps every dim as size 1
        y = _vector_p_norm(x.reshape(-1), ord, 0)
        return y.reshape(*([1] * x.ndim)) if keepdim else y
    return _vector_p_norm(x, ord, dim, keepdim)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """Matrix norm over the two dims ``dim``: 'fro', 'nuc', 1 / -1 (max / min column sum),
    inf / -inf (row sum), 2 / -2 (largest / smallest singular value)."""
    x = _floating("matrix_norm", A, dtype)
    if x.ndim < 2:
        raise RuntimeError(f"linalg.matrix_norm: expected a tensor of at least 2 dims, got {x.ndim}")
    d0, d1 = (d % x.ndim for d in dim)
    if d0 == d1:
        raise RuntimeError(f"linalg.matrix_norm: expected two different dims, got {tuple(dim)}")
    if ord == "fro":
        return _vector_p_norm(x, 2, (d0, d1), keepdim)
    if ord in ("nuc", 2, -2):
        s = svdvals(x.movedim((d0, d1), (-2, -1)))
        y = s.sum(-1) if ord == "nuc" else (amax if ord == 2 else amin)(s, -1)
        if keepdim:
            y = y.unsqueeze(min(d0, d1)).unsqueeze(max(d0, d1))
        return y
    if ord in (1, -1, _INF, -_INF):
        inner, outer = (d0, d1) if ord in (1, -1) else (d1, d0)
        sums = sum(abs(x), inner, keepdim=True)
        y = (amax if ord in (1, _INF) else amin)(sums, outer, keepdim=True)
        return y if keepdim else y.squeeze((d0, d1))
    raise RuntimeError(f"linalg.matrix_norm: expected ord in 'fro', 'nuc', 1, -1, 2, -2, inf, -inf, got {ord!r}")


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """A vector norm (``dim`` an int, or a 1-D input) or a matrix norm (``dim`` a pair, or a 2-D input);
    with ``ord=None`` and ``dim=None``: the 2-norm of all elements."""
    x = as_tensor(A)
    if isinstance(dim, int):
        dim = (dim,)
    if dim is None and ord is not None:
        if x.ndim not in (1, 2):
            raise RuntimeError(f"linalg.norm: with ord given and dim=None the input must be 1-D or 2-D, "
                               f"got {x.ndim} dims; pass dim")
        dim = tuple(range(x.ndim))
    if dim is not None and len(dim) == 2:
        return matrix_norm(x, "fro" if ord is None else ord, dim, keepdim, dtype=dtype)
    return vector_norm(x, 2 if ord is None else ord, dim, keepdim, dtype=dtype)


def cross(input, other, *, dim=-1):
    """Cross product of 3-vectors along ``dim`` (the last by default)."""
    return _cross(input, other, dim)


def vecdot(x, y, *, dim=-1):
    """``sum(x * y, dim)`` (real tensors)."""
    return sum(as_tensor(x) * y, dim)


# ------------------------------------------------------------------ inverses, determinants, solves
class Solve(Function):
    """``X = A^-1 B`` (``B`` batches of columns); ``gB = A^-T gX``, ``gA = -gB X^T``, each summed back
    to its input's batch shape."""
    __slots__ = ("a", "x", "vector", "shapes")

    def __init__(self, vector, shapes):
        self.vector, self.shapes = vector, shapes

    def forward(self, a, b):
        xp = xp_of(a)
        bb = b[..., None] if self.vector else b
        batch = xp.broadcast_shapes(a.shape[:-2], bb.shape[:-2])
        a2 = xp.broadcast_to(a, batch + a.shape[-2:])
        x = xp.linalg.solve(a2, xp.broadcast_to(bb, batch + bb.shape[-2:]))
        self.a, self.x = a2, x
        return x[..., 0] if self.vector else x

    def backward(self, gx):
        xp = xp_of(self.a)
        g = gx[..., None] if self.vector else gx
        gb = xp.linalg.solve(_mT(self.a), g)
        ga = -(gb @ _mT(self.x))
        gb = gb[..., 0] if self.vector else gb
        return unbroadcast(ga, self.shapes[0]), unbroadcast(gb, self.shapes[1])


def solve(A, B, *, left=True):
    """``X`` with ``A X = B`` (``left=False``: ``X A = B``); ``B`` a batch of vectors when it has one dim
    fewer than ``A`` (as PyTorch)."""
    a, b = _square("solve", A), _floating("solve", B, None)
    if not left:
        return _mT(solve(_mT(a), _mT(b)))
    vector = b.ndim == 1 or (b.ndim == a.ndim - 1 and b.shape == a.shape[:-1])
    if b.shape[-1 if vector else -2] != a.shape[-1]:
        raise RuntimeError(f"linalg.solve: incompatible shapes of A {tuple(a.shape)} and B {tuple(b.shape)}")
    return Solve(vector, (tuple(a.shape), tuple(b.shape))).apply(a, b)


def solve_triangular(A, B, *, upper, left=True, unitriangular=False):
    """``X`` with ``A X = B`` for a triangular ``A`` (only its ``upper`` or lower triangle is read;
    ``unitriangular``: its diagonal taken as ones)."""
    from distgraph.autograd.ops.shape import tril, triu
    a = _square("solve_triangular", A)
    t = triu(a) if upper else tril(a)
    if unitriangular:
        xp = xp_of(a.array)
        eye = as_tensor(xp.eye(a.shape[-1], dtype=a.array.dtype))
        t = t * (1 - eye) + eye
    b = as_tensor(B)
    if b.ndim < 2:
        raise RuntimeError(f"linalg.solve_triangular: expected B of shape (*, n, k), got {tuple(b.shape)}")
    return solve(t, b, left=left)


class Cholesky(Function):
    """``A = L L^T``; ``gA = sym(L^-T Phi(L^T gL) L^-1)``, ``Phi`` the lower triangle with its diagonal
    halved and ``sym(M) = (M + M^T) / 2``."""
    __slots__ = ("l",)

    def forward(self, a):
        xp = xp_of(a)
        try:
            self.l = xp.linalg.cholesky(a)
        except Exception as e:   # NumPy's LinAlgError (CuPy's, where it checks)
            if type(e).__name__ != "LinAlgError":
                raise
            raise RuntimeError(f"linalg.cholesky: the input is not positive-definite ({e}); expected a symmetric "
                               "positive-definite matrix (add a small multiple of the identity)") from None
        return self.l

    def backward(self, gl):
        xp = xp_of(self.l)
        lt = _mT(self.l)
        phi = xp.tril(lt @ gl)
        phi = phi - 0.5 * (xp.eye(phi.shape[-1], dtype=phi.dtype) * phi)
        inv_l = xp.linalg.inv(self.l)
        m = _mT(inv_l) @ phi @ inv_l
        return (0.5 * (m + _mT(m)),)


def cholesky(A, *, upper=False):
    """The Cholesky factor of (batches of) symmetric positive-definite matrices: lower ``L`` with
    ``A = L L^T`` (``upper``: ``U = L^T``)."""
    low = Cholesky().apply(_square("cholesky", A))
    return _mT(low) if upper else low


class Eigh(Function):
    """Eigenvalues (ascending) and eigenvectors of symmetric matrices, packed as ``[w | V]`` along the last
    dim (split by ``eigh``); ``gA = V (diag(gw) + F * skew(V^T gV)) V^T``, ``F_ij = 1 / (w_j - w_i)`` off the
    diagonal, ``skew(M) = (M - M^T) / 2``: the gradient for symmetric changes of ``A`` (a symmetric matrix,
    as PyTorch's)."""
    __slots__ = ("w", "v", "uplo")

    def __init__(self, uplo):
        self.uplo = uplo

    def forward(self, a):
        xp = xp_of(a)
        self.w, self.v = xp.linalg.eigh(a, UPLO=self.uplo)
        return xp.concatenate([self.w[..., None, :], self.v], axis=-2)

    def backward(self, g):
        xp = xp_of(self.v)
        gw, gv = g[..., 0, :], g[..., 1:, :]
        v, vt = self.v, _mT(self.v)
        diff = self.w[..., None, :] - self.w[..., :, None]
        n = diff.shape[-1]
        off = ~xp.eye(n, dtype=bool)
        f = xp.where(off, 1.0 / xp.where(off, diff, 1.0), 0.0)
        vg = vt @ gv
        inner = f * (0.5 * (vg - _mT(vg))) + gw[..., None, :] * xp.eye(n, dtype=v.dtype)
        return (v @ inner @ vt,)


_EighResult = namedtuple("eigh", ["eigenvalues", "eigenvectors"])


def eigh(A, UPLO="L"):
    """``(eigenvalues, eigenvectors)`` of (batches of) symmetric matrices (only the ``UPLO`` triangle is
    read), eigenvalues ascending; a named pair (``.eigenvalues``, ``.eigenvectors``)."""
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"linalg.eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
    packed = Eigh(UPLO).apply(_square("eigh", A))
    return _EighResult(packed[..., 0, :], packed[..., 1:, :])


def eigvalsh(A, UPLO="L"):
    """The eigenvalues of (batches of) symmetric matrices, ascending."""
    return eigh(A, UPLO).eigenvalues
