"""``dg.func`` (PyTorch's ``torch.func``): function transforms over the eager engine.

``grad``, ``grad_and_value``, ``vjp``, ``jvp``, ``jacrev`` and ``jacfwd`` run the function once with
fresh leaves and call ``autograd.grad`` (Jacobians: one backward pass per output element; ``jvp``
and ``jacfwd`` are computed in reverse mode too, so they are exact but not cheaper).  ``vmap`` is a
loop: it calls the function once per index of the mapped dimension and stacks the results (same
``in_dims`` / ``out_dims`` rules as PyTorch; ``randomness`` and ``chunk_size`` are accepted but each
call simply draws its own random numbers).  Arguments and outputs may be pytrees of tuples, lists
and dicts of Tensors (e.g. the parameter dict of ``functional_call``).

Transforms of transforms that need second derivatives (``grad(grad(f))``, ``hessian``) raise
``NotImplementedError``: the engine records no graph of its own backward pass.  ``vmap`` of ``grad``
(per-sample gradients) works.
"""
from __future__ import annotations

import functools

from distgraph import backend
from distgraph.autograd import grad_mode
from distgraph.autograd.functional import contract, jacobian_blocks, transform
from distgraph.autograd.ops.shape import stack
from distgraph.autograd.tensor import Tensor, wrap
from distgraph.nn.utils.stateless import functional_call

__all__ = ["functional_call", "grad", "grad_and_value", "hessian", "jacfwd", "jacrev", "jvp", "vjp", "vmap"]


# ----------------------------------------------------------------- pytrees
def _leaves(tree):
    if isinstance(tree, (tuple, list)):
        return [x for t in tree for x in _leaves(t)]
    if isinstance(tree, dict):
        return [x for t in tree.values() for x in _leaves(t)]
    return [tree]


