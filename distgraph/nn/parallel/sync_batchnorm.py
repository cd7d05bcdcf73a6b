"""``SyncBatchNorm``: batch statistics computed over the whole global batch, across ranks."""
from __future__ import annotations

from distgraph.autograd import grad_mode
from distgraph.autograd.function import Function
from distgraph.autograd.ops._common import xp_of
from distgraph.autograd.tensor import wrap, bump_version
from distgraph.nn.layers import _BatchNorm


def _allreduce(arr, group):
    from distgraph import comm
    t = wrap(arr)
    comm.all_reduce(t, group=group)
    return t.array


class SyncBatchNormFn(Function):
    """y = (x - mean) / sqrt(var + eps) * w + b with mean/var over every rank's batch.

    Forward all-reduces [sum, sum of squares, count]; backward all-reduces
    [sum gy, sum gy * xhat].  Every rank must run forward and backward through
    the same SyncBatchNorm layers in the same order (DDP guarantees it)."""
    __slots__ = ("group", "eps", "xhat", "invstd", "w", "count", "axes", "shape", "stats")
    saves = (1,)

    def __init__(self, group, eps):
        self.group, self.eps = group, eps

    def forward(self, x, w, b):
        xp = xp_of(x)
        self.axes = (0,) + tuple(range(2, x.ndim))
        self.shape = (1, -1) + (1,) * (x.ndim - 2)
        c = x.shape[1]
        local = xp.concatenate([x.sum(self.axes), (x * x).sum(self.axes), xp.asarray([x.size // c], x.dtype)])
        tot = _allreduce(local, self.group)
        n = float(tot[-1])
        if n <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel over all ranks, got {int(n)}")
        mean = tot[:c] / n
        var = xp.maximum(tot[c:2 * c] / n - mean * mean, 0)
        self.stats = (mean, var, n)
        self.invstd = 1 / xp.sqrt(var + self.eps)
        self.xhat = (x - mean.reshape(self.shape)) * self.invstd.reshape(self.shape)
        self.w, self.count = w, n
        return self.xhat * w.reshape(self.shape) + b.reshape(self.shape)

    def backward(self, gy):
        xp = xp_of(gy)
        axes, shape, xhat = self.axes, self.shape, self.xhat
        gb = gy.sum(axes)
        gw = (gy * xhat).sum(axes)
        gx = None
        if self.needs_input_grad[0]:
            c = gb.shape[0]
            tot = _allreduce(xp.concatenate([gb, gw]), self.group)
            mean_gy, mean_gy_xhat = tot[:c] / self.count, tot[c:] / self.count
            gx = (self.w * self.invstd).reshape(shape) * (
                gy - mean_gy.reshape(shape) - xhat * mean_gy_xhat.reshape(shape))
        return gx, gw, gb


class SyncBatchNorm(_BatchNorm):
    """``BatchNorm`` whose training statistics span every rank of ``process_group``."""
    _dims = (2, 3, 4, 5)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def forward(self, input):
        from distgraph import comm
        if not self.training or not comm.is_initialized() or not self.affine:
            return super().forward(input)
        fn = SyncBatchNormFn(self.process_group, self.eps)
        out = fn.apply(input, self.weight, self.bias)
        if self.track_running_stats:
            mean, var, n = fn.stats
            self.num_batches_tracked.array += 1
            m = self.momentum if self.momentum is not None else 1.0 / int(self.num_batches_tracked.array)
            with grad_mode.no_grad():
                self.running_mean.array[...] = (1 - m) * self.running_mean.array + m * mean
                self.running_var.array[...] = (1 - m) * self.running_var.array + m * var * (n / (n - 1))
                bump_version(self.running_mean)
                bump_version(self.running_var)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Return ``module`` with every ``BatchNorm*d`` replaced by a ``SyncBatchNorm`` holding the same state."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                      process_group, device=None, dtype=None)
            new.load_state_dict(module.state_dict())
            new.to(module.weight.device if module.affine else "cpu",
                   module.weight.dtype if module.affine else None)
            new.train(module.training)
            return new
        for name, child in list(module._modules.items()):
            if child is not None:
                module._modules[name] = cls.convert_sync_batchnorm(child, process_group)
        return module

