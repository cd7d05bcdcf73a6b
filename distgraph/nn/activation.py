"""Activation modules beyond the basic ones in ``layers.py`` (each wraps ``nn.functional``)."""
from __future__ import annotations

from distgraph.autograd.creation import full
from distgraph.autograd.tensor import Parameter
from distgraph.nn import activation_functions as AF
from distgraph.nn.layers import _activation
from distgraph.nn.module import Module

__all__ = ["ReLU6", "Hardtanh", "CELU", "SELU", "Mish", "Hardsigmoid", "Hardswish", "LogSigmoid", "Softsign",
           "Tanhshrink", "Softshrink", "Hardshrink", "Threshold", "PReLU", "GLU", "RReLU", "Softmin", "Softmax2d"]

ReLU6 = _activation("ReLU6", AF.relu6, "``min(max(x, 0), 6)``", ("inplace",))
Hardtanh = _activation("Hardtanh", AF.hardtanh, "``clamp(x, min_val, max_val)``", ("min_val", "max_val", "inplace"))
CELU = _activation("CELU", AF.celu, "``max(0, x) + min(0, alpha (exp(x / alpha) - 1))``", ("alpha", "inplace"))
SELU = _activation("SELU", AF.selu, "scaled ELU with the self-normalising constants", ("inplace",))
Mish = _activation("Mish", AF.mish, "``x tanh(softplus(x))``", ("inplace",))
Hardsigmoid = _activation("Hardsigmoid", AF.hardsigmoid, "``clamp(x / 6 + 1/2, 0, 1)``", ("inplace",))
Hardswish = _activation("Hardswish", AF.hardswish, "``x hardsigmoid(x)``", ("inplace",))
LogSigmoid = _activation("LogSigmoid", AF.logsigmoid, "``log(sigmoid(x))``")
Softsign = _activation("Softsign", AF.softsign, "``x / (1 + |x|)``")
Tanhshrink = _activation("Tanhshrink", AF.tanhshrink, "``x - tanh(x)``")
Softshrink = _activation("Softshrink", AF.softshrink, "soft thresholding at ``lambd``", ("lambd",))
Hardshrink = _activation("Hardshrink", AF.hardshrink, "hard thresholding at ``lambd``", ("lambd",))
Threshold = _activation("Threshold", AF.threshold, "``x`` where ``x > threshold`` else ``value``",
                        ("threshold", "value", "inplace"))
GLU = _activation("GLU", AF.glu, "gated linear unit along ``dim``", ("dim",))
Softmin = _activation("Softmin", AF.softmin, "softmax of ``-x`` along ``dim``", ("dim",))


class Softmax2d(Module):
    """Softmax over the channels (dim -3) of a (C, H, W) or (N, C, H, W) input."""

    def forward(self, input):
        if input.ndim not in (3, 4):
            raise ValueError(f"Softmax2d: expected a 3-d or 4-d input, got {input.ndim}-d")
        return input.softmax(-3)


class PReLU(Module):
    """``max(0, x) + a min(0, x)`` with a learned slope ``weight`` (1 or ``num_parameters`` of them)."""

    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = Parameter(full((num_parameters,), init, device=device, dtype=dtype or "float32"))

    def forward(self, input):
        return AF.prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class RReLU(Module):
    """Randomized leaky ReLU: a slope ~ U(lower, upper) per element in training, their mean in eval."""

    def __init__(self, lower=1.0 / 8, upper=1.0 / 3, inplace=False):
        super().__init__()
        self.lower, self.upper, self.inplace = lower, upper, inplace

    def forward(self, input):
        return AF.rrelu(input, self.lower, self.upper, self.training, self.inplace)

    def extra_repr(self):
        return f"lower={self.lower}, upper={self.upper}"
