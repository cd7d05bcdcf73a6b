"""DDP communication hooks (``ddp.register_comm_hook(state, hook)``): ``default_hooks``."""
from distgraph.comm.algorithms.ddp_comm_hooks import default_hooks  # noqa: F401
