"""Collectives on Tensors, with ``torch.distributed``'s names, signatures and semantics.

Every function here is collective over its group: every member must call it,
in the same order, with tensors of matching shape and dtype (run with
``DISTGRAPH_DEBUG=1`` to have that checked).  Results are written in place
into ``tensor.array``, as in PyTorch, and the tensor's version counter is
bumped so that autograd notices the write.  ``src``/``dst`` are world ranks,
also on sub-groups.  With ``async_op=True`` a function returns a
:class:`~distgraph.comm.base.Work`; call ``wait()`` before reading the result.
"""
from __future__ import annotations

import pickle

import numpy as np

from distgraph import backend
from distgraph.autograd.tensor import Tensor, bump_version, wrap
from distgraph.comm import group as _group
from distgraph.comm import daemon
from distgraph.comm.base import BITWISE_OPS, CommError, ReduceOp

__all__ = ["all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter",
           "reduce_scatter_tensor", "reduce", "gather", "scatter", "all_to_all_single", "send",
           "recv", "isend", "irecv", "barrier", "broadcast_object_list", "all_gather_object",
           "gather_object", "scatter_object_list", "P2POp", "batch_isend_irecv", "monitored_barrier",
           "all_to_all", "send_object_list", "recv_object_list"]


# ------------------------------------------------------------------ checks
def _array(t, pg, what, name="tensor"):
    if not isinstance(t, Tensor):
        raise TypeError(f"{pg.tag()} {what}: expected {name} to be a dg.Tensor, got "
                        f"{type(t).__name__}")
    x = t.array
    if not x.flags.c_contiguous:
        raise CommError(f"{pg.tag()} {what}: expected {name} to be contiguous, got a strided view "
                        f"of shape {t.shape}; pass `{name}.contiguous()` and copy the result back")
    return x


def _same(ref, t, pg, what, name):
    """``t`` must be a tensor like ``ref`` (same device and dtype)."""
    x = _array(t, pg, what, name)
    if t.device != ref.device or x.dtype != ref.array.dtype:
        raise CommError(f"{pg.tag()} {what}: expected {name} on {ref.device} with dtype "
                        f"{ref.array.dtype}, got {t.device} {x.dtype}; every tensor of one "
                        "collective must share device and dtype")
    return x


def _list(ts, n, ref, pg, what, name, shape=None):
    if not isinstance(ts, (list, tuple)) or len(ts) != n:
        got = len(ts) if isinstance(ts, (list, tuple)) else type(ts).__name__
        raise CommError(f"{pg.tag()} {what}: expected {name} to be a list of {n} tensors (one per "
                        f"rank of the group), got {got}")
    xs = [_same(ref, t, pg, what, f"{name}[{i}]") for i, t in enumerate(ts)]
    want = ref.shape if shape is None else shape
    for i, t in enumerate(ts):
        if t.shape != want:
            raise CommError(f"{pg.tag()} {what}: expected {name}[{i}] of shape {want}, got {t.shape}")
    return xs


def _op(op, x, pg, what):
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{pg.tag()} {what}: expected op to be a dg.comm.ReduceOp, got {op!r}")
    if op is ReduceOp.AVG and x.dtype.kind not in "f":
        raise CommError(f"{pg.tag()} {what}: ReduceOp.AVG needs a floating tensor, got {x.dtype}; "
                        "use SUM and divide, or convert to float first")
    if op in BITWISE_OPS and x.dtype.kind not in "iub":
        raise CommError(f"{pg.tag()} {what}: ReduceOp.{op.name} needs an integer or bool tensor, got {x.dtype}")
    return op


def _peer(rank, pg, what, name):
    """World rank -> rank within ``pg``, with a clear error when out of range."""
    if not isinstance(rank, (int, np.integer)) or isinstance(rank, bool):
        raise TypeError(f"{pg.tag()} {what}: expected {name} to be an int rank, got {rank!r}")
    if rank not in pg.ranks:
        raise CommError(f"{pg.tag()} {what}: expected {name} to be one of the group's world ranks "
                        f"{pg.ranks}, got {rank}")
    return pg.ranks.index(int(rank))


