"""``DistributedDataParallel``: data parallelism with gradient all-reduce overlapped with backward."""
from __future__ import annotations

import contextlib
import functools
import warnings
import weakref

import numpy as np

from distgraph import profiler
from distgraph.autograd import engine, grad_mode
from distgraph.autograd.function import _tracing
from distgraph.autograd.tensor import Tensor, wrap
from distgraph.comm.algorithms.join import Join, Joinable, JoinHook
from distgraph.nn.module import Module
from distgraph.nn.parallel.reducer import Reducer
from distgraph.utils.logging import get_logger

log = get_logger(__name__)


def _comm():
    from distgraph import comm
    return comm


class DistributedDataParallel(Module, Joinable):
    """Wrap ``module`` so that ``loss.backward()`` averages gradients across ranks.

    Construction broadcasts rank 0's parameters and buffers and checks that
    every rank wrapped the same model; backward fires one asynchronous
    all-reduce per bucket as soon as the bucket's gradients are ready, and
    the last one is waited for when backward ends, so ``optimizer.step()``
    sees averaged gradients.

    Warnings (these are the contract, as in PyTorch):

    * Every rank must build the same model, registering parameters in the
      same order, and call forward/backward the same number of times:
      construction, forward (with ``broadcast_buffers``) and backward are
      synchronisation points.
    * Gradients are reduced in bucket order, which starts from the *last*
      registered parameters; after the first iteration the buckets follow
      the order gradients actually became ready (rank 0 decides).
    * Parameters that a rank's backward does not reach contribute zeros; a
      parameter unused on every rank keeps ``grad=None``.  Without
      ``find_unused_parameters=True`` this still works (distgraph never hangs
      here, unlike PyTorch) but their buckets can only be sent when backward
      ends, and a warning names them once.  With the flag, each forward walks
      the graph from the outputs (cost: one pass over the graph) so that
      unused parameters are marked ready at once.

    Args:
        module: the model.
        bucket_cap_mb: bucket size cap in MiB (the first bucket is capped at 1 MiB).
        find_unused_parameters: walk the graph each forward to find parameters
            that will get no gradient.
        broadcast_buffers: copy rank 0's buffers to every rank at each forward.
        gradient_as_bucket_view: make ``.grad`` a view into the bucket (no copy back).
        process_group: the group to reduce over (default: the world).
        static_graph: accepted for PyTorch compatibility; skips the unused-parameter walk.
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        Joinable.__init__(self)
        self._divide_by_initial_world_size = True
        comm = _comm()
        if not comm.is_initialized():
            comm.init_process_group()  # "auto": a world of one under plain python
        self.module = module
        self.process_group = process_group
        self.rank = comm.get_rank(process_group)
        self.world_size = comm.get_world_size(process_group)
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters and not static_graph
        self.static_graph = static_graph
        self.require_backward_grad_sync = True
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError("DistributedDataParallel: the module has no parameter that requires grad")
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._check_same_model()
        self._sync_state(parameters=True)
        self.reducer = Reducer(self._params, process_group, self.world_size, int(bucket_cap_mb * 1024 * 1024),
                               gradient_as_bucket_view)
        self._check_bucket_layout()
        log.info("DistributedDataParallel: %d parameters in %d buckets (cap %g MiB), world size %d",
                 len(self._params), len(self.reducer.buckets), bucket_cap_mb, self.world_size)
        self._warned_unused = False
        self._pending_unused = []
        # The hooks hold the wrapper weakly and are removed with it, so a model wrapped
        # again (or no longer wrapped) does not keep reducing for a dead wrapper.
        me = weakref.ref(self)

        def ready(t, i):
            ddp = me()
            if ddp is not None:
                ddp._grad_ready(i)
        self._hook_handles = [p.register_post_accumulate_grad_hook(functools.partial(ready, i=i))
                              for i, p in enumerate(self._params)]

    def __del__(self):
        for h in getattr(self, "_hook_handles", ()):
            h.remove()

    # -------------------------------------------------------------- set-up
    def _rank_tag(self):
        return f"[rank {self.rank}/{self.world_size}]"

    def _check_same_model(self):
        comm = _comm()
        mine = [(n, tuple(p.shape), str(p.dtype)) for n, p in zip(self._names, self._params)]
        everyone = [None] * self.world_size
        comm.all_gather_object(everyone, mine, group=self.process_group)
        ref = everyone[0]
        for r, theirs in enumerate(everyone):
            if theirs == ref:
                continue
            if len(theirs) != len(ref):
                detail = f"rank 0 has {len(ref)} parameters, rank {r} has {len(theirs)}"
            else:
                k = next(k for k in range(len(ref)) if ref[k] != theirs[k])
                detail = (f"first difference at parameter {k}: rank 0 has {ref[k][0]} {ref[k][1]} {ref[k][2]}, "
                          f"rank {r} has {theirs[k][0]} {theirs[k][1]} {theirs[k][2]}")
            raise RuntimeError(f"{self._rank_tag()} DistributedDataParallel: ranks wrapped different models; "
                               f"{detail}. Build the same model, with parameters registered in the same order, "
                               "on every rank")

    def _check_bucket_layout(self):
        """Every rank must cut the gradients into the same buckets, or each bucket's all-reduce
        mixes different parameters (silently: the sizes may even agree).  Checked once per layout."""
        if self.world_size == 1:
            return
        mine = [list(idx) for idx in self.reducer.layout]
        everyone = [None] * self.world_size
        _comm().all_gather_object(everyone, (self.reducer.cap_bytes, mine), group=self.process_group)
        ref_cap, ref = everyone[0]
        for r, (cap, theirs) in enumerate(everyone):
            if theirs == ref:
                continue
            b = next((b for b in range(min(len(ref), len(theirs))) if ref[b] != theirs[b]), min(len(ref), len(theirs)))
            show = lambda layout: f"parameters {layout[b]}" if b < len(layout) else "no such bucket"  # noqa: E731
            raise RuntimeError(
                f"{self._rank_tag()} DistributedDataParallel: ranks cut the gradients into different buckets: "
                f"bucket {b} holds {show(ref)} on rank 0 (bucket_cap_mb={ref_cap / 2**20:g}) but {show(theirs)} on "
                f"rank {r} (bucket_cap_mb={cap / 2**20:g}); every rank would all-reduce different parameters "
                "together. Pass the same bucket_cap_mb on every rank")

    def _sync_state(self, parameters, src=0):
        """Broadcast ``src``'s parameters (at construction) and buffers (each forward)."""
        if self.world_size == 1:
            return
        comm = _comm()
        tensors = list(self._params) if parameters else []
        if parameters or self.broadcast_buffers:
            tensors += [b for b in self.module.buffers()]
        with grad_mode.no_grad():
            for t in tensors:
                comm.broadcast(t, src=src, group=self.process_group)

    def _syncs_buffers(self):
        return self.broadcast_buffers and self.world_size > 1 and any(True for _ in self.module.buffers())

    def _find_common_rank(self, rank, cond):
        """The largest ``rank`` among the ranks where ``cond`` holds (one all-reduce)."""
        box = wrap(np.array([rank if cond else -1], np.int64))
        _comm().all_reduce(box, op=_comm().ReduceOp.MAX, group=self.process_group)
        return int(box.array[0])

    def _requires_sync_flag(self, value):
        """All-reduce whether this iteration's backward synchronises (1) or not (0): a joined rank
        learns from it whether to shadow a backward."""
        flag = wrap(np.full(1, float(value), np.float32))
        work = _comm().all_reduce(flag, group=self.process_group, async_op=True)
        return work, flag

    # ------------------------------------------------------------ forward
    def forward(self, *inputs, **kwargs):
        start = profiler.now_us()
        joining = self._join_config.enable and self.world_size > 1
        if joining and _tracing.tracer is not None:    # the join collectives are not re-run by a replay
            _tracing.tracer.refuse("DistributedDataParallel.join(): its per-forward collectives run eagerly only")
        if joining:
            count = Join.notify_join_context(self)     # this rank still trains
            if count is not None and not self._divide_by_initial_world_size:
                self.reducer.live_ranks = count          # backward divides by the ranks still training
        if self.broadcast_buffers:
            # Under Join the buffers come from a rank still training (rank 0 may have joined)
            src = self._find_common_rank(self.rank, True) if joining and self._syncs_buffers() else 0
            self._sync_state(parameters=False, src=src)
        if joining:
            self._requires_sync_flag(self.require_backward_grad_sync and grad_mode.is_grad_enabled())
        out = self.module(*inputs, **kwargs)
        profiler.record("forward", "forward", start, profiler.now_us())
        if self.find_unused_parameters and grad_mode.is_grad_enabled() and self.require_backward_grad_sync:
            if _tracing.tracer is not None:
                _tracing.tracer.forward_effects.append("DDP(find_unused_parameters=True) notes the unused "
                                                       "parameters after each forward")
            reached = _reachable_leaves(out)
            self._pending_unused = [i for i, p in enumerate(self._params) if id(p) not in reached]
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Accumulate gradients locally; the first backward after the block synchronises the sum."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    # ----------------------------------------------------------- backward
    def _grad_ready(self, i):
        if not self.require_backward_grad_sync:
            return
        r = self.reducer
        if not r.active:
            self._backward_start = profiler.now_us()
            r.prepare()
            engine.queue_callback(self._finish_backward)
            for j in self._pending_unused:
                r.mark_ready(j, used=False)
            self._pending_unused = []
        r.mark_ready(i)

    def _finish_backward(self):
        r = self.reducer
        order = list(r.ready_order)
        # Backward's compute ends here (every gradient is in); what follows is waiting.
        end = profiler.now_us()
        profiler.record("backward", "backward", self._backward_start, end)
        unused = r.finish()
        profiler.record("wait for all-reduce", "wait", end, profiler.now_us())
        if unused and not self.find_unused_parameters and not self._warned_unused:
            self._warned_unused = True
            names = ", ".join(self._names[i] for i in unused)
            warnings.warn(f"{self._rank_tag()} DistributedDataParallel: backward did not reach parameter(s) {names}; "
                          "they were reduced as zeros when backward ended. Pass find_unused_parameters=True to "
                          "send them early (this is not an error in distgraph)", stacklevel=2)
        if not r.rebuilt:
            r.rebuilt = True
            self._rebuild(order)

    def _rebuild(self, order):
        """Re-bucket in the order gradients became ready, as rank 0 saw it."""
        comm = _comm()
        box = [order]
        if self.world_size > 1:
            comm.broadcast_object_list(box, src=0, group=self.process_group)
        order = box[0]
        if sorted(order) == list(range(len(self._params))):
            self.reducer.build(order)
            self._check_bucket_layout()
            log.info("DistributedDataParallel: buckets rebuilt in gradient-ready order: %s", self.reducer.layout)

    # ---------------------------------------------------------------- join
    def join(self, divide_by_initial_world_size=True, enable=True, throw_on_early_termination=False):
        """A context manager for training on uneven inputs (PyTorch's ``DDP.join``): a rank whose loop
        has ended shadows the others' forward/backward collectives until all have joined; then every
        rank takes the parameters of a rank that joined last.

        Args:
            divide_by_initial_world_size: divide gradients by the world size even while some ranks
                have joined (their zeros are averaged in); False divides by the ranks still training.
            enable: False: a no-op context (inputs known to be even).
            throw_on_early_termination: raise ``RuntimeError`` on every rank as soon as one rank runs out
                of inputs.
        """
        return Join([self], enable, throw_on_early_termination,
                    divide_by_initial_world_size=divide_by_initial_world_size)

    def join_hook(self, **kwargs):
        return _DDPJoinHook(self, kwargs.get("divide_by_initial_world_size", True))

    @property
    def join_device(self):
        return self._params[0].device

    @property
    def join_process_group(self):
        return self.process_group

    # ------------------------------------------------------------- extras
    def register_comm_hook(self, state, hook):
        """Replace each bucket's all-reduce by ``hook(state, bucket)`` (PyTorch's contract).

        ``bucket`` is a :class:`GradBucket`: ``bucket.buffer()`` holds this rank's gradients, flat
        and *not* divided by the world size.  The hook returns a :class:`distgraph.futures.Future`
        whose value (a tensor, or a list whose first item is one) is the bucket's reduced gradients,
        e.g. ``dist.all_reduce(t.div_(n), async_op=True).get_future().then(lambda f: f.value()[0])``;
        ready-made ones are in ``distgraph.distributed.algorithms.ddp_comm_hooks.default_hooks``.

        Raises:
            RuntimeError: a hook is already registered (as PyTorch, only one per model).
        """
        if self.reducer.comm_hook is not None:
            raise RuntimeError("DistributedDataParallel.register_comm_hook: a communication hook is already "
                               "registered, and only one can be (as in PyTorch); wrap the model again to change it")
        if not callable(hook):
            raise TypeError(f"register_comm_hook: expected a callable hook(state, bucket), got {type(hook).__name__}")
        self.reducer.comm_hook, self.reducer.hook_state = hook, state

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        return super().state_dict(destination, prefix, keep_vars)


