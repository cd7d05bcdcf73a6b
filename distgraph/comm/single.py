"""The single-process group: a world of one, with no MPI at all.

Every collective of one rank is the identity or a copy, so a script written for
many ranks runs unchanged under plain ``python train.py``.  ``send``/``recv``
to oneself are errors (they would deadlock in any real backend too).
"""
from __future__ import annotations

import numpy as np

from distgraph.comm.base import CommError, CompletedWork, ProcessGroup, ReduceOp

__all__ = ["SingleProcessGroup"]


def _copy(out, x):
    out.reshape(-1)[...] = x.reshape(-1)


class SingleProcessGroup(ProcessGroup):
    """World size 1: rank 0 of 1, local rank 0 of 1."""

    backend = "single"

    def __init__(self, timeout: float = 1800.0):
        super().__init__(0, 1, [0], timeout)

    def _done(self):
        return CompletedWork(self.last, self)

    def all_gather_fingerprints(self, fp):
        return fp[None, :]

    def all_reduce(self, x, op):
        # every ReduceOp over one rank leaves x as it is
        return self._done()

    def broadcast(self, x, root):
        return self._done()

    def all_gather(self, out, x):
        _copy(out, x)
        return self._done()

    def reduce_scatter(self, out, x, op):
        _copy(out, x)
        return self._done()

    def reduce(self, x, root, op):
        return self._done()

    def gather(self, out, x, root):
        _copy(out, x)
        return self._done()

    def scatter(self, out, x, root):
        _copy(out, x)
        return self._done()

    def all_to_all(self, out, x, out_counts, in_counts):
        _copy(out, x)
        return self._done()

    def send(self, x, dst, tag):
        raise CommError("[rank 0/1] send: a world of one has no peer (dst=0 is this rank); "
                        "launch with `mpiexec -n 2` or more")

    def recv(self, x, src, tag):
        raise CommError("[rank 0/1] recv: a world of one has no peer (src=0 is this rank); "
                        "launch with `mpiexec -n 2` or more")

    def barrier(self):
        return self._done()

    def broadcast_bytes(self, data, root):
        return data

    def all_gather_bytes(self, data):
        return [data]

    def new_group(self, ranks):
        return SingleProcessGroup(self.timeout) if 0 in ranks else None


def reduce_arrays(arrays, op: ReduceOp):
    """NumPy reference of a reduction over ranks (used by tests and the MPI staging path)."""
    stack = np.stack(arrays)
    bitwise = {ReduceOp.BAND: np.bitwise_and, ReduceOp.BOR: np.bitwise_or, ReduceOp.BXOR: np.bitwise_xor}
    if op in bitwise:
        return bitwise[op].reduce(stack, axis=0)
    if stack.dtype == np.bool_:
        return stack.any(0) if op in (ReduceOp.SUM, ReduceOp.MAX) else stack.all(0)
    if op is ReduceOp.SUM:
        return stack.sum(0, dtype=stack.dtype)
    if op is ReduceOp.AVG:
        return (stack.sum(0, dtype=stack.dtype) / len(arrays)).astype(stack.dtype)
    if op is ReduceOp.PRODUCT:
        return stack.prod(0, dtype=stack.dtype)
    return stack.max(0) if op is ReduceOp.MAX else stack.min(0)