def _root(src, group_src, pg, what, name="src"):
    if group_src is not None:
        if src is not None:
            raise CommError(f"{pg.tag()} {what}: pass {name} or group_{name}, not both")
        if not 0 <= group_src < pg.size:
            raise CommError(f"{pg.tag()} {what}: expected 0 <= group_{name} < {pg.size}, "
                            f"got {group_src}")
        return group_src
    return _peer(0 if src is None else src, pg, what, name)


def _pick(pg, x):
    """NCCL for GPU arrays when the group has it; MPI (or single) otherwise."""
    if pg.gpu is not None and not isinstance(x, np.ndarray):
        return pg.gpu
    return pg


def _finish(work, async_op, written):
    for t in written:
        bump_version(t)  # the collective overwrote the tensor in place
    work._result = list(written)
    if async_op:
        if not work._done and work.pg.size > 1:
            daemon.daemon().add(work)  # guarantees progress without the caller polling
        return work
    work.wait()
    return None


# ------------------------------------------------------------- collectives
def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``tensor`` over the group, in place, on every rank.

    Every rank must call this, in the same order, with the same shape and dtype.

    Args:
        tensor: input and output.
        op: a :class:`ReduceOp`; ``AVG`` is the sum divided by the group size.
        group: a group from :func:`new_group` (default: the world).
        async_op: return a work handle instead of waiting.
    """
    pg = _group.resolve(group, "all_reduce")
    if pg is None:
        return None
    x = _array(tensor, pg, "all_reduce")
    op = _op(op, x, pg, "all_reduce")
    pg = _pick(pg, x)
    pg.begin("all_reduce", x, op=op)
    return _finish(pg.all_reduce(x, op), async_op, [tensor])


def broadcast(tensor, src=None, group=None, async_op=False, group_src=None):
    """Copy ``tensor`` of rank ``src`` into ``tensor`` on every rank.

    Every rank must call this, in the same order, with the same shape, dtype and ``src``.
    """
    pg = _group.resolve(group, "broadcast")
    if pg is None:
        return None
    x = _array(tensor, pg, "broadcast")
    root = _root(src, group_src, pg, "broadcast")
    pg = _pick(pg, x)
    pg.begin("broadcast", x, root=root)
    return _finish(pg.broadcast(x, root), async_op, [tensor])


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Fill ``tensor_list[r]`` with rank ``r``'s ``tensor``, on every rank.

    Every rank must call this, in the same order, with the same shape and dtype.
    """
    pg = _group.resolve(group, "all_gather")
    if pg is None:
        return None
    x = _array(tensor, pg, "all_gather")
    outs = _list(tensor_list, pg.size, tensor, pg, "all_gather", "tensor_list")
    xp = backend.get_array_module(x)
    buf = xp.empty((pg.size,) + x.shape, dtype=x.dtype)
    pg = _pick(pg, x)
    pg.begin("all_gather", x)
    work = pg.all_gather(buf, x)

    def scatter_out():
        for i, o in enumerate(outs):
            o[...] = buf[i]
    work.then(scatter_out)
    return _finish(work, async_op, list(tensor_list))


