"""``torch.utils.tensorboard.SummaryWriter`` for distgraph: tensorboardX's writer (the
``tensorboard`` extra), taking distgraph Tensors wherever it takes numbers or arrays.

For rank-aware CSV/JSONL/TensorBoard logging see ``distgraph.utils.metrics.MetricsLogger``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SummaryWriter"]

try:
    from tensorboardX import SummaryWriter as _Writer
except ImportError:  # tensorboardX is optional
    _Writer = None


def _plain(v):
    from distgraph.autograd.tensor import Tensor
    if isinstance(v, Tensor):
        a = v.array if isinstance(v.array, np.ndarray) else v.array.get()
        return a.item() if a.size == 1 and a.ndim == 0 else a
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


if _Writer is not None:
    class SummaryWriter(_Writer):
        """tensorboardX's ``SummaryWriter``; Tensor arguments become NumPy arrays or Python numbers."""

        def add_scalar(self, tag, scalar_value, *args, **kwargs):
            return super().add_scalar(tag, _plain(scalar_value), *args, **kwargs)

        def add_scalars(self, main_tag, tag_scalar_dict, *args, **kwargs):
            return super().add_scalars(main_tag, _plain(tag_scalar_dict), *args, **kwargs)

        def add_histogram(self, tag, values, *args, **kwargs):
            return super().add_histogram(tag, _plain(values), *args, **kwargs)

        def add_image(self, tag, img_tensor, *args, **kwargs):
            return super().add_image(tag, _plain(img_tensor), *args, **kwargs)

        def add_images(self, tag, img_tensor, *args, **kwargs):
            return super().add_images(tag, _plain(img_tensor), *args, **kwargs)
else:
    class SummaryWriter:
        def __init__(self, *args, **kwargs):
            raise ImportError("SummaryWriter needs tensorboardX: pip install 'distgraph[tensorboard]'")
