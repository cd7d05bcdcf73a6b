"""``distgraph-run``: start ranks on top of ``mpiexec``/``mpirun`` or ``srun``, and surface failures.

    distgraph-run -n 4 train.py --lr 0.1
    distgraph-run -n 8 -H node1:4,node2:4 train.py
    distgraph-run -n 2 --dry-run train.py
    distgraph-run --standalone --nproc-per-node 4 train.py    # torchrun's spelling, one host

torchrun's single-host options are accepted: ``--nproc-per-node``/``--nproc_per_node N``
(same as ``-n N``), ``--standalone`` and ``--nnodes 1``; every rank gets torchrun's
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE`` (and placeholder
``MASTER_ADDR``/``MASTER_PORT``), so scripts written for torchrun run unchanged.

If any rank fails, the others are stopped within seconds and the last lines
name the *first* rank that failed, its host, its exit code or signal and the
tail of its stderr; when a rank's timeout blames others (a rank missing from a
collective, or one that exited early), the blamed rank is named.  The exit
status is the failed rank's (128 + N for signal N, as shells show it), 128 + N
when ``distgraph-run`` itself got signal N, 124 after ``--timeout``.
SIGINT, SIGTERM and SIGHUP stop the job; if ``distgraph-run`` is killed by
SIGKILL, ``mpiexec`` and every rank on this host go with it.

Output is forwarded as it arrives, each line (and each ``\r`` progress-bar
update) prefixed with ``[rank R]``; lines that already carry their rank's
``[rank R/N]`` tag keep just that one.

``--max-restarts N`` (torchrun's option, also ``--max_restarts``): when the job
fails, stop every rank and start the whole job again, up to N times.  Each
rank gets ``TORCHELASTIC_RESTART_COUNT`` and ``DISTGRAPH_RESTART_COUNT`` = the
attempt (0 first); the script resumes itself from its newest checkpoint, e.g.
with ``distgraph.utils.training.CheckpointManager.restore``.  One line per
restart names the failure; the exit status is the last attempt's.
"""
from __future__ import annotations

import argparse
import codecs
import importlib.metadata
import importlib.util
import collections
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

from .command import (LaunchError, Plan, build_command, flavour_of, parse_hosts, quote,
                                      read_hostfile, user_command)
from .procs import LAUNCHER_VAR, TOKEN_VAR, die_with_parent, kill_all, launcher_identity, new_token
from .rank import EXIT_MARK, FAIL_MARK
from .stream import Demux, own_tag
from .verdict import exit_status, summary, verdict  # noqa: F401 (re-exported)


def parser():
    p = argparse.ArgumentParser(prog="distgraph-run", description=__doc__.splitlines()[0])
    p.add_argument("-n", "--nprocs", type=int, default=None, help="number of ranks")
    p.add_argument("--nproc-per-node", "--nproc_per_node", dest="nproc_per_node", type=int, default=None,
                   help="torchrun's spelling of -n (single host)")
    p.add_argument("--nnodes", default="1", help="torchrun's option: only 1 (use -H/--hostfile for several hosts)")
    p.add_argument("--standalone", action="store_true", help="torchrun's option: accepted (always standalone)")
    hosts = p.add_mutually_exclusive_group()
    hosts.add_argument("-H", "--hosts", help="host1:slots,host2:slots")
    hosts.add_argument("--hostfile", help="file of 'host slots=N' lines")
    p.add_argument("--gpus-per-host", type=int, default=None,
                   help="GPUs on each host (default: what CuPy sees here; 0 for CPU ranks)")
    p.add_argument("--allow-shared-gpu", action="store_true", help="allow more ranks per host than GPUs")
    p.add_argument("--mpi", choices=["auto", "mpich", "openmpi", "intel", "slurm"], default="auto",
                   help="launcher flavour (default: the MPI mpi4py uses, srun inside a Slurm allocation)")
    p.add_argument("--launcher", help="path of mpiexec/mpirun/srun to use")
    p.add_argument("-x", "--env", action="append", default=[], metavar="ENV=VAL", help="set for every rank")
    p.add_argument("--mpi-arg", action="append", default=[], metavar="ARG",
                   help="pass ARG to mpiexec/srun as is (repeat for several), e.g. --mpi-arg=-iface --mpi-arg=eth1")
    p.add_argument("--timeout", type=float, default=None,
                   help="stop the job after this many seconds (restarts included); exit status 124")
    p.add_argument("--max-restarts", "--max_restarts", dest="max_restarts", type=int, default=0, metavar="N",
                   help="torchrun's option: when a rank fails, restart the whole job up to N times")
    p.add_argument("--no-prefix", action="store_true", help="do not prefix output lines with [rank R]")
    p.add_argument("--quiet-others", action="store_true", help="show only rank 0's stdout (failures always show)")
    p.add_argument("--dry-run", action="store_true", help="print the command and environment, run nothing")
    p.add_argument("--skip-preflight", action="store_true", help="skip the MPI/version checks")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("program", nargs=argparse.REMAINDER, help="train.py [args...] or any command")
    return p


