"""``dg.onnx.export``: trace a model once, convert the recorded ops, write an ONNX model."""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import onnx
from onnx import helper

from distgraph import backend
from distgraph.autograd.grad_mode import no_grad
from distgraph.autograd.tensor import Tensor
from distgraph.onnx import converters, converters_select  # noqa: F401  (each family registers its converters)
from distgraph.onnx.dynamic_shapes import to_dynamic_axes
from distgraph.onnx.errors import (OnnxExporterError, OperatorExportTypes, TracingError, TrainingMode,
                                   UnsupportedOperatorError)
from distgraph.onnx.graph import GraphBuilder, value_info
from distgraph.onnx.modules import MODULE_CONVERTERS, find_module_converter
from distgraph.onnx.program import ONNXProgram
from distgraph.onnx.registry import ARRAY_SLOTS, CONVERTERS, REWRITES
from distgraph.onnx.trace import Const, Tracer, Val, _host, flatten, tracing

DEFAULT_OPSET = 18
MIN_OPSET = 14
VERIFY_RTOL, VERIFY_ATOL = 1e-3, 1e-4      # verify=True: float outputs within atol + rtol * |distgraph|


def export(model, args=(), f=None, *, kwargs=None, verbose=None, input_names=None, output_names=None,
           opset_version=None, dynamo=True, external_data=True, dynamic_shapes=None, custom_translation_table=None,
           report=False, optimize=True, verify=False, profile=False, dump_exported_program=False, artifacts_dir=".",
           export_params=True, keep_initializers_as_inputs=False, dynamic_axes=None, training=TrainingMode.EVAL,
           operator_export_type=OperatorExportTypes.ONNX, do_constant_folding=True, custom_opsets=None,
           export_modules_as_functions=False, autograd_inlining=True):
    """Export ``model`` to ONNX by tracing one run of ``model(*args, **kwargs)``; the arguments are
    ``torch.onnx.export``'s (torch 2.13).

    The run is recorded op by op (under ``no_grad``), so Python control flow is frozen as it
    ran; recurrent modules (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) become one ONNX op each and
    keep any sequence length.  The model is traced a second time on perturbed copies of the
    inputs: a tensor computed outside the traced ops that changes with the inputs (which
    would be frozen as a wrong constant) raises instead.  ``dynamo`` picks what is returned
    and how ``f`` is written, as in torch; the graph is traced the same way in both modes.

    Args:
        model: an ``nn.Module`` (or any callable; then no parameter gets a state_dict name).
        args: a Tensor or a tuple of positional arguments.  Tensors (also inside tuples, lists and
            dicts) become graph inputs, in order; other values are frozen into the graph.  As
            torch: when ``kwargs`` is not given, a dict as the last element holds the keyword arguments.
        f: a file path, a binary file object (``io.BytesIO``), or None (write nothing).  Written in
            both modes; with ``dynamo=True`` as ``ONNXProgram.save`` writes it (see
            ``external_data``, ``export_params``, ``keep_initializers_as_inputs``).
        kwargs: keyword arguments of the call; their tensors are graph inputs after ``args``'.
        verbose: print the exported graph.
        input_names, output_names: names of the graph inputs and outputs, in order (a shorter
            list names the first ones).  Defaults: the names of ``forward``'s parameters
            (``x``, or ``x_0``, ``x_1`` for the tensors of one tuple argument); ``output``,
            or ``output_0``, ``output_1``... for several outputs.
        opset_version: the ai.onnx opset, from 14 to the installed onnx's newest (default 18).
        dynamo: True (the default): return an ``ONNXProgram``; False: return None (torch's
            TorchScript exporter).
        external_data: (``dynamo=True``, ``f`` a path) initializers of 1 KiB or more go to
            ``<f>.data`` beside ``f`` (the default, as torch); False: one self-contained file.
        dynamic_shapes: (``dynamo=True``) ``torch.export``'s form, ``{arg name: {axis: dim}}`` or
            a tuple with one entry per argument; a dim is ``dg.export.Dim("name")``, a str (that
            name), ``Dim.DYNAMIC``/``Dim.AUTO`` (named ``<input>_dim_<axis>``), or static
            (``Dim.STATIC``, None, the traced size); ``distgraph.onnx.dynamic_shapes`` has the
            rules.  When given, ``dynamic_axes`` is ignored (as torch), with a warning.
        optimize: (``dynamo=True``) run ``ONNXProgram.optimize()`` on the result.
        verify: run the exported model in onnxruntime on ``args``/``kwargs`` and compare it with
            distgraph's outputs (also with ``dynamo=False``); torch logs a warning on a mismatch,
            distgraph raises.
        export_params: with ``dynamo=False``, False makes the parameters graph inputs (named by their
            state_dict names) that the caller feeds; with ``dynamo=True`` it applies to ``f`` only
            (False: the initializers are left out of the file, as ``ONNXProgram.save``).
        keep_initializers_as_inputs: also list every initializer as a graph input (with
            ``dynamo=True``: in ``f`` only).
        dynamic_axes: ``{name: {axis: "dim_name"}}`` or ``{name: [axis, ...]}`` (named
            ``{name}_dynamic_axes_{k}``), for input and output names: those dims are symbolic.
        training: ``TrainingMode.EVAL`` (default; the model runs in eval mode and is restored
            after) or ``TrainingMode.PRESERVE``, in both modes (torch ignores it with dynamo).
        operator_export_type: only ``OperatorExportTypes.ONNX``.
        do_constant_folding: ops that depend only on parameters and constants are computed
            now and stored as constants (as torch; e.g. a BatchNorm's ``1/sqrt(var + eps)``).
        custom_translation_table, custom_opsets, export_modules_as_functions: only their
            defaults (None/empty, False): see Raises.
        report, profile, dump_exported_program, artifacts_dir, autograd_inlining: accepted and
            ignored (torch's debugging artifacts of torch.export, and a TorchScript autograd option).

    Returns:
        ``dynamo=True``: a ``distgraph.onnx.ONNXProgram`` (its ``model_proto`` passed
        ``onnx.checker.check_model``); ``dynamo=False``: None.

    Raises:
        UnsupportedOperatorError: an op or module has no converter; the message names it and
            where in the model it ran.
        TracingError: the run cannot be captured faithfully (see the message).
        OnnxExporterError: a bad argument, or ``verify=True`` found different outputs.
        ValueError: ``dynamic_shapes`` with ``dynamo=False`` (as torch).
        NotImplementedError: ``custom_translation_table``, ``custom_opsets``, a non-default
            ``operator_export_type`` or ``export_modules_as_functions``.
    """
    del report, profile, dump_exported_program, artifacts_dir, autograd_inlining     # accepted, ignored
    _refuse_unsupported(custom_translation_table, operator_export_type, custom_opsets, export_modules_as_functions)
    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise OnnxExporterError(f"ONNX export: expected opset_version from {MIN_OPSET} to {newest} (the installed "
                                f"onnx's newest), got {opset_version}")
    # torch's enums too (by name)
    training = TrainingMode[training.name] if hasattr(training, "name") else TrainingMode(training)
    if training == TrainingMode.TRAINING:
        raise OnnxExporterError("ONNX export: training=TrainingMode.TRAINING is not supported; expected EVAL "
                                "(the default) or PRESERVE")
    if dynamic_shapes and not dynamo:                     # (an empty one passes, as torch)
        raise ValueError("ONNX export: dynamic_shapes needs dynamo=True (as torch); with dynamo=False, "
                         "expected dynamic_axes")
    if dynamo and dynamic_shapes is not None and dynamic_axes is not None:
        warnings.warn("ONNX export: dynamic_axes is ignored because dynamic_shapes is given (as torch)",
                      UserWarning, stacklevel=3)
    args = (args,) if isinstance(args, Tensor) else tuple(args)
    if not kwargs and args and isinstance(args[-1], dict):
        args, kwargs = args[:-1], args[-1]
    kwargs = dict(kwargs or {})
    modes = [(m, m.training) for m in model.modules()] if hasattr(model, "modules") else []
    if training == TrainingMode.EVAL and modes:
        model.eval()
    try:
        tracer, outputs, in_names = _trace(model, args, kwargs, input_names)
        check, check_outputs, _ = _trace(model, _perturb(args), _perturb(kwargs), input_names)
    finally:
        for m, was in modes:
            m.training = was
    _check_same_trace(tracer, check)
    _check_same_outputs(outputs, check_outputs)
    out_names = _output_names(output_names, len(outputs))
    if dynamo and dynamic_shapes is not None:
        axes = to_dynamic_axes(dynamic_shapes, model, args, kwargs, in_names)
    else:
        axes = _dynamic_axes(dynamic_axes, in_names, out_names)
    # with dynamo, the program holds the parameters as initializers; export_params and
    # keep_initializers_as_inputs only shape the file f (as torch)
    program = ONNXProgram(_build(model, tracer, outputs, in_names, out_names, axes, opset,
                                 export_params or dynamo, do_constant_folding,
                                 keep_initializers_as_inputs and not dynamo))
    if dynamo and optimize:
        program.optimize()
    if verbose:
        print(helper.printable_graph(program.model_proto.graph))
    if verify:
        _verify(program, tracer, outputs, out_names)
    if f is not None and dynamo:
        program.save(f, include_initializers=export_params, keep_initializers_as_inputs=keep_initializers_as_inputs,
                     external_data=bool(external_data) and not hasattr(f, "write"))
    elif f is not None:
        program.save(f)
    return program if dynamo else None


