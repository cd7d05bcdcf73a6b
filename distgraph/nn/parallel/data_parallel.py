"""``nn.DataParallel``'s name and layout, on one device.

PyTorch's ``DataParallel`` splits each batch across the GPUs of one process.  distgraph runs one
process per device (``DistributedDataParallel``, launched by ``distgraph-run``), so this wrapper keeps
the interface scripts rely on (``model.module``, ``state_dict()`` keys prefixed ``module.``) and runs the
whole batch on one device: the first of ``device_ids``, with a warning when more were asked for.
"""
from __future__ import annotations

import warnings

from distgraph.nn.module import Module

__all__ = ["DataParallel"]


class DataParallel(Module):
    """``self.module`` called on the whole batch (see the module docstring).

    Args:
        module: the model.
        device_ids: the devices PyTorch would split over; only the first is used.
        output_device, dim: accepted (outputs stay where the module puts them).
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        self.module = module
        self.device_ids = list(device_ids) if device_ids is not None else None
        self.output_device, self.dim = output_device, dim
        if self.device_ids and len(self.device_ids) > 1:
            warnings.warn(f"DataParallel: distgraph runs one process per device, so the batch is not split across "
                          f"{self.device_ids}: it runs on {self.device_ids[0]}. For several GPUs use "
                          "DistributedDataParallel with distgraph-run -n <gpus>", UserWarning, stacklevel=2)

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)