def _mpi4py_flavour():
    """The MPI that mpi4py is built against, asked in a child process (MPI_Init stays out of the launcher)."""
    code = "from mpi4py import MPI; print(MPI.Get_library_version())"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None, ""
    if out.returncode != 0:
        raise LaunchError("mpi4py is not usable here: " + (out.stderr.strip().splitlines() or ["?"])[-1] +
                          "; install it with: pip install 'distgraph[mpi]'")
    return flavour_of(out.stdout), out.stdout.strip().splitlines()[0] if out.stdout.strip() else ""


def _torchrun_options(a):
    """Fold torchrun's ``--nproc-per-node``/``--nnodes`` into ``-n`` (one host only)."""
    if str(a.nnodes) not in ("1", "1:1"):
        raise LaunchError(f"--nnodes: expected 1, got {a.nnodes!r}; for several hosts give the ranks per host "
                          "with -H host1:4,host2:4 (or --hostfile) and the total with -n")
    if a.nproc_per_node is not None:
        if a.nprocs is not None and a.nprocs != a.nproc_per_node:
            raise LaunchError(f"-n {a.nprocs} and --nproc-per-node {a.nproc_per_node} disagree; give one of them")
        a.nprocs = a.nproc_per_node
    if a.nprocs is None:
        raise LaunchError("expected the number of ranks: -n N (or torchrun's --nproc-per-node N)")


def resolve_plan(a, environ=os.environ) -> Plan:
    """Turn parsed arguments into a Plan, checking everything that can be checked before starting."""
    _torchrun_options(a)
    if a.nprocs < 1:
        raise LaunchError(f"-n must be at least 1, got {a.nprocs}")
    if getattr(a, "max_restarts", 0) < 0:
        raise LaunchError(f"--max-restarts: expected 0 or more, got {a.max_restarts}")
    program = a.program[1:] if a.program[:1] == ["--"] else a.program
    command = user_command(program)
    env = {}
    for item in a.env:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise LaunchError(f"-x expects ENV=VAL, got {item!r}")
        env[k] = v
    hosts = parse_hosts(a.hosts) if a.hosts else (read_hostfile(a.hostfile) if a.hostfile else [])
    in_slurm = "SLURM_JOB_ID" in environ and shutil.which("srun") is not None
    flavour = a.mpi
    if flavour == "auto":
        flavour = "slurm" if in_slurm and not hosts else None
    launcher = a.launcher
    if flavour != "slurm":
        if launcher is None:
            local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
            launcher = local if os.path.exists(local) else (shutil.which("mpiexec") or shutil.which("mpirun"))
        if launcher is None:
            raise LaunchError("no mpiexec found: install an MPI with pip install 'distgraph[mpi]' "
                              "(the mpich wheel ships mpiexec) or pass --launcher /path/to/mpiexec")
        if flavour is None or not a.skip_preflight:
            try:
                text = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=30).stdout
            except OSError as e:
                raise LaunchError(f"cannot run {launcher}: {e}") from None
            found = flavour_of(text)
            flavour = flavour or found or "mpich"
            if not a.skip_preflight:
                lib, lib_text = _mpi4py_flavour()
                if lib and found and lib != found:
                    raise LaunchError(
                        f"{launcher} belongs to {found} but mpi4py is built against {lib} ({lib_text}); "
                        "every process would be rank 0 of a world of one. Use the mpiexec of the same MPI "
                        "(--launcher) or reinstall mpi4py against it")
    else:
        launcher = launcher or shutil.which("srun") or "srun"
    gpus = a.gpus_per_host
    if gpus is None:
        gpus = gpu_count(environ)
    wrapper = _wrapper()
    if gpus:
        wrapper += ["--gpus", str(gpus)] + (["--allow-shared-gpu"] if a.allow_shared_gpu else [])
    wrapper.append("--")
    total_slots = sum(s for _, s in hosts) if hosts else (os.cpu_count() or 1)
    return Plan(nprocs=a.nprocs, command=command, flavour=flavour, launcher=launcher, hosts=hosts if a.hosts else [],
                hostfile=a.hostfile, env=env, oversubscribe=a.nprocs > total_slots,
                as_root=hasattr(os, "geteuid") and os.geteuid() == 0, wrapper=wrapper, extra=list(a.mpi_arg))