def _refuse_unsupported(table, export_type, opsets, as_functions):
    name = getattr(export_type, "name", None) or OperatorExportTypes(int(export_type)).name
    if name != "ONNX":
        raise NotImplementedError(f"ONNX export: operator_export_type={name} is not supported; distgraph exports "
                                  "standard ONNX ops only: expected OperatorExportTypes.ONNX (the default)")
    if table:
        raise NotImplementedError(f"ONNX export: custom_translation_table (for {len(table)} torch ops) is not "
                                  "supported: distgraph converts its own ops; expected None, and a converter "
                                  "registered with dg.onnx.register_converter(OpClass, fn) or "
                                  "dg.onnx.register_module_converter(ModuleClass, fn)")
    if opsets:
        raise NotImplementedError(f"ONNX export: custom_opsets={dict(opsets)} is not supported: distgraph writes "
                                  "the ai.onnx domain only; expected None (choose its version with opset_version)")
    if as_functions is not False and (as_functions is True or len(as_functions)):
        raise NotImplementedError(f"ONNX export: export_modules_as_functions={as_functions!r} is not supported; "
                                  "expected False (modules are inlined; export one module as one op with "
                                  "dg.onnx.register_module_converter)")


def _verify(program, tracer, outputs, out_names):
    """Run ``program`` in onnxruntime on the traced inputs (and parameters, where they are inputs)
    and compare with the outputs distgraph traced: floats within ``atol + rtol * |distgraph|``,
    other dtypes equal."""
    values = {v.name: _host(v.array) for v in tracer.values if v.kind in ("input", "param")}
    inits = {t.name for t in program.model_proto.graph.initializer}
    feeds = {i.name: values[i.name] for i in program.model_proto.graph.input if i.name not in inits}
    got = program._run(feeds)
    for i, (ref, name, g) in enumerate(zip(outputs, out_names, got)):
        w = _host(tracer.values[ref].array if isinstance(ref, Val) else ref.array)
        g = np.asarray(g)
        if g.shape != w.shape:
            raise OnnxExporterError(f"ONNX export: verify=True: output {i} ('{name}') has shape {g.shape} in "
                                    f"onnxruntime and {w.shape} in distgraph; expected equal shapes")
        floats = w.dtype.kind in "fc"
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64)) if g.size else np.zeros(0)
        ok = np.allclose(g, w, rtol=VERIFY_RTOL, atol=VERIFY_ATOL, equal_nan=True) if floats else \
            np.array_equal(g, w)
        if not ok:
            rel = float((diff / (np.abs(w) + 1e-7)).max())
            raise OnnxExporterError(
                f"ONNX export: verify=True: output {i} ('{name}') differs between onnxruntime and distgraph: max "
                f"|onnxruntime - distgraph| = {float(np.nanmax(diff)):.6g} (max relative {rel:.3g}); expected "
                + (f"within atol={VERIFY_ATOL} + rtol={VERIFY_RTOL} * |distgraph|" if floats else "equal values")
                + " (a converter that computes something other than its op, or a numerically sensitive model)")


