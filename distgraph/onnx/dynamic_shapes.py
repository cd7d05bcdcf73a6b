"""``dynamic_shapes`` (``torch.export``'s form) -> the exporter's dynamic axes ``{input name: {axis: dim name}}``.

``dynamic_shapes`` is a dict keyed by ``forward``'s argument names, or a tuple with one entry per
argument (positional ones, then keyword ones in ``forward``'s order).  An entry mirrors its
argument: for a tensor, ``{axis: dim}`` or one ``dim`` per axis; for a tuple/list/dict of tensors,
the same container of such entries; None for "all static".  A ``dim`` is

* ``Dim("name")`` (``dg.export.Dim`` or ``torch.export.Dim``) or a ``str``: symbolic, with that name;
* ``Dim.DYNAMIC`` or ``Dim.AUTO``: symbolic, named ``<input name>_dim_<axis>``;
* ``Dim.STATIC``, None or an int (which must equal the traced size): static.

As ``torch.export``: a dim whose traced size is 0 or 1 cannot be marked dynamic (``Dim.AUTO``
leaves it static), a traced size outside a Dim's ``[min, max]`` raises, and one Dim name on two
axes needs equal traced sizes.  The bounds themselves are not written (ONNX has no place for them).
"""
from __future__ import annotations

import inspect

from distgraph.autograd.tensor import Tensor
from distgraph.onnx.errors import OnnxExporterError

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def to_dynamic_axes(spec, model, args, kwargs, in_names) -> dict:
    """``{input name: {axis: dim name}}`` for the graph inputs ``in_names`` (the tensors of ``args``
    then ``kwargs``, in order, as the exporter numbers them)."""
    names = iter(in_names)
    axes, seen = {}, {}
    for where, value, entry in _per_argument(spec, model, args, kwargs):
        for at, t, tspec in _tensors(where, value, entry):
            name = next(names)
            dims = _tensor_axes(at, tuple(t.shape), tspec, name, seen)
            if dims:
                axes[name] = dims
    return axes


def _parameters(model):
    try:
        return list(inspect.signature(model.forward if hasattr(model, "forward") else model).parameters.values())
    except (TypeError, ValueError):
        return []


def _per_argument(spec, model, args, kwargs):
    """``(where, argument, its entry of spec)`` for every argument, in the exporter's input order."""
    params = _parameters(model)
    positional = [p.name for p in params if p.kind in _POSITIONAL]
    var = next((p.name for p in params if p.kind == inspect.Parameter.VAR_POSITIONAL), None)
    if isinstance(spec, dict):
        known = positional[:len(args)] + ([var] if var and len(args) > len(positional) else []) + list(kwargs)
        unknown = [k for k in spec if k not in known]
        if unknown:
            raise OnnxExporterError(f"ONNX export: dynamic_shapes names {unknown}, which are no arguments of this "
                                    f"call; expected keys from forward()'s argument names {known} (or a tuple with "
                                    "one entry per argument)")
        out = []
        for i, a in enumerate(args):
            if i < len(positional):
                out.append((f"[{positional[i]!r}]", a, spec.get(positional[i])))
                continue
            j, rest = i - len(positional), spec.get(var)
            if rest is not None and (not isinstance(rest, (tuple, list)) or len(rest) != len(args) - len(positional)):
                raise OnnxExporterError(f"ONNX export: dynamic_shapes[{var!r}] is for *{var}, which got "
                                        f"{len(args) - len(positional)} arguments; expected a tuple of as many "
                                        f"entries, got {rest!r}")
            out.append((f"[{var!r}][{j}]", a, None if rest is None else rest[j]))
        return out + [(f"[{k!r}]", v, spec.get(k)) for k, v in kwargs.items()]
    if isinstance(spec, (tuple, list)):
        if len(spec) != len(args) + len(kwargs):
            raise OnnxExporterError(f"ONNX export: dynamic_shapes has {len(spec)} entries for {len(args)} positional "
                                    f"and {len(kwargs)} keyword arguments; expected one entry per argument")
        rank = {p.name: i for i, p in enumerate(params)}
        order = sorted(kwargs, key=lambda k: rank.get(k, len(rank)))     # forward()'s order (stable otherwise)
        by_name = dict(zip(order, spec[len(args):]))
        return [(f"[{i}]", a, spec[i]) for i, a in enumerate(args)] + \
               [(f"[{k!r}]", v, by_name[k]) for k, v in kwargs.items()]
    raise OnnxExporterError(f"ONNX export: expected dynamic_shapes to be a dict (by argument name) or a tuple (one "
                            f"entry per argument), got {type(spec).__name__}")