def gpu_count(environ=os.environ) -> int:
    """GPUs the ranks on this host will use, found without starting CUDA (the launcher imports no
    array code): none without CuPy; else ``CUDA_VISIBLE_DEVICES``'s entries, or the NVIDIA driver's
    ``/proc/driver/nvidia/gpus``."""
    if importlib.util.find_spec("cupy") is None:
        return 0
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip()]
        return 0 if not ids or ids[0].strip() in ("-1", "NoDevFiles") else len(ids)
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def _wrapper():
    """``python -m distgraph_launch.rank``; from a plain checkout (not installed) a new interpreter
    knows the launcher only through distgraph, which loads it from the folder."""
    package = __package__ or "distgraph_launch"
    if getattr(sys.modules.get(package), "LOADED_BY_DISTGRAPH", False):
        code = ("import runpy, sys, distgraph; sys.argv[0] = 'distgraph_launch.rank'; "
                "runpy.run_module('distgraph_launch.rank', run_name='__main__')")
        return [sys.executable, "-c", code]
    return [sys.executable, "-m", f"{package}.rank"]


def distgraph_version() -> str:
    """This host's distgraph version, read without importing distgraph."""
    try:
        return importlib.metadata.version("distgraph")
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec("distgraph")
        if spec is None or spec.origin is None:
            return "missing"
        with open(spec.origin) as f:
            m = re.search(r"^__version__ = [\"']([^\"']+)", f.read(), re.M)
        return m.group(1) if m else "unknown"


_PROBE = ("import os, socket, sys\n"
          "try:\n    import distgraph; v = distgraph.__version__\nexcept Exception as e:\n    v = 'missing'\n"
          "os.write(1, f'@@probe {socket.gethostname()} {sys.version.split()[0]} {v} {os.path.exists(sys.argv[1])}"
          "@@\\n'.encode())")
# One record per host, between '@@probe ' and '@@': the MPI's output forwarding may interleave the
# hosts' records (seen with Hydra), so records are found anywhere in the text, not per line.
_RECORD = re.compile(r"@@probe (\S+) (\S+) (\S+) (True|False)@@")


def check_probe_output(text, python_version, dg_version, errors=""):
    """Compare what each host reported with this host; raise naming every host that differs."""
    rows = [list(m) for m in _RECORD.findall(text)]
    if not rows:
        tail = " | ".join(errors.strip().splitlines()[-3:])
        raise LaunchError("preflight: no host answered the version probe; check the host list and that "
                          "Python and distgraph are installed on every host (or pass --skip-preflight)" +
                          (f"; the probe said: {tail}" if tail else ""))
    problems = []
    for host, py, dgv, script_ok in rows:
        if py != python_version or dgv != dg_version:
            problems.append(f"{host} has Python {py} and distgraph {dgv} (here: Python {python_version}, "
                            f"distgraph {dg_version})")
        if script_ok != "True":
            problems.append(f"{host} does not have the script at the same path")
    if problems:
        raise LaunchError("preflight: hosts differ: " + "; ".join(problems) +
                          ". Install the same environment on every host (or pass --skip-preflight)")
    return rows


def preflight_hosts(plan: Plan, timeout=60):
    """Run one probe per host through the same launcher: same Python, same distgraph, script present."""
    hosts = plan.hosts or (read_hostfile(plan.hostfile) if plan.hostfile else [])
    script = next((c for c in plan.command if c.endswith(".py")), "")
    probe = Plan(len(hosts), [sys.executable, "-c", _PROBE, os.path.abspath(script) if script else ""],
                 plan.flavour, plan.launcher, [(h, 1) for h, _ in hosts], None, dict(plan.env), False, plan.as_root,
                 [], tag_output=False, extra=list(plan.extra))
    for attempt in range(4):  # a launcher that fails to start once (a busy host, a port in use) gets retried
        out = _run_probe(build_command(probe), timeout)
        if out is None:
            raise LaunchError(f"preflight: the version probe on {[h for h, _ in hosts]} did not finish in "
                              f"{timeout:g} s; are the hosts reachable (try ssh HOST true)? "
                              "(or pass --skip-preflight)")
        if len(_RECORD.findall(out.stdout)) >= len(hosts):
            break
        time.sleep(0.5 * (attempt + 1))
    out_text = out.stdout if script else out.stdout.replace(" False", " True")  # not a script: nothing to find
    return check_probe_output(out_text, sys.version.split()[0], distgraph_version(), out.stderr)


