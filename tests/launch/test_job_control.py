"""distgraph-run as a process: signals and SIGKILL to the launcher, exit statuses, an unreachable
host, live progress bars, rank tags, bad script paths, and --max-restarts -- all with real
mpiexec runs, each checked for processes left behind."""
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from distgraph.launch.cli import main, parser, preflight_hosts, resolve_plan
from distgraph.launch.command import LaunchError
from distgraph.launch.procs import start_time

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROG = str(HERE / "progs.py")
sys.path.insert(0, str(HERE.parent))
from mpi_util import LAUNCHER_VARS  # noqa: E402


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def marked(marker):
    """Pids of this host's processes with ``marker`` in their command line or environment."""
    found, needle = [], marker.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if (needle in cmdline or needle in environ) and start_time(int(name)) is not None:  # zombies are gone
            found.append(int(name))
    return found


def wait_until(cond, seconds, step=0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def describe(pids):
    out = []
    for pid in pids:
        try:
            out.append(f"{pid}: " + open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()[:120])
        except OSError:
            pass
    return out


def ranks(marker):
    """The pids of the job's ranks (``python .../progs.py ...``, not their wrappers)."""
    found = []
    for pid in marked(marker):
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if len(args) > 1 and args[1].endswith(b"progs.py"):
            found.append(pid)
    return found


def launch(args, marker, **kw):
    """Start distgraph-run on ``args``; ``marker`` goes into the environment of every process of the job."""
    return subprocess.Popen([sys.executable, "-m", "distgraph.launch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env(DGTEST_MARK=marker), cwd=str(ROOT), **kw)


# ------------------------------------------------------- the launcher's death
@pytest.mark.mpiexec
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP])
def test_killing_the_launcher_takes_the_whole_job_with_it(sig):
    marker = f"dgtest-{uuid.uuid4().hex[:10]}"
    proc = launch(["-n", "2", PROG, "sleep", marker], marker)
    try:
        assert wait_until(lambda: len(ranks(marker)) == 2, 60), ("the job did not start", describe(marked(marker)))
        time.sleep(1.0)  # the ranks are in their sleep loop
        job = marked(marker)
        assert len(job) >= 6, describe(job)  # launcher, mpiexec, proxy, 2 wrappers, 2 ranks
        proc.send_signal(sig)
        gone = wait_until(lambda: not marked(marker), 15)
        assert gone, ("left running 15 s after", sig.name, describe(marked(marker)))
        out, err = proc.communicate(timeout=30)
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
        else:
            assert proc.returncode == 128 + signal.SIGHUP, err[-2000:]
            assert "job stopped: SIGHUP (exit status 129)" in err, err[-2000:]
    finally:
        proc.kill()
        proc.communicate(timeout=30)
        for pid in marked(marker):
            os.kill(pid, signal.SIGKILL)


def test_the_rank_wrapper_stops_its_program_when_the_launcher_is_gone():
    # Only the wrapper's own watch: a stand-in "launcher" that is killed, no mpiexec at all.
    marker = f"dgtest-{uuid.uuid4().hex[:10]}"
    stand_in = subprocess.Popen(["sleep", "600"])
    try:
        identity = f"{os.uname().nodename} {stand_in.pid} {start_time(stand_in.pid)}"
        wrapper = subprocess.Popen(
            [sys.executable, "-m", "distgraph.launch.rank", "--", sys.executable, "-c",
             "import time\nwhile True: time.sleep(0.1)", marker],
            env=clean_env(DISTGRAPH_LAUNCHER=identity), stderr=subprocess.PIPE, text=True)
        assert wait_until(lambda: len(marked(marker)) == 1, 30), describe(marked(marker))
        time.sleep(1.0)
        assert wrapper.poll() is None, "the wrapper stopped while the launcher was alive"
        stand_in.kill()
        stand_in.wait(timeout=10)
        assert wrapper.wait(timeout=15) != 0
        assert not marked(marker), describe(marked(marker))
        assert "@@distgraph-rank-failed" not in wrapper.stderr.read()  # nobody is left to read a report
    finally:
        stand_in.kill()
        for pid in marked(marker):
            os.kill(pid, signal.SIGKILL)


# -------------------------------------------------------------- exit status
def run(args, timeout=120, **env):
    """distgraph-run ``args`` to its end; then no process of the job may be left (each gets a marker)."""
    marker = f"dgtest-{uuid.uuid4().hex[:10]}"
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "distgraph.launch", *args], capture_output=True, text=True,
                       timeout=timeout, env=clean_env(DGTEST_MARK=marker, **env), cwd=str(ROOT))
    secs = time.monotonic() - start
    assert wait_until(lambda: not marked(marker), 10), ("left running after the job:", describe(marked(marker)))
    return p, secs


@pytest.mark.mpiexec
@pytest.mark.parametrize("mode, status, headline", [
    ("exit3", 3, "rank 1"), ("kill", 128 + signal.SIGKILL, "rank 1 on host"),
    ("raise", 1, "rank 1 on host"),
    ("exit0", 1, "rank 1 failed first: rank 1 exited (it called sys.exit(0), exit code 0) while rank 0 waited"),
    ("osexit0", None, "rank 1 on host")])
