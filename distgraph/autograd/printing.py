"""How a tensor's values print: PyTorch's rules (``torch/_tensor_str.py``, default print options).

Floating values share one format chosen from the finite non-zero magnitudes: whole numbers print as
``2.``; otherwise four decimals (``0.6370``), or ``1.0000e-05`` notation when the largest is over 1e8,
the smallest under 1e-4, or their ratio over 1000.  Every value is right-aligned to the widest.
NumPy lays out the rows, wraps lines and summarises big tensors (its defaults are PyTorch's).
"""
from __future__ import annotations

import math

import numpy as np

PRECISION = 4


def _float_formatter(a: np.ndarray):
    finite = a[np.isfinite(a) & (a != 0)].astype(np.float64)
    mags = np.abs(finite)
    int_mode = bool(np.all(finite == np.ceil(finite)))
    sci = False
    if mags.size:
        lo, hi = float(mags.min()), float(mags.max())
        sci = hi / lo > 1000.0 or hi > 1e8 or (not int_mode and lo < 1e-4)

    def text(v):
        v = float(v)
        if sci:
            return f"{v:.{PRECISION}e}"
        if int_mode:
            return f"{v:.0f}" + ("" if math.isinf(v) or math.isnan(v) else ".")
        return f"{v:.{PRECISION}f}"
    width = max([len(text(v)) for v in finite] + [1])   # (PyTorch leaves nan/inf out of the width)
    return lambda v: text(v).rjust(width)


def array_body(a: np.ndarray, prefix: str) -> str:
    """The values part of ``repr(tensor)`` for the host array ``a``."""
    formatter = {"float_kind": _float_formatter(a)} if a.dtype.kind == "f" and a.size else None
    body = np.array2string(a, max_line_width=80, separator=", ", prefix=prefix, formatter=formatter)
    return body.replace(", ..., ", ",  ..., ")   # PyTorch's elided run inside a row is " ..."


def with_suffixes(body: str, suffixes, indent: int) -> str:
    """``body`` then ``, dtype=...`` etc. and the closing ``)``; a suffix that would pass column 80
    goes on a new line, indented (PyTorch's ``_add_suffixes``)."""
    out, line = [body], len(body) - body.rfind("\n") + 1
    for suffix in suffixes:
        if line + len(suffix) + 2 > 80:
            out.append(",\n" + " " * indent + suffix)
            line = indent + len(suffix)
        else:
            out.append(", " + suffix)
            line += len(suffix) + 2
    return "".join(out) + ")"
