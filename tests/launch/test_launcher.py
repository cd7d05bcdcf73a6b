"""distgraph-run: command lines per MPI flavour, real 1/2/4-rank runs, and the failure matrix."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distgraph.launch.cli import main, parser, resolve_plan
from distgraph.launch.command import LaunchError, Plan, build_command, parse_hosts, read_hostfile

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROG = str(HERE / "progs.py")
sys.path.insert(0, str(HERE.parent))
from mpi_util import LAUNCHER_VARS  # noqa: E402


# ------------------------------------------------------------- command lines
def test_mpich_and_intel_command_follow_hydra_syntax():
    plan = Plan(4, ["python", "t.py"], "mpich", "mpiexec", hosts=[("a", 2), ("b", 2)], env={"FOO": "1"},
                wrapper=["W"])
    assert build_command(plan) == ["mpiexec", "-n", "4", "-prepend-rank", "-hosts", "a:2,b:2", "-genv", "FOO", "1",
                                   "W", "python", "t.py"]
    plan.flavour, plan.hosts, plan.hostfile = "intel", [], "hf"
    assert build_command(plan) == ["mpiexec", "-n", "4", "-prepend-rank", "-f", "hf", "-genv", "FOO", "1", "W",
                                   "python", "t.py"]


def test_openmpi_command_has_its_own_flags():
    plan = Plan(8, ["python", "t.py"], "openmpi", "mpirun", hosts=[("a", 4), ("b", 4)], env={"X": "y"},
                oversubscribe=True, as_root=True)
    assert build_command(plan) == ["mpirun", "-n", "8", "--tag-output", "--host", "a:4,b:4", "--oversubscribe",
                                   "--allow-run-as-root", "-x", "X=y", "python", "t.py"]


def test_slurm_command_uses_srun():
    plan = Plan(4, ["python", "t.py"], "slurm", "srun", env={"A": "1"})
    assert build_command(plan) == ["srun", "-n", "4", "--kill-on-bad-exit=1", "--label", "--export=ALL,A=1", "python",
                                   "t.py"]


@pytest.mark.parametrize("flavour, line, rank, text", [
    ("mpich", "[3] hello\n", 3, "hello\n"), ("openmpi", "[1,2]<stdout>: hi\n", 2, "hi\n"),
    ("slurm", "  7: x\n", 7, "x\n"), ("mpich", "untagged\n", None, "untagged\n")])
def test_rank_tags_of_each_flavour_are_understood(flavour, line, rank, text):
    from distgraph.launch.command import split_tag
    assert split_tag(flavour, line) == (rank, text)


def test_host_specs_and_hostfile():
    assert parse_hosts("n1:4, n2") == [("n1", 4), ("n2", 1)]
    assert read_hostfile(str(ROOT / "launch" / "hostfile.example")) == [("node1", 4), ("node2", 4)]
    for bad in ["n1:x", ":3", "n1:0", ","]:
        with pytest.raises(LaunchError, match="host spec"):
            parse_hosts(bad)


def test_dry_run_prints_command_and_runs_nothing(capsys, tmp_path):
    marker = tmp_path / "ran"
    script = tmp_path / "s.py"
    script.write_text(f"open({str(marker)!r}, 'w')\n")
    assert main(["-n", "2", "-H", "h1:1,h2:1", "-x", "FOO=bar", "--dry-run", str(script)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"mpiexec -n 2 -prepend-rank -hosts h1:1,h2:1 -genv FOO bar .*-m distgraph.launch.rank -- \S*python\S* "
                     + re.escape(str(script)), out), out
    assert "FOO=bar" in out and not marker.exists()


def test_slurm_template_dry_run(tmp_path):
    text = (ROOT / "launch" / "slurm_job.sh").read_text()
    assert "distgraph-run" in text and "--mpi slurm" in text
    script = tmp_path / "train.py"
    script.write_text("")
    a = parser().parse_args(["-n", "8", "--mpi", "slurm", "--launcher", "srun", str(script)])
    cmd = build_command(resolve_plan(a, environ={"SLURM_JOB_ID": "1"}))
    assert cmd[:4] == ["srun", "-n", "8", "--kill-on-bad-exit=1"] and cmd[-1] == str(script)


@pytest.mark.parametrize("args, message", [
    (["-n", "0", PROG], "-n must be at least 1"),
    (["-n", "2", "missing_script.py"], "script 'missing_script.py' not found"),
    (["-n", "2", "-H", "a:z", PROG], "slots must be an integer"),
    (["-n", "2", "--launcher", "/nonexistent/mpiexec", PROG], "cannot run /nonexistent/mpiexec"),
    (["-n", "2", "-x", "NOEQUALS", PROG], "-x expects ENV=VAL"),
])
def test_launch_that_cannot_start_fails_at_once(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_mpiexec_of_another_mpi_is_detected(tmp_path, capsys):
    fake = tmp_path / "mpiexec"
    fake.write_text("#!/bin/sh\necho 'mpiexec (OpenRTE) 4.1.5'\n")
    fake.chmod(0o755)
    assert main(["-n", "2", "--launcher", str(fake), PROG]) == 2
    err = capsys.readouterr().err
    assert "belongs to openmpi but mpi4py is built against mpich" in err and "world of one" in err


# ----------------------------------------------------------------- real runs
def run(args, timeout=120, **kw):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "distgraph.launch", *args], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=str(ROOT), **kw)
    return p, time.monotonic() - start


def leftovers(mode):
    out = subprocess.run(["pgrep", "-f", f"progs.py {mode}"], capture_output=True, text=True).stdout.split()
    return [pid for pid in out if int(pid) != os.getpid()]


@pytest.mark.mpiexec
@pytest.mark.parametrize("n", [1, 2, 4])
def test_real_runs_reduce_and_forward_environment(n):
    p, _ = run(["-n", str(n), "-x", "FOO=bar", PROG, "sum"])
    assert p.returncode == 0, p.stdout + p.stderr
    total = float(sum(range(1, n + 1)))
    for r in range(n):
        assert f"[rank {r}] sum={[total, total]} world={n} local={r} FOO=bar" in p.stdout, p.stdout


def test_plain_python_is_a_world_of_one():
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run([sys.executable, PROG, "sum"], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and "sum=[1.0, 1.0] world=1" in p.stdout, p.stdout + p.stderr


@pytest.mark.mpiexec
def test_rank_raising_is_named_with_its_traceback():
    p, secs = run(["-n", "4", PROG, "raise"])
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()
    summary = "\n".join(last[-8:])
    assert "rank 1 on host" in summary and "failed first" in summary, p.stderr[-2000:]
    assert "ValueError: planned failure at step 3" in summary
    assert secs < 30 and not leftovers("raise")


@pytest.mark.mpiexec
def test_rank_killed_by_sigkill_is_named_with_the_likely_cause():
    p, secs = run(["-n", "4", PROG, "kill"])
    assert p.returncode != 0
    assert re.search(r"rank 1 on host \S+ failed first, with signal SIGKILL \(killed: probably out of memory",
                     p.stderr), p.stderr[-2000:]
    assert secs < 30 and not leftovers("kill")


@pytest.mark.mpiexec
def test_rank_hanging_in_a_collective_is_caught_by_the_timeout():
    p, secs = run(["-n", "2", "-x", "PROG_TIMEOUT=4", PROG, "hang"], timeout=90)
    assert p.returncode != 0
    assert "never" in p.stderr or "timeout" in p.stderr.lower(), p.stderr[-2000:]
    # the closing line names the rank that hung, not rank 0 that timed out waiting for it
    closing = [ln for ln in p.stderr.splitlines() if ln.startswith("distgraph-run: ")][0]
    assert closing.startswith("distgraph-run: rank 1 failed first: ") and "reported by rank 0 on host" in closing, \
        p.stderr[-2000:]
    assert secs < 45 and not leftovers("hang")


@pytest.mark.mpiexec
def test_sigint_to_the_launcher_stops_every_rank():
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "distgraph.launch", "-n", "2", PROG, "sleep"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(leftovers("sleep")) < 2:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "job stopped: SIGINT" in err, err[-2000:]
    time.sleep(0.5)
    assert not leftovers("sleep")


def test_multi_host_preflight_names_hosts_that_differ():
    from distgraph.launch.cli import check_probe_output
    ok = "@@probe n1 3.11.7 0.1.0 True@@\n@@probe n2 3.11.7 0.1.0 True@@\n"
    assert [r[0] for r in check_probe_output(ok, "3.11.7", "0.1.0")] == ["n1", "n2"]
    # the MPI's forwarding may put one host's record inside a line of the other's
    mixed = "[x] @@probe n1 3.11.7 0.1.0 True@@@@probe n2 3.11.7 0.1.0 True@@\n\n"
    assert [r[0] for r in check_probe_output(mixed, "3.11.7", "0.1.0")] == ["n1", "n2"]
    bad = "@@probe n1 3.11.7 0.1.0 True@@\n@@probe n2 3.10.1 missing False@@\n"
    with pytest.raises(LaunchError, match=r"n2 has Python 3.10.1 and distgraph missing.*n2 does not have the script"):
        check_probe_output(bad, "3.11.7", "0.1.0")
    with pytest.raises(LaunchError, match="no host answered"):
        check_probe_output("", "3.11.7", "0.1.0")


def test_multi_host_preflight_runs_one_probe_per_host_through_the_launcher(tmp_path, capsys):
    # A stand-in mpiexec that runs the probe locally once per host and records its arguments.
    log = tmp_path / "args"
    fake = tmp_path / "mpiexec"
    fake.write_text("#!/bin/sh\n"
                    "if [ \"$1\" = --version ]; then echo 'HYDRA build details: Version: 4.2'; exit 0; fi\n"
                    f"printf '%s ' \"$@\" | tr '\\n' ' ' >> {log}; echo >> {log}\n"
                    "if [ \"$3\" = -hosts ] && [ \"$6\" = -c ]; then\n"
                    "  for h in 1 2; do \"$5\" -c \"$7\" \"$8\" | sed \"s/probe [^ ]*/probe host$h/\"; done; exit 0; fi\n"
                    # the job itself: each rank's wrapper reports the end of its program
                    "for r in 0 1; do echo \"@@distgraph-rank-exited {\\\"rank\\\": $r, \\\"host\\\": \\\"h\\\", "
                    "\\\"time\\\": 0, \\\"code\\\": 0, \\\"tail\\\": []}\" >&2; done\n"
                    "exit 0\n")
    fake.chmod(0o755)
    script = tmp_path / "train.py"
    script.write_text("")
    rc = main(["-n", "2", "-H", "h1:1,h2:1", "--launcher", str(fake), str(script)])
    calls = log.read_text().splitlines()
    assert calls[0].startswith("-n 2 -hosts h1:1,h2:1 ") and "@@probe" in calls[0], calls
    assert rc == 0 and len(calls) == 2, (rc, calls, capsys.readouterr().err)


@pytest.mark.mpiexec
def test_ranks_share_the_cores_for_blas_threads_unless_the_user_chose():
    env_free = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                  "MKL_NUM_THREADS")}
    per_rank = max(1, (os.cpu_count() or 1) // 2)
    p = subprocess.run([sys.executable, "-m", "distgraph.launch", "-n", "2", PROG, "threads"], capture_output=True,
                       text=True, timeout=120, env={**env_free, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))
    assert p.stdout.count(f"threads={per_rank},{per_rank}") == 2, p.stdout + p.stderr
    p = subprocess.run([sys.executable, "-m", "distgraph.launch", "-n", "2", PROG, "threads"], capture_output=True,
                       text=True, timeout=120, env={**env_free, "OMP_NUM_THREADS": "3", "PYTHONPATH": str(ROOT)},
                       cwd=str(ROOT))
    assert p.stdout.count("threads=3,None") == 2, p.stdout + p.stderr