# ---------------------------------------------------------------- tracing
def _graph_inputs(model, args, kwargs, names):
    """(tensor, name) for every tensor of the call, named as ``export``'s docstring says."""
    try:
        params = list(inspect.signature(model.forward if hasattr(model, "forward") else model).parameters)
    except (TypeError, ValueError):
        params = []
    found = []
    for i, a in enumerate(args):
        base = params[i] if i < len(params) and params[i] not in ("args", "kwargs") else f"input_{i}"
        ts = flatten(a)
        found += [(t, base if len(ts) == 1 and isinstance(a, Tensor) else f"{base}_{j}") for j, t in enumerate(ts)]
    for k, v in kwargs.items():
        ts = flatten(v)
        found += [(t, k if isinstance(v, Tensor) else f"{k}_{j}") for j, t in enumerate(ts)]
    names = list(names or [])
    if len(names) > len(found):
        raise OnnxExporterError(f"ONNX export: got {len(names)} input_names {names} for {len(found)} tensor inputs; "
                                "expected at most one name per tensor in args/kwargs")
    return [(t, names[i] if i < len(names) else n) for i, (t, n) in enumerate(found)]


def _trace(model, args, kwargs, input_names):
    tracer = Tracer(ARRAY_SLOTS, opaque=tuple(MODULE_CONVERTERS), rewrites=REWRITES)
    inputs = _graph_inputs(model, args, kwargs, input_names)
    in_names = []
    for t, name in inputs:
        tracer.add_value(t, "input", name)
        in_names.append(name)
    if len(set(in_names)) != len(in_names):
        raise OnnxExporterError(f"ONNX export: input names must be unique, got {in_names}")
    if hasattr(model, "state_dict"):
        seen = {id(t.array) for t, _ in inputs}
        for name, p in model.state_dict(keep_vars=True).items():
            if isinstance(p, Tensor) and id(p.array) not in seen:   # tied weights keep the first name
                seen.add(id(p.array))
                tracer.add_value(p, "param", name)
    with no_grad(), tracing(tracer, model if hasattr(model, "named_modules") else _NoModules()):
        out = model(*args, **kwargs)
    outputs = [tracer.ref(t) for t in flatten(out)]
    if not outputs:
        raise OnnxExporterError(f"ONNX export: expected the model to return tensors (or tuples/lists/dicts of "
                                f"them), got {type(out).__name__}")
    return tracer, outputs, in_names


