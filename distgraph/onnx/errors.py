"""Errors and options of ``dg.onnx.export``, named as ``torch.onnx``'s (they need no onnx package)."""
from __future__ import annotations

import enum


class TrainingMode(enum.IntEnum):
    """torch.onnx.TrainingMode: EVAL exports the model in eval mode (the default), PRESERVE in
    the mode it is in; TRAINING (training-mode ops in the graph) is not supported."""
    EVAL = 0
    PRESERVE = 1
    TRAINING = 2


class OperatorExportTypes(enum.IntEnum):
    """torch.onnx.OperatorExportTypes: only ONNX (standard ONNX ops, the default) is supported; the
    ATen fallbacks have no meaning for distgraph's ops."""
    ONNX = 0
    ONNX_ATEN = 1
    ONNX_ATEN_FALLBACK = 2
    ONNX_FALLTHROUGH = 3


class OnnxExporterWarning(UserWarning):
    """Something of the export the caller may want to know (e.g. ``ONNXProgram.apply_weights`` skipping a
    name that is no initializer)."""


class OnnxExporterError(RuntimeError):
    """The model could not be exported (a bad argument, or a graph ONNX cannot express)."""


class UnsupportedOperatorError(OnnxExporterError):
    """An op (or module) of the traced forward has no ONNX converter.

    Attributes:
        name: the op's class name (e.g. ``"Cumsum"``) or the module's (``"nn.GRU"``).
        where: where the op ran: the module path (``"layers.2"``) and the source line.
    """

    def __init__(self, name: str, where: str, reason: str = ""):
        self.name, self.where = name, where
        why = f": {reason}" if reason else ""
        super().__init__(
            f"ONNX export: unsupported operator '{name}' (called in {where}){why}. Expected one of the ops "
            f"listed in docs/onnx.md; rewrite that part of forward() with supported ops, or add a converter "
            f"with dg.onnx.register_converter({name}, fn)")


class TracingError(OnnxExporterError):
    """The traced run cannot be turned into a faithful graph (see the message for why and what to do)."""
