"""``autograd.functional``: Jacobians and vector-Jacobian / Jacobian-vector products of a function.

Everything is built on reverse mode (``autograd.grad``): a Jacobian is one backward pass per output
element, and ``jvp`` is the Jacobian contracted with ``v`` (exact, but one backward pass per output
element, where PyTorch uses a double-backward trick).  Second derivatives (``hessian``, ``hvp``,
``vhp``) and ``create_graph=True`` need the engine to record its own backward pass, which it does not
(backward rules run on raw arrays): they raise ``NotImplementedError``.

Output nesting follows PyTorch: a Tensor for a Tensor input and output; a tuple over inputs (or
outputs) when the inputs (or the outputs) are a tuple; a tuple of tuples, ``result[i][j]`` for output
``i`` and input ``j``, when both are.
"""
from __future__ import annotations

import contextlib
import threading

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.tensor import Tensor, wrap

__all__ = ["hessian", "hvp", "jacobian", "jvp", "vhp", "vjp"]

_state = threading.local()


@contextlib.contextmanager
def transform(name):
    """Mark a differentiating transform as running; a second one inside it would silently miss the
    inner derivatives (the engine records no backward pass), so it raises instead."""
    if getattr(_state, "depth", 0):
        raise NotImplementedError(
            f"{name}: nested differentiation (a gradient of a gradient, jacrev of grad, ...) needs "
            "higher-order gradients, which distgraph's engine does not record")
    _state.depth = 1
    try:
        yield
    finally:
        _state.depth = 0


def _no_create_graph(name, create_graph):
    if create_graph:
        raise NotImplementedError(f"{name}(create_graph=True): higher-order gradients are not supported by "
                                  "distgraph's engine (backward rules run on raw arrays)")


def _as_tuple(x, what, fn_name):
    """``(was a tuple, tuple of Tensors)``; TypeError (PyTorch's wording) for anything else."""
    if isinstance(x, Tensor):
        return False, (x,)
    if not isinstance(x, tuple):
        raise TypeError(f"The {what} given to {fn_name} must be either a Tensor or a tuple of Tensors but the "
                        f"given {what} has type {type(x)}.")
    for i, t in enumerate(x):
        if not isinstance(t, Tensor):
            raise TypeError(f"The {what} given to {fn_name} must be either a Tensor or a tuple of Tensors but the "
                            f"value at index {i} has type {type(t)}.")
    return True, x


def _leaves(inputs):
    """Fresh leaves for the function: detached from any outer graph, requiring grad."""
    return tuple(x.detach().requires_grad_() for x in inputs)


def _call(func, inputs, fn_name):
    with grad_mode.enable_grad():
        out = func(*inputs)
    return _as_tuple(out, "outputs of the user-provided function", fn_name)


def _nest(blocks, out_tuple, in_tuple):
    if out_tuple and in_tuple:
        return tuple(tuple(row) for row in blocks)
    if out_tuple:
        return tuple(row[0] for row in blocks)
    if in_tuple:
        return tuple(blocks[0])
    return blocks[0][0]


def _one_hot(o, k):
    xp = backend.get_array_module(o.array)
    seed = xp.zeros(o.numel(), o.dtype)
    seed[k] = 1
    return wrap(seed.reshape(o.shape))


def jacobian_blocks(outputs, inputs, strict=False):
    """``blocks[i][j]``: d outputs[i] / d inputs[j], a Tensor of shape ``outputs[i].shape + inputs[j].shape``
    (zeros where the output does not depend on the input, or RuntimeError with ``strict``), computed by one
    backward pass per output element."""
    from distgraph.autograd import grad
    blocks = []
    for i, o in enumerate(outputs):
        rows = [[] for _ in inputs]
        if o.requires_grad:
            for k in range(o.numel()):
                gs = grad([o], list(inputs), grad_outputs=[_one_hot(o, k)], retain_graph=True, allow_unused=True)
                for j, g in enumerate(gs):
                    rows[j].append(g)
        row = []
        for j, x in enumerate(inputs):
            xp = backend.get_array_module(x.array)
            if all(g is None for g in rows[j]):
                if strict:
                    raise RuntimeError(f"Output {i} of the user-provided function is independent of input {j}. "
                                       "This is not allowed in strict mode.")
                row.append(wrap(xp.zeros(tuple(o.shape) + tuple(x.shape), x.dtype)))
                continue
            arrays = [xp.zeros(x.shape, x.dtype) if g is None else g.array for g in rows[j]]
            row.append(wrap(xp.stack(arrays).reshape(tuple(o.shape) + tuple(x.shape))))
        blocks.append(row)
    return blocks


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False, strategy="reverse-mode"):
    """The Jacobian of ``func`` at ``inputs``.

    Args:
        func: takes the input Tensors as positional arguments, returns a Tensor or a tuple of Tensors.
        inputs: a Tensor or a tuple of Tensors.
        create_graph: must be False (see the module docstring).
        strict: raise when an output does not depend on an input (otherwise its block is zeros).
        vectorize: accepted; the result is the same (always one backward pass per output element).
        strategy: ``"reverse-mode"`` or ``"forward-mode"`` (the latter, as in PyTorch, only with
            ``vectorize=True``); both are computed in reverse mode here.

    Returns:
        A Tensor of shape ``out.shape + in.shape``, or PyTorch's tuple / tuple-of-tuples nesting.

    Raises:
        TypeError: inputs or outputs that are not Tensors or tuples of Tensors.
        RuntimeError: with ``strict``, an output independent of an input.
        NotImplementedError: ``create_graph=True``, or ``strategy="forward-mode"`` without ``vectorize``.
    """
    _no_create_graph("jacobian", create_graph)
    if strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError(f'Expected strategy to be either "forward-mode" or "reverse-mode", got {strategy!r}.')
    if strategy == "forward-mode" and not vectorize:
        raise NotImplementedError('jacobian: strategy="forward-mode" is only implemented for vectorize=True.')
    with transform("jacobian"):
        in_tuple, ins = _as_tuple(inputs, "inputs", "jacobian")
        ins = _leaves(ins)
        out_tuple, outs = _call(func, ins, "jacobian")
        return _nest(jacobian_blocks(outs, ins, strict), out_tuple, in_tuple)


