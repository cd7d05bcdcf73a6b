"""``torch.distributed.algorithms``: ``Join`` for uneven inputs, and the DDP communication hooks
(``ddp_comm_hooks``)."""
from distgraph.comm.algorithms.join import Join, Joinable, JoinHook

__all__ = ["Join", "Joinable", "JoinHook"]