class _NoModules:
    def named_modules(self):
        return []


def _perturb(obj):
    """A copy of the call's arguments with other tensor values: floats plus noise, integers and
    bools shuffled (so indices stay in range)."""
    rng = np.random.default_rng(12345)

    def go(x):
        if isinstance(x, Tensor):
            a = _host(x.array)
            if a.dtype.kind == "f":
                b = a + (rng.standard_normal(a.shape) * (float(np.abs(a).mean()) + 1.0)).astype(a.dtype)
            else:
                b = rng.permutation(a.reshape(-1)).reshape(a.shape) if a.size > 1 else a.copy()
                if a.size > 1 and a.dtype == np.bool_ and (b == a).all():
                    b = ~a
            return _like(x, b)
        if isinstance(x, (tuple, list)):
            return type(x)(go(v) for v in x)
        if isinstance(x, dict):
            return {k: go(v) for k, v in x.items()}
        return x
    return go(obj)


def _like(t, array):
    from distgraph.autograd.tensor import wrap
    return wrap(backend.to_device(np.ascontiguousarray(array), t.device))


def _refs(op):
    """Every input reference of an op, flattened (for comparing two traces)."""
    stack = list(op.inputs) + list(op.arrays.values()) + list((op.kwargs or {}).values())
    while stack:
        r = stack.pop(0)
        if isinstance(r, (tuple, list)):
            stack[:0] = list(r)
        else:
            yield r


def _same_const(a, b):
    if not isinstance(b, Const) or a.array.shape != b.array.shape or a.array.dtype != b.array.dtype:
        return False
    return bool(np.array_equal(a.array, b.array, equal_nan=a.array.dtype.kind == "f"))