def all_gather_into_tensor(output_tensor, input_tensor, group=None, async_op=False):
    """Concatenate every rank's ``input_tensor`` along dim 0 (or stack it) into ``output_tensor``.

    ``output_tensor`` has ``world_size * input.numel()`` elements: shape
    ``(world_size * n, ...)`` or ``(world_size, n, ...)``.  Every rank must call
    this, in the same order, with the same shapes and dtype.
    """
    pg = _group.resolve(group, "all_gather_into_tensor")
    if pg is None:
        return None
    x = _array(input_tensor, pg, "all_gather_into_tensor", "input_tensor")
    out = _same(input_tensor, output_tensor, pg, "all_gather_into_tensor", "output_tensor")
    if out.size != pg.size * x.size:
        raise CommError(f"{pg.tag()} all_gather_into_tensor: expected output_tensor with "
                        f"{pg.size} x {x.size} = {pg.size * x.size} elements, got shape {out.shape}")
    pg = _pick(pg, x)
    pg.begin("all_gather_into_tensor", x)
    return _finish(pg.all_gather(out, x), async_op, [output_tensor])


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduce ``input_list[r]`` over ranks into ``output`` on rank ``r``.

    Every rank must call this, in the same order, with the same shapes and dtype.
    """
    pg = _group.resolve(group, "reduce_scatter")
    if pg is None:
        return None
    out = _array(output, pg, "reduce_scatter", "output")
    xs = _list(input_list, pg.size, output, pg, "reduce_scatter", "input_list")
    op = _op(op, out, pg, "reduce_scatter")
    x = backend.get_array_module(out).stack(xs) if xs else out
    pg = _pick(pg, out)
    pg.begin("reduce_scatter", out, op=op)
    return _finish(pg.reduce_scatter(out, x, op), async_op, [output])


def reduce_scatter_tensor(output, input, op=ReduceOp.SUM, group=None, async_op=False):  # noqa: A002
    """Reduce ``input`` (``world_size`` blocks along dim 0) and give block ``r`` to rank ``r``.

    Every rank must call this, in the same order, with the same shapes and dtype.
    """
    pg = _group.resolve(group, "reduce_scatter_tensor")
    if pg is None:
        return None
    out = _array(output, pg, "reduce_scatter_tensor", "output")
    x = _same(output, input, pg, "reduce_scatter_tensor", "input")
    if x.size != pg.size * out.size:
        raise CommError(f"{pg.tag()} reduce_scatter_tensor: expected input with {pg.size} x "
                        f"{out.size} = {pg.size * out.size} elements, got shape {x.shape}")
    op = _op(op, out, pg, "reduce_scatter_tensor")
    pg = _pick(pg, out)
    pg.begin("reduce_scatter_tensor", out, op=op)
    return _finish(pg.reduce_scatter(out, x, op), async_op, [output])


def reduce(tensor, dst=None, op=ReduceOp.SUM, group=None, async_op=False, group_dst=None):
    """Reduce ``tensor`` over the group into ``tensor`` on rank ``dst`` (others keep theirs).

    Every rank must call this, in the same order, with the same shape, dtype and ``dst``.
    """
    pg = _group.resolve(group, "reduce")
    if pg is None:
        return None
    x = _array(tensor, pg, "reduce")
    root = _root(dst, group_dst, pg, "reduce", "dst")
    op = _op(op, x, pg, "reduce")
    pg = _pick(pg, x)
    pg.begin("reduce", x, root=root, op=op)
    return _finish(pg.reduce(x, root, op), async_op, [tensor] if pg.rank == root else [])


def gather(tensor, gather_list=None, dst=None, group=None, async_op=False, group_dst=None):
    """Collect every rank's ``tensor`` into ``gather_list`` on rank ``dst``.

    ``gather_list`` is a list of ``world_size`` tensors on ``dst`` and ``None``
    elsewhere.  Every rank must call this, in the same order, with the same
    shape, dtype and ``dst``.
    """
    pg = _group.resolve(group, "gather")
    if pg is None:
        return None
    x = _array(tensor, pg, "gather")
    root = _root(dst, group_dst, pg, "gather", "dst")
    outs, buf, written = None, None, []
    if pg.rank == root:
        outs = _list(gather_list, pg.size, tensor, pg, "gather", "gather_list")
        buf = backend.get_array_module(x).empty((pg.size,) + x.shape, dtype=x.dtype)
        written = list(gather_list)
    elif gather_list:
        raise CommError(f"{pg.tag()} gather: gather_list must be None on ranks other than dst="
                        f"{pg.ranks[root]}, got a list of {len(gather_list)}")
    pg = _pick(pg, x)
    pg.begin("gather", x, root=root)
    work = pg.gather(buf, x, root)
    if outs is not None:
        def scatter_out():
            for i, o in enumerate(outs):
                o[...] = buf[i]
        work.then(scatter_out)
    return _finish(work, async_op, written)


def scatter(tensor, scatter_list=None, src=None, group=None, async_op=False, group_src=None):
    """Give ``scatter_list[r]`` of rank ``src`` to rank ``r``'s ``tensor``.

    Every rank must call this, in the same order, with the same shape, dtype and ``src``.
    """
    pg = _group.resolve(group, "scatter")
    if pg is None:
        return None
    out = _array(tensor, pg, "scatter")
    root = _root(src, group_src, pg, "scatter")
    x = None
    if pg.rank == root:
        xs = _list(scatter_list, pg.size, tensor, pg, "scatter", "scatter_list")
        x = backend.get_array_module(out).stack(xs)
    elif scatter_list:
        raise CommError(f"{pg.tag()} scatter: scatter_list must be None on ranks other than src="
                        f"{pg.ranks[root]}, got a list of {len(scatter_list)}")
    pg = _pick(pg, out)
    pg.begin("scatter", out, root=root)
    return _finish(pg.scatter(out, x, root), async_op, [tensor])


def all_to_all_single(output, input, output_split_sizes=None, input_split_sizes=None,  # noqa: A002
                      group=None, async_op=False):
    """Split ``input`` along dim 0, send block ``r`` to rank ``r``, concatenate what arrives.

    Without split sizes, dim 0 is split evenly.  Every rank must call this, in the
    same order; rank ``i``'s ``input_split_sizes[j]`` must equal rank ``j``'s
    ``output_split_sizes[i]``.
    """
    what = "all_to_all_single"
    pg = _group.resolve(group, what)
    if pg is None:
        return None
    out = _array(output, pg, what, "output")
    x = _same(output, input, pg, what, "input")
    if x.shape[1:] != out.shape[1:]:
        raise CommError(f"{pg.tag()} {what}: expected input and output to agree beyond dim 0, got "
                        f"{x.shape} and {out.shape}")
    row = int(np.prod(x.shape[1:], dtype=np.int64))
    counts = []
    for name, splits, arr in (("output", output_split_sizes, out), ("input", input_split_sizes, x)):
        if splits is None:
            if arr.shape[0] % pg.size:
                raise CommError(f"{pg.tag()} {what}: {name} dim 0 ({arr.shape[0]}) does not split "
                                f"evenly over {pg.size} ranks; pass {name}_split_sizes")
            splits = [arr.shape[0] // pg.size] * pg.size
        splits = [int(s) for s in splits]
        if len(splits) != pg.size or sum(splits) != arr.shape[0] or min(splits) < 0:
            raise CommError(f"{pg.tag()} {what}: expected {name}_split_sizes of {pg.size} "
                            f"non-negative ints summing to {arr.shape[0]}, got {splits}")
        counts.append([s * row for s in splits])
    pg = _pick(pg, x)
    pg.begin(what)  # shapes legitimately differ across ranks: no shape in the fingerprint
    return _finish(pg.all_to_all(out, x, counts[0], counts[1]), async_op, [output])


def all_to_all(output_tensor_list, input_tensor_list, group=None, async_op=False):
    """Send ``input_tensor_list[r]`` to rank ``r``; ``output_tensor_list[r]`` receives rank ``r``'s.

    Every rank must call this, in the same order; the tensors may differ in shape (rank ``i``'s
    ``input_tensor_list[j]`` and rank ``j``'s ``output_tensor_list[i]`` hold as many elements) but
    share one dtype and device.  Carried as one all-to-all of the flattened tensors.
    """
    what = "all_to_all"
    pg = _group.resolve(group, what)
    if pg is None:
        return None
    for name, ts in (("output_tensor_list", output_tensor_list), ("input_tensor_list", input_tensor_list)):
        if not isinstance(ts, (list, tuple)) or len(ts) != pg.size:
            raise CommError(f"{pg.tag()} {what}: expected {name} to be a list of {pg.size} tensors (one per "
                            f"rank), got {type(ts).__name__} of {len(ts) if hasattr(ts, '__len__') else '?'}")
    ref = input_tensor_list[0]
    ins = [_same(ref, t, pg, what, "input_tensor_list") for t in input_tensor_list]
    outs = [_same(ref, t, pg, what, "output_tensor_list") for t in output_tensor_list]
    xp = backend.get_array_module(ins[0])
    x = xp.concatenate([a.reshape(-1) for a in ins])
    out = xp.empty(sum(a.size for a in outs), x.dtype)
    pg = _pick(pg, x)
    pg.begin(what)   # (sizes legitimately differ across ranks: no shape in the fingerprint)
    work = pg.all_to_all(out, x, [a.size for a in outs], [a.size for a in ins])

    def unpack():
        k = 0
        for a in outs:
            a[...] = out[k:k + a.size].reshape(a.shape)
            k += a.size
    work.then(unpack)
    return _finish(work, async_op, list(output_tensor_list))


def barrier(group=None, async_op=False, device_ids=None):
    """Block until every rank of the group has called it. Every rank must call this, in the same order."""
    pg = _group.resolve(group, "barrier")
    if pg is None:
        return None
    pg.begin("barrier")
    return _finish(pg.barrier(), async_op, [])


def monitored_barrier(group=None, timeout=None, wait_all_ranks=False):
    """A barrier that must complete within ``timeout`` (a ``timedelta`` or seconds; the group's timeout
    when None).  As PyTorch's, it names the ranks that did not arrive; here every rank's wait ends the
    job with that report (the comm layer's timeout) rather than raising on rank 0 only."""
    work = barrier(group, async_op=True)
    if work is not None:   # (None: this rank is not in the group)
        work.wait(timeout=timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout)
    return None


# ------------------------------------------------------------ point to point
def _p2p(tensor, peer, group, tag, what, name):
    pg = _group.resolve(group, what)
    if pg is None:
        return None, None, None
    x = _array(tensor, pg, what)
    if peer is None:
        if name != "src":
            raise CommError(f"{pg.tag()} {what}: expected {name} to be a rank, got None")
        if _pick(pg, x) is not pg or pg.size == 1:
            raise CommError(f"{pg.tag()} {what}: receiving from any source (src=None) needs the MPI backend, "
                            "CPU tensors and another rank; pass src=")
        return pg, x, None
    rank = _peer(peer, pg, what, name)
    if rank == pg.rank:
        raise CommError(f"{pg.tag()} {what}: {name}={peer} is this rank; a rank cannot "
                        "send to or receive from itself")
    return _pick(pg, x), x, rank


def isend(tensor, dst, group=None, tag=0):
    """Start sending ``tensor`` to rank ``dst``; returns a work handle.

    Rank ``dst`` must post a matching ``recv``/``irecv`` (same tag, shape, dtype).
    """
    pg, x, rank = _p2p(tensor, dst, group, tag, "isend", "dst")
    return None if pg is None else _finish(pg.send(x, rank, tag), True, [])


def irecv(tensor, src=None, group=None, tag=0):
    """Start receiving into ``tensor`` from rank ``src`` (any rank when None: after ``wait()``,
    ``work.source_rank()`` names the sender); returns a work handle."""
    pg, x, rank = _p2p(tensor, src, group, tag, "irecv", "src")
    return None if pg is None else _finish(pg.recv(x, rank, tag), True, [tensor])


def send(tensor, dst, group=None, tag=0):
    """Send ``tensor`` to rank ``dst`` and wait until the buffer may be reused."""
    pg, x, rank = _p2p(tensor, dst, group, tag, "send", "dst")
    if pg is not None:
        _finish(pg.send(x, rank, tag), False, [])


def recv(tensor, src=None, group=None, tag=0):
    """Receive into ``tensor`` from rank ``src``, or from any rank when ``src`` is None
    (MPI backend); returns the sender's rank, as PyTorch does."""
    pg, x, rank = _p2p(tensor, src, group, tag, "recv", "src")
    if pg is None:
        return -1
    work = pg.recv(x, rank, tag)
    _finish(work, False, [tensor])
    return work.source_rank() if src is None else src


def send_object_list(object_list, dst=None, group=None, device=None, group_dst=None):
    """Send the (pickled) objects of ``object_list`` to rank ``dst``, which calls ``recv_object_list``
    with a list of as many slots."""
    pg = _group.resolve(group, "send_object_list")
    if pg is None:
        return None
    dst = pg.ranks[_root(dst, group_dst, pg, "send_object_list", "dst")]
    pickles = [pickle.dumps(o) for o in object_list]
    send(wrap(np.array([len(b) for b in pickles], np.int64)), dst, group)
    send(wrap(np.frombuffer(b"".join(pickles), np.uint8).copy()), dst, group)
    return None


def recv_object_list(object_list, src=None, group=None, device=None, group_src=None):
    """Fill ``object_list`` with the objects rank ``src`` sent with ``send_object_list`` (from any rank
    when None); returns the sender's rank, as PyTorch does.  Unpickles what arrives: trusted peers only."""
    pg = _group.resolve(group, "recv_object_list")
    if pg is None:
        return -1
    if src is not None or group_src is not None:
        src = pg.ranks[_root(src, group_src, pg, "recv_object_list")]
    sizes = wrap(np.zeros(len(object_list), np.int64))
    sender = recv(sizes, src, group)
    payload = wrap(np.empty(int(sizes.array.sum()), np.uint8))
    recv(payload, sender, group)
    data, k = payload.array.tobytes(), 0
    for i, n in enumerate(sizes.array.tolist()):
        object_list[i] = pickle.loads(data[k:k + n])
        k += n
    return sender


def _tag(group):
    """``"[rank r/N] "`` of ``group`` (the default group when None), or nothing before init."""
    if not _group.is_initialized():
        return ""
    pg = _group.resolve(group, "P2POp")
    return "" if pg is None else pg.tag() + " "


class P2POp:
    """One point-to-point operation for :func:`batch_isend_irecv`: ``op`` is :func:`isend` or
    :func:`irecv` (torch.distributed's class and arguments)."""

    def __init__(self, op, tensor, peer=None, group=None, tag=0, group_peer=None):
        if op not in (isend, irecv):
            raise ValueError(f"{_tag(group)}P2POp: expected op to be distgraph.distributed.isend or irecv, "
                             f"got {op!r}")
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{_tag(group)}P2POp: expected a Tensor, got {type(tensor).__name__}")
        if (peer is None) == (group_peer is None):
            raise ValueError(f"{_tag(group)}P2POp: pass exactly one of peer (a global rank) and group_peer "
                             "(a rank in group)")
        self.op, self.tensor, self.group, self.tag = op, tensor, group, tag
        self.peer, self.group_peer = peer, group_peer

    def __repr__(self):
        peer = f"peer={self.peer}" if self.peer is not None else f"group_peer={self.group_peer}"
        return f"P2POp({self.op.__name__}, {peer}, shape={tuple(self.tensor.shape)})"


def batch_isend_irecv(p2p_op_list):
    """Start every send and receive of ``p2p_op_list`` (:class:`P2POp` items) and return their works,
    in the list's order; ``wait()`` each before reading a received tensor.  Sends and receives are all
    non-blocking, so a ring (each rank sends to the next and receives from the previous) cannot
    deadlock, as in PyTorch."""
    if not isinstance(p2p_op_list, (list, tuple)) or not p2p_op_list or \
            not all(isinstance(p, P2POp) for p in p2p_op_list):
        raise ValueError(f"{_tag(None)}batch_isend_irecv: expected a non-empty list of P2POp, got "
                         f"{p2p_op_list!r:.80}")
    works = []
    for p in p2p_op_list:
        peer = p.peer
        if peer is None:
            pg = _group.resolve(p.group, "batch_isend_irecv")
            peer = None if pg is None else pg.ranks[_root(None, p.group_peer, pg, "batch_isend_irecv", "peer")]
        works.append(p.op(p.tensor, peer, group=p.group, tag=p.tag))
    return works


# ---------------------------------------------------------------- objects
def broadcast_object_list(object_list, src=None, group=None, device=None, group_src=None):
    """Replace the items of ``object_list`` on every rank with those of rank ``src`` (pickled).

    Every rank must call this, in the same order, with a list of the same length.
    Like PyTorch, it unpickles what rank ``src`` sent: only use it with trusted peers.
    """
    pg = _group.resolve(group, "broadcast_object_list")
    if pg is None:
        return None
    if not isinstance(object_list, list):
        raise TypeError(f"{pg.tag()} broadcast_object_list: expected a list, got "
                        f"{type(object_list).__name__}")
    root = _root(src, group_src, pg, "broadcast_object_list")
    pg.begin("broadcast_object_list")
    data = pickle.dumps(object_list) if pg.rank == root else None
    got = pickle.loads(pg.broadcast_bytes(data, root))
    if len(got) != len(object_list):
        raise CommError(f"{pg.tag()} broadcast_object_list: rank {pg.ranks[root]} sent "
                        f"{len(got)} objects, this rank's list has {len(object_list)}")
    object_list[:] = got
    return None


def all_gather_object(object_list, obj, group=None):
    """Fill ``object_list[r]`` with rank ``r``'s ``obj`` (pickled), on every rank.

    Every rank must call this, in the same order; ``object_list`` has ``world_size`` slots.
    """
    pg = _group.resolve(group, "all_gather_object")
    if pg is None:
        return None
    if not isinstance(object_list, list) or len(object_list) != pg.size:
        raise CommError(f"{pg.tag()} all_gather_object: expected object_list to be a list of "
                        f"{pg.size} slots, got {object_list!r:.60}")
    pg.begin("all_gather_object")
    object_list[:] = [pickle.loads(b) for b in pg.all_gather_bytes(pickle.dumps(obj))]
    return None


def gather_object(obj, object_gather_list=None, dst=None, group=None, group_dst=None):
    """On rank ``dst`` (0 by default), fill ``object_gather_list[r]`` with rank ``r``'s ``obj`` (pickled);
    the other ranks pass ``object_gather_list=None``.

    Every rank must call this, in the same order.  Like PyTorch, it unpickles what the other ranks
    sent: only use it with trusted peers.  (Carried as an all-gather of the pickles: objects are meant
    to be small.)
    """
    pg = _group.resolve(group, "gather_object")
    if pg is None:
        return None
    root = _root(dst, group_dst, pg, "gather_object", "dst")
    if pg.rank == root and (not isinstance(object_gather_list, list) or len(object_gather_list) != pg.size):
        raise CommError(f"{pg.tag()} gather_object: expected object_gather_list on the destination rank to be "
                        f"a list of {pg.size} slots, got {object_gather_list!r:.60}")
    pg.begin("gather_object")
    got = pg.all_gather_bytes(pickle.dumps(obj))
    if pg.rank == root:
        object_gather_list[:] = [pickle.loads(b) for b in got]
    return None


def scatter_object_list(scatter_object_output_list, scatter_object_input_list=None, src=None, group=None,
                        group_src=None):
    """Set ``scatter_object_output_list[0]`` on rank ``r`` to item ``r`` of rank ``src``'s
    ``scatter_object_input_list`` (pickled); the other ranks pass ``None`` as the input list.

    Every rank must call this, in the same order.  Like PyTorch, it unpickles what rank ``src`` sent:
    only use it with trusted peers.
    """
    pg = _group.resolve(group, "scatter_object_list")
    if pg is None:
        return None
    if not isinstance(scatter_object_output_list, list) or not scatter_object_output_list:
        raise CommError(f"{pg.tag()} scatter_object_list: expected scatter_object_output_list to be a list "
                        f"with at least one slot, got {scatter_object_output_list!r:.60}")
    root = _root(src, group_src, pg, "scatter_object_list")
    if pg.rank == root and (not isinstance(scatter_object_input_list, (list, tuple))
                            or len(scatter_object_input_list) != pg.size):
        raise CommError(f"{pg.tag()} scatter_object_list: expected scatter_object_input_list on the source "
                        f"rank to hold {pg.size} objects, got {scatter_object_input_list!r:.60}")
    pg.begin("scatter_object_list")
    data = pickle.dumps([pickle.dumps(o) for o in scatter_object_input_list]) if pg.rank == root else None
    scatter_object_output_list[0] = pickle.loads(pickle.loads(pg.broadcast_bytes(data, root))[pg.rank])
    return None
