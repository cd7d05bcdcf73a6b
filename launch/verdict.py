"""The closing lines of a failed job and its exit status, from the ranks' failure reports.

A report is the JSON of one ``FAIL_MARK`` line: ``rank``, ``host``, ``time``, ``tail`` (last lines
of stderr) and ``code`` or ``signal``; the comm layer's reports of a rank that aborted because of
others add ``blame`` (the ranks that caused it: missing from a collective, exited early, dead) and
``cause`` (one line).  Pure functions: tested on constructed reports.
"""
from __future__ import annotations

import re
import signal

SIGNAL_CAUSES = {"SIGKILL": "killed: probably out of memory (or killed by the scheduler)",
                 "SIGSEGV": "segmentation fault: a crash in native code",
                 "SIGABRT": "aborted (e.g. MPI_Abort or a failed C assertion)",
                 "SIGTERM": "terminated", "SIGINT": "interrupted"}
TIMEOUT_STATUS = 124  # as timeout(1)


_BLAME_TEXT = re.compile(r"ranks that never called it: \[([\d, ]+)\]")


def _blamed(report):
    """The ranks a report blames (``"blame"``; for reports of older comm layers, the timeout's
    "ranks that never called it: [...]"), or []."""
    if report.get("blame"):
        return sorted(int(r) for r in report["blame"])
    for line in report.get("tail", []):
        m = _BLAME_TEXT.search(line)
        if m:
            return sorted(int(r) for r in m.group(1).split(","))
    return []


def _code_of(report):
    """The exit status a shell would show for this rank: its code, or 128 + the signal number."""
    if "signal" in report:
        try:
            return 128 + int(signal.Signals[report["signal"]])
        except KeyError:
            return 1
    return int(report.get("code") or 1)


def verdict(failures, reason, rc, first_traceback=None, tails=None, stop_time=None, stop_signal=None,
            exits=None, nprocs=None):
    """(closing lines, the job's exit status): see :func:`summary` and :func:`exit_status`.

    ``exits``: reports of ranks whose program ended with status 0; when the job failed with no
    failure report, the first of them is the likely cause (a rank that left while others ran).
    With ``nprocs``, a status 0 from mpiexec with fewer reports than ranks is a failure too."""
    tails = tails or {}
    if reason:
        failures = [f for f in failures if stop_time is None or f["time"] < stop_time]
        first_traceback = first_traceback if first_traceback and first_traceback[1] < stop_time else None
    if not failures and first_traceback is not None:
        rank = first_traceback[0]
        failures = [{"rank": rank, "host": "?", "time": first_traceback[1], "code": rc or 1, "tail": []}]
    if failures:
        first = dict(min(failures, key=lambda f: f["time"]))
        blamed = _blamed(first)
        # A blamed rank's own report (its exit, its signal, its exception) is the cause itself.
        own = [f for f in failures if f["rank"] in blamed and not _blamed(f)]
        if own:
            first, blamed = dict(min(own, key=lambda f: f["time"])), []
        if blamed:
            who = f"rank {blamed[0]}" if len(blamed) == 1 else "ranks " + ", ".join(map(str, blamed))
            cause = first.get("cause") or next((t for t in first.get("tail", []) if t.strip()), "no cause given")
            lines = [f"distgraph-run: {who} failed first: {cause.strip()}; reported by rank {first['rank']} on host "
                     f"{first['host']}; the other ranks were stopped ({len(failures)} rank(s) reported failures)."]
            for r in blamed:
                if tails.get(r):
                    lines.append(f"distgraph-run: last lines of rank {r}'s stderr:")
                    lines += ["    " + t for t in list(tails[r])[-20:]]
            return lines, _code_of(first)
        if not first["tail"]:
            first["tail"] = list(tails.get(first["rank"], []))[-20:]
        how = (f"signal {first['signal']} ({SIGNAL_CAUSES.get(first['signal'], 'killed by a signal')})"
               if "signal" in first else f"exit code {first['code']}")
        lines = [f"distgraph-run: rank {first['rank']} on host {first['host']} failed first, with {how}; "
                 f"the other ranks were stopped ({len(failures)} rank(s) reported failures)."]
        if first["tail"]:
            lines.append(f"distgraph-run: last lines of rank {first['rank']}'s stderr:")
            lines += ["    " + t for t in first["tail"]]
        return lines, _code_of(first)
    code = (128 + int(stop_signal)) if stop_signal else (TIMEOUT_STATUS if reason else (rc or 1))
    if reason:
        return [f"distgraph-run: job stopped: {reason} (exit status {code})"], code
    if rc == 0 and nprocs:
        missing = sorted(set(range(nprocs)) - {e.get("rank") for e in exits or ()})
        return [f"distgraph-run: mpiexec exited with status 0, but ranks {missing} never reported the end of their "
                "program: the MPI launcher stopped them (it does when one rank leaves early, e.g. with os._exit) "
                "or they were killed; the job did not finish"], 1
    if exits:
        first = min(exits, key=lambda f: f["time"])
        return [f"distgraph-run: rank {first['rank']} on host {first['host']} exited first, with exit code 0, while "
                f"other ranks were still running; the MPI launcher then stopped the job (exit status {rc}). A rank "
                "that leaves early (os._exit, or before init_process_group) ends the job: let every rank run to the "
                "end"], code
    return [f"distgraph-run: the job failed with exit status {rc} before any rank reported (see the output "
            "above)"], code


def summary(failures, reason, rc, first_traceback=None, tails=None, stop_time=None, stop_signal=None):
    """The closing lines: the first failed rank, not the cascade that followed.

    ``reason`` is set when the launcher itself stopped the job (a signal, the
    timeout); rank failures reported after that are its consequences.  When the
    first report blames other ranks (``"blame"``: ranks missing from a
    collective, exited early, dead; ``"cause"``: one line), the headline names
    them -- unless a blamed rank reported its own failure, which is then the cause."""
    return "\n".join(verdict(failures, reason, rc, first_traceback, tails, stop_time, stop_signal)[0])


def exit_status(failures, reason, rc, first_traceback=None, stop_time=None, stop_signal=None):
    """The job's exit status: the first failed rank's (128 + N for signal N, as shells show it);
    128 + N when the launcher was stopped by signal N; 124 for ``--timeout``; else mpiexec's."""
    return verdict(failures, reason, rc, first_traceback, None, stop_time, stop_signal)[1]
