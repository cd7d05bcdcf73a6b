"""Export to ONNX: ``dg.onnx.export(model, args, "model.onnx")``, as ``torch.onnx.export``.

The exporter needs the ``onnx`` package (``pip install 'distgraph[onnx]'``); it is imported on the
first call, so ``import distgraph`` works without it.  See docs/onnx.md for what is supported and
how the exporter differs from PyTorch's.
"""
from distgraph.onnx import errors
from distgraph.onnx.errors import OnnxExporterError, TracingError, TrainingMode, UnsupportedOperatorError

__all__ = ["export", "TrainingMode", "errors", "OnnxExporterError", "UnsupportedOperatorError", "TracingError",
           "register_converter", "register_module_converter"]


def _load(name):
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ImportError("dg.onnx needs the onnx package, which is not installed: pip install 'distgraph[onnx]'") \
            from e
    import importlib
    return importlib.import_module(f"{__name__}.{name}")


def export(model, args=(), f=None, *, kwargs=None, export_params=True, verbose=False, training=TrainingMode.EVAL,
           input_names=None, output_names=None, opset_version=None, do_constant_folding=True, dynamic_axes=None,
           keep_initializers_as_inputs=False):
    """Export ``model`` to ONNX by tracing ``model(*args, **kwargs)`` once; returns the ``onnx.ModelProto``
    and writes it to ``f`` (a path or a binary file object) unless ``f`` is None.  The arguments are
    ``torch.onnx.export``'s; ``distgraph.onnx.exporter.export`` documents each."""
    return _load("exporter").export(
        model, args, f, kwargs=kwargs, export_params=export_params, verbose=verbose, training=training,
        input_names=input_names, output_names=output_names, opset_version=opset_version,
        do_constant_folding=do_constant_folding, dynamic_axes=dynamic_axes,
        keep_initializers_as_inputs=keep_initializers_as_inputs)


def register_converter(cls, fn=None, *, arrays=()):
    """Convert the op class ``cls`` with ``fn(g, op) -> onnx_name`` (see ``distgraph.onnx.converters``)."""
    _load("exporter")                      # the built-in converters first, so that ``fn`` can replace one
    return _load("registry").register_converter(cls, fn, arrays=arrays)


def register_module_converter(cls, fn):
    """Export ``cls`` modules as one call converted by ``fn(g, op)`` (see ``distgraph.onnx.modules``)."""
    return _load("modules").register_module_converter(cls, fn)
