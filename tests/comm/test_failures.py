"""Failures end the job with a clear message within the timeout: they never hang."""
import os
import re
import time

import pytest

from _mpirun import run_mpi

TIMEOUT = 5  # seconds, the collective timeout the programs run with


def leftovers(marker="mpi_failures.py"):
    """Processes still alive (not zombies) whose command line names ``marker``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmd and state != "Z":
            found.append((int(pid), cmd))
    return found


def assert_nothing_left():
    deadline = time.monotonic() + 10  # MPI's clean-up of a killed job takes a moment
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers(), leftovers()


def test_missing_rank_gets_a_stall_report_then_everyone_aborts():
    # 4 ranks (oversubscribed): rank 1 skips an all_reduce and computes in Python.
    proc, seconds = run_mpi(4, "mpi_failures.py", "stall", timeout=60,
                            env={"TEST_TIMEOUT": str(TIMEOUT), "DISTGRAPH_STALL_SECONDS": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < TIMEOUT + 15, (seconds, out)  # start-up + timeout + abort, not a hang
    # one table, printed by the lowest rank that arrived, naming the missing rank's stack
    assert "[rank 0/4] STALL: all_reduce #2 shape=(8,) dtype=float32 op=SUM" in out, out
    assert "arrived: [0, 2, 3]   missing: [1]" in out, out
    assert "rank 1: last collective on this group: all_reduce #1" in out, out
    assert "in stuck_in_python" in out, out
    # the closing line headlines the missing rank, not the one that waited
    assert re.search(r"\[rank [023]/4\] TIMEOUT: rank 1 never called all_reduce #2 .* never called it: \[1\]",
                     out), out
    assert "DONE" not in out
    assert_nothing_left()


def test_monitored_barrier_ends_the_job_after_its_own_timeout_naming_the_late_rank():
    proc, seconds = run_mpi(2, "mpi_failures.py", "monitored", timeout=60, env={"TEST_TIMEOUT": "40"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 25, (seconds, out)       # the barrier's 2 s, not the group's 40 s
    assert re.search(r"TIMEOUT: rank 1 never called barrier #2 .* never called it: \[1\]", out), out
    assert "DONE" not in out
    assert_nothing_left()


def test_debug_mode_mismatch_raises_on_every_rank():
    proc, seconds = run_mpi(2, "mpi_failures.py", "mismatch", timeout=60,
                            env={"DISTGRAPH_DEBUG": "1", "TEST_TIMEOUT": "30"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for r in (0, 1):
        assert f"MISMATCH rank={r}: [rank {r}/2] collective mismatch (DISTGRAPH_DEBUG): ranks [1]" in out, out
        assert f"CONTINUED rank={r}" in out, out  # nothing was sent: the job goes on
    assert "rank 0: all_reduce #2 shape=(8,) dtype=float32 op=SUM" in out, out
    assert "rank 1: broadcast #2 shape=(8,) dtype=float32 root=0" in out, out
    assert seconds < 30, (seconds, out)
    assert_nothing_left()


def test_without_debug_mode_different_collectives_end_the_job_with_the_diagnosis():
    # the same bug without DISTGRAPH_DEBUG: MPI may match the two calls or not. If it does not,
    # the waiting ranks ask each other what they wait in (after PEEK_SECONDS) and end the job
    # well before the 30 s timeout; if it does, the periodic check raises at
    # destroy_process_group. Either way the message names what each rank called.
    proc, seconds = run_mpi(2, "mpi_failures.py", "mismatch", timeout=90, env={"TEST_TIMEOUT": "30"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 25, (seconds, out)
    assert "MISMATCH rank=" not in proc.stdout  # no CommError from a debug check
    assert re.search(r"COLLECTIVE MISMATCH|collective mismatch", out), out
    assert "rank 0: all_reduce #2 shape=(8,) dtype=float32 op=SUM" in out, out
    assert "rank 1: broadcast #2 shape=(8,) dtype=float32 root=0" in out, out
    assert "missing: []" not in out
    assert_nothing_left()


def test_in_large_groups_the_stall_report_ends_different_collectives():
    # no early peeks (as in groups of more than 64 ranks): the stall report finds the same
    # disagreement and ends the job instead of waiting for the 30 s timeout
    proc, seconds = run_mpi(2, "mpi_failures.py", "mismatch", timeout=90,
                            env={"TEST_TIMEOUT": "30", "DISTGRAPH_PEEK_MAX_RANKS": "0",
                                 "DISTGRAPH_STALL_SECONDS": "2"})
    out = proc.stdout + proc.stderr
    if "collective mismatch" in out and "STALL" not in out:
        pytest.skip("MPI matched the two calls this time; the periodic check caught it instead")
    assert proc.returncode != 0, out
    assert seconds < 25, (seconds, out)
    assert re.search(r"STALL: (all_reduce|broadcast) #2 .* has waited [\d.]+ s: the ranks called different", out), out
    assert "rank 1: broadcast #2 shape=(8,) dtype=float32 root=0" in out, out
    assert_nothing_left()


@pytest.mark.parametrize("scenario,theirs", [("dtype", "shape=(8,) dtype=int32"),
                                             ("shape", "shape=(2, 4) dtype=float32")])
def test_periodic_check_raises_on_every_rank_at_the_same_collective(scenario, theirs):
    # float32 (8,) against int32 (8,) or float32 (2, 4): the same bytes, so MPI reduces them
    # silently into garbage. The periodic check (on by default) raises CommError on every rank,
    # at the same collective, naming the first one that differed.
    proc, seconds = run_mpi(2, "mpi_failures.py", scenario, timeout=60, env={"TEST_TIMEOUT": "30"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out  # the program caught the error: the ranks are still in step
    caught = re.findall(r"CAUGHT rank=(\d) i=(\d+): \[rank \d/2\] collective mismatch: ranks \[1\] called "
                        r"something different from rank 0 at collective #2 ", proc.stdout)
    assert sorted(caught) == [("0", "1"), ("1", "1")], out  # both ranks, at the same call (#4)
    assert "rank 0: all_reduce #2 shape=(8,) dtype=float32 op=SUM" in out, out
    assert f"rank 1: all_reduce #2 {theirs} op=SUM" in out, out
    assert proc.stdout.count("DONE rank=") == 2, out
    assert seconds < 30, (seconds, out)
    assert_nothing_left()


def test_periodic_check_can_be_turned_off():
    proc, _ = run_mpi(2, "mpi_failures.py", "dtype", timeout=60,
                      env={"TEST_TIMEOUT": "30", "DISTGRAPH_CHECK_EVERY": "0"})
    assert "CAUGHT" not in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.count("DONE rank=") == 2, proc.stdout + proc.stderr
    assert_nothing_left()


@pytest.mark.parametrize("args,code,how", [
    (["exit", "3"], 3, "it called sys.exit(3), exit code 3"),
    (["exit", "0"], 1, "it called sys.exit(0), exit code 0"),
    (["end"], 1, "its script ended, or raised SystemExit without sys.exit(), exit code not known here"),
])
def test_a_rank_that_exits_early_ends_the_job_within_seconds(args, code, how):
    # rank 1 leaves (sys.exit(3), sys.exit(0), or its script just ends) while rank 0 waits in an
    # all_reduce: before, rank 0 waited for the whole collective timeout (30 s here, 30 min by
    # default). The exit notice ends the job at once, with the exiting rank's code (1 for 0).
    proc, seconds = run_mpi(2, "mpi_failures.py", *args, timeout=60, env={"TEST_TIMEOUT": "30"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert seconds < 20, (seconds, out)
    assert f"[rank 0/2] PEER EXITED: rank 1 left the job ({how}) without calling all_reduce #2" in out, out
    assert "its last collective on this group was all_reduce #1" in out, out
    assert "DONE" not in out
    assert_nothing_left()


def test_a_rank_that_exits_before_init_does_not_leave_the_others_in_mpi_init():
    proc, seconds = run_mpi(2, "mpi_failures.py", "preinit", timeout=60,
                            env={"TEST_TIMEOUT": "30", "DISTGRAPH_INIT_TIMEOUT": "4"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 20, (seconds, out)
    assert ("[rank 0/2] init_process_group: start-up did not complete within 4 s: some of the 2 ranks "
            in out), out
    assert "READY" not in out
    assert_nothing_left()


def test_rank_killed_mid_job_ends_the_job():
    proc, seconds = run_mpi(2, "mpi_failures.py", "die", timeout=60, env={"TEST_TIMEOUT": "30"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 25, (seconds, out)  # well before the 30 s collective timeout
    assert "DONE" not in out
    assert_nothing_left()


def test_uncaught_exception_aborts_every_rank_with_its_traceback():
    proc, seconds = run_mpi(2, "mpi_failures.py", "exception", timeout=60,
                            env={"TEST_TIMEOUT": "30"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 25, (seconds, out)  # the except hook, not the 30 s timeout, ended it
    assert "[rank 1/2] uncaught exception; aborting the job" in out, out
    assert "[rank 1/2] ValueError: boom on purpose" in out, out
    assert "DONE" not in out
    assert_nothing_left()
