"""Gradient buckets and the reducer behind ``DistributedDataParallel``.

A bucket is one flat, contiguous buffer per (device, dtype) holding the
gradients of several parameters, plus one "used" flag per parameter.  It is
allocated once and reused every iteration.  Parameters go into buckets in
*reverse* registration order, roughly the order backward produces their
gradients; after the first iteration the layout is rebuilt from the order the
gradients really arrived (decided on rank 0 and broadcast, so every rank
agrees).

Each parameter's post-accumulate-grad hook copies its gradient (already
divided by the world size) into its slot.  When a bucket is full its
all-reduce is launched *asynchronously* while backward continues; buckets are
always launched in index order, so every rank issues the same collectives in
the same order.  The end-of-backward callback marks parameters that backward
never reached, launches what is left, waits, and writes the averaged
gradients back.

The used flags ride along inside each bucket's all-reduce: after it, a flag of
0 means no rank used that parameter, and its ``.grad`` stays ``None`` (as
PyTorch's ``find_unused_parameters=True``), without any extra collective.
"""
from __future__ import annotations

from distgraph import backend, profiler
from distgraph.autograd.tensor import wrap

FIRST_BUCKET_BYTES = 1024 * 1024  # PyTorch's default: a small first bucket starts communication early


class Bucket:
    """One flat buffer: ``[grad_0 | grad_1 | ... | used flags]``."""

    def __init__(self, index, params, indices):
        self.index, self.params, self.indices = index, params, indices
        first = params[0].array
        xp = backend.get_array_module(first)
        self.numel = sum(p.numel() for p in params)
        self.buffer = xp.zeros(self.numel + len(params), first.dtype)
        self.views, off = [], 0
        for p in params:
            self.views.append(self.buffer[off:off + p.numel()].reshape(p.shape))
            off += p.numel()
        self.flags = self.buffer[self.numel:]
        self.used = [False] * len(params)  # this rank's flags, on the host
        self.pending = len(params)
        self.work = None

    def reset(self):
        self.pending = len(self.params)
        self.used = [False] * len(self.params)
        self.work = None


def assign_buckets(params, order, cap_bytes, first_cap_bytes=FIRST_BUCKET_BYTES):
    """Group parameter indices (taken in ``order``) into buckets of at most
    ``cap_bytes`` (the first at most ``first_cap_bytes``), never mixing devices
    or dtypes.  A parameter larger than the cap gets a bucket of its own."""
    buckets, open_ = [], {}
    first_cap_bytes = min(first_cap_bytes, cap_bytes)
    for i in order:
        p = params[i]
        key = (str(p.device), p.dtype)
        cap = first_cap_bytes if not buckets and not open_ else cap_bytes
        cur = open_.get(key)
        if cur is not None and cur[1] + p.nbytes > cur[2]:
            buckets.append(cur[0])
            cur = None
        if cur is None:
            cur = open_[key] = [[], 0, cap]
        cur[0].append(i)
        cur[1] += p.nbytes
    buckets.extend(c[0] for c in open_.values() if c[0])
    return buckets


class Reducer:
    """Owns the buckets and the per-iteration state of gradient synchronisation."""

    def __init__(self, params, group, world_size, cap_bytes, gradient_as_bucket_view=False):
        self.params, self.group, self.world_size = params, group, world_size
        self.cap_bytes = cap_bytes
        self.gradient_as_bucket_view = gradient_as_bucket_view
        self.comm_hook, self.hook_state = None, None
        self.build([len(params) - 1 - i for i in range(len(params))])
        self.ready_order = []
        self.rebuilt = False
        self.active = False
        self.timeline = []  # this iteration's ("ready", param) / ("launch" | "done", bucket) events, in order

    def build(self, order):
        layout = assign_buckets(self.params, order, self.cap_bytes)
        self.buckets, self.slot = [], {}
        for b, idx in enumerate(layout):
            bucket = Bucket(b, [self.params[i] for i in idx], idx)
            self.buckets.append(bucket)
            for k, i in enumerate(idx):
                self.slot[i] = (bucket, k)
        self.layout = layout

    # ---------------------------------------------------------- per iteration
    def prepare(self):
        """Start of a synchronised backward pass."""
        for b in self.buckets:
            b.reset()
        self.ready = [False] * len(self.params)
        self.next_launch = 0
        self.ready_order = []
        self.timeline = []
        self.active = True

    def mark_ready(self, i, used=True):
        if self.ready[i]:
            return
        self.ready[i] = True
        self.ready_order.append(i)
        self.timeline.append(("ready", i))
        bucket, k = self.slot[i]
        p = self.params[i]
        view = bucket.views[k]
        if used and p.grad is not None:
            xp = backend.get_array_module(view)
            if p.grad.array is view:                       # gradient_as_bucket_view: already in place
                view *= 1.0 / self.world_size
            else:
                xp.multiply(p.grad.array, 1.0 / self.world_size, out=view)
            bucket.flags[k] = 1
            bucket.used[k] = True
        else:
            view[...] = 0
            bucket.flags[k] = 0
        bucket.pending -= 1
        if bucket.pending == 0:
            self.launch_ready()

    def launch_ready(self):
        """Launch complete buckets, strictly in index order."""
        while self.next_launch < len(self.buckets) and self.buckets[self.next_launch].pending == 0:
            b = self.buckets[self.next_launch]
            self.timeline.append(("launch", b.index))
            start = profiler.now_us()
            if self.comm_hook is not None:
                b.work = self.comm_hook(self.hook_state, GradBucket(b))
            else:
                from distgraph import comm
                b.work = comm.all_reduce(wrap(b.buffer), group=self.group, async_op=True)
            if profiler.enabled() and hasattr(b.work, "then"):
                b.work.then(lambda b=b, start=start: profiler.record(
                    f"allreduce bucket {b.index}", "allreduce", start, profiler.now_us(), bytes=int(b.buffer.nbytes)))
            self.next_launch += 1

    def finish(self):
        """End of backward: complete every bucket and write gradients back.

        Returns the indices of parameters that this rank's backward did not reach."""
        unused = [i for i, r in enumerate(self.ready) if not r]
        for i in unused:
            self.mark_ready(i, used=False)
        for b in self.buckets:
            b.work.wait()
            self.timeline.append(("done", b.index))
            # A parameter this rank used was used somewhere; only for the others is the
            # reduced flag read back -- one host read per such bucket, none usually.
            used = b.used if all(b.used) else \
                [u or f != 0 for u, f in zip(b.used, backend.to_device(b.flags, backend.CPU))]
            for k, p in enumerate(b.params):
                if not used[k]:                 # no rank used it: leave .grad alone (None)
                    continue
                view = b.views[k]
                if self.gradient_as_bucket_view:
                    if p.grad is None or p.grad.array is not view:
                        p.grad = wrap(view)
                elif p.grad is None:
                    p.grad = wrap(view.copy())
                else:
                    p.grad.array[...] = view
        self.active = False
        return unused


class GradBucket:
    """What a communication hook receives (PyTorch's ``dist.GradBucket``)."""

    def __init__(self, bucket):
        self._b = bucket

    def index(self):
        return self._b.index

    def buffer(self):
        """The flat bucket as a Tensor; the hook must leave the reduced values in it."""
        return wrap(self._b.buffer)

    def parameters(self):
        return list(self._b.params)
