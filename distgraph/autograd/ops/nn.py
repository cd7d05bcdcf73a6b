"""Ops behind ``nn.functional``: softmax family, padding, windows (im2col / col2im, N-d max pooling),
gathers (``Take``), max-unpooling scatters, embedding."""
from __future__ import annotations

import itertools

from distgraph import backend
from distgraph.autograd.function import Function
from distgraph.autograd.ops._common import as_tensor, autocast_float32, normalize_dims, xp_of

__all__ = ["softmax", "log_softmax"]


class Linear(Function):
    """``y = x W^T + b`` over the last dim of ``x``, as one op: the weight gradient
    ``gy^T x`` comes out C-contiguous and no transposed copy is ever made."""
    __slots__ = ("x", "w", "has_bias")
    saves = (0, 1)

    def forward(self, x, w, b=None):
        self.x, self.w, self.has_bias = x, w, b is not None
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        x, w = self.x, self.w
        nig = self.needs_input_grad
        gy2 = gy.reshape(-1, gy.shape[-1])
        gx = (gy @ w) if nig[0] else None
        gw = gy2.T @ x.reshape(-1, x.shape[-1]) if nig[1] else None
        gb = gy2.sum(0) if self.has_bias and nig[2] else None
        return gx, gw, gb


class Softmax(Function):
    __slots__ = ("dim", "out")
    saves_output = True

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = xp_of(x)
        e = xp.exp(x - x.max(axis=self.dim, keepdims=True))
        self.out = y = e / e.sum(axis=self.dim, keepdims=True)
        return y

    def backward(self, gy):
        y = self.out
        return (y * (gy - (gy * y).sum(axis=self.dim, keepdims=True)),)


class LogSoftmax(Function):
    __slots__ = ("dim", "out")
    saves_output = True

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = xp_of(x)
        z = x - x.max(axis=self.dim, keepdims=True)
        self.out = y = z - xp.log(xp.exp(z).sum(axis=self.dim, keepdims=True))
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        return (gy - xp.exp(self.out) * gy.sum(axis=self.dim, keepdims=True),)


def _float_dim(op, input, dim, dtype):
    (x,) = autocast_float32(as_tensor(input))
    if dtype is not None:
        x = x.to(dtype=dtype)
    elif not backend.is_floating(x.dtype):
        x = x.to(dtype=backend.float32)
    if dim is None:
        dim = 0 if x.ndim in (0, 1, 3) else 1  # PyTorch's legacy implicit-dim rule
    return x, normalize_dims(dim, x.ndim, op)[0] if x.ndim else None


def softmax(input, dim=None, dtype=None):
    """``exp(x) / sum(exp(x))`` along ``dim``, computed with the max subtracted."""
    x, d = _float_dim("softmax", input, dim, dtype)
    return Softmax(d).apply(x)


def log_softmax(input, dim=None, dtype=None):
    """``x - logsumexp(x)`` along ``dim``."""
    x, d = _float_dim("log_softmax", input, dim, dtype)
    return LogSoftmax(d).apply(x)


class Pad(Function):
    """Constant padding: ``widths`` is ((before, after), ...) per dim (negative crops)."""
    __slots__ = ("widths", "value")

    def __init__(self, widths, value):
        self.widths, self.value = widths, value

    def forward(self, x):
        xp = xp_of(x)
        crop = tuple(slice(max(-b, 0), n - max(-a, 0)) for (b, a), n in zip(self.widths, x.shape))
        pos = [(max(b, 0), max(a, 0)) for b, a in self.widths]
        return xp.pad(x[crop], pos, constant_values=self.value)

    def backward(self, gy):
        xp = xp_of(gy)
        crop = tuple(slice(max(b, 0), n - max(a, 0)) for (b, a), n in zip(self.widths, gy.shape))
        g = gy[crop]
        return (xp.pad(g, [(max(-b, 0), max(-a, 0)) for b, a in self.widths]),)


# ------------------------------------------------------------ sliding windows
def _window_shape(size, k, stride, dilation):
    return (size - dilation * (k - 1) - 1) // stride + 1


def window_counts(size, kernel, stride, dilation):
    """The number of windows along each dim of ``size``."""
    return tuple(_window_shape(n, k, s, d) for n, k, s, d in zip(size, kernel, stride, dilation))


def window_slices(ndim, kernel, stride, dilation, out):
    """Per kernel position (row-major), the index that views the trailing ``len(kernel)`` dims
    of an ``ndim``-d array at that position of every output window.

    The one place windows are sliced: gathering windows is ``[x[v] for v in window_slices(...)]``,
    and every adjoint (col2im, a convolution's input gradient, max-pool's) adds back through the
    same indices."""
    lead = (slice(None),) * (ndim - len(kernel))
    for pos in itertools.product(*map(range, kernel)):
        yield lead + tuple(slice(p * d, p * d + s * (o - 1) + 1, s)
                           for p, d, s, o in zip(pos, dilation, stride, out))