def _check_same_trace(t1, t2):
    """The same ops with the same constants, whatever the input values (see ``export``)."""
    names1, names2 = [(o.name, getattr(o.fn, "trace_key", None)) for o in t1.ops], \
        [(o.name, getattr(o.fn, "trace_key", None)) for o in t2.ops]
    if names1 != names2:
        k = next((i for i, (a, b) in enumerate(zip(names1, names2)) if a != b), min(len(names1), len(names2)))
        where = t1.ops[k].where if k < len(t1.ops) else t2.ops[k].where
        raise TracingError(
            f"ONNX export: the ops the model runs change with the input values (from op {k}, {where}): "
            "control flow depends on tensor values (an `if` on a tensor, .item(), a loop over a "
            "tensor's values); a traced graph can only hold one path: expected forward() to run the "
            "same ops for every input of these shapes")
    for o1, o2 in zip(t1.ops, t2.ops):
        for i, (r1, r2) in enumerate(zip(_refs(o1), _refs(o2))):
            same = _same_const(r1, r2) if isinstance(r1, Const) else (
                isinstance(r1, Val)) or r1 == r2 or r1 is r2
            if not same:
                raise TracingError(
                    f"ONNX export: input {i} of op '{o1.name}' ({o1.where}) changes with the model's inputs "
                    "but was computed outside the ops distgraph traces (a comparison such as `x > 0`, "
                    "clamp(), a mask built from the inputs, .numpy() or .item(), or a random tensor); "
                    "frozen as a constant it would give wrong results. Expected such values to be model "
                    "inputs, or computed with supported ops (see docs/onnx.md)")


def _check_same_outputs(out1, out2):
    """An output that no traced op computed (``x.argmax(1)`` returned as it is) must not change with
    the inputs either."""
    for i, (r1, r2) in enumerate(zip(out1, out2)):
        if isinstance(r1, Const) and not _same_const(r1, r2):
            raise TracingError(
                f"ONNX export: output {i} of the model changes with the model's inputs but was computed outside "
                "the ops distgraph traces (argmax/argmin, a comparison, .numpy() or .item()); frozen as a "
                "constant it would give wrong results. Expected outputs computed with supported ops "
                "(see docs/onnx.md)")


# ---------------------------------------------------------------- conversion
def _output_names(names, n):
    names = list(names or [])
    if len(names) > n:
        raise OnnxExporterError(f"ONNX export: got {len(names)} output_names {names} for {n} tensor outputs; "
                                "expected at most one name per output tensor")
    default = ["output"] if n == 1 else [f"output_{i}" for i in range(n)]
    out = names + default[len(names):]
    if len(set(out)) != len(out):
        raise OnnxExporterError(f"ONNX export: output names must be unique, got {out}")
    return out


def _dynamic_axes(spec, in_names, out_names):
    axes = {}
    for name, dims in (spec or {}).items():
        if name not in in_names and name not in out_names:
            raise OnnxExporterError(f"ONNX export: dynamic_axes names '{name}', which is neither an input "
                                    f"{in_names} nor an output {out_names}; expected names from input_names "
                                    "or output_names")
        if isinstance(dims, dict):
            axes[name] = {int(k): str(v) for k, v in dims.items()}
        else:
            axes[name] = {int(k): f"{name}_dynamic_axes_{j + 1}" for j, k in enumerate(dims)}
    return axes


def _dims(shape, dyn):
    return [dyn.get(i, dyn.get(i - len(shape), n)) for i, n in enumerate(shape)]


