"""CUDA graphs for the fused runs of a replayed tape (``dg.compile(..., mode="reduce-overhead")``).

A *segment* is a run of consecutive fused Steps (``fuse.py``) that all write into tape-owned
buffers (``out=``): no allocation, no host read, no Python call between them.  Such a run is
launched as one CUDA graph, captured through CuPy's stream capture, instead of one kernel launch
(and its Python dispatch) per ufunc.  Everything else in the tape — matrix products (CuPy refuses
cuBLAS calls during a capture), reductions that allocate, random draws, recorded calls such as
``optimizer.step()``, DDP's bucket all-reduces launched from ``_finish_leaf`` — runs as before,
between the graphs, in the same order.

A graph reads and writes fixed device addresses, so each segment input is one of:

* **pinned**: the same array (same address) on the two runs before the capture — a buffer of the
  tape, a parameter updated in place, a baked constant.  The graph reads it directly; before each
  launch its address is compared with the captured one, and a difference (``p.data = ...``) sends
  that run to the Python code and the segment to a new capture;
* **staged**: a new array on each run (an argument, the output of a matrix product).  The graph
  reads a copy owned by the segment, refreshed with one device-to-device copy before each launch.

Outputs are the tape's buffers, bound to the same variables as the Python code binds them, so
what follows a segment cannot tell a launch from the ufunc calls.  A segment runs as Python code
on its first run (compiling the kernels outside the capture), is captured after its second
(when pinned and staged inputs are known) and launched from then on; it gives up on graphs after
``MAX_CAPTURES`` captures, or at once when a capture fails (the reason is kept in ``error``).
"""
from __future__ import annotations

import ast
import gc
import re

from distgraph.utils.logging import get_logger

log = get_logger("distgraph.graph")

MIN_STEPS = 2        # shorter runs are left as ufunc calls: a launch costs about one kernel launch
MAX_CAPTURES = 3     # recaptures (addresses that keep changing) before a segment stays Python code


# ------------------------------------------------------------------ finding segments
def find(instrs, plan, buffers, ns, min_steps=MIN_STEPS):
    """The segments of a planned tape: ``[(start, end, inputs, binds, lasting)]`` with ``instrs[start:end]``
    all Steps, ``inputs`` the code of each array the run reads but does not make (in the order
    the generated segment function takes them) and ``binds`` ``(var, buffer name)`` for every
    variable the run defines that the rest of the tape reads; ``lasting[k]``: whether input ``k`` may be
    pinned (see ``lasting``)."""
    from distgraph.graph.fuse import Step

    root = {}
    for ins in instrs:
        if isinstance(ins, Step):
            how = plan.get(ins.var, ("fresh",))
            if how[0] == "buffer" and ins.var in buffers:
                root[ins.var] = ins.var
            elif how[0] == "inplace" and root.get(how[1]) is not None:
                root[ins.var] = root[how[1]]
    out, i = [], 0
    while i < len(instrs):
        j = i
        while (j < len(instrs) and isinstance(instrs[j], Step) and instrs[j].var in root
               and instrs[j].indent == instrs[i].indent and not instrs[j].fix0):
            j += 1
        if j - i >= min_steps:
            start, end, inputs, binds = _segment(instrs, i, j, root, ns)
            out.append((start, end, inputs, binds, [lasting(c, root) for c in inputs]))
        i = max(j, i + 1)
    return out


def _is_constant(code, ns):
    try:
        ast.literal_eval(code)
        return True
    except (ValueError, SyntaxError):
        pass
    return code.isidentifier() and code in ns and not hasattr(ns[code], "shape")


def _segment(instrs, i, j, root, ns):
    defined, inputs = set(), []
    for ins in instrs[i:j]:
        for a in ins.args:
            if a.var in defined or a.code in inputs or (a.var is None and _is_constant(a.code, ns)):
                continue
            inputs.append(a.code)
        defined.add(ins.var)
    later = {v for ins in instrs[j:] for v in list(ins.reads) + list(getattr(ins, "escapes", ()))}
    binds = [(ins.var, f"B_{root[ins.var]}") for ins in instrs[i:j] if ins.var in later]
    return i, j, inputs, binds


_LASTING = re.compile(r"(E\d+\.array|K\d+|R\d+)")


def lasting(code, root):
    """Whether input ``code`` names an array that outlives a replay (a buffer, a parameter, a baked
    constant), so that a graph may read it where it is; anything else (arguments, results of the other
    ops) is a new array each replay — an allocator can hand out the same address again, so equal
    addresses on two runs prove nothing there — and is staged."""
    return code in root or _LASTING.fullmatch(code) is not None


