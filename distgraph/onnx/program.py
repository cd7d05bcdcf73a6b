"""``ONNXProgram``: what ``dg.onnx.export`` returns with ``dynamo=True`` (the default), as
``torch.onnx.ONNXProgram``: the model, saving it, running it in onnxruntime with distgraph Tensors.

It holds an ``onnx.ModelProto`` (torch's holds an ``onnx_ir.Model``, which needs onnxscript).
"""
from __future__ import annotations

import gc
import os
import tempfile
import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper

from distgraph.autograd.tensor import Tensor, wrap
from distgraph.onnx.errors import OnnxExporterError, OnnxExporterWarning
from distgraph.onnx.trace import _host

# Initializers over this size go through an external data file: a ModelProto cannot be
# serialized past 2 GB (torch uses the same threshold).
LARGE_MODEL_BYTES = 1536 * 1024 ** 2
EXTERNAL_MIN_BYTES = 1024         # with external data, smaller initializers stay in the model file (onnx's default)


def default_session(model):
    """An onnxruntime session for ``model`` (bytes, or a path): CUDA when onnxruntime has it,
    else CPU; only errors are logged."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    available = set(ort.get_available_providers())
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(model, sess_options=options, providers=providers)


class ONNXProgram:
    """An exported model: ``program(*args)`` runs it in onnxruntime.

    Attributes:
        model_proto: the ``onnx.ModelProto`` itself (not a copy: after changing it in place,
            call ``release()`` so that the next call builds a new session).
        exported_program: None (distgraph traces; it makes no ``torch.export.ExportedProgram``).
    """

    exported_program = None

    def __init__(self, model_proto: onnx.ModelProto):
        self._proto = model_proto
        self._session = None
        self._tempdir = None

    @property
    def model_proto(self) -> onnx.ModelProto:
        return self._proto

    @model_proto.setter
    def model_proto(self, proto: onnx.ModelProto):
        self.release()
        self._proto = proto

    @property
    def model(self):
        raise NotImplementedError("ONNXProgram.model is an onnx_ir.Model in torch (it needs onnxscript); "
                                  "distgraph's program holds an onnx.ModelProto: use .model_proto")

    def __repr__(self):
        g = self._proto.graph
        return (f"ONNXProgram(inputs={[i.name for i in g.input]}, outputs={[o.name for o in g.output]}, "
                f"nodes={len(g.node)}, initializers={len(g.initializer)}, opset={self._proto.opset_import[0].version})")

    # ------------------------------------------------------------ running
    def __call__(self, *args, **kwargs) -> tuple:
        """Run the model in onnxruntime on the tensors of ``args`` and ``kwargs`` (the same call as
        the exported one: its tensors, nested in tuples/lists/dicts, in order; None and other values,
        frozen at export, are skipped).  Returns a tuple of CPU distgraph Tensors, one per output
        (also for one output).  The session is made on the first call and kept (see ``release``)."""
        return tuple(wrap(np.asarray(a)) for a in self._run(self._feeds(args, kwargs)))

    def call_reference(self, *args, **kwargs) -> tuple:
        """As ``__call__``, with ONNX's reference evaluator (``onnx.reference``) instead of onnxruntime."""
        from onnx.reference import ReferenceEvaluator
        outs = ReferenceEvaluator(self._proto).run(None, self._feeds(args, kwargs))
        return tuple(wrap(np.asarray(a)) for a in outs)

    def compute_values(self, value_names, args=(), kwargs=None) -> tuple:
        """The values named ``value_names`` (any node output, input or initializer of the graph), computed
        by onnxruntime for the call ``args, kwargs``; a tuple of Tensors in that order.

        Raises:
            ValueError: a name is not a value of the graph whose type ONNX shape inference knows.
        """
        names = list(value_names)
        g = onnx.shape_inference.infer_shapes(self._proto).graph
        infos = {v.name: v for v in list(g.input) + list(g.value_info) + list(g.output)}
        for t in self._proto.graph.initializer:
            infos.setdefault(t.name, helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        missing = [n for n in names if n not in infos]
        if missing:
            raise ValueError(f"ONNXProgram.compute_values: {missing} are not values of the graph (or their type is "
                             "unknown to ONNX shape inference); expected node output, input or initializer names")
        probe = onnx.ModelProto()
        probe.CopyFrom(self._proto)
        del probe.graph.output[:]
        probe.graph.output.extend(infos[n] for n in names)
        session = default_session(probe.SerializeToString())
        return tuple(wrap(np.asarray(a)) for a in session.run(None, self._feeds(args, kwargs or {})))

    def _run(self, feeds: dict) -> list:
        if self._session is None:
            self.initialize_inference_session()
        return self._session.run(None, feeds)

    def _input_names(self) -> list:
        inits = {t.name for t in self._proto.graph.initializer}
        return [i.name for i in self._proto.graph.input if i.name not in inits]

    def _feeds(self, args, kwargs) -> dict:
        arrays = [a for a in _leaves((args, kwargs))]
        names = self._input_names()
        if len(arrays) != len(names):
            raise OnnxExporterError(f"ONNXProgram: expected {len(names)} tensors (for the graph inputs {names}), "
                                    f"got {len(arrays)}; pass the tensors of the exported call, in its order")
        return dict(zip(names, arrays))

    def initialize_inference_session(self, initializer=default_session) -> None:
        """Make the onnxruntime session that ``__call__`` uses: ``initializer(model)`` gets the
        serialized model (bytes), or the path of a temporary copy with its weights in an external
        data file when they are over 1.5 GiB; the default is ``default_session``."""
        self.release()
        if _initializer_bytes(self._proto) > LARGE_MODEL_BYTES:
            self._tempdir = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
            model = os.path.join(self._tempdir.name, "model.onnx")
            self.save(model, external_data=True)
        else:
            model = self._proto.SerializeToString()
        self._session = initializer(model)

    def release(self) -> None:
        """Drop the inference session (and its temporary files); the next call makes a new one."""
        self._session = None
        gc.collect()                          # the session must be gone before its files are removed
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    # ------------------------------------------------------------ changing and saving
    def optimize(self) -> None:
        """Clean the graph up in place (torch runs onnxscript's optimizer here; distgraph needs no
        onnxscript): ``Identity`` nodes that are not graph outputs are bypassed, nodes whose
        results nothing uses are removed, then initializers that nothing reads.  Constant folding
        is done at export (``do_constant_folding``).  The result passes ``onnx.checker``."""
        g = self._proto.graph
        outputs = {o.name for o in g.output}
        inner = _subgraph_reads(g)
        rename, kept = {}, []
        for node in g.node:                  # ONNX nodes are in topological order
            node.input[:] = [rename.get(i, i) for i in node.input]
            out = node.output[0] if len(node.output) == 1 else None
            if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and out not in outputs | inner:
                rename[out] = node.input[0]
            else:
                kept.append(node)
        needed = set(outputs) | inner
        live = []
        for node in reversed(kept):
            if not node.output or any(o in needed for o in node.output):
                live.append(node)
                needed.update(node.input)
        listed = {i.name for i in g.input}
        nodes = [_copy(n, onnx.NodeProto) for n in reversed(live)]
        inits = [_copy(t, onnx.TensorProto) for t in g.initializer if t.name in needed or t.name in listed]
        made = {o for n in nodes for o in n.output}
        infos = [_copy(v, onnx.ValueInfoProto) for v in g.value_info if v.name in made]
        del g.node[:], g.initializer[:], g.value_info[:]
        g.node.extend(nodes)
        g.initializer.extend(inits)
        g.value_info.extend(infos)
        onnx.checker.check_model(self._proto)
        self.release()

    def apply_weights(self, state_dict) -> None:
        """Replace initializers by name with the values of ``state_dict`` (Tensors or arrays of the same
        shape and dtype); a name that is no initializer is skipped with an ``OnnxExporterWarning``
        (folded buffers such as BatchNorm's statistics, and the re-laid-out weights of recurrent
        layers, ``<module>.onnx_W_l0``, are not initializers under their state_dict names)."""
        inits = {t.name: t for t in self._proto.graph.initializer}
        for name, value in state_dict.items():
            t = inits.get(name)
            if t is None:
                warnings.warn(f"ONNXProgram.apply_weights: '{name}' is not an initializer of the model; skipped",
                              OnnxExporterWarning, stacklevel=2)
                continue
            a = np.ascontiguousarray(_host(value.array) if isinstance(value, Tensor) else np.asarray(value))
            want = (tuple(t.dims), np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)))
            if (a.shape, a.dtype) != want:
                raise OnnxExporterError(f"ONNXProgram.apply_weights: '{name}' expected shape {want[0]} and dtype "
                                        f"{want[1]}, got {a.shape} {a.dtype}")
            t.CopyFrom(numpy_helper.from_array(a, name))
        self.release()

    def rename_axes(self, rename_mapping: dict) -> None:
        """Rename symbolic dims (``dim_param``) of the graph's inputs, outputs and value infos:
        ``{"x_dim_0": "batch"}``."""
        for old, new in rename_mapping.items():
            if not isinstance(old, str) or not isinstance(new, str):
                raise TypeError(f"ONNXProgram.rename_axes: expected str -> str, got {old!r} -> {new!r} (distgraph "
                                "has no onnx_ir.SymbolicDim; name axes by their dim_param)")
        g = self._proto.graph
        for v in list(g.input) + list(g.output) + list(g.value_info):
            for d in v.type.tensor_type.shape.dim:
                if d.HasField("dim_param") and d.dim_param in rename_mapping:
                    d.dim_param = rename_mapping[d.dim_param]
        self.release()

    def save(self, destination, *, include_initializers: bool = True, keep_initializers_as_inputs: bool = False,
             external_data: bool | None = None) -> None:
        """Write the model to ``destination`` (a path, or a binary file object).

        ``include_initializers=False`` leaves the initializers out (to be attached, or fed as inputs,
        later); ``keep_initializers_as_inputs=True`` also lists each as a graph input (so that a
        caller may feed other weights).  With ``external_data=True``, or initializers over 1.5 GiB,
        every initializer of 1 KiB or more goes to one file ``<destination>.data`` beside the model
        (rewritten, not appended to), which onnxruntime finds when it loads the model from its path;
        smaller ones (shapes, pads) stay in the model, where onnxruntime's shape inference needs them.

        Raises:
            TypeError: ``external_data=True`` with a file object.
        """
        model = onnx.ModelProto()
        model.CopyFrom(self._proto)
        g = model.graph
        if keep_initializers_as_inputs:
            listed = {i.name for i in g.input}
            g.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                           for t in g.initializer if t.name not in listed)
        if not include_initializers:
            del g.initializer[:]
        large = _initializer_bytes(model) > LARGE_MODEL_BYTES
        if hasattr(destination, "write"):
            if external_data or large:
                raise TypeError("ONNXProgram.save: external data needs a file path, got a file object "
                                f"({type(destination).__name__}); expected a path, or external_data=False")
            destination.write(model.SerializeToString())
            return
        path = os.fspath(destination)
        if external_data or large:
            location = os.path.basename(path) + ".data"
            data = os.path.join(os.path.dirname(path), location)
            if os.path.exists(data):          # onnx appends to an existing data file
                os.remove(data)
            # tensors under 1 KiB (shapes, pads, axes) stay inline: onnxruntime's shape inference reads them
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=location, size_threshold=EXTERNAL_MIN_BYTES)
        else:
            onnx.save_model(model, path)


# ---------------------------------------------------------------- helpers
def _leaves(obj):
    """The arrays of a call, in order (as ``export`` numbers its inputs)."""
    if isinstance(obj, Tensor):
        yield _host(obj.array)
    elif isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _leaves(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _leaves(o)


def _initializer_bytes(proto) -> int:
    return sum(int(np.prod(t.dims, dtype=np.int64)) * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
               for t in proto.graph.initializer)


def _subgraph_reads(graph) -> set:
    """Every name that a node of a subgraph (an If/Loop/Scan body) reads: the outer values it may use."""
    names = set()
    for node in graph.node:
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                names |= {i for n in sub.node for i in n.input} | _subgraph_reads(sub)
    return names


def _copy(message, cls):
    c = cls()
    c.CopyFrom(message)
    return c