def test_the_job_exits_with_the_failed_ranks_status(mode, status, headline):
    p, secs = run(["-n", "2", "-x", "PROG_TIMEOUT=60", PROG, mode])
    if status is None:  # os._exit(0): MPI kills the other rank; its status is MPI's, never 0
        assert p.returncode != 0, p.stderr[-2000:]
    else:
        assert p.returncode == status, (p.returncode, p.stderr[-2000:])
    closing = [ln for ln in p.stderr.splitlines() if ln.startswith("distgraph-run: ")]
    if mode == "osexit0":  # Hydra's status is then 9 (rank 0 killed) or, depending on timing, 0
        assert closing and ("rank 1 on host" in closing[0] and "exited first, with exit code 0" in closing[0]
                            or "never reported the end of their program" in closing[0]), p.stderr[-2000:]
    else:
        assert closing and closing[0].startswith(f"distgraph-run: {headline}") and "failed first" in closing[0], \
            p.stderr[-2000:]
    assert secs < 30  # seconds, not the 60 s collective timeout


# ------------------------------------------------------- unreachable host
def test_an_unreachable_host_leaves_no_ssh_behind(tmp_path):
    # Hydra's ssh to a host that never answers: the stand-in hangs, and so does one child it
    # started in a session of its own (as ssh's helpers may be).
    pids = tmp_path / "pids"
    fake_ssh = tmp_path / "fake_ssh"
    fake_ssh.write_text("#!/bin/sh\n"
                        f"echo $$ >> {pids}\n"
                        f"setsid sh -c 'echo $$ >> {pids}; exec sleep 300' &\n"
                        f"sleep 300 & echo $! >> {pids}\n"
                        "wait\n")
    fake_ssh.chmod(0o755)
    script = tmp_path / "train.py"
    script.write_text("")
    a = parser().parse_args(["-n", "2", "-H", "unreachable-1:1,unreachable-2:1", "--skip-preflight",
                             "--mpi-arg=-launcher", "--mpi-arg=ssh", "--mpi-arg=-launcher-exec",
                             f"--mpi-arg={fake_ssh}", str(script)])
    plan = resolve_plan(a)
    start = time.monotonic()
    with pytest.raises(LaunchError, match=r"did not finish in 3 s; are the hosts reachable"):
        preflight_hosts(plan, timeout=3)
    assert time.monotonic() - start < 30
    started = [int(x) for x in pids.read_text().split()]
    assert len(started) >= 3, started  # the stand-in ran, with both children
    alive = [p for p in started if start_time(p) is not None]
    assert not alive, describe(alive)


# ------------------------------------------------------------------ output
BAR = """import sys, time
for i in range(4):
    sys.stderr.write(f"\\rstep {i}/4"); sys.stderr.flush(); time.sleep(1.0)
sys.stderr.write("\\n")
"""