def _run_probe(cmd, timeout):
    """Run ``cmd``; its CompletedProcess, or None after ``timeout`` s -- with every process it started
    killed: an ssh to an unreachable host sits in a session of its own, out of mpiexec's group."""
    token = new_token()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **{TOKEN_VAR: token}), start_new_session=True,
                            preexec_fn=die_with_parent())
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet: the group id is still ours
        kill_all(token)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return None
    kill_all(token)  # a probe that finished leaves nothing either
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


class Watcher:
    """Runs the job, streams its output (``[rank R]`` prefixes from the MPI's own tags),
    and stops everything at the first failure."""

    QUIET = 0.1  # seconds a partial line (a progress bar's latest state) waits for the rest of it

    def __init__(self, cmd, env, timeout, flavour="mpich", prefix=True, quiet_others=False):
        self.cmd, self.env, self.timeout = cmd, env, timeout
        self.flavour, self.prefix, self.quiet_others = flavour, prefix, quiet_others
        self.failures = []
        self.exits = []  # ranks whose program ended with status 0 (EXIT_MARK)
        self.stopping = False
        self.reason, self.stop_time, self.stop_signal = None, None, None
        # When MPI_Abort takes the wrappers down before they can report, the
        # first rank that printed a traceback is the best evidence left.
        self.tails = collections.defaultdict(lambda: collections.deque(maxlen=40))
        self.first_traceback = None
        self.token = new_token()

    def _stream(self, fd, dst, is_err=False):
        """Forward one of the job's streams segment by segment, as the bytes arrive."""
        demux = Demux(self.flavour, keep_whole=(FAIL_MARK, EXIT_MARK))
        decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
        state = {"line": collections.defaultdict(str), "last": None}
        while True:
            if demux.has_partial() and not select.select([fd], [], [], self.QUIET)[0]:
                pieces = demux.flush()
            else:
                data = os.read(fd, 65536)
                if not data:
                    break
                pieces = demux.feed(decode.decode(data))
            for rank, text, first in pieces:
                self._emit(rank, text, first, dst, is_err, state)
        for rank, text, first in demux.feed(decode.decode(b"", final=True)) + demux.close():
            self._emit(rank, text, first, dst, is_err, state)

    def _emit(self, rank, text, first, dst, is_err, state):
        line = state["line"]
        line[rank] += text
        if text.endswith("\n"):
            whole = line.pop(rank).split("\r")[-1]  # a progress bar's last state
            for marker, reports, failed in ((FAIL_MARK, self.failures, True), (EXIT_MARK, self.exits, False)):
                mark = whole.find(marker)  # after the start when it ends a partial line (a bar's last update)
                if mark < 0:
                    continue
                try:
                    reports.append(json.loads(whole[mark + len(marker):]))
                except ValueError:
                    pass
                if failed:
                    self.stop_soon(None)
                text = text[:max(0, text.find(marker))]
                if not whole[:mark].strip():
                    return
                text += "\n"  # end the partial line the report followed
                break
            if rank is not None and is_err:
                self.tails[rank].append(whole.rstrip("\n"))
                if self.first_traceback is None and "Traceback (most recent call last)" in whole:
                    self.first_traceback = (rank, time.time())
        if self.quiet_others and not is_err and rank not in (None, 0):
            return
        # A piece continuing a line gets the prefix again when another rank wrote in between.
        if (rank is not None and self.prefix and (first or state["last"] != rank) and text.strip()
                and not own_tag(text, rank)):
            text = f"[rank {rank}] {text}"
        state["last"] = rank
        try:
            dst.write(text)
            dst.flush()
        except (OSError, ValueError):
            pass  # the terminal is gone (SIGHUP): keep draining so that the job is not blocked

    def stop_soon(self, reason, grace=2.0):
        """Give MPI a moment to end on its own, then stop every process of the job."""
        if self.stopping:
            return
        self.stopping, self.reason, self.stop_time = True, reason, time.time()
        threading.Thread(target=self._kill_after, args=(grace,), daemon=True).start()

    def _on_signal(self, sig, frame):
        if not self.stopping:
            self.stop_signal = signal.Signals(sig)
        self.stop_soon(signal.Signals(sig).name, grace=0.5)

    def _kill_after(self, grace):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0)):
            if self.proc.poll() is not None:
                return
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            end = time.monotonic() + wait
            while time.monotonic() < end and self.proc.poll() is None:
                time.sleep(0.05)

    def run(self):
        """Run the job to its end; returns mpiexec's exit status. Nothing of the job is left afterwards."""
        env = dict(self.env, **{TOKEN_VAR: self.token})
        # mpiexec dies with the launcher even when the launcher is killed by SIGKILL (and
        # then Hydra's proxies stop the ranks); the ranks' wrappers watch the launcher too.
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     start_new_session=True, preexec_fn=die_with_parent())
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        pumps = [threading.Thread(target=self._stream, args=(self.proc.stdout.fileno(), sys.stdout), daemon=True),
                 threading.Thread(target=self._stream, args=(self.proc.stderr.fileno(), sys.stderr, True),
                                  daemon=True)]
        for t in pumps:
            t.start()
        start = time.monotonic()
        try:
            while self.proc.poll() is None:
                if self.timeout and time.monotonic() - start > self.timeout and not self.stopping:
                    self.stop_soon(f"timeout after {self.timeout:g} s", grace=0)
                time.sleep(0.05)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            try:  # the job is over: nothing of it may outlive the launcher
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.survivors = kill_all(self.token)  # wrappers and proxies live in sessions of their own
        for t in pumps:
            t.join(timeout=5)
        if not any(t.is_alive() for t in pumps):
            self.proc.stdout.close()
            self.proc.stderr.close()
        return self.proc.returncode


