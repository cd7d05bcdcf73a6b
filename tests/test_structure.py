"""Static checks of the code base's structure: conventions that would otherwise fail late.

* the module-level imports of ``distgraph/`` and ``launch/`` form no cycle (one straight
  import order, so a module never sees a half-initialised neighbour);
* every Tensor method calls an op that ``distgraph.autograd.ops`` exports (otherwise the
  method fails only when called);
* every collective that code begins (``pg.begin("<name>")``) has an op code in
  ``comm.base.OP_CODES`` (otherwise it fails at its first call);
* the saved-array convention of ``distgraph.autograd.function`` holds for every op class
  (checked at class creation; the tests here make sure the check fires).
"""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# package directory -> the name it is imported as (``launch/`` installs as ``distgraph_launch``)
PACKAGES = {"distgraph": "distgraph", "launch": "distgraph_launch"}


# ------------------------------------------------------------------ import graph
def _modules():
    """``{module name: path}`` for every ``.py`` file of the packages."""
    mods = {}
    for folder, name in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join([name] + parts)] = path
    return mods


def _module_level_imports(tree):
    """Import statements that run when the module is imported: outside functions and classes."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def _resolve(node, module, is_package, mods):
    """The modules of ours that one import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            base = base[:len(base) - node.level + (1 if is_package else 0)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module
        # ``from pkg import sub`` loads the submodule; ``from mod import name`` loads mod
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in mods else prefix for a in node.names]
    out = set()
    for name in names:
        while name and name not in mods:   # ``import a.b.attr`` style: the longest module prefix
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph():
    """``{module: set of modules it imports at module level}``, over our packages only."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set()
        for node in _module_level_imports(tree):
            graph[name] |= _resolve(node, name, is_package, mods)
        graph[name].discard(name)
    return graph


def import_cycles(graph):
    """The strongly connected components with more than one module (Tarjan's, iterative), each
    as a sorted list, plus one concrete cycle through each component."""
    index, low, on_stack, stack, comps = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
    return [(comp, _one_cycle(graph, comp)) for comp in sorted(comps)]


def _one_cycle(graph, comp):
    """A shortest path from the component's first module back to itself (breadth-first)."""
    inside = set(comp)
    start = comp[0]
    prev = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:          # v -> start closes the cycle: walk back from v
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def test_no_import_cycles():
    cycles = import_cycles(import_graph())
    if cycles:
        pytest.fail(f"module-level imports form {len(cycles)} cycle(s); give the modules one order "
                    "(move what both sides need into a lower module):\n" +
                    "\n".join(f"  {len(comp)} modules: {', '.join(comp)}\n    e.g. {' -> '.join(path)}"
                              for comp, path in cycles))


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [(["a", "b", "c"], ["a", "b", "c", "a"])]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_the_real_imports():
    graph = import_graph()
    assert "distgraph.autograd.tensor" in graph["distgraph.autograd.function"]
    assert "distgraph.autograd.grad_mode" in graph["distgraph.autograd.tensor"]   # from pkg import submodule
    assert "distgraph_launch.command" in graph["distgraph_launch.cli"]         # launch/ is distgraph_launch
    assert "distgraph.autograd.ops" not in graph["distgraph.autograd.tensor"]  # bound late, not imported


# ------------------------------------------------------- Tensor methods -> ops
def _op_references(tree):
    """``layer.name`` or ``_ops.family.name`` for every read of ``_ops``/``_engine`` in a module."""
    refs, inner = set(), set()
    for node in ast.walk(tree):   # outer attributes come first: ``_ops.bitwise._view_dtype`` before ``_ops.bitwise``
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        chain, v = [node.attr], node.value
        while isinstance(v, ast.Attribute):
            inner.add(id(v))
            chain.append(v.attr)
            v = v.value
        if isinstance(v, ast.Name) and v.id in ("_ops", "_engine"):
            refs.add(".".join([v.id] + chain[::-1]))
    return refs


def test_tensor_methods_call_exported_ops():
    """A Tensor method reaches its op as ``_ops.<name>``: the name must be exported by
    ``distgraph.autograd.ops`` (in ``__all__``), or the method would fail only when called."""
    import types

    from distgraph.autograd import engine, ops, tensor
    assert tensor._ops is ops and tensor._engine is engine, "distgraph.autograd did not call tensor.bind_layers"
    refs = _op_references(ast.parse(pathlib.Path(tensor.__file__).read_text()))
    assert len(refs) > 200   # the scan sees the methods
    exported = set(ops.__all__)
    bad = []
    for ref in sorted(refs):
        layer, *names = ref.split(".")
        if layer == "_engine":
            ok = len(names) == 1 and callable(getattr(engine, names[0], None))
        elif len(names) == 1:
            ok = names[0] in exported
        else:   # ``_ops.<family>.<helper>``: a private helper of one op family
            family = getattr(ops, names[0], None)
            ok = len(names) == 2 and isinstance(family, types.ModuleType) and callable(getattr(family, names[1], None))
        if not ok:
            bad.append(ref)
    assert not bad, (f"Tensor methods call names that distgraph.autograd.ops does not export: {bad}; add each "
                     "to its family's __all__ (ops/<family>.py)")
    unresolved = [n for n in ops.__all__ if not callable(getattr(ops, n, None))]
    assert not unresolved, f"ops.__all__ names that are not functions of distgraph.autograd.ops: {unresolved}"


def test_tensor_module_keeps_builtins():
    """tensor.py no longer star-imports the ops, so ``any``/``max``/``sum`` there are the builtins."""
    from distgraph.autograd import tensor
    for name in ("any", "all", "max", "min", "abs", "sum", "pow", "round"):
        assert name not in vars(tensor), name


# ---------------------------------------------------------- saved-array slots
def _all_node_classes():
    import importlib
    import pkgutil

    import distgraph
    from distgraph.autograd.function import Node
    for m in pkgutil.walk_packages(distgraph.__path__, "distgraph."):
        try:
            importlib.import_module(m.name)
        except ImportError:   # an optional dependency (cupy, mpi4py) is missing
            pass
    out, stack = [], [Node]
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(c.__subclasses__())
    return [c for c in out if c is not Node and c.__module__.startswith("distgraph.")]


def _declared_slots(cls):
    names = set()
    for k in cls.__mro__:
        d = k.__dict__.get("__slots__", ())
        names.update((d,) if isinstance(d, str) else d)
    return names


def _self_assignments(cls):
    """``{attribute: method}`` for every ``self.<attribute> = ...`` in the class's own methods."""
    import inspect
    import textwrap
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    out = {}
    for fn in tree.body[0].body:
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not fn.args.args:
            continue
        me = fn.args.args[0].arg
        for node in ast.walk(fn):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                for el in ast.walk(t):
                    if isinstance(el, ast.Attribute) and isinstance(el.value, ast.Name) and el.value.id == me \
                            and isinstance(el.ctx, ast.Store):
                        out.setdefault(el.attr, fn.name)
    return out


def test_every_op_declares_what_it_saves_in_slots():
    """What an op sets on ``self`` (in ``forward``: what backward reads) must be one of its
    ``__slots__``: ``Node._release`` frees saved arrays after backward only from there."""
    classes = _all_node_classes()
    assert len(classes) > 100
    bad = []
    for cls in classes:
        assert not cls.__dictoffset__, f"{cls.__qualname__} instances have a __dict__"
        declared = _declared_slots(cls)
        for attr, method in sorted(_self_assignments(cls).items()):
            if attr not in declared:
                bad.append(f"{cls.__module__}.{cls.__qualname__}.{method} sets self.{attr}")
    assert not bad, "attributes not declared in __slots__ (add them to the class's __slots__):\n  " + \
        "\n  ".join(bad)


def test_op_class_without_slots_is_refused_at_class_creation():
    from distgraph.autograd.function import Function

    with pytest.raises(TypeError, match="Leaky: an op class must declare __slots__"):
        class Leaky(Function):
            def forward(self, x):
                self.x = x
                return x

    class Mixin:   # no __slots__: its subclasses' instances get a __dict__
        pass

    with pytest.raises(TypeError, match="no __slots__ in .*Mixin"):
        class Mixed(Mixin, Function):
            __slots__ = ("x",)


def test_saved_slots_are_freed_after_backward():
    import distgraph as dg
    from distgraph.autograd.function import _saved_slots

    x = dg.randn(3, 4, dtype=dg.float64, requires_grad=True)
    w = dg.randn(4, 2, dtype=dg.float64, requires_grad=True)
    y = x @ w
    node = y.grad_fn
    slots = _saved_slots(type(node))
    assert slots and any(hasattr(node, s) for s in slots)
    y.sum().backward()
    assert node._released and not [s for s in slots if hasattr(node, s)]


# ----------------------------------------------------------- collective names
def _begin_names():
    """``(path:line, name)`` of every ``<group>.begin(<name>)`` in distgraph/; a name held in a local
    variable is resolved to the string literal assigned to it in the same function."""
    found = []
    for path in sorted((ROOT / "distgraph").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for fn in [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            consts = {}
            for n in ast.walk(fn):
                if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str):
                    for t in n.targets:
                        if isinstance(t, ast.Name):
                            consts.setdefault(t.id, set()).add(n.value.value)
            for n in ast.walk(fn) if fn is not tree else []:
                if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "begin"
                        and n.args):
                    continue
                where = f"{path.relative_to(ROOT)}:{n.lineno}"
                arg = n.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((where, arg.value))
                elif isinstance(arg, ast.Name) and len(consts.get(arg.id, ())) == 1:
                    found.append((where, next(iter(consts[arg.id]))))
                else:
                    found.append((where, None))
    return found


def test_every_collective_begun_has_an_op_code():
    """``pg.begin(name)`` raises for a name missing from ``comm.base.OP_CODES``, but only at the first
    call of that collective: check every call site statically."""
    from distgraph.comm.base import OP_CODES
    found = _begin_names()
    assert len(found) >= 14, found   # the scan sees the collectives
    unknown = [f"{where}: {name!r}" for where, name in found if name not in OP_CODES]
    assert not unknown, ("collectives begun under a name missing from comm.base.OP_CODES (add it there), or "
                         "under a name this scan cannot read (pass a literal):\n  " + "\n  ".join(unknown))