@pytest.mark.mpiexec
def test_a_progress_bar_is_shown_while_it_runs(tmp_path):
    script = tmp_path / "bar.py"
    script.write_text(BAR)
    marker = f"dgtest-{uuid.uuid4().hex[:10]}"
    proc = launch(["-n", "1", str(script)], marker)
    seen, chunks = {}, []

    def read():
        text = ""
        while True:
            data = os.read(proc.stderr.fileno(), 4096)
            if not data:
                return
            text += data.decode()
            chunks.append(data)
            for i in range(4):
                if f"[rank 0] step {i}/4" in text:
                    seen.setdefault(i, time.monotonic())
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=90)
        ended = time.monotonic()
        reader.join(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, b"".join(chunks)[-2000:]
    # "step 1/4" has no newline after it; it must be on the screen well before the program ends
    assert 1 in seen and seen[1] < ended - 1.5, (seen, ended, b"".join(chunks)[-500:])
    assert b"".join(chunks).count(b"[rank 0] [rank 0]") == 0
    assert wait_until(lambda: not marked(marker), 10), describe(marked(marker))


TAGGED = """import os, sys
rank = int(os.environ["RANK"])
print(f"[rank {rank}/2] STALL: all_reduce #5 has waited 60.0 s", flush=True)
sys.stderr.write(f"[rank {rank}] uncaught exception in thread\\n"); sys.stderr.flush()
print(f"[rank {1 - rank}/2] said by rank {rank}", flush=True)
print("plain line", flush=True)
"""


@pytest.mark.mpiexec
def test_lines_with_their_own_rank_tag_get_no_second_one(tmp_path):
    script = tmp_path / "tagged.py"
    script.write_text(TAGGED)
    p, _ = run(["-n", "2", str(script)])
    assert p.returncode == 0, p.stderr
    for r in range(2):
        assert f"[rank {r}/2] STALL: all_reduce #5 has waited 60.0 s\n" in p.stdout, p.stdout
        assert f"[rank {r}] [rank {r}/2]" not in p.stdout, p.stdout
        assert f"[rank {r}] uncaught exception in thread" in p.stderr.splitlines(), p.stderr
        assert f"[rank {r}] [rank {1 - r}/2] said by rank {r}" in p.stdout.splitlines(), p.stdout  # not its own
        assert f"[rank {r}] plain line" in p.stdout.splitlines(), p.stdout


# ------------------------------------------------------------ script paths
def test_a_directory_as_script_says_what_to_give(tmp_path, capsys):
    (tmp_path / "train.py").write_text("")
    assert main(["-n", "2", str(tmp_path) + "/"]) == 2
    err = capsys.readouterr().err
    assert "is a directory, not a script" in err and "train.py" in err and "Expected the script" in err, err


def test_a_directory_with_main_runs_like_python_does(tmp_path):
    (tmp_path / "__main__.py").write_text("")
    plan = resolve_plan(parser().parse_args(["-n", "2", "--skip-preflight", str(tmp_path)]))
    assert plan.command == [sys.executable, str(tmp_path)]


@pytest.mark.parametrize("program, message", [
    ("no_such_dir/train.py", "script 'no_such_dir/train.py' not found"),
    ("no-such-program-xyz", "program 'no-such-program-xyz' not found: expected a script"),
])
def test_a_missing_program_is_named(program, message, capsys):
    assert main(["-n", "2", program]) == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------- restarts
@pytest.mark.mpiexec
def test_max_restarts_resumes_from_the_checkpoint_and_ends_as_an_uninterrupted_run(tmp_path):
    train = str(HERE / "train_resume.py")
    (tmp_path / "whole").mkdir()
    (tmp_path / "resumed").mkdir()
    p, _ = run(["-n", "2", train, str(tmp_path / "whole")])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "restarting" not in p.stderr
    p, secs = run(["-n", "2", "--max-restarts", "1", train, str(tmp_path / "resumed"), "--die-at", "10"])
    assert p.returncode == 0, p.stdout + p.stderr
    restarts = [ln for ln in p.stderr.splitlines() if "restarting the job" in ln]
    assert len(restarts) == 1, p.stderr
    assert restarts[0].startswith("distgraph-run: restarting the job (attempt 2 of 2) after: rank 1 on host "), \
        restarts[0]
    assert "SIGKILL" in restarts[0]
    assert "[rank 0] attempt 1 starts at step 8" in p.stdout, p.stdout  # the newest checkpoint before the kill
    whole = np.load(tmp_path / "whole" / "params.npy")
    resumed = np.load(tmp_path / "resumed" / "params.npy")
    assert whole.dtype == np.float64 and np.array_equal(whole, resumed), np.abs(whole - resumed).max()
    assert secs < 120


FLAKY = """import os, subprocess, sys, time
rank, attempt = int(os.environ["RANK"]), int(os.environ["DISTGRAPH_RESTART_COUNT"])
pidfile = sys.argv[1]
if attempt == 0:
    if rank == 0:
        # a helper in a session of its own: MPI's teardown does not reach it
        helper = subprocess.Popen(["sleep", "300"], start_new_session=True)
        open(pidfile, "w").write(str(helper.pid))
        while True:
            time.sleep(0.1)
    while not os.path.exists(pidfile):
        time.sleep(0.05)
    sys.exit(5)
if rank == 0:
    pid = int(open(pidfile).read())
    alive = os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    print(f"attempt {attempt} torchelastic={os.environ['TORCHELASTIC_RESTART_COUNT']} helper alive={alive}",
          flush=True)
"""


@pytest.mark.mpiexec
def test_a_restart_starts_only_once_the_failed_attempt_is_gone(tmp_path):
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY)
    marker = f"dgtest-{uuid.uuid4().hex[:10]}"
    proc = launch(["-n", "2", "--max_restarts", "3", str(script), str(tmp_path / "pid")], marker)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "[rank 0] attempt 1 torchelastic=1 helper alive=False" in out, out + err
    restarts = [ln for ln in err.splitlines() if "restarting the job" in ln]
    assert len(restarts) == 1 and restarts[0].startswith(
        "distgraph-run: restarting the job (attempt 2 of 4) after: rank 1 on host"), err
    assert "exit code 5" in restarts[0]
    assert not marked(marker), describe(marked(marker))


@pytest.mark.mpiexec
def test_the_last_attempts_status_is_the_jobs(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import os, sys\n"
                      "if os.environ['RANK'] == '1':\n"
                      "    sys.exit(5 + int(os.environ['DISTGRAPH_RESTART_COUNT']))\n")
    p, _ = run(["-n", "2", "--max-restarts", "1", str(script)])
    assert p.returncode == 6, p.stderr
    lines = p.stderr.splitlines()
    assert [ln for ln in lines if "restarting the job" in ln] == [
        "distgraph-run: restarting the job (attempt 2 of 2) after: rank 1 on host " + lines[0].split(" on host ")[1]]
    assert "failed first, with exit code 5;" in lines[0] and "failed first, with exit code 6;" in lines[-1], lines


def test_max_restarts_must_not_be_negative(tmp_path, capsys):
    script = tmp_path / "t.py"
    script.write_text("")
    assert main(["-n", "2", "--max-restarts", "-1", str(script)]) == 2
    assert "--max-restarts: expected 0 or more, got -1" in capsys.readouterr().err
