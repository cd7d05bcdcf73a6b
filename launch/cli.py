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
tail of its stderr.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from distgraph.launch.command import (LaunchError, Plan, build_command, flavour_of, parse_hosts, quote,
                                      read_hostfile, split_tag, user_command)
from distgraph.launch.rank import FAIL_MARK

SIGNAL_CAUSES = {"SIGKILL": "killed: probably out of memory (or killed by the scheduler)",
                 "SIGSEGV": "segmentation fault: a crash in native code",
                 "SIGABRT": "aborted (e.g. MPI_Abort or a failed C assertion)",
                 "SIGTERM": "terminated", "SIGINT": "interrupted"}


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
    p.add_argument("--timeout", type=float, default=None, help="stop the job after this many seconds")
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
        from distgraph import cuda
        gpus = cuda.device_count()
    wrapper = [sys.executable, "-m", "distgraph.launch.rank"]
    if gpus:
        wrapper += ["--gpus", str(gpus)] + (["--allow-shared-gpu"] if a.allow_shared_gpu else [])
    wrapper.append("--")
    total_slots = sum(s for _, s in hosts) if hosts else (os.cpu_count() or 1)
    return Plan(nprocs=a.nprocs, command=command, flavour=flavour, launcher=launcher, hosts=hosts if a.hosts else [],
                hostfile=a.hostfile, env=env, oversubscribe=a.nprocs > total_slots,
                as_root=hasattr(os, "geteuid") and os.geteuid() == 0, wrapper=wrapper, extra=list(a.mpi_arg))


_PROBE = ("import os, socket, sys\n"
          "try:\n    import distgraph; v = distgraph.__version__\nexcept Exception as e:\n    v = 'missing'\n"
          "print('@@probe', socket.gethostname(), sys.version.split()[0], v, os.path.exists(sys.argv[1]))")


def check_probe_output(text, python_version, dg_version, errors=""):
    """Compare what each host reported with this host; raise naming every host that differs."""
    rows = [line.split()[1:] for line in text.splitlines() if "@@probe" in line]
    rows = [r for r in rows if len(r) == 4]
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
    import distgraph
    hosts = plan.hosts or (read_hostfile(plan.hostfile) if plan.hostfile else [])
    script = next((c for c in plan.command if c.endswith(".py")), "")
    probe = Plan(len(hosts), [sys.executable, "-c", _PROBE, os.path.abspath(script) if script else ""],
                 plan.flavour, plan.launcher, [(h, 1) for h, _ in hosts], None, dict(plan.env), False, plan.as_root,
                 [], tag_output=False, extra=list(plan.extra))
    for attempt in range(3):  # a launcher that fails to start once (a busy host, a port in use) gets retried
        try:
            out = subprocess.run(build_command(probe), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LaunchError(f"preflight: the version probe on {[h for h, _ in hosts]} did not finish in "
                              f"{timeout} s; are the hosts reachable? (or pass --skip-preflight)") from None
        if "@@probe" in out.stdout:
            break
        time.sleep(0.5 * (attempt + 1))
    out_text = out.stdout if script else out.stdout.replace(" False", " True")  # not a script: nothing to find
    return check_probe_output(out_text, sys.version.split()[0], distgraph.__version__, out.stderr)


class Watcher:
    """Runs the job, streams its output (``[rank R]`` prefixes from the MPI's own tags),
    and stops everything at the first failure."""

    def __init__(self, cmd, env, timeout, flavour="mpich", prefix=True, quiet_others=False):
        self.cmd, self.env, self.timeout = cmd, env, timeout
        self.flavour, self.prefix, self.quiet_others = flavour, prefix, quiet_others
        self.failures = []
        self.stopping = False
        self.reason, self.stop_time = None, None
        # When MPI_Abort takes the wrappers down before they can report, the
        # first rank that printed a traceback is the best evidence left.
        self.tails = collections.defaultdict(lambda: collections.deque(maxlen=40))
        self.first_traceback = None

    def _retag(self, text):
        """Progress bars rewrite their line with '\\r': the MPI tags each of those writes too."""
        if "\r" not in text:
            return None
        parts = []
        for seg in text.split("\r"):
            rank, seg = split_tag(self.flavour, seg)
            parts.append(f"[rank {rank}] {seg}" if rank is not None and self.prefix and seg.strip() else seg)
        return "\r".join(parts)

    def _stream(self, src, dst, is_err=False):
        for raw in iter(src.readline, b""):
            text = raw.decode(errors="replace")
            retagged = self._retag(text)
            if retagged is not None:
                dst.write(retagged)
                dst.flush()
                continue
            rank, body = split_tag(self.flavour, text)
            if body.startswith(FAIL_MARK):
                try:
                    self.failures.append(json.loads(body[len(FAIL_MARK):]))
                except ValueError:
                    pass
                self.stop_soon(None)
                continue
            if rank is not None and is_err:
                self.tails[rank].append(body.rstrip("\n"))
                if self.first_traceback is None and "Traceback (most recent call last)" in body:
                    self.first_traceback = (rank, time.time())
            if self.quiet_others and not is_err and rank not in (None, 0):
                continue
            if rank is not None and self.prefix:
                body = f"[rank {rank}] {body}"
            dst.write(body)
            dst.flush()

    def stop_soon(self, reason, grace=2.0):
        """Give MPI a moment to end on its own, then stop every process of the job."""
        if self.stopping:
            return
        self.stopping, self.reason, self.stop_time = True, reason, time.time()
        threading.Thread(target=self._kill_after, args=(grace,), daemon=True).start()

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
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env,
                                     start_new_session=True)
        old = {s: signal.signal(s, lambda sig, f: self.stop_soon(signal.Signals(sig).name, grace=0.5))
               for s in (signal.SIGINT, signal.SIGTERM)}
        pumps = [threading.Thread(target=self._stream, args=(self.proc.stdout, sys.stdout), daemon=True),
                 threading.Thread(target=self._stream, args=(self.proc.stderr, sys.stderr, True), daemon=True)]
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
        for t in pumps:
            t.join(timeout=5)
        return self.proc.returncode


