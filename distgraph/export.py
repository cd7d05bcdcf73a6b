"""``torch.export``'s ``Dim``, for ``dg.onnx.export(..., dynamic_shapes=...)``.

distgraph has no ``ExportedProgram``: this module holds only the names that its ONNX exporter
reads, so that code written for ``torch.export.Dim`` runs unchanged::

    batch = dg.export.Dim("batch", min=1, max=1024)
    dg.onnx.export(model, (x,), dynamic_shapes={"x": {0: batch}})

It imports nothing else of distgraph's (and no ``onnx``).
"""
from __future__ import annotations

import enum
import math

__all__ = ["Dim", "export"]


class _DimHintType(enum.Enum):
    AUTO = 1
    STATIC = 2
    DYNAMIC = 3


class _DimHint:
    """``Dim.AUTO`` / ``Dim.DYNAMIC`` / ``Dim.STATIC``: an unnamed dim; ``Dim.AUTO(min=2, max=64)``
    bounds one (only the three class attributes can be called, as in torch)."""

    def __init__(self, type_: _DimHintType, min=None, max=None, factory=False):
        self.type, self.min, self.max, self._factory = type_, min, max, factory

    def __call__(self, min=None, max=None) -> "_DimHint":
        if not self._factory:
            raise TypeError(f"Dim.{self.type.name}(min=..., max=...) is already bounded; call Dim.{self.type.name}")
        if min is not None and min < 0 or max is not None and min is not None and max < min:
            raise ValueError(f"Dim.{self.type.name}: expected 0 <= min <= max, got min={min}, max={max}")
        return _DimHint(self.type, min, max)

    def __repr__(self):
        bounds = "".join(f", {k}={v}" for k, v in (("min", self.min), ("max", self.max)) if v is not None)
        return f"DimHint({self.type.name}{bounds})"


class Dim:
    """A named dynamic dim (``torch.export.Dim``): ``Dim("batch", min=1, max=64)``.

    The name becomes the ONNX ``dim_param`` (it is read, as torch's, from ``dim.__name__``); the
    same ``Dim`` on several axes says that they are equal.  ``min`` defaults to 0, ``max`` to
    unbounded (``math.inf``).  ``Dim.AUTO``, ``Dim.DYNAMIC`` and ``Dim.STATIC`` are the unnamed
    hints (see ``dg.onnx.export``).  Derived dims (``2 * dim``) are not supported.
    """

    AUTO = _DimHint(_DimHintType.AUTO, factory=True)
    DYNAMIC = _DimHint(_DimHintType.DYNAMIC, factory=True)
    STATIC = _DimHint(_DimHintType.STATIC, factory=True)

    def __init__(self, name: str, *, min: int | None = None, max: int | None = None):
        lo = 0 if min is None else int(min)
        hi = math.inf if max is None else int(max)
        if not hi > lo:
            raise ValueError(f"Dim: expected min < max, got min={min}, max={max}")
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Dim: expected a name that is a Python identifier, got {name!r}")
        self.__name__, self.min, self.max = name, lo, hi

    def __repr__(self):
        bounds = "".join(f", {k}={v}" for k, v in (("min", self.min or None), ("max", self.max)) if v not in
                         (None, math.inf))
        return f"Dim({self.__name__!r}{bounds})"

    def _derived(self, *_):
        raise NotImplementedError(f"Dim {self.__name__!r}: derived dims (dim + 1, 2 * dim) are not supported by "
                                  "distgraph's exporter; give that axis a Dim of its own")

    __add__ = __radd__ = __sub__ = __mul__ = __rmul__ = _derived


def export(*args, **kwargs):
    """``torch.export.export`` has no distgraph counterpart (distgraph makes no ExportedProgram)."""
    raise NotImplementedError("dg.export.export: distgraph has no ExportedProgram; use dg.onnx.export to write "
                              "an ONNX model, or dg.compile to capture and replay a step")
