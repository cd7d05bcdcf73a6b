"""Matrix products: ``matmul`` (with PyTorch's 1-D and batched broadcasting rules) and ``einsum``."""
from __future__ import annotations

import string

from distgraph.autograd.function import Function, unbroadcast
from distgraph.autograd.ops._common import autocast_low, promote, xp_of

__all__ = ["matmul", "mm", "bmm", "einsum"]


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


def matmul(input, other):
    """Matrix product with PyTorch's rules for 1-D and batched operands (low precision under autocast)."""
    (a, b), _ = promote("matmul", input, other)
    a, b = autocast_low(a, b)
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
        raise RuntimeError(f"mm: expected 2-D matrices, got {input.shape} and {mat2.shape}")
    return matmul(input, mat2)


def bmm(input, mat2):
    """Batched product of 3-D tensors (no broadcasting)."""
    if input.ndim != 3 or mat2.ndim != 3 or input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: expected (b, n, m) and (b, m, p), got {input.shape} and {mat2.shape}")
    return matmul(input, mat2)


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
    for t, s in zip(ins, shapes):
        if len(t) != len(s):
            raise ValueError(f"einsum: subscripts {t!r} do not match an operand of shape {tuple(s)}")
        if len(set(t)) != len(t):
            raise NotImplementedError(f"einsum: repeated subscripts within one operand ({t!r}) are not supported")
    return ins, rhs


def einsum(equation, *operands):
    """Einstein summation, e.g. ``einsum("bij,bjk->bik", a, b)``; supports ``...``."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ops, _ = promote("einsum", *operands)
    ops = autocast_low(*ops)
    ins, out = _parse(equation, [o.shape for o in ops])
    return Einsum(ins, out).apply(*ops)
