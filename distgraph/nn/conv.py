"""3-d convolution and the transposed convolutions (``Conv1d``/``Conv2d`` are in ``layers``);
the maths is in ``nn.functional``."""
from __future__ import annotations

import math

from distgraph.nn import functional as F
from distgraph.nn import init
from distgraph.nn.layers import _ConvNd

__all__ = ["Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]


class Conv3d(_ConvNd):
    """3-D convolution over (N, C, D, H, W) or (C, D, H, W)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(3, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         False, 0, device, dtype, padding_mode)

    def forward(self, input):
        x, pad = self._padded_input(input)
        return F.conv3d(x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)


class _ConvTransposeNd(_ConvNd):
    _nd, _fn = 0, None

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding_mode is supported for {type(self).__name__}, got {padding_mode!r}')
        super().__init__(self._nd, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         True, output_padding, device, dtype)

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * math.prod(self.kernel_size)  # PyTorch uses dim 1 here too
            bound = 1 / math.sqrt(fan_in) if fan_in else 0
            init.uniform_(self.bias, -bound, bound)

    def _output_padding(self, input, output_size):
        """The ``output_padding`` that makes the output ``output_size`` (PyTorch's ``forward(x, output_size)``)."""
        if output_size is None:
            return self.output_padding
        nd = self._nd
        size = list(output_size)[-nd:]
        extra = []
        for i, (n, k, s, p, d) in enumerate(zip(input.shape[-nd:], self.kernel_size, self.stride, self.padding,
                                                  self.dilation)):
            least = (n - 1) * s - 2 * p + d * (k - 1) + 1
            if not least <= size[i] < least + s:
                raise ValueError(f"{type(self).__name__}: requested output size {tuple(size)} is not reachable; "
                                 f"dim {i} must lie in [{least}, {least + s - 1}]")
            extra.append(size[i] - least)
        return tuple(extra)

    def forward(self, input, output_size=None):
        return type(self)._fn(input, self.weight, self.bias, self.stride, self.padding,
                              self._output_padding(input, output_size), self.groups, self.dilation)


class ConvTranspose1d(_ConvTransposeNd):
    _nd, _fn = 1, staticmethod(F.conv_transpose1d)


class ConvTranspose2d(_ConvTransposeNd):
    _nd, _fn = 2, staticmethod(F.conv_transpose2d)


class ConvTranspose3d(_ConvTransposeNd):
    _nd, _fn = 3, staticmethod(F.conv_transpose3d)