def main(argv=None):
    a = parser().parse_args(argv)
    try:
        plan = resolve_plan(a)
        cmd = build_command(plan)
    except LaunchError as e:
        print(f"distgraph-run: {e}", file=sys.stderr)
        return 2
    if (plan.hosts or plan.hostfile) and not a.skip_preflight and not a.dry_run:
        try:
            preflight_hosts(plan)
        except LaunchError as e:
            print(f"distgraph-run: {e}", file=sys.stderr)
            return 2
    if a.dry_run or a.verbose:
        print(quote(cmd))
        for k, v in sorted(plan.env.items()):
            print(f"  {k}={v}")
        print(f"  (flavour {plan.flavour}; each rank reads its rank, local rank and world size from the "
              "launcher's environment)")
        if a.dry_run:
            return 0
    return run_attempts(a, plan)


def run_attempts(a, plan):
    """Run the job, and again after a failure, up to ``--max-restarts`` times; the last attempt's status."""
    attempts = a.max_restarts + 1
    user_env, began = dict(plan.env), time.monotonic()
    for attempt in range(attempts):
        # torchrun's variable and ours; the launcher's identity lets each rank's wrapper stop its
        # program when the launcher is gone. Given as -genv/-x: Open MPI forwards nothing unasked.
        plan.env = {**user_env, "TORCHELASTIC_RESTART_COUNT": str(attempt), "TORCHELASTIC_MAX_RESTARTS":
                    str(a.max_restarts), "DISTGRAPH_RESTART_COUNT": str(attempt), LAUNCHER_VAR: launcher_identity()}
        timeout = None if a.timeout is None else max(0.01, a.timeout - (time.monotonic() - began))
        w = Watcher(build_command(plan), dict(os.environ), timeout, plan.flavour, prefix=not a.no_prefix,
                    quiet_others=a.quiet_others)
        rc = w.run()
        if w.survivors:
            _say(f"distgraph-run: warning: processes {w.survivors} of the job did not die of SIGKILL within "
                 "10 s (stuck in the kernel?); check them with ps")
        finished = {e.get("rank") for e in w.exits}
        # Every rank's wrapper reports the end of its program: status 0 from mpiexec with reports
        # missing means MPI stopped ranks that had not finished (Hydra does when one leaves early).
        if rc == 0 and not w.failures and (not plan.wrapper or len(finished) >= plan.nprocs):
            return 0
        lines, status = verdict(w.failures, w.reason, rc, w.first_traceback, w.tails, w.stop_time, w.stop_signal,
                                exits=w.exits, nprocs=plan.nprocs)
        _say("\n".join(lines))
        if w.reason or attempt + 1 == attempts:  # stopped on purpose (a signal, --timeout), or out of restarts
            return status
        _say(f"distgraph-run: restarting the job (attempt {attempt + 2} of {attempts}) after: "
             f"{lines[0].removeprefix('distgraph-run: ')}")
    return status


def _say(text):
    """A line for the user on stderr; after a hang-up (SIGHUP) there may be no terminal left to take it."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
