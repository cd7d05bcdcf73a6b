"""Neural-network building blocks (``dg.nn``), with PyTorch's names and state-dict keys.

Each family's file lists its public names in ``__all__``; this package re-exports them all.
"""
from distgraph.autograd.tensor import Parameter
from distgraph.nn import functional, init, utils  # noqa: F401
from distgraph.nn.module import Module
from distgraph.nn.container import *  # noqa: F401,F403
from distgraph.nn.layers import *  # noqa: F401,F403
from distgraph.nn.pooling import *  # noqa: F401,F403
from distgraph.nn.conv import *  # noqa: F401,F403
from distgraph.nn.padding import *  # noqa: F401,F403
from distgraph.nn.dropout import *  # noqa: F401,F403
from distgraph.nn.normalization import *  # noqa: F401,F403
from distgraph.nn.activation import *  # noqa: F401,F403
from distgraph.nn.loss import *  # noqa: F401,F403
from distgraph.nn.attention import MultiheadAttention
from distgraph.nn.rnn import *  # noqa: F401,F403
from distgraph.nn.transformer import *  # noqa: F401,F403
from distgraph.nn.misc_layers import Bilinear, EmbeddingBag, Unflatten  # noqa: F401
from distgraph.nn.parallel.sync_batchnorm import SyncBatchNorm
from distgraph.nn.parallel.data_parallel import DataParallel
from distgraph.nn.lazy import *  # noqa: F401,F403
from distgraph.nn import activation, container, layers, loss, rnn, transformer  # noqa: E402
from distgraph.nn import conv, dropout, lazy, normalization, padding, pooling  # noqa: E402

__all__ = (["Parameter", "Module", "MultiheadAttention", "SyncBatchNorm", "DataParallel", "Bilinear", "EmbeddingBag",
            "Unflatten"] + lazy.__all__
           + container.__all__
           + layers.__all__ + pooling.__all__ + conv.__all__ + padding.__all__ + dropout.__all__
           + normalization.__all__ + activation.__all__ + loss.__all__ + rnn.__all__ + transformer.__all__)