def _check_v(v, like, what):
    if len(v) != len(like):
        raise RuntimeError(f"{what} is a tuple of invalid length: should be {len(like)} but got {len(v)}.")
    for i, (a, b) in enumerate(zip(v, like)):
        if a.shape != b.shape:
            prefix = f"Entry {i} in {what}" if len(like) > 1 else what
            raise RuntimeError(f"{prefix} has invalid size: should be {b.shape} but got {a.shape}.")


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """``v^T J``: the gradient of ``sum(out_i * v_i)`` with respect to each input.

    Args:
        func: takes the inputs as positional arguments, returns a Tensor or a tuple of Tensors.
        inputs: a Tensor or a tuple of Tensors.
        v: one tensor per output, shaped like it; may be None only for one single-element output.
        create_graph: must be False.
        strict: raise when the outputs do not depend on an input (otherwise its vjp is zeros).

    Returns:
        ``(func_output, vjp)``: the outputs (detached), and the products shaped like the inputs.
    """
    from distgraph.autograd import grad
    _no_create_graph("vjp", create_graph)
    with transform("vjp"):
        in_tuple, ins = _as_tuple(inputs, "inputs", "vjp")
        ins = _leaves(ins)
        out_tuple, outs = _call(func, ins, "vjp")
        if v is None:
            if len(outs) != 1 or outs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the user-provided function returns a single "
                                   "Tensor with a single element.")
            vs = (wrap(backend.get_array_module(outs[0].array).ones(outs[0].shape, outs[0].dtype)),)
        else:
            vs = _as_tuple(v, "v", "vjp")[1]
            _check_v(vs, outs, "v")
        live = [(o, t) for o, t in zip(outs, vs) if o.requires_grad]
        gs = (grad([o for o, _ in live], list(ins), grad_outputs=[t for _, t in live], allow_unused=True)
              if live else [None] * len(ins))
        result = []
        for j, (x, g) in enumerate(zip(ins, gs)):
            if g is None:
                if strict:
                    raise RuntimeError(f"The output of the user-provided function is independent of input {j}. "
                                       "This is not allowed in strict mode.")
                g = wrap(backend.get_array_module(x.array).zeros(x.shape, x.dtype))
            result.append(g)
        outs = tuple(o.detach() for o in outs)
        return (outs if out_tuple else outs[0]), (tuple(result) if in_tuple else result[0])


def contract(outs, blocks, vs):
    """Each output's ``J v``: its Jacobian blocks (one per input, ``jacobian_blocks``) times ``vs``."""
    result = []
    for o, row in zip(outs, blocks):
        total = 0
        for block, t in zip(row, vs):
            total = total + block.array.reshape(o.numel(), -1) @ t.array.reshape(-1).astype(block.dtype)
        result.append(wrap(total.reshape(o.shape).astype(o.dtype)))
    return result


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """``J v``: the directional derivative of each output along ``v``.

    Computed exactly as the Jacobian (one backward pass per output element) contracted with ``v``.

    Args:
        func: takes the inputs as positional arguments, returns a Tensor or a tuple of Tensors.
        inputs: a Tensor or a tuple of Tensors.
        v: one tensor per input, shaped like it; may be None only for one single-element input.
        create_graph: must be False.
        strict: raise when the outputs do not depend on an input.

    Returns:
        ``(func_output, jvp)``: the outputs (detached), and the products shaped like the outputs.
    """
    _no_create_graph("jvp", create_graph)
    with transform("jvp"):
        in_tuple, ins = _as_tuple(inputs, "inputs", "jvp")
        ins = _leaves(ins)
        if v is None:
            if len(ins) != 1 or ins[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the input to the user-provided function is "
                                   "a single Tensor with a single element.")
            vs = (wrap(backend.get_array_module(ins[0].array).ones(ins[0].shape, ins[0].dtype)),)
        else:
            vs = _as_tuple(v, "v", "jvp")[1]
            _check_v(vs, ins, "v")
        out_tuple, outs = _call(func, ins, "jvp")
        try:
            blocks = jacobian_blocks(outs, ins, strict)
        except RuntimeError as e:
            j = str(e).split("input ")[-1].split(".")[0]
            raise RuntimeError(f"The output of the user-provided function is independent of input {j}. "
                               "This is not allowed in strict mode.") from None
        result = contract(outs, blocks, vs)
        outs = tuple(o.detach() for o in outs)
        return (outs if out_tuple else outs[0]), (tuple(result) if out_tuple else result[0])


def _second_order(name):
    raise NotImplementedError(
        f"autograd.functional.{name}: second derivatives need higher-order gradients, which distgraph's engine "
        "does not record (backward rules run on raw arrays); use jacobian of an analytic gradient, or finite "
        "differences of autograd.grad")


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False, outer_jacobian_strategy="reverse-mode"):
    """PyTorch's Hessian of a scalar function. Not supported: raises NotImplementedError (see the module
    docstring)."""
    _second_order("hessian")


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """PyTorch's vector-Hessian product. Not supported: raises NotImplementedError."""
    _second_order("vhp")


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """PyTorch's Hessian-vector product. Not supported: raises NotImplementedError."""
    _second_order("hvp")
