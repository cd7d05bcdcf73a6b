"""Finding and stopping every local process of a job, wherever it sits in the process tree.

MPICH's Hydra starts each proxy and each rank in a session of its own
(``setsid``), and an ``ssh`` it starts outlives a killed ``mpiexec``: neither a
process group nor the parent/child tree reaches them all.  The environment
does: ``distgraph-run`` gives the launcher it starts a variable
(``DISTGRAPH_JOB_TOKEN``) that every local descendant inherits, and finds
them again by reading ``/proc/<pid>/environ``.  (Linux only; elsewhere the
process group is all there is, and these functions find nothing.)

The ranks also watch ``distgraph-run`` itself (``DISTGRAPH_LAUNCHER``, see
``launch/rank.py``): when the launcher is gone, even by SIGKILL, they stop
their program.
"""
from __future__ import annotations

import os
import signal
import socket
import time
import uuid

TOKEN_VAR = "DISTGRAPH_JOB_TOKEN"
LAUNCHER_VAR = "DISTGRAPH_LAUNCHER"


def new_token() -> str:
    """A value for ``TOKEN_VAR`` that no other job on this host has."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def start_time(pid: int):
    """The start time of ``pid`` in clock ticks since boot (tells a reused pid apart), or None if it is
    gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is the state (field 3 of stat(5)), fields[19] the start time (field 22)
    return None if fields[0] in ("Z", "X") else fields[19]


def launcher_identity() -> str:
    """``"host pid start"`` of this process, for ``LAUNCHER_VAR``."""
    return f"{socket.gethostname()} {os.getpid()} {start_time(os.getpid())}"


def launcher_alive(identity: str) -> bool | None:
    """Whether the launcher named by ``identity`` still runs; None when this host cannot tell
    (another host, or no /proc)."""
    try:
        host, pid, start = identity.split()
        pid = int(pid)
    except ValueError:
        return None
    if host != socket.gethostname() or start == "None" or not os.path.isdir("/proc/self"):
        return None
    return start_time(pid) == start


def processes_with(token: str) -> list:
    """Pids of this host's processes whose environment holds ``TOKEN_VAR=token`` (zombies excluded)."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(name))
    return found


def kill_all(token: str, timeout: float = 10.0) -> list:
    """SIGKILL every process of the job on this host until none is left; returns the survivors
    after ``timeout`` seconds (normally none)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = processes_with(token)
        if not pids or time.monotonic() > deadline:
            return pids
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.1)


def die_with_parent():
    """A ``preexec_fn``: the child gets SIGKILL when the thread that started it dies, even by
    SIGKILL (Linux ``prctl(PR_SET_PDEATHSIG)``); None where that is not available."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: nothing may be imported after fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec():
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return preexec