def _tensors(where, value, entry):
    """``(where, tensor, its entry)`` for the tensors of one argument, in the exporter's order."""
    if isinstance(value, Tensor):
        yield where, value, entry
    elif isinstance(value, (tuple, list)):
        if entry is not None and (not isinstance(entry, (tuple, list)) or len(entry) != len(value)):
            raise OnnxExporterError(f"ONNX export: dynamic_shapes{where} is {entry!r} for a {type(value).__name__} of "
                                    f"{len(value)} values; expected None or a tuple/list of {len(value)} entries")
        for i, v in enumerate(value):
            yield from _tensors(f"{where}[{i}]", v, None if entry is None else entry[i])
    elif isinstance(value, dict):
        if entry is not None and (not isinstance(entry, dict) or set(entry) - set(value)):
            raise OnnxExporterError(f"ONNX export: dynamic_shapes{where} is {entry!r} for a dict with keys "
                                    f"{list(value)}; expected None or a dict with some of those keys")
        for k, v in value.items():
            yield from _tensors(f"{where}[{k!r}]", v, None if entry is None else entry.get(k))
    elif entry is not None:
        raise OnnxExporterError(f"ONNX export: dynamic_shapes{where} is {entry!r}, but that argument is a "
                                f"{type(value).__name__}, which is frozen into the graph; expected None")


def _tensor_axes(where, shape, entry, name, seen) -> dict:
    if entry is None:
        return {}
    if isinstance(entry, dict):
        items = list(entry.items())
    elif isinstance(entry, (tuple, list)):
        if len(entry) != len(shape):
            raise OnnxExporterError(f"ONNX export: dynamic_shapes{where} has {len(entry)} dims for a tensor of shape "
                                    f"{shape}; expected one per axis (or a dict {{axis: dim}})")
        items = list(enumerate(entry))
    else:
        raise OnnxExporterError(f"ONNX export: dynamic_shapes{where} is {entry!r}; expected a dict {{axis: dim}}, "
                                "a tuple with one dim per axis, or None")
    dims = {}
    for axis, d in items:
        if not isinstance(axis, int) or not -len(shape) <= axis < len(shape):
            raise OnnxExporterError(f"ONNX export: dynamic_shapes{where} names axis {axis!r} of a tensor of shape "
                                    f"{shape}; expected an int from {-len(shape)} to {len(shape) - 1}")
        axis %= len(shape)
        at = f"dynamic_shapes{where}[{axis}]"
        dim = _dim_name(at, d, shape[axis], f"{name}_dim_{axis}")
        if dim is None:
            continue
        size, first = seen.setdefault(dim, (shape[axis], at))
        if size != shape[axis]:
            raise OnnxExporterError(f"ONNX export: {at} and {first} are both the dim '{dim}', but their traced sizes "
                                    f"differ ({shape[axis]} and {size}); expected equal sizes for one dim name")
        dims[axis] = dim
    return dims


def _hint(d):
    """'AUTO', 'DYNAMIC' or 'STATIC' for ``Dim.AUTO``... (distgraph's or torch's), else None."""
    kind = getattr(getattr(d, "type", None), "name", None)
    return kind if type(d).__name__ == "_DimHint" and kind in ("AUTO", "DYNAMIC", "STATIC") else None


def _dim_name(at, d, size, default):
    """The ONNX dim name of one dim of a dynamic_shapes entry, or None for a static dim."""
    if d is None:
        return None
    if isinstance(d, int):
        if d != size:
            raise OnnxExporterError(f"ONNX export: {at} is {d}, but the traced size is {size}; expected an int to be "
                                    "the example input's size (or a Dim or str to make the dim dynamic)")
        return None
    kind = _hint(d)
    if kind == "STATIC":
        return None
    if isinstance(d, str) and d:
        name, lo, hi = d, None, None
    elif kind is not None:
        name, lo, hi = default, d.min, d.max
    elif isinstance(getattr(d, "__name__", None), str) and hasattr(d, "min") and hasattr(d, "max"):
        name, lo, hi = d.__name__, d.min, d.max
    else:
        raise OnnxExporterError(f"ONNX export: {at} is {d!r}; expected None, an int, a str, a Dim, or Dim.AUTO / "
                                "Dim.DYNAMIC / Dim.STATIC")
    if (lo is not None and size < lo) or (hi is not None and size > hi):
        raise OnnxExporterError(f"ONNX export: {at} has the traced size {size}, outside the range [{lo}, {hi}] of "
                                f"{d!r}; expected an example input within it")
    if size in (0, 1):
        if kind == "AUTO":
            return None
        raise OnnxExporterError(f"ONNX export: {at} marks a dim of traced size {size} dynamic; a size-0/1 dim is "
                                "traced as a constant (torch.export refuses it too); expected an example input "
                                "with a size of at least 2 there (or Dim.AUTO, which leaves it static)")
    return name
