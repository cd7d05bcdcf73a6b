"""Process groups and collectives over MPI (mpi4py), NCCL (CuPy) and a single-process group.

The names, signatures and semantics are ``torch.distributed``'s::

    from distgraph import comm
    comm.init_process_group()            # "auto": MPI under mpiexec/srun, a world of one otherwise
    comm.all_reduce(t, op=comm.ReduceOp.AVG)
    work = comm.all_reduce(g, async_op=True); ...; work.wait()
    comm.destroy_process_group()

Every collective must be called by every rank of its group, in the same order.
A collective that does not complete within the timeout aborts the job with a
report naming the ranks that never arrived (see :mod:`distgraph.comm.watchdog`);
``DISTGRAPH_DEBUG=1`` checks before each collective that all ranks called the
same one.  Importing this package initialises nothing: MPI starts in
:func:`init_process_group`.

Modules: ``env`` (rank discovery), ``base`` (interfaces), ``single``, ``mpi``,
``nccl`` (backends), ``watchdog`` (timeouts, stall reports, progress),
``group`` (group management), ``collectives`` (the functions on tensors).
"""
from distgraph.comm.base import CommError, ProcessGroup, ReduceOp, Work
from distgraph.comm.grad_bucket import GradBucket
from distgraph.comm.collectives import (P2POp, all_gather, all_gather_into_tensor, all_gather_object, all_reduce,
                                        all_to_all, all_to_all_single, barrier, batch_isend_irecv, broadcast,
                                        broadcast_object_list, gather, gather_object, irecv, isend,
                                        monitored_barrier, recv, recv_object_list, reduce, reduce_scatter,
                                        reduce_scatter_tensor, scatter, scatter_object_list, send,
                                        send_object_list)
from distgraph.comm.group import (Backend, GroupMember, destroy_process_group, get_backend, get_global_rank,
                                  get_group_rank, get_local_rank, get_local_world_size, get_node_local_rank,
                                  get_process_group_ranks, get_rank, get_world_size, init_process_group,
                                  is_available, is_backend_available, is_gloo_available, is_initialized,
                                  is_mpi_available, is_nccl_available, is_torchelastic_launched, new_group,
                                  new_subgroups)

__all__ = [
    "CommError", "ReduceOp", "Work", "GroupMember",
    "init_process_group", "is_initialized", "destroy_process_group", "new_group",
    "get_rank", "get_world_size", "get_local_rank", "get_local_world_size", "get_backend",
    "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter",
    "reduce_scatter_tensor", "reduce", "gather", "scatter", "all_to_all_single",
    "send", "recv", "isend", "irecv", "barrier", "broadcast_object_list", "all_gather_object",
    "gather_object", "scatter_object_list", "P2POp", "batch_isend_irecv", "is_available",
    "is_torchelastic_launched", "monitored_barrier", "get_node_local_rank", "GradBucket",
    "ProcessGroup", "all_to_all", "send_object_list", "recv_object_list", "Backend", "get_global_rank",
    "get_group_rank", "get_process_group_ranks", "is_backend_available", "is_gloo_available",
    "is_mpi_available", "is_nccl_available", "new_subgroups",
]
