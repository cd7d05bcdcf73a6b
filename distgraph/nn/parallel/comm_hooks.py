"""Built-in DDP communication hooks, also importable from here (their home is PyTorch's path,
``distgraph.distributed.algorithms.ddp_comm_hooks.default_hooks``)."""
from distgraph.comm.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook, fp16_compress_hook

__all__ = ["allreduce_hook", "fp16_compress_hook"]
