"""Failures end the job with a clear message within the timeout: they never hang."""
import re

from _mpirun import run_mpi

TIMEOUT = 5  # seconds, the collective timeout the programs run with


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
    assert re.search(r"\[rank [023]/4\] TIMEOUT: all_reduce #2 .* never called it: \[1\]", out), out
    assert "DONE" not in out


def test_debug_mode_mismatch_raises_on_every_rank():
    proc, _ = run_mpi(2, "mpi_failures.py", "mismatch", timeout=60,
                      env={"DISTGRAPH_DEBUG": "1", "TEST_TIMEOUT": "30"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for r in (0, 1):
        assert f"MISMATCH rank={r}: [rank {r}/2] collective mismatch (DISTGRAPH_DEBUG): ranks [1]" in out, out
        assert f"CONTINUED rank={r}" in out, out  # nothing was sent: the job goes on
    assert "rank 0: all_reduce #2 shape=(8,) dtype=float32 op=SUM" in out, out
    assert "rank 1: broadcast #2 shape=(8,) dtype=float32 root=0" in out, out


def test_without_debug_mode_the_mismatch_is_caught_by_the_timeout():
    # the same bug without DISTGRAPH_DEBUG: MPI may match the two calls or not, but the job
    # must not hang past the timeout
    proc, seconds = run_mpi(2, "mpi_failures.py", "mismatch", timeout=60,
                            env={"TEST_TIMEOUT": str(TIMEOUT)})
    assert "MISMATCH" not in proc.stdout
    assert seconds < TIMEOUT + 15, (seconds, proc.stdout + proc.stderr)


def test_rank_killed_mid_job_ends_the_job():
    proc, seconds = run_mpi(2, "mpi_failures.py", "die", timeout=60, env={"TEST_TIMEOUT": "30"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 25, (seconds, out)  # well before the 30 s collective timeout
    assert "DONE" not in out


def test_uncaught_exception_aborts_every_rank_with_its_traceback():
    proc, seconds = run_mpi(2, "mpi_failures.py", "exception", timeout=60,
                            env={"TEST_TIMEOUT": "30"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert seconds < 25, (seconds, out)  # the except hook, not the 30 s timeout, ended it
    assert "[rank 1/2] uncaught exception; aborting the job" in out, out
    assert "[rank 1/2] ValueError: boom on purpose" in out, out
    assert "DONE" not in out
