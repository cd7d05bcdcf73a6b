"""distgraph-run's closing lines and exit status, from constructed failure reports."""
import signal

import pytest

from distgraph.launch.verdict import exit_status, summary


def report(rank, t, host="h0", tail=(), **kw):
    return {"rank": rank, "host": host, "time": t, "tail": list(tail), **kw}


TIMEOUT_TAIL = ["TIMEOUT: all_reduce #5 did not complete within 4 s; ranks that never called it: [1]"]


def test_a_timeout_that_blames_a_rank_headlines_the_blamed_rank():
    reps = [report(0, 10.0, code=1, blame=[1], tail=TIMEOUT_TAIL,
                   cause="rank 1 never called all_reduce #5 (rank 0 waited 4 s)"),
            report(0, 10.5, code=1)]  # the reporter's wrapper, after MPI_Abort
    text = summary(reps, None, 1, tails={1: ["step 3 done"]})
    first = text.splitlines()[0]
    assert first == ("distgraph-run: rank 1 failed first: rank 1 never called all_reduce #5 (rank 0 waited 4 s); "
                     "reported by rank 0 on host h0; the other ranks were stopped (2 rank(s) reported failures)."), text
    assert "rank 0 failed first" not in text and "step 3 done" in text  # the blamed rank's stderr
    assert exit_status(reps, None, 1) == 1


def test_several_blamed_ranks_are_all_named():
    reps = [report(2, 5.0, code=1, blame=[3, 1], cause="ranks [1, 3] never called barrier #2")]
    assert summary(reps, None, 1).startswith("distgraph-run: ranks 1, 3 failed first: ranks [1, 3] never called")


def test_a_timeout_report_without_blame_field_is_read_from_its_text():
    # comm layers that predate "blame" say it in words
    reps = [report(0, 10.0, code=1, tail=TIMEOUT_TAIL)]
    assert summary(reps, None, 1).startswith(f"distgraph-run: rank 1 failed first: {TIMEOUT_TAIL[0]}; reported by "
                                             "rank 0")


@pytest.mark.parametrize("own_time", [9.0, 11.0])  # the blamed rank's own report before or after the blame
def test_the_blamed_ranks_own_exit_is_the_cause(own_time):
    reps = [report(0, 10.0, code=1, blame=[1], cause="rank 1 exited with code 3 while rank 0 waited in all_reduce #5"),
            report(1, own_time, host="h1", code=3)]
    text = summary(reps, None, 1)
    assert text.startswith("distgraph-run: rank 1 on host h1 failed first, with exit code 3;"), text
    assert exit_status(reps, None, 1) == 3


def test_a_blamed_rank_that_blames_another_is_not_the_cause():
    reps = [report(0, 10.0, code=1, blame=[1], cause="rank 1 never called all_reduce #5"),
            report(1, 10.2, code=1, blame=[2], cause="rank 2 never called all_gather #2")]
    assert summary(reps, None, 1).startswith("distgraph-run: rank 1 failed first: rank 1 never called all_reduce #5")


@pytest.mark.parametrize("rep, status, words", [
    (report(1, 1.0, code=3), 3, "with exit code 3"),
    (report(2, 1.0, signal="SIGKILL"), 128 + signal.SIGKILL, "with signal SIGKILL (killed: probably out of memory"),
    (report(0, 1.0, signal="SIGSEGV"), 128 + signal.SIGSEGV, "segmentation fault"),
])
def test_the_exit_status_is_the_failed_ranks_as_a_shell_shows_it(rep, status, words):
    later = report(0, 2.0, signal="SIGTERM")  # the cascade: stopped by MPI afterwards
    assert exit_status([later, rep], None, 255) == status
    assert words in summary([later, rep], None, 255).splitlines()[0]


def test_a_stop_by_the_launcher_is_not_blamed_on_a_rank():
    reps = [report(0, 20.0, signal="SIGTERM")]  # after the stop: a consequence
    assert summary(reps, "SIGHUP", 255, stop_time=19.0, stop_signal=signal.SIGHUP) == \
        "distgraph-run: job stopped: SIGHUP (exit status 129)"
    assert exit_status(reps, "SIGHUP", 255, stop_time=19.0, stop_signal=signal.SIGHUP) == 129
    assert exit_status(reps, "timeout after 5 s", 255, stop_time=19.0) == 124


def test_no_report_at_all_keeps_mpiexecs_status():
    assert exit_status([], None, 7) == 7
    assert "before any rank reported" in summary([], None, 7)


def test_a_rank_that_exited_with_status_0_is_named_when_the_job_then_fails():
    from distgraph_launch.verdict import verdict
    exits = [{"rank": 3, "host": "b", "time": 12.0, "code": 0, "tail": []},
             {"rank": 1, "host": "a", "time": 10.0, "code": 0, "tail": []}]
    lines, status = verdict([], None, 9, exits=exits)
    assert lines[0].startswith("distgraph-run: rank 1 on host a exited first, with exit code 0, while other ranks "
                               "were still running; the MPI launcher then stopped the job (exit status 9)"), lines
    assert status == 9
    # a real failure report wins over an exit with status 0
    fail = [{"rank": 0, "host": "a", "time": 11.0, "code": 5, "tail": []}]
    lines, status = verdict(fail, None, 5, exits=exits)
    assert "rank 0 on host a failed first, with exit code 5" in lines[0] and status == 5


def test_status_0_with_ranks_missing_is_a_failure():
    from distgraph_launch.verdict import verdict
    exits = [{"rank": 1, "host": "a", "time": 10.0, "code": 0, "tail": []}]
    lines, status = verdict([], None, 0, exits=exits, nprocs=3)
    assert status == 1 and "ranks [0, 2] never reported the end of their program" in lines[0], lines
