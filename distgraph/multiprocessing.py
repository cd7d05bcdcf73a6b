"""``torch.multiprocessing``'s launch idiom for distgraph: ``mp.spawn(fn, args, nprocs)``.

distgraph's ranks are MPI processes, so ``spawn`` starts ``nprocs`` of them with ``mpiexec``
(the one beside this Python, from the mpich wheel, else the one on PATH).  Each child imports the
main script as ``__mp_main__`` -- as multiprocessing's spawn does, so its
``if __name__ == "__main__":`` block does not run again -- and calls ``fn(rank, *args)`` with its
MPI rank; inside, ``init_process_group("gloo", rank=rank, world_size=n)`` joins the MPI world.
Called from a script already running under ``mpiexec -n N`` (or ``distgraph-run``), ``spawn``
calls ``fn(rank, *args)`` in place instead.  ``DISTGRAPH_SPAWN_TIMEOUT`` (seconds) bounds the job.

Differences from PyTorch: ``join=False`` is not supported (the job runs to its end); ``args``
travel by pickle, so they must be picklable (as with PyTorch's spawn start method).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import traceback
import types

__all__ = ["spawn", "start_processes", "ProcessException", "ProcessRaisedException", "ProcessExitedException",
           "set_start_method", "get_start_method", "get_all_start_methods", "get_context", "cpu_count"]


class ProcessException(Exception):
    def __init__(self, msg, error_index=-1, pid=None):
        super().__init__(msg)
        self.error_index, self.pid = error_index, pid


class ProcessRaisedException(ProcessException):
    """A spawned rank raised; the message holds what the job printed."""


class ProcessExitedException(ProcessException):
    """A spawned rank exited with a non-zero code or a signal."""

    def __init__(self, msg, error_index=-1, error_pid=None, exit_code=None, signal_name=None):
        super().__init__(msg, error_index, error_pid)
        self.exit_code, self.signal_name = exit_code, signal_name


def _command(nprocs, child_argv):
    """The ``mpiexec`` argv ``distgraph-run`` would build (same launcher search, same flavour rules),
    without its per-rank wrapper and output tags: spawned ranks print as they would under torch."""
    from distgraph_launch.cli import parser, resolve_plan  # noqa: PLC0415 - only when spawning
    from distgraph_launch.command import LaunchError, build_command  # noqa: PLC0415
    try:
        plan = resolve_plan(parser().parse_args(["-n", str(int(nprocs)), "--skip-preflight", "--", *child_argv]))
    except LaunchError as e:
        raise RuntimeError(f"spawn: cannot start {nprocs} ranks: {e}") from None
    plan.wrapper, plan.tag_output = [], False
    return build_command(plan)


def spawn(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    """Run ``fn(rank, *args)`` on ``nprocs`` MPI ranks (see the module docstring); returns None.

    Raises:
        ProcessRaisedException: a rank raised; the message names the rank and holds its traceback.
        ProcessExitedException: a rank died without a Python exception, or the job timed out.
    """
    from distgraph.comm import env
    if not join:
        raise NotImplementedError("spawn(join=False) is not supported: distgraph's ranks run as one MPI job; "
                                  "use join=True")
    if int(nprocs) < 1:
        raise ValueError(f"spawn: expected nprocs >= 1, got {nprocs}")
    info = env.discover()
    if info.launcher != "none":
        if info.world_size != nprocs:
            raise ValueError(f"[rank {info.rank}/{info.world_size}] spawn: nprocs={nprocs}, but this script already "
                             f"runs as {info.world_size} MPI ranks; call spawn with nprocs={info.world_size} or "
                             f"start it with plain python")
        fn(info.rank, *args)
        return None
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    with tempfile.TemporaryDirectory(prefix="distgraph-spawn-") as tmp:
        job = os.path.join(tmp, "job.pkl")
        with open(job, "wb") as f:
            pickle.dump((fn, tuple(args)), f)
        cmd = _command(nprocs, [sys.executable, "-c", "import sys; from distgraph.multiprocessing import _child; "
                                "_child(sys.argv[1], sys.argv[2])", job, main or ""])
        environ = dict(os.environ)
        paths = [os.path.dirname(os.path.abspath(main))] if main else []
        paths += [p for p in sys.path if p]
        environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        # Unbuffered Python writes a line's text and its newline separately, and the ranks share one
        # stdout: keep whole-line writes (print(..., flush=True) for live output).
        environ.pop("PYTHONUNBUFFERED", None)
        timeout = float(os.environ.get("DISTGRAPH_SPAWN_TIMEOUT", "0")) or None
        if timeout:
            environ.setdefault("MPIEXEC_TIMEOUT", str(int(timeout)))
        try:
            p = subprocess.run(cmd, env=environ, timeout=timeout + 30 if timeout else None)
        except subprocess.TimeoutExpired:
            raise ProcessExitedException(f"spawn: the {nprocs} ranks did not finish within {timeout:g} s "
                                         "(DISTGRAPH_SPAWN_TIMEOUT)") from None
        if p.returncode != 0:
            _raise_failure(tmp, nprocs, p.returncode)
    return None


def _raise_failure(tmp, nprocs, code):
    """Raise for the rank that failed first (its traceback file is the oldest)."""
    reports = sorted((os.path.getmtime(os.path.join(tmp, n)), n) for n in os.listdir(tmp) if n.endswith(".err"))
    if reports:
        name = reports[0][1]
        rank = int(name[len("rank"):-len(".err")])
        with open(os.path.join(tmp, name), encoding="utf-8") as f:
            trace = f.read()
        raise ProcessRaisedException(f"spawn: rank {rank} of {nprocs} raised; its traceback:\n{trace}",
                                     error_index=rank)
    raise ProcessExitedException(f"spawn: the job of {nprocs} ranks failed with exit code {code} and no rank "
                                 "raised a Python exception (a crash or a kill; see the output above)",
                                 exit_code=code)


def start_processes(fn, args=(), nprocs=1, join=True, daemon=False, start_method="spawn"):
    return spawn(fn, args, nprocs, join, daemon, start_method)


def set_start_method(method, force=False):
    """Accepted: ranks are always MPI processes."""


def get_start_method(allow_none=False):
    return "spawn"


def get_all_start_methods():
    return ["spawn"]


def get_context(method=None):
    import multiprocessing
    return multiprocessing.get_context(method)


def cpu_count():
    return os.cpu_count()


def _child(job, main):
    """One spawned rank: load the main script as ``__mp_main__``, then run ``fn(rank, *args)``."""
    if main:
        mod = types.ModuleType("__mp_main__")
        mod.__file__ = main
        sys.modules["__mp_main__"] = sys.modules["__main__"] = mod
        with open(main, encoding="utf-8") as f:
            code = compile(f.read(), main, "exec")
        exec(code, mod.__dict__)
    with open(job, "rb") as f:
        fn, args = pickle.load(f)
    from distgraph.comm import env
    rank = env.discover().rank
    try:
        fn(rank, *args)
    except BaseException:
        # For the parent's ProcessRaisedException; the exception then ends this rank as usual.
        with open(os.path.join(os.path.dirname(job), f"rank{rank}.err"), "w", encoding="utf-8") as f:
            f.write(traceback.format_exc())
        raise