def summary(failures, reason, rc, first_traceback=None, tails=None, stop_time=None):
    """The closing lines: the first failed rank, not the cascade that followed.

    ``reason`` is set when the launcher itself stopped the job (a signal, the
    timeout); rank failures reported after that are its consequences."""
    tails = tails or {}
    if reason:
        failures = [f for f in failures if stop_time is None or f["time"] < stop_time]
        first_traceback = first_traceback if first_traceback and first_traceback[1] < stop_time else None
    if not failures and first_traceback is not None:
        rank = first_traceback[0]
        failures = [{"rank": rank, "host": "?", "time": first_traceback[1], "code": rc, "tail": []}]
    if failures:
        first = dict(min(failures, key=lambda f: f["time"]))
        if not first["tail"]:
            first["tail"] = list(tails.get(first["rank"], []))[-20:]
        how = (f"signal {first['signal']} ({SIGNAL_CAUSES.get(first['signal'], 'killed by a signal')})"
               if "signal" in first else f"exit code {first['code']}")
        lines = [f"distgraph-run: rank {first['rank']} on host {first['host']} failed first, with {how}; "
                 f"the other ranks were stopped ({len(failures)} rank(s) reported failures)."]
        if first["tail"]:
            lines.append(f"distgraph-run: last lines of rank {first['rank']}'s stderr:")
            lines += ["    " + t for t in first["tail"]]
        return "\n".join(lines)
    if reason:
        return f"distgraph-run: job stopped: {reason} (exit status {rc})"
    return f"distgraph-run: the job failed with exit status {rc} before any rank reported (see the output above)"


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
    env = dict(os.environ)
    w = Watcher(cmd, env, a.timeout, plan.flavour, prefix=not a.no_prefix, quiet_others=a.quiet_others)
    rc = w.run()
    if rc != 0 or w.failures:
        print(summary(w.failures, w.reason, rc, w.first_traceback, w.tails, w.stop_time), file=sys.stderr)
        return rc if rc else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
