"""The two matrix ops the multivariate normal needs and distgraph's ops do not have (yet):
a batched Cholesky factorisation and a lower-triangular solve, both differentiable."""
from __future__ import annotations

from distgraph.autograd.function import Function, unbroadcast
from distgraph.autograd.ops._common import xp_of

__all__ = ["cholesky", "solve_tril"]


def _mT(a):  # noqa: N802 - the matrix transpose, torch's name
    return a.swapaxes(-1, -2)


def _solve(a, b):
    """``a^{-1} b`` for stacks of matrices, the batch dims broadcast."""
    xp = xp_of(a)
    batch = xp.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return xp.linalg.solve(xp.broadcast_to(a, batch + a.shape[-2:]), xp.broadcast_to(b, batch + b.shape[-2:]))


class Cholesky(Function):
    """``L`` lower with ``L L^T = A`` (only A's lower triangle is read).

    Backward (symmetric gradient): ``P = Φ(L^T gL)`` (lower triangle, diagonal halved),
    ``S = L^{-T} P L^{-1}``, ``gA = (S + S^T) / 2``.
    """
    __slots__ = ("out",)
    saves_output = True

    def forward(self, a):
        self.out = y = xp_of(a).linalg.cholesky(a)
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        low = self.out
        p = _mT(low) @ xp.tril(gy)
        p = xp.tril(p) - 0.5 * xp.eye(p.shape[-1], dtype=p.dtype) * p
        s = _mT(_solve(_mT(low), _mT(_solve(_mT(low), p))))
        return (0.5 * (s + _mT(s)),)


class SolveTril(Function):
    """``X = L^{-1} B`` for ``L`` lower triangular (batch dims broadcast).

    Backward: ``gB = L^{-T} gX``, ``gL = -tril(gB X^T)``.
    """
    __slots__ = ("low", "x", "shapes")

    def forward(self, low, b):
        xp = xp_of(low)
        self.low = low = xp.tril(low)
        self.shapes = (low.shape, b.shape)
        self.x = x = _solve(low, b)
        return x

    def backward(self, gx):
        xp = xp_of(gx)
        gb = _solve(_mT(self.low), gx)
        gl = -xp.tril(gb @ _mT(self.x)) if self.needs_input_grad[0] else None
        low_shape, b_shape = self.shapes
        return (None if gl is None else unbroadcast(gl, low_shape),
                unbroadcast(gb, b_shape) if self.needs_input_grad[1] else None)


def cholesky(a):
    """The lower Cholesky factor of the (batched) symmetric positive-definite ``a``.

    Raises:
        ValueError: ``a`` is not positive definite.
    """
    try:
        return Cholesky().apply(a)
    except Exception as e:  # numpy.linalg.LinAlgError, CuPy's own
        if type(e).__name__ != "LinAlgError":
            raise
        raise ValueError(f"cholesky: expected a positive-definite matrix, got one of shape {tuple(a.shape)} "
                         f"that is not ({e})") from None


def solve_tril(low, b):
    """``low^{-1} b`` for lower-triangular ``low`` (matrices, batch dims broadcast)."""
    return SolveTril().apply(low, b)