def im2col_array(x, kernel, stride, dilation):
    """(N, C, H, W) -> (N, C, kh, kw, Ho, Wo), a strided view (no copy)."""
    xp = xp_of(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    ho, wo = _window_shape(h, kh, sh, dh), _window_shape(w, kw, sw, dw)
    s = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, (n, c, kh, kw, ho, wo), (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw))


def col2im_array(cols, size, stride, dilation):
    """Adjoint of ``im2col_array``: sum (N, C, kh, kw, Ho, Wo) windows back into (N, C, H, W).

    Loops over the kernel positions only (kh * kw slices), never over pixels."""
    n, c, kh, kw, ho, wo = cols.shape
    out = xp_of(cols).zeros((n, c) + tuple(size), cols.dtype)
    for k, v in enumerate(window_slices(4, (kh, kw), stride, dilation, (ho, wo))):
        out[v] += cols[:, :, k // kw, k % kw]
    return out


class Conv2d(Function):
    """Cross-correlation of (N, C, H, W) with (O, C/g, kh, kw) (input already padded).

    Forward: im2col windows and one batched product per group.  Backward: the
    weight gradient is ``gy @ cols^T`` summed over the batch; the input
    gradient is computed kernel-position-major, ``(kh, kw, N, C, Ho, Wo)``, so
    that each of the kh*kw adds back into the image reads a contiguous block."""
    __slots__ = ("stride", "dilation", "groups", "cols", "w", "size")
    saves = (1,)

    def __init__(self, stride, dilation, groups):
        self.stride, self.dilation, self.groups = stride, dilation, groups

    def forward(self, x, w):
        xp = xp_of(x)
        n = x.shape[0]
        o, cg, kh, kw = w.shape
        g = self.groups
        self.size, self.w = x.shape[2:], w
        cols = xp.ascontiguousarray(im2col_array(x, (kh, kw), self.stride, self.dilation))
        ho, wo = cols.shape[4:]
        self.cols = cols = cols.reshape(n, g, cg * kh * kw, ho * wo)
        return (w.reshape(g, o // g, cg * kh * kw) @ cols).reshape(n, o, ho, wo)

    def backward(self, gy):
        xp = xp_of(gy)
        w, g = self.w, self.groups
        o, cg, kh, kw = w.shape
        n, _, ho, wo = gy.shape
        gy = gy.reshape(n, g, o // g, ho * wo)
        gx = gw = None
        if self.needs_input_grad[1]:
            gw = (gy @ self.cols.swapaxes(-1, -2)).sum(0).reshape(w.shape)
        if self.needs_input_grad[0]:
            wt = xp.ascontiguousarray(w.reshape(g, o // g, cg, kh, kw).transpose(3, 4, 0, 2, 1))
            gcols = (wt.reshape(kh * kw, 1, g, cg, o // g) @ gy).reshape(kh * kw, n, g * cg, ho, wo)
            gx = xp.zeros((n, g * cg) + tuple(self.size), gy.dtype)
            for k, v in enumerate(window_slices(4, (kh, kw), self.stride, self.dilation, (ho, wo))):
                gx[v] += gcols[k]
        return gx, gw


class Col2Im(Function):
    """Sum (N, C, kh, kw, Ho, Wo) windows into an (N, C, H, W) image (the adjoint of ``im2col_array``)."""
    __slots__ = ("size", "stride", "dilation", "kernel")

    def __init__(self, size, stride, dilation):
        self.size, self.stride, self.dilation = size, stride, dilation

    def forward(self, cols):
        self.kernel = cols.shape[2:4]
        return col2im_array(cols, self.size, self.stride, self.dilation)

    def backward(self, gy):
        return (xp_of(gy).ascontiguousarray(im2col_array(gy, self.kernel, self.stride, self.dilation)),)


class EmbeddingLookup(Function):
    """``weight[idx]``; rows at ``padding_idx`` get no gradient."""
    __slots__ = ("idx", "padding_idx", "shape")

    def __init__(self, idx, padding_idx):
        self.idx, self.padding_idx = idx, padding_idx

    def forward(self, w):
        self.shape = w.shape
        return w[self.idx]

    def backward(self, gy):
        xp = xp_of(gy)
        gw = xp.zeros(self.shape, gy.dtype)
        xp.add.at(gw, self.idx.reshape(-1), gy.reshape(-1, self.shape[1]))
        if self.padding_idx is not None:
            gw[self.padding_idx] = 0
        return (gw,)


# ------------------------------------------------ N-d windows, gathers, scatters
def im2col_nd(x, kernel, stride, dilation):
    """(N, C, *S) -> (N, C, K, *out): the windows of ``x``, K = prod(kernel) (a copy)."""
    out = window_counts(x.shape[2:], kernel, stride, dilation)
    return xp_of(x).stack([x[v] for v in window_slices(x.ndim, kernel, stride, dilation, out)], axis=2)


class Im2ColNd(Function):
    """Windows of an (N, C, *S) input (already padded) as an (N, C, K, *out) array, K = prod(kernel)."""
    __slots__ = ("kernel", "stride", "dilation", "shape")

    def __init__(self, kernel, stride, dilation):
        self.kernel, self.stride, self.dilation = kernel, stride, dilation

    def forward(self, x):
        self.shape = x.shape
        return im2col_nd(x, self.kernel, self.stride, self.dilation)

    def backward(self, gy):
        return (col2im_nd(gy, self.shape, self.kernel, self.stride, self.dilation),)


def col2im_nd(cols, shape, kernel, stride, dilation):
    """Adjoint of ``Im2ColNd``: add (N, C, K, *out) windows back into an array of ``shape``."""
    gx = xp_of(cols).zeros(shape, cols.dtype)
    for k, v in enumerate(window_slices(len(shape), kernel, stride, dilation, cols.shape[3:])):
        gx[v] += cols[:, :, k]
    return gx


class Col2ImNd(Function):
    """Sum (N, C, K, *out) windows into an (N, C, *size) array (transposed convolution, fold)."""
    __slots__ = ("size", "kernel", "stride", "dilation")

    def __init__(self, size, kernel, stride, dilation):
        self.size, self.kernel, self.stride, self.dilation = tuple(size), kernel, stride, dilation

    def forward(self, cols):
        return col2im_nd(cols, cols.shape[:2] + self.size, self.kernel, self.stride, self.dilation)

    def backward(self, gy):
        return (im2col_nd(gy, self.kernel, self.stride, self.dilation),)


class MaxPoolNd(Function):
    """Max over windows of the trailing dims of an (already -inf padded) input; the gradient
    goes to the first maximum of each window.  ``argpos`` keeps, per output, the winning
    kernel position (row-major), from which ``return_indices`` is computed."""
    __slots__ = ("kernel", "stride", "dilation", "shape", "argpos")

    def __init__(self, kernel, stride, dilation):
        self.kernel, self.stride, self.dilation = kernel, stride, dilation

    def forward(self, x):
        xp = xp_of(x)
        out = window_counts(x.shape[-len(self.kernel):], self.kernel, self.stride, self.dilation)
        self.shape = x.shape
        views = [x[v] for v in window_slices(x.ndim, self.kernel, self.stride, self.dilation, out)]
        y = views[0].copy()
        for v in views[1:]:
            xp.maximum(y, v, out=y)                     # NaN propagates, as PyTorch
        pos = xp.full(y.shape, len(views) - 1, dtype=xp.int32)
        for k in range(len(views) - 2, -1, -1):       # the first position that holds the max wins
            # copyto(where=), not pos[mask] = k: a boolean-mask store makes CuPy count the
            # mask on the host (a synchronisation per window position)
            xp.copyto(pos, k, where=(views[k] == y) | (views[k] != views[k]))
        self.argpos = pos
        return y

    def backward(self, gy):
        xp = xp_of(gy)
        gx = xp.zeros(self.shape, gy.dtype)
        for k, v in enumerate(window_slices(gy.ndim, self.kernel, self.stride, self.dilation,
                                            gy.shape[-len(self.kernel):])):
            gx[v] += xp.where(self.argpos == k, gy, gy.dtype.type(0))
        return (gx,)


class Take(Function):
    """``x.take(idx, axis)``: picks (and may repeat) slices along one axis; backward scatter-adds."""
    __slots__ = ("idx", "axis", "size")

    def __init__(self, idx, axis):
        self.idx, self.axis = idx, axis

    def forward(self, x):
        self.axis %= x.ndim
        self.size = x.shape[self.axis]
        return xp_of(x).take(x, self.idx, axis=self.axis)

    def backward(self, gy):
        xp = xp_of(gy)
        g = xp.moveaxis(gy, self.axis, 0)
        gx = xp.zeros((self.size,) + g.shape[1:], gy.dtype)
        xp.add.at(gx, self.idx, g)
        return (xp.moveaxis(gx, 0, self.axis),)


class MaxUnpool(Function):
    """Scatter (N, C, P) values to flat ``idx`` of (N, C, size) zero planes; backward gathers."""
    __slots__ = ("idx", "size")

    def __init__(self, idx, size):
        self.idx, self.size = idx, size

    def forward(self, x):
        xp = xp_of(x)
        n, c = x.shape[:2]
        y = xp.zeros((n * c, self.size), x.dtype)
        rows = xp.arange(n * c)[:, None]
        y[rows, self.idx.reshape(n * c, -1)] = x.reshape(n * c, -1)
        return y.reshape(n, c, self.size)

    def backward(self, gy):
        xp = xp_of(gy)
        n, c = gy.shape[:2]
        rows = xp.arange(n * c)[:, None]
        idx = self.idx.reshape(n * c, -1)
        return (gy.reshape(n * c, -1)[rows, idx].reshape(self.idx.shape),)
