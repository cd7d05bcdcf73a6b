"""Pure command building for ``distgraph-run``: arguments in, an argv list out.

Nothing here runs a process, so every MPI flavour's command line is tested
with ``--dry-run`` semantics on any machine.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field

FLAVOURS = ("mpich", "openmpi", "intel", "slurm")


class LaunchError(Exception):
    """A launch that cannot start; the message says what to fix."""


@dataclass
class Plan:
    """Everything needed to start the job (see ``build_command``)."""
    nprocs: int
    command: list                       # the user's program: ["python", "train.py", ...] or any argv
    flavour: str = "mpich"
    launcher: str = "mpiexec"           # path of mpiexec / srun
    hosts: list = field(default_factory=list)   # [(host, slots)]
    hostfile: str | None = None
    env: dict = field(default_factory=dict)     # forwarded to every rank
    oversubscribe: bool = False
    as_root: bool = False
    wrapper: list = field(default_factory=list)  # the per-rank wrapper argv, prepended to command
    tag_output: bool = True             # ask the MPI to tag each output line with its rank
    extra: list = field(default_factory=list)    # passed to the launcher as given (--mpi-arg)


def parse_hosts(spec: str):
    """``"h1:4,h2:4"`` -> ``[("h1", 4), ("h2", 4)]`` (slots default to 1)."""
    hosts = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, slots = part.partition(":")
        if not name:
            raise LaunchError(f"bad host spec {spec!r}: expected host[:slots],host[:slots],...")
        try:
            n = int(slots) if slots else 1
        except ValueError:
            raise LaunchError(f"bad host spec {part!r}: slots must be an integer, e.g. node1:4") from None
        if n < 1:
            raise LaunchError(f"bad host spec {part!r}: slots must be at least 1")
        hosts.append((name, n))
    if not hosts:
        raise LaunchError(f"bad host spec {spec!r}: no hosts given")
    return hosts


def read_hostfile(path: str):
    """Hostfile lines ``host [slots=N]`` or ``host:N`` (``#`` comments) -> ``[(host, slots)]``."""
    if not os.path.exists(path):
        raise LaunchError(f"hostfile {path!r} does not exist")
    hosts = []
    for raw in open(path):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        words = line.split()
        name, _, slots = words[0].partition(":")
        for w in words[1:]:
            if w.startswith("slots="):
                slots = w[6:]
        try:
            hosts.append((name, int(slots) if slots else 1))
        except ValueError:
            raise LaunchError(f"hostfile {path!r}: bad line {raw.strip()!r}; expected 'host slots=N'") from None
    if not hosts:
        raise LaunchError(f"hostfile {path!r} names no hosts")
    return hosts


def user_command(program: list, python=sys.executable):
    """A ``.py`` script (or a directory with a ``__main__.py``) runs with this Python; anything else
    runs as given, and must be a file or a command on PATH."""
    if not program:
        raise LaunchError("no program given: distgraph-run -n 2 train.py [args...]")
    first = program[0]
    if os.path.isdir(first):
        if os.path.isfile(os.path.join(first, "__main__.py")):
            return [python, *program]  # as `python dir/` does
        scripts = sorted(n for n in os.listdir(first) if n.endswith(".py"))[:5]
        hint = (f"; it holds {', '.join(scripts)}" if scripts else "; it holds no .py file")
        raise LaunchError(f"{first!r} is a directory, not a script{hint}. Expected the script to run, e.g. "
                          f"distgraph-run -n 2 {os.path.join(first, scripts[0] if scripts else 'train.py')}")
    if first.endswith(".py"):
        if not os.path.exists(first):
            raise LaunchError(f"script {first!r} not found (working directory {os.getcwd()})")
        return [python, *program]
    if not os.path.exists(first) and shutil.which(first) is None:
        raise LaunchError(f"program {first!r} not found: expected a script (train.py), a file or a command on "
                          f"PATH (working directory {os.getcwd()})")
    return list(program)


def build_command(plan: Plan) -> list:
    """The argv that starts ``plan.nprocs`` ranks with the given MPI flavour."""
    if plan.nprocs < 1:
        raise LaunchError(f"-n must be at least 1, got {plan.nprocs}")
    if plan.flavour not in FLAVOURS:
        raise LaunchError(f"unknown MPI flavour {plan.flavour!r}; expected one of {', '.join(FLAVOURS)}")
    prog = plan.wrapper + plan.command
    n = str(plan.nprocs)
    hosts = ",".join(f"{h}:{s}" for h, s in plan.hosts)
    env = sorted(plan.env.items())
    if plan.flavour == "slurm":
        cmd = [plan.launcher, "-n", n, "--kill-on-bad-exit=1"] + (["--label"] if plan.tag_output else [])
        if plan.hosts:
            cmd += ["--nodelist", ",".join(h for h, _ in plan.hosts)]
        cmd += ["--export=" + ",".join(["ALL"] + [f"{k}={v}" for k, v in env])]
        return cmd + plan.extra + prog
    if plan.flavour == "openmpi":
        cmd = [plan.launcher, "-n", n] + (["--tag-output"] if plan.tag_output else [])
        if plan.hosts:
            cmd += ["--host", hosts]
        if plan.hostfile:
            cmd += ["--hostfile", plan.hostfile]
        if plan.oversubscribe:
            cmd += ["--oversubscribe"]
        if plan.as_root:
            cmd += ["--allow-run-as-root"]
        for k, v in env:
            cmd += ["-x", f"{k}={v}"]
        return cmd + plan.extra + prog
    # MPICH's Hydra and Intel MPI (also Hydra) share the flags below; both
    # oversubscribe and run as root without being asked.
    cmd = [plan.launcher, "-n", n] + (["-prepend-rank"] if plan.tag_output else [])
    if plan.hosts:
        cmd += ["-hosts", hosts]
    if plan.hostfile:
        cmd += ["-f", plan.hostfile]
    for k, v in env:
        cmd += ["-genv", k, v]
    return cmd + plan.extra + prog


# How each flavour tags a line with its rank: "[3] ", "[1,3]<stdout>: ", "3: ".
_TAGS = {"mpich": re.compile(r"^\[(\d+)\] ?"), "intel": re.compile(r"^\[(\d+)\] ?"),
         "openmpi": re.compile(r"^\[\d+,(\d+)\]<std(?:out|err)>: ?"), "slurm": re.compile(r"^\s*(\d+): ?")}


def split_tag(flavour: str, line: str):
    """``(rank, text)`` of a line tagged by the MPI, or ``(None, line)``."""
    m = _TAGS[flavour].match(line)
    return (int(m.group(1)), line[m.end():]) if m else (None, line)


def flavour_of(version_text: str) -> str | None:
    """Which MPI a ``mpiexec --version`` (or ``MPI.Get_library_version()``) text belongs to."""
    t = version_text.lower()
    if "open mpi" in t or "openrte" in t or "open-mpi" in t:
        return "openmpi"
    if "intel" in t:
        return "intel"
    if "hydra" in t or "mpich" in t:
        return "mpich"
    return None


def quote(argv: list) -> str:
    return " ".join(shlex.quote(a) for a in argv)
