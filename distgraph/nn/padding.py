"""Padding, resampling and rearranging layers: ``ZeroPad*``, ``ConstantPad*``, ``ReflectionPad*``,
``ReplicationPad*``, ``CircularPad*``, ``Upsample*``, ``PixelShuffle``/``PixelUnshuffle`` and
``Fold``/``Unfold`` (the maths is in ``nn.functional``)."""
from __future__ import annotations

from distgraph.nn import functional as F
from distgraph.nn.module import Module

__all__ = ["ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
           "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
           "ReplicationPad3d", "CircularPad1d", "CircularPad2d", "CircularPad3d", "Upsample", "UpsamplingNearest2d",
           "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle", "Fold", "Unfold"]


class _PadNd(Module):
    _nd, _mode = 0, "constant"

    def __init__(self, padding, value=None):
        super().__init__()
        self.padding = (padding,) * (2 * self._nd) if isinstance(padding, int) else tuple(padding)
        if len(self.padding) != 2 * self._nd:
            raise ValueError(f"{type(self).__name__}: expected an int or {2 * self._nd} pads, got {padding!r}")
        self.value = value

    def forward(self, input):
        return F.pad(input, self.padding, self._mode, self.value)

    def extra_repr(self):
        return f"{self.padding}" + (f", value={self.value}" if self._mode == "constant" else "")


def _padding_class(name, nd, mode, constant):
    def __init__(self, padding, value=0.0):
        _PadNd.__init__(self, padding, value)
    body = {"_nd": nd, "_mode": mode, "__doc__": f"``F.pad(input, padding, {mode!r})`` over the last {nd} dim(s)."}
    if constant == "value":
        body["__init__"] = __init__
    elif constant == "zero":
        body["__init__"] = lambda self, padding: _PadNd.__init__(self, padding, 0.0)
    return type(name, (_PadNd,), body)


ZeroPad1d = _padding_class("ZeroPad1d", 1, "constant", "zero")
ZeroPad2d = _padding_class("ZeroPad2d", 2, "constant", "zero")
ZeroPad3d = _padding_class("ZeroPad3d", 3, "constant", "zero")
ConstantPad1d = _padding_class("ConstantPad1d", 1, "constant", "value")
ConstantPad2d = _padding_class("ConstantPad2d", 2, "constant", "value")
ConstantPad3d = _padding_class("ConstantPad3d", 3, "constant", "value")
ReflectionPad1d = _padding_class("ReflectionPad1d", 1, "reflect", None)
ReflectionPad2d = _padding_class("ReflectionPad2d", 2, "reflect", None)
ReflectionPad3d = _padding_class("ReflectionPad3d", 3, "reflect", None)
ReplicationPad1d = _padding_class("ReplicationPad1d", 1, "replicate", None)
ReplicationPad2d = _padding_class("ReplicationPad2d", 2, "replicate", None)
ReplicationPad3d = _padding_class("ReplicationPad3d", 3, "replicate", None)
CircularPad1d = _padding_class("CircularPad1d", 1, "circular", None)
CircularPad2d = _padding_class("CircularPad2d", 2, "circular", None)
CircularPad3d = _padding_class("CircularPad3d", 3, "circular", None)


class Upsample(Module):
    """``F.interpolate`` as a layer."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None):
        super().__init__()
        self.size, self.mode, self.align_corners = size, mode, align_corners
        self.scale_factor = (tuple(float(f) for f in scale_factor) if isinstance(scale_factor, (list, tuple))
                             else float(scale_factor) if scale_factor is not None else None)
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input):
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self):
        what = f"scale_factor={self.scale_factor}" if self.scale_factor is not None else f"size={self.size}"
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class PixelShuffle(Module):
    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input):
        return F.pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self):
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    def __init__(self, downscale_factor):
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input):
        return F.pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self):
        return f"downscale_factor={self.downscale_factor}"


class Fold(Module):
    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, input):
        return F.fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self):
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")


class Unfold(Module):
    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def forward(self, input):
        return F.unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, stride={self.stride}"