def _map(fn, tree):
    """``tree`` with every leaf ``x`` replaced by ``fn(x)`` (tuples, lists, dicts keep their types)."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):   # namedtuple
        return type(tree)(*(_map(fn, t) for t in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map(fn, t) for t in tree)
    if isinstance(tree, dict):
        return type(tree)((k, _map(fn, v)) for k, v in tree.items())
    return fn(tree)


def _fill(tree, values):
    it = iter(values)
    return _map(lambda _: next(it), tree)


def _fresh(x):
    return x.detach().requires_grad_() if isinstance(x, Tensor) else x


def _zeros_like(x):
    return wrap(backend.get_array_module(x.array).zeros(x.shape, x.dtype))


def _argnums(argnums, n, name):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums or not all(isinstance(a, int) for a in nums):
        raise RuntimeError(f"{name}: argnums must be an int or a non-empty tuple of ints, got {argnums!r}")
    for a in nums:
        if not -n <= a < n:
            raise RuntimeError(f"Got argnum={a}, but only {n} positional inputs")
    return tuple(a % n for a in nums)


def _prepare(args, argnums, name):
    """Args with fresh leaves at ``argnums``, and the differentiated part (one tree, or a tuple of trees)."""
    nums = _argnums(argnums, len(args), name)
    args = list(args)
    for a in nums:
        args[a] = _map(_fresh, args[a])
    diff = args[nums[0]] if isinstance(argnums, int) else tuple(args[a] for a in nums)
    return args, diff


def _split_aux(out, has_aux, name):
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise RuntimeError(f"{name}(f, ...)(*args): output of function f should be a tuple: (output, aux) "
                           "if has_aux is True")
    return out


def _detach(tree):
    return _map(lambda x: x.detach() if isinstance(x, Tensor) else x, tree)


# ----------------------------------------------------------------- gradients
def grad_and_value(func, argnums=0, has_aux=False):
    """A function returning ``(gradient, value)`` of the scalar ``func`` (``(gradient, (value, aux))`` with
    ``has_aux``); the gradient has the structure of ``args[argnums]`` (a tuple of them for a tuple of
    ``argnums``).  Inputs the value does not depend on get zero gradients.

    Raises:
        RuntimeError: ``func`` does not return a scalar Tensor, or ``argnums`` is out of range.
    """
    from distgraph.autograd import grad as autograd_grad

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with transform("grad"), grad_mode.enable_grad():
            args, diff = _prepare(args, argnums, "grad")
            out, aux = _split_aux(func(*args, **kwargs), has_aux, "grad_and_value")
            if not isinstance(out, Tensor):
                raise RuntimeError(f"grad_and_value(f)(*args): Expected f(*args) to return a Tensor, got {type(out)}")
            if out.ndim != 0:
                raise RuntimeError(f"grad_and_value(f)(*args): Expected f(*args) to return a scalar Tensor, got "
                                   f"tensor with {out.ndim} dims. Maybe you wanted to use the vjp or jacrev APIs "
                                   "instead?")
            leaves = [x for x in _leaves(diff) if isinstance(x, Tensor)]
            gs = (autograd_grad([out], leaves, allow_unused=True) if out.requires_grad and leaves
                  else [None] * len(leaves))
            gs = iter([_zeros_like(x) if g is None else g for x, g in zip(leaves, gs)])
            grads = _map(lambda x: next(gs) if isinstance(x, Tensor) else None, diff)
            value = out.detach()
            return grads, ((value, _detach(aux)) if has_aux else value)
    return wrapper


def grad(func, argnums=0, has_aux=False):
    """A function returning the gradient of the scalar ``func`` with respect to ``args[argnums]``
    (``(gradient, aux)`` with ``has_aux``).  See ``grad_and_value``."""
    inner = grad_and_value(func, argnums, has_aux)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        g, value = inner(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return wrapper


def vjp(func, *primals, has_aux=False):
    """``(output, vjp_fn)`` (``(output, vjp_fn, aux)`` with ``has_aux``): ``vjp_fn(cotangents)``, with
    cotangents shaped like ``output``, returns a tuple with one gradient tree per primal.  ``vjp_fn`` may
    be called several times."""
    from distgraph.autograd import grad as autograd_grad
    with transform("vjp"), grad_mode.enable_grad():
        primals = tuple(_map(_fresh, p) for p in primals)
        out, aux = _split_aux(func(*primals), has_aux, "vjp")
    outs = _leaves(out)
    if not all(isinstance(o, Tensor) for o in outs):
        raise RuntimeError("vjp(f, *primals): expected f(*primals) to return only tensors")
    leaves = [x for x in _leaves(primals) if isinstance(x, Tensor)]

    def vjp_fn(cotangents):
        cots = _leaves(cotangents)
        if len(cots) != len(outs):
            raise RuntimeError(f"vjp_fn: expected {len(outs)} cotangents (the structure of the output), "
                               f"got {len(cots)}")
        for o, c in zip(outs, cots):
            if tuple(c.shape) != tuple(o.shape):
                raise RuntimeError(f"vjp_fn: a cotangent has shape {tuple(c.shape)}, its output {tuple(o.shape)}")
        live = [(o, c) for o, c in zip(outs, cots) if o.requires_grad]
        with transform("vjp_fn"):
            gs = (autograd_grad([o for o, _ in live], leaves, grad_outputs=[c for _, c in live],
                                retain_graph=True, allow_unused=True) if live and leaves else [None] * len(leaves))
        gs = iter([_zeros_like(x) if g is None else g for x, g in zip(leaves, gs)])
        return tuple(_map(lambda x: next(gs) if isinstance(x, Tensor) else None, p) for p in primals)

    out = _detach(out)
    return (out, vjp_fn, _detach(aux)) if has_aux else (out, vjp_fn)


def _jacobian(func, argnums, has_aux, name):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with transform(name), grad_mode.enable_grad():
            args, diff = _prepare(args, argnums, name)
            out, aux = _split_aux(func(*args, **kwargs), has_aux, name)
            outs = _leaves(out)
            if not all(isinstance(o, Tensor) for o in outs):
                raise RuntimeError(f"{name}(f)(*args): expected f(*args) to return only tensors")
            ins = _leaves(diff)
            blocks = jacobian_blocks(outs, ins)
            result = _fill(out, [_fill(diff, row) for row in blocks])
            return (result, _detach(aux)) if has_aux else result
    return wrapper


def jacrev(func, argnums=0, *, has_aux=False, chunk_size=None, _preallocate_and_copy=False):
    """A function returning the Jacobian of ``func`` with respect to ``args[argnums]``: for each output
    leaf, a tree shaped like the inputs whose leaves have shape ``out.shape + in.shape``."""
    return _jacobian(func, argnums, has_aux, "jacrev")


def jacfwd(func, argnums=0, has_aux=False, *, randomness="error"):
    """As ``jacrev`` (same values and structure); computed in reverse mode here (no forward-mode AD)."""
    return _jacobian(func, argnums, has_aux, "jacfwd")


def jvp(func, primals, tangents, *, strict=False, has_aux=False):
    """``(output, jvp_out)``: ``func(*primals)`` and its directional derivative along ``tangents``
    (a tuple shaped like ``primals``); computed exactly from the reverse-mode Jacobian."""
    if not isinstance(primals, tuple) or not isinstance(tangents, tuple):
        raise RuntimeError("jvp(f, primals, tangents): Expected primals and tangents to be tuples")
    with transform("jvp"), grad_mode.enable_grad():
        primals = tuple(_map(_fresh, p) for p in primals)
        out, aux = _split_aux(func(*primals), has_aux, "jvp")
        ins, tans = _leaves(primals), _leaves(tangents)
        if len(ins) != len(tans):
            raise RuntimeError("jvp(f, primals, tangents): Expected primals and tangents to have the same structure")
        for p, t in zip(ins, tans):
            if tuple(p.shape) != tuple(t.shape):
                raise RuntimeError(f"jvp(f, primals, tangents): Expected primals and tangents to have the same shapes, "
                                   f"got {tuple(p.shape)} and {tuple(t.shape)}")
        outs = _leaves(out)
        blocks = jacobian_blocks(outs, ins)
    result = contract(outs, blocks, tans)
    out, jvp_out = _detach(out), _fill(out, result)
    return (out, jvp_out, _detach(aux)) if has_aux else (out, jvp_out)


def hessian(func, argnums=0):
    """PyTorch's ``jacfwd(jacrev(func))``. Not supported: it needs second derivatives, which the engine
    does not record; calling the returned function raises NotImplementedError."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        raise NotImplementedError("func.hessian: second derivatives need higher-order gradients, which "
                                  "distgraph's engine does not record")
    return wrapper


