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

With a communication hook (``register_comm_hook``, PyTorch's contract) the hook
gets the bucket's gradients as they are (not divided), returns a
:class:`distgraph.futures.Future`, and the tensor that Future holds is copied
into the bucket; the used flags then go in one small all-reduce of their own
when backward ends.
"""
from __future__ import annotations

import numpy as np

from distgraph import backend, profiler
from distgraph.autograd.tensor import Tensor, wrap
from distgraph.comm.grad_bucket import GradBucket
from distgraph.futures import Future

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
        self.live_ranks = None  # under Join(divide_by_initial_world_size=False): the Work counting them
        self.scale = 1.0 / world_size
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
        self.scale = 1.0 / self.world_size
        if self.live_ranks is not None:     # divide by the ranks still training (counted in forward)
            count, self.live_ranks = self.live_ranks.result()[0], None
            self.scale = 1.0 / max(int(count.array[0]), 1)

    def shadow(self):
        """A joined rank's side of one synchronised backward (``DDP.join``): every bucket all-reduced
        as zeros, in order; the others' averaged gradients land in ``.grad`` (a ZeroRedundancyOptimizer
        joined too steps its shard with them).  Returns the order it marked them in."""
        self.prepare()
        for i in range(len(self.params)):
            self.mark_ready(i, used=False)
        order = list(self.ready_order)
        self.finish()
        return order

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
            if self.comm_hook is not None:                 # a hook gets the gradients as they are
                if p.grad.array is not view:
                    xp.copyto(view, p.grad.array)
            elif p.grad.array is view:                     # gradient_as_bucket_view: already in place
                view *= self.scale
            else:
                xp.multiply(p.grad.array, self.scale, out=view)
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
            record = lambda *_, b=b, start=start: profiler.record(  # noqa: E731
                f"allreduce bucket {b.index}", "allreduce", start, profiler.now_us(), bytes=int(b.buffer.nbytes))
            if self.comm_hook is not None:
                b.work = self._run_hook(b)
                if profiler.enabled():
                    b.work.add_done_callback(record)   # (runs when the Future is seen complete)
            else:
                from distgraph import comm
                b.work = comm.all_reduce(wrap(b.buffer), group=self.group, async_op=True)
                if profiler.enabled():
                    b.work.then(record)
            self.next_launch += 1

    def _run_hook(self, b):
        fut = self.comm_hook(self.hook_state, GradBucket(b, b.index == len(self.buckets) - 1))
        if not isinstance(fut, Future):
            name = getattr(self.comm_hook, "__name__", repr(self.comm_hook))
            hint = " (for a collective's work handle: return work.get_future())" if hasattr(fut, "wait") else ""
            raise RuntimeError(f"DistributedDataParallel: the communication hook {name} must return a "
                               f"distgraph.futures.Future of the bucket's reduced gradients, got "
                               f"{type(fut).__name__}{hint}")
        return fut

    def _hook_result(self, b):
        """Wait for a hook's Future and copy the tensor it holds into the bucket."""
        value = b.work.wait()
        if isinstance(value, (list, tuple)) and len(value) >= 1:
            value = value[0]
        arr = value.array if isinstance(value, Tensor) else None
        grads = b.buffer[:b.numel]
        if arr is None or arr.size != b.numel:
            got = f"shape {tuple(arr.shape)}" if arr is not None else type(value).__name__
            raise RuntimeError(f"DistributedDataParallel: the communication hook's Future for bucket {b.index} must "
                               f"hold a tensor of the bucket's {b.numel} gradients (bucket.buffer()), got {got}")
        grads[...] = arr.reshape(-1)   # (a no-op copy when the hook gave back bucket.buffer() itself)

    def _reduce_flags(self):
        """With a hook: which parameters any rank used, in one all-reduce of every bucket's flags."""
        from distgraph import comm
        flags = np.array([u for b in self.buckets for u in b.used], dtype=np.int32)
        if self.world_size > 1:
            t = wrap(flags)
            comm.all_reduce(t, op=comm.ReduceOp.MAX, group=self.group)
            flags = t.array
        out, k = {}, 0
        for b in self.buckets:
            out[b.index] = [bool(f) for f in flags[k:k + len(b.params)]]
            k += len(b.params)
        return out

    def finish(self, write_back=True):
        """End of backward: complete every bucket and write gradients back (unless not ``write_back``).

        Returns the indices of parameters that this rank's backward did not reach."""
        unused = [i for i, r in enumerate(self.ready) if not r]
        for i in unused:
            self.mark_ready(i, used=False)
        hooked = self.comm_hook is not None
        for b in self.buckets:
            self._hook_result(b) if hooked else b.work.wait()
            self.timeline.append(("done", b.index))
        any_used = self._reduce_flags() if hooked else {}
        for b in (self.buckets if write_back else ()):
            # A parameter this rank used was used somewhere; only for the others is the
            # reduced flag read back -- one host read per such bucket, none usually.
            if hooked:
                used = any_used[b.index]
            else:
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
