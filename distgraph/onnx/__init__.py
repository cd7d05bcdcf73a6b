"""Export to ONNX: ``dg.onnx.export(model, args, "model.onnx")``, as ``torch.onnx.export``.

The exporter needs the ``onnx`` package (``pip install 'distgraph[onnx]'``); it is imported on the
first call (and on the first use of ``dg.onnx.ONNXProgram``), so ``import distgraph`` works without
it.  See docs/onnx.md for what is supported and how the exporter differs from PyTorch's.
"""
# ``dg.export.Dim`` (torch.export.Dim) names the dims of ``dynamic_shapes``; importing it here also
# makes ``dg.export`` reachable after ``import distgraph``.  It needs no onnx.
from distgraph import export as _export_module  # noqa: F401
from distgraph.onnx import errors
from distgraph.onnx.errors import (OnnxExporterError, OnnxExporterWarning, OperatorExportTypes, TracingError,
                                   TrainingMode, UnsupportedOperatorError)

__all__ = ["export", "TrainingMode", "OperatorExportTypes", "errors", "OnnxExporterError",
           "OnnxExporterWarning", "UnsupportedOperatorError", "TracingError", "register_converter",
           "register_module_converter"]   # and ONNXProgram (loaded on first use, see __getattr__)


def _load(name):
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ImportError("dg.onnx needs the onnx package, which is not installed: pip install 'distgraph[onnx]'") \
            from e
    import importlib
    return importlib.import_module(f"{__name__}.{name}")


def export(model, args=(), f=None, *, kwargs=None, verbose=None, input_names=None, output_names=None,
           opset_version=None, dynamo=True, external_data=True, dynamic_shapes=None, custom_translation_table=None,
           report=False, optimize=True, verify=False, profile=False, dump_exported_program=False, artifacts_dir=".",
           export_params=True, keep_initializers_as_inputs=False, dynamic_axes=None, training=TrainingMode.EVAL,
           operator_export_type=OperatorExportTypes.ONNX, do_constant_folding=True, custom_opsets=None,
           export_modules_as_functions=False, autograd_inlining=True):
    """Export ``model`` to ONNX by tracing ``model(*args, **kwargs)`` once, with ``torch.onnx.export``'s
    arguments.  Returns an ``ONNXProgram`` (``dynamo=True``, the default) or None (``dynamo=False``),
    and writes the model to ``f`` (a path or a binary file object) unless ``f`` is None.
    ``distgraph.onnx.exporter.export`` documents each argument."""
    options = dict(locals())            # exactly the arguments above (nothing else is defined yet)
    return _load("exporter").export(**options)


def __getattr__(name):
    if name == "ONNXProgram":           # needs onnx: loaded on first use
        return _load("program").ONNXProgram
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_converter(cls, fn=None, *, arrays=()):
    """Convert the op class ``cls`` with ``fn(g, op) -> onnx_name`` (see ``distgraph.onnx.converters``)."""
    _load("exporter")                      # the built-in converters first, so that ``fn`` can replace one
    return _load("registry").register_converter(cls, fn, arrays=arrays)


def register_module_converter(cls, fn):
    """Export ``cls`` modules as one call converted by ``fn(g, op)`` (see ``distgraph.onnx.modules``)."""
    return _load("modules").register_module_converter(cls, fn)
