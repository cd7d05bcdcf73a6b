"""Functional forms of the layers (``import distgraph.nn.functional as F``).

The activations are the engine's own ops, re-exported under PyTorch's names.
"""
from distgraph.autograd.ops.elementwise import (elu, gelu, leaky_relu, relu, sigmoid, silu, softplus,
                                                tanh)

__all__ = ["elu", "gelu", "leaky_relu", "relu", "sigmoid", "silu", "softplus", "tanh"]
