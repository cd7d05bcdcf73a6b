"""Neural-network building blocks (``dg.nn``), with PyTorch's names and state-dict keys."""
from distgraph.autograd.tensor import Parameter
from distgraph.nn import functional, init, utils  # noqa: F401
from distgraph.nn.attention import MultiheadAttention
from distgraph.nn.container import ModuleDict, ModuleList, Sequential
from distgraph.nn.layers import (ELU, GELU, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d,
                                 ConvTranspose2d, Dropout, Embedding, Flatten, GroupNorm, Identity, LayerNorm,
                                 LeakyReLU, Linear, LogSoftmax, MaxPool2d, ReLU, Sigmoid, SiLU, Softmax, Softplus,
                                 Tanh)
from distgraph.nn.loss import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from distgraph.nn.module import Module
from distgraph.nn.parallel.sync_batchnorm import SyncBatchNorm

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "ModuleDict", "Linear", "Identity", "Flatten",
           "Conv1d", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d",
           "BatchNorm2d", "SyncBatchNorm", "LayerNorm", "GroupNorm", "Dropout", "Embedding", "MultiheadAttention", "ReLU", "GELU",
           "SiLU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "LeakyReLU", "ELU", "Softplus", "CrossEntropyLoss",
           "MSELoss", "NLLLoss", "BCEWithLogitsLoss", "L1Loss"]