class _DDPJoinHook(JoinHook):
    """What a joined rank's DDP does while others train: one forward's buffer broadcast, and, when
    their backward synchronises, one backward's bucket all-reduces, with zeros (the averages land in
    its ``.grad``, where PyTorch leaves the last ones); at the end every rank takes the parameters
    (and buffers) of a rank that joined last."""

    def __init__(self, ddp, divide_by_initial_world_size):
        self.ddp = ddp
        ddp._divide_by_initial_world_size = divide_by_initial_world_size

    def main_hook(self):
        ddp = self.ddp
        if ddp.broadcast_buffers:
            src = ddp._find_common_rank(ddp.rank, False) if ddp._syncs_buffers() else 0
            ddp._sync_state(parameters=False, src=src)
        work, flag = ddp._requires_sync_flag(0)
        work.wait()
        if flag.array[0] == 0:          # their forward was under no_sync() or no_grad: no backward to match
            return
        order = ddp.reducer.shadow()
        if not ddp.reducer.rebuilt:
            ddp.reducer.rebuilt = True
            ddp._rebuild(order)

    def post_hook(self, is_last_joiner):
        ddp = self.ddp
        if ddp.world_size > 1:
            ddp._sync_state(parameters=True, src=ddp._find_common_rank(ddp.rank, is_last_joiner))


def _reachable_leaves(out):
    """ids of the leaves (and nodes) reachable from the graph of ``out`` (tensors in nested outputs),
    found by the engine's own first pass."""
    roots = []

    def add(o):
        if isinstance(o, Tensor):
            if o.grad_fn is not None or o.requires_grad:
                roots.append(o)
        elif isinstance(o, (list, tuple)):
            for x in o:
                add(x)
        elif isinstance(o, dict):
            for x in o.values():
                add(x)
    add(out)
    return set(engine.dependencies(roots))