# ----------------------------------------------------------------- vmap
def _dims_tree(dims, arg, name):
    """``in_dims`` for one argument as a tree over its leaves (an int or None applies to every leaf)."""
    if dims is None or isinstance(dims, int):
        return _map(lambda _: dims, arg)
    if isinstance(dims, (tuple, list)) and isinstance(arg, (tuple, list)) and len(dims) == len(arg):
        return type(arg)(_dims_tree(d, a, name) for d, a in zip(dims, arg))
    if isinstance(dims, dict) and isinstance(arg, dict) and dims.keys() == arg.keys():
        return {k: _dims_tree(dims[k], arg[k], name) for k in arg}
    raise ValueError(f"vmap({name}, in_dims={dims}, ...)(<inputs>): in_dims is not compatible with the structure "
                     "of `inputs`")


def vmap(func, in_dims=0, out_dims=0, randomness="error", *, chunk_size=None):
    """``func`` mapped over a batch dimension, as a loop: ``func`` runs once per index ``i`` on the inputs
    indexed at ``i`` along their ``in_dims`` (None: not mapped, passed whole), and the results are stacked
    along ``out_dims`` (None: not mapped, the first call's result).  Keyword arguments are not mapped.

    Raises:
        ValueError: ``in_dims`` not matching the inputs, a dimension out of range, mapped inputs of
            different sizes, no mapped input, or an output that is not a Tensor.
    """
    name = getattr(func, "__name__", "func")

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if isinstance(in_dims, int):
            dims = tuple(in_dims for _ in args)
        elif isinstance(in_dims, tuple):
            if len(in_dims) != len(args):
                raise ValueError(f"vmap({name}, in_dims={in_dims}, ...)(<inputs>): in_dims is not compatible with "
                                 f"the structure of `inputs` ({len(in_dims)} in_dims for {len(args)} inputs)")
            dims = in_dims
        else:
            raise ValueError(f"vmap({name}, in_dims={in_dims}, ...)(<inputs>): expected `in_dims` to be int or a "
                             f"(potentially nested) tuple matching the structure of inputs, got: {type(in_dims)}.")
        dim_leaves = _leaves(_dims_tree(list(dims), list(args), name))
        arg_leaves = _leaves(list(args))
        sizes = []
        for d, x in zip(dim_leaves, arg_leaves):
            if d is None:
                continue
            if not isinstance(x, Tensor):
                raise ValueError(f"vmap({name}, in_dims={in_dims}, ...)(<inputs>): Got in_dim={d} for an input but "
                                 f"the input is of type {type(x)}. We cannot vmap over non-Tensor arguments")
            if not -x.ndim <= d < x.ndim:
                raise ValueError(f"vmap({name}, in_dims={in_dims}, ...)(<inputs>): Got in_dim={d} for some input, "
                                 f"but that input is a Tensor of dimensionality {x.ndim} so expected in_dim to "
                                 f"satisfy {-x.ndim} <= in_dim < {x.ndim}.")
            sizes.append(x.shape[d])
        if not sizes:
            raise ValueError(f"vmap({name}, in_dims={in_dims}, ...)(<inputs>): at least one input must be mapped "
                             "over (got in_dims None for every Tensor input)")
        if len(set(sizes)) > 1:
            raise ValueError(f"vmap: Expected all tensors to have the same size in the mapped dimension, got sizes "
                             f"{sizes} for the mapped dimension")
        results = []
        for i in range(sizes[0]):
            sliced = [x if d is None else x.select(d, i) for d, x in zip(dim_leaves, arg_leaves)]
            results.append(func(*_fill(list(args), sliced), **kwargs))
        return _stack_results(results, out_dims, name)
    return wrapper


def _stack_results(results, out_dims, name):
    first = results[0]
    leaves = [_leaves(r) for r in results]
    dims = _leaves(_dims_tree(out_dims, first, name)) if not isinstance(out_dims, int) else [out_dims] * len(leaves[0])
    if len(dims) != len(leaves[0]):
        raise ValueError(f"vmap({name}, ..., out_dims={out_dims})(<inputs>): out_dims is not compatible with the "
                         "structure of the outputs")
    stacked = []
    for k, d in enumerate(dims):
        column = [r[k] for r in leaves]
        if d is None:
            stacked.append(column[0])
            continue
        if not all(isinstance(c, Tensor) for c in column):
            raise ValueError(f"vmap({name}, ...): `{name}` must only return Tensors, got type "
                             f"{type(column[0])}. Did you mean to set out_dims= to None for output?")
        nd = column[0].ndim + 1
        if not -nd <= d < nd:
            raise ValueError(f"vmap({name}, ..., out_dims={out_dims}): out_dim {d} is out of range for an output "
                             f"of {nd - 1} dims")
        stacked.append(stack(column, dim=d % nd))
    return _fill(first, stacked)
