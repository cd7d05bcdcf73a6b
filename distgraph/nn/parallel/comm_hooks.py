"""Built-in DDP communication hooks (``ddp.register_comm_hook(state, hook)``)."""
from __future__ import annotations

from distgraph import backend
from distgraph.autograd.tensor import wrap


def allreduce_hook(state, bucket):
    """The default: all-reduce the (pre-divided) bucket as it is."""
    from distgraph import comm
    return comm.all_reduce(bucket.buffer(), group=state, async_op=True)


class _CastBack:
    def __init__(self, work, low, buffer):
        self.work, self.low, self.buffer = work, low, buffer

    def wait(self):
        self.work.wait()
        self.buffer[...] = self.low.astype(self.buffer.dtype)
        return True

    def is_completed(self):
        return self.work.is_completed()


def fp16_compress_hook(state, bucket):
    """All-reduce in float16 (half the bytes) and cast back; ``state`` is the process group or None."""
    from distgraph import comm
    buf = bucket.buffer().array
    low = buf.astype(backend.float16)
    work = comm.all_reduce(wrap(low), group=state, async_op=True)
    return _CastBack(work, low, buf)
