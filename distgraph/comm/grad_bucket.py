"""``dist.GradBucket``: what a DDP communication hook receives (see
``DistributedDataParallel.register_comm_hook``).  Here, beside the collectives, so that hooks
(``distgraph.comm.algorithms.ddp_comm_hooks``) and their type annotations need no ``nn``."""
from __future__ import annotations

from distgraph.autograd.tensor import wrap

__all__ = ["GradBucket"]


class GradBucket:
    """What a communication hook receives (PyTorch's ``dist.GradBucket``)."""

    def __init__(self, bucket, last=False):
        self._b, self._last = bucket, last

    def index(self):
        """The bucket's place in launch order (0 is launched first)."""
        return self._b.index

    def is_last(self):
        """Whether this is the last bucket of the backward pass."""
        return self._last

    def buffer(self):
        """The bucket's gradients, flat, as this rank computed them (not divided by the world size); a
        view of the bucket, so in-place changes go into it."""
        return wrap(self._b.buffer[:self._b.numel])

    def set_buffer(self, tensor):
        """Copy ``tensor`` (of the bucket's size) into the bucket's gradients."""
        self._b.buffer[:self._b.numel] = tensor.array.reshape(-1)

    def gradients(self):
        """Each parameter's gradient, as views of the bucket's buffer (parameter order)."""
        return [wrap(v) for v in self._b.views]

    def parameters(self):
        return list(self._b.params)