def _build(model, tracer, outputs, in_names, out_names, axes, opset, export_params, fold, keep_inits):
    values = tracer.values
    params = {vid for vid, v in enumerate(values) if v.kind == "param"}
    g = GraphBuilder(opset, values, {vid: v.name for vid, v in enumerate(values) if v.kind != "op"})
    g.module_names = {id(m): n for n, m in model.named_modules()} if hasattr(model, "named_modules") else {}
    constant = set(params) if export_params else set()

    def foldable(r):
        return r in constant if isinstance(r, Val) else not isinstance(r, (tuple, list))

    for op in tracer.ops:
        if fold and op.module is None and all(foldable(r) for r in _refs(op)):
            for vid in op.outputs:
                constant.add(vid)
                g.names[vid] = g.const(_host(values[vid].array), "Constant")
            continue
        if op.module is not None:
            conv = find_module_converter(op.module)
        else:
            conv = CONVERTERS.get(type(op.fn))
        if conv is None:
            raise UnsupportedOperatorError(op.name, op.where, "no converter is registered for it")
        outs = conv(g, op)
        outs = [outs] if isinstance(outs, str) else list(outs)
        for vid, name in zip(op.outputs, outs):
            g.names[vid] = name
    # outputs: rename the node that makes each one (or add an Identity)
    producers = {o: node for node in g.nodes for o in node.output}
    taken = set()
    for ref, name in zip(outputs, out_names):
        src = g.input(ref, values[ref].array.dtype if isinstance(ref, Val) else None)
        node = producers.get(src)
        if node is not None and src not in taken and src not in g.initializers and not _consumed(g, src):
            node.output[list(node.output).index(src)] = name
            taken.add(src)
        else:
            g.nodes.append(helper.make_node("Identity", [src], [name], name=f"/n_Identity_{name}"))
    used = {i for node in g.nodes for i in node.input}
    # the model inputs are the first values the tracer registered, in order
    graph_inputs = [value_info(n, values[vid].array.dtype, _dims(values[vid].array.shape, axes.get(n, {})))
                    for vid, n in enumerate(in_names)]
    for vid in sorted(params):
        v = values[vid]
        if v.name in used:
            if export_params:
                g.add_initializer(v.name, _host(v.array))
            else:
                graph_inputs.append(value_info(v.name, v.array.dtype, v.array.shape))
    inits = [g.initializers[n] for n in g.initializers if n in used]
    if keep_inits:
        graph_inputs += [value_info(t.name, onnx.numpy_helper.to_array(t).dtype, t.dims) for t in inits]
    opsets = [helper.make_opsetid("", opset)]
    graph_outputs = []
    for ref, name in zip(outputs, out_names):
        a = values[ref].array if isinstance(ref, Val) else ref.array
        graph_outputs.append(value_info(name, a.dtype, _dims(a.shape, axes.get(name, {}))))
    if any(axes.get(n) for n in in_names):
        graph_outputs = _infer_output_dims(g, graph_inputs, graph_outputs, inits, opsets)
    graph = helper.make_graph(g.nodes, "distgraph", graph_inputs, graph_outputs, inits)
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="distgraph",
                              ir_version=helper.find_min_ir_version_for(opsets))
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise OnnxExporterError(f"ONNX export: the exported model fails onnx.checker ({e}); this is a bug of "
                                "a converter, please report it with the model") from e
    return proto


def _consumed(g, name):
    return any(name in node.input for node in g.nodes)


def _infer_output_dims(g, graph_inputs, graph_outputs, inits, opsets):
    """With dynamic input axes, an output dim not named in ``dynamic_axes`` is left to ONNX shape
    inference (as torch does): symbolic where it follows a dynamic input dim, unknown where
    inference cannot tell, the traced size where it is fixed."""
    bare = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None) for o in graph_outputs]
    probe = helper.make_model(helper.make_graph(g.nodes, "probe", graph_inputs, bare, inits), opset_imports=opsets,
                              ir_version=helper.find_min_ir_version_for(opsets))
    try:
        inferred = {o.name: o for o in onnx.shape_inference.infer_shapes(probe).graph.output}
    except Exception:          # inference is a refinement only: keep the traced shapes
        return graph_outputs
    out = []
    for o in graph_outputs:
        dims = list(o.type.tensor_type.shape.dim)
        inf = inferred.get(o.name)
        idims = list(inf.type.tensor_type.shape.dim) if inf is not None else []
        idims = idims if len(idims) == len(dims) else [None] * len(dims)
        shape = []
        for d, di in zip(dims, idims):
            if d.dim_param:                                  # named in dynamic_axes
                shape.append(d.dim_param)
            elif di is not None and di.dim_param:            # follows a dynamic input dim
                shape.append(di.dim_param)
            elif di is not None and di.HasField("dim_value"):
                shape.append(d.dim_value)
            else:                                            # inference cannot tell: unknown
                shape.append(None)
        out.append(helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, shape))
    return out
