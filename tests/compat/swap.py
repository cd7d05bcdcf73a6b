"""The import swap a user makes to port a PyTorch script: only ``import torch...`` / ``from torch...``
lines change, to the distgraph module PyTorch's module maps to; the rest of the program is untouched."""
import re

# torch's module path -> distgraph's (longest prefix first)
MODULES = [
    ("torch.distributed", "distgraph.distributed"),
    ("torch.multiprocessing", "distgraph.multiprocessing"),
    ("torch.utils.data", "distgraph.utils.data"),
    ("torch", "distgraph"),
]


def _module(path):
    for src, dst in MODULES:
        if path == src or path.startswith(src + "."):
            return dst + path[len(src):]
    return path


def swap_imports(source: str) -> str:
    """``import torch`` -> ``import distgraph as torch``; ``import torch.utils.data`` ->
    ``import distgraph.utils.data``; ``import torch.nn as nn`` ->
    ``import distgraph.nn as nn``; ``from torch.utils.data import X`` -> ``from distgraph.utils.data import X``."""
    out = []
    for line in source.splitlines(keepends=True):
        m = re.match(r"^(\s*)import (torch[\w.]*)(\s+as\s+\w+)?(\s*(#.*)?)$", line.rstrip("\n"))
        if m:
            indent, path, alias, rest = m.group(1), m.group(2), m.group(3), m.group(4) or ""
            if alias is None:
                # ``import torch`` binds ``torch``; ``import torch.utils.data`` loads the submodule
                # that the program then reaches as ``torch.utils.data`` (``torch`` being distgraph)
                alias = " as torch" if path == "torch" else ""
            line = f"{indent}import {_module(path)}{alias}{rest}\n"
        else:
            m = re.match(r"^(\s*)from (torch[\w.]*) import (.*)$", line.rstrip("\n"))
            if m:
                line = f"{m.group(1)}from {_module(m.group(2))} import {m.group(3)}\n"
        out.append(line)
    return "".join(out)