def function_source(name, instrs, start, end, inputs, plan):
    """``def name(I0, I1, ...)``: the Steps of the segment on the inputs, writing into the buffers."""
    params = {code: f"I{n}" for n, code in enumerate(inputs)}
    lines = [f"def {name}({', '.join(params.values())}):"]
    for ins in instrs[start:end]:
        args = [params.get(a.code, a.code) for a in ins.args]
        how = plan[ins.var]
        target = f"B_{ins.var}" if how[0] == "buffer" else params.get(how[1], how[1])
        lines.append(f"    {ins.var} = {ins.fn}({', '.join(args)}, out={target})")
    lines.append("    return None")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ running segments
NUMPY_GRAPHS = None  # tests set a stand-in for NumPy tapes (tests/test_graph_cudagraph.py); CPUs have no graphs


def backend_for(modules):
    """The graph backend for a tape whose arrays come from ``modules`` (one module only), or None."""
    if modules == {"cupy"}:
        return CupyGraphs()
    if modules == {"numpy"} and NUMPY_GRAPHS is not None:
        return NUMPY_GRAPHS()
    return None


class CupyGraphs:
    """Stream capture with CuPy: the kernels of a segment become one ``cupy.cuda.Graph``."""

    def __init__(self):
        import cupy
        self.cupy = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)   # capture needs a stream that is not the legacy one

    @staticmethod
    def address(a):
        return a.data.ptr

    def copy(self, dst, src):
        self.cupy.copyto(dst, src)

    def empty_like(self, a):
        return self.cupy.empty_like(a)

    def capture(self, fn, inputs):
        def refuse(size):
            raise RuntimeError(f"the segment allocated {size} bytes during capture; its graph would write "
                               "into memory the pool hands out again")
        with self.stream, self.cupy.cuda.using_allocator(refuse):
            self.stream.begin_capture()
            try:
                fn(*inputs)
            finally:
                graph = self.stream.end_capture()
        return graph

    def launch(self, graph):
        graph.launch(stream=self.cupy.cuda.get_current_stream())


class Segment:
    """One run of fused Steps, launched as a graph once its inputs are known (see the module docstring)."""

    __slots__ = ("fn", "graphs", "lasting", "runs", "captures", "graph", "pinned", "inputs", "layouts", "last",
                 "error", "launches")

    def __init__(self, fn, graphs, lasting):
        self.fn, self.graphs, self.lasting = fn, graphs, list(lasting)
        self.runs = self.captures = self.launches = 0
        self.graph = self.pinned = self.inputs = self.layouts = self.last = self.error = None

    def __call__(self, inputs):
        if self.graph is not None and self._launch(inputs):
            return
        self.fn(*inputs)
        self.runs += 1
        addresses = [self.graphs.address(a) for a in inputs]
        if self.runs >= 2 and self.error is None and self.captures < MAX_CAPTURES:
            self._capture(inputs, [k and a == b for k, a, b in zip(self.lasting, addresses, self.last)])
        self.last = addresses

    def _launch(self, inputs):
        g = self.graphs
        for a, pinned, held, layout in zip(inputs, self.pinned, self.inputs, self.layouts):
            if pinned and g.address(a) != g.address(held):
                self.graph = None     # an input moved (``p.data = ...``): recapture after the next run
                return False
            if not pinned and (a.shape, a.strides, a.dtype) != layout:
                self.graph = None     # staged from another memory layout than at the capture
                return False
        for a, pinned, held in zip(inputs, self.pinned, self.inputs):
            if not pinned:
                g.copy(held, a)
        g.launch(self.graph)
        self.launches += 1
        return True

    def _capture(self, inputs, pinned):
        g = self.graphs
        held = [a if p else g.empty_like(a) for a, p in zip(inputs, pinned)]
        self.captures += 1
        enabled = gc.isenabled()
        gc.disable()            # no finalizer may touch the device while the stream captures
        try:
            self.graph = g.capture(self.fn, held)
        except Exception as e:  # noqa: BLE001  (any failure leaves the segment as Python code)
            self.graph, self.error = None, f"{type(e).__name__}: {e}"
            log.debug("a fused run stays as ufunc calls: its capture failed (%s)", self.error)
            return
        finally:
            if enabled:
                gc.enable()
        self.pinned, self.inputs = pinned, held
        self.layouts = [(a.shape, a.strides, a.dtype) for a in inputs]
