"""PyTorch's default DDP communication hooks, with the same names and contract.

A hook is ``hook(process_group, bucket) -> Future`` (see ``DistributedDataParallel.register_comm_hook``):
``process_group`` is the ``state`` given to ``register_comm_hook`` (None: the default group).
"""
from __future__ import annotations

from distgraph import backend
from distgraph.comm import collectives
from distgraph.comm import group as _group

__all__ = ["allreduce_hook", "fp16_compress_hook"]


def _size(process_group):
    return _group.get_world_size(process_group)


def allreduce_hook(process_group, bucket):
    """What DDP does without a hook: divide by the group size, all-reduce (sum), and hand the bucket back."""
    tensor = bucket.buffer()
    tensor.div_(_size(process_group))
    fut = collectives.all_reduce(tensor, group=process_group, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def fp16_compress_hook(process_group, bucket):
    """All-reduce in float16 (half the bytes): cast, divide by the group size, all-reduce, cast back into
    the bucket.  Gradients are rounded to float16's 11 significant bits on the way."""
    buffer = bucket.buffer()
    compressed = buffer.to(backend.float16).div_(_size(process_group))
    fut = collectives.all_reduce(compressed, group=process_group, async_op=True).get_future()

    def decompress(f):
        buffer.copy_(f.value()[0])
        return buffer
    return fut.then(decompress)
