"""How a rank's end reaches the others: the abort hook on an uncaught exception, exit notices,
and the bounded start-up (see also :mod:`distgraph.comm.watchdog`).

A rank whose Python exits (``sys.exit(n)``, the end of its script) while its
process group is up tells every other rank, at exit, how far it got in each
group (through the side channel of :mod:`distgraph.comm.daemon`); a rank that
waits in a collective the exited rank never called then ends the job at once.
Start-up is bounded too (:class:`init_guard`): a rank that never reaches
``MPI_Init`` (it exited or crashed before ``init_process_group``) would leave
the others waiting there forever.
"""
from __future__ import annotations

import atexit
import os
import select
import signal
import sys
import time
import traceback

from distgraph.comm.watchdog import _report_to_launcher

__all__ = ["install_excepthook", "uninstall_excepthook", "install_exit_hook", "uninstall_exit_hook", "init_guard"]


# -------------------------------------------------------------- excepthook
_prev_hook = None


def install_excepthook(tag: str, abort):
    """Abort the whole job when an exception escapes on this rank (ChainerMN's global hook).

    Without it, one rank dies with a traceback while the others wait in the
    next collective until the timeout.
    """
    global _prev_hook
    if _prev_hook is not None:
        return
    _prev_hook = sys.excepthook

    def hook(exc_type, exc, tb):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(f"{tag} uncaught exception; aborting the job so the other ranks do "
                         "not hang:\n" + "".join(f"{tag} {ln}\n" for ln in text.splitlines()))
        _report_to_launcher(text)
        abort()

    sys.excepthook = hook


def uninstall_excepthook():
    global _prev_hook
    if _prev_hook is not None:
        sys.excepthook = _prev_hook
        _prev_hook = None


# ------------------------------------------------------------- exit notices
_exit_pg = None
_real_exit = None
_exit_status = []  # what the last sys.exit() was called with


def _recording_exit(status=None):
    """``sys.exit`` while a multi-rank group is up: remember the status for the exit notice."""
    _exit_status[:] = [status]
    _real_exit(status)


def _announce_exit():
    pg = _exit_pg
    server = getattr(pg, "state_server", None)
    if server is None:
        return
    if _exit_status:
        status = _exit_status[0]
        code = 0 if status is None else status if isinstance(status, int) else 1
        how = f"it called sys.exit({status!r})"
    else:
        code, how = None, "its script ended, or raised SystemExit without sys.exit()"
    try:
        server.announce_exit(code, how)
    except Exception as e:  # noqa: BLE001 - exiting anyway; the others fall back to the timeout
        sys.stderr.write(f"{pg.tag()} could not tell the other ranks that this one exits: {e}\n")


def install_exit_hook(pg):
    """Send an exit notice to every rank when this process exits while ``pg`` is up.

    Registered after the daemon's own exit hook, so it runs first (atexit is LIFO),
    while the side channel is still served; mpi4py's ``MPI_Finalize`` runs after both.
    """
    global _exit_pg, _real_exit
    if _exit_pg is None:
        atexit.register(_announce_exit)
    _exit_pg = pg
    if _real_exit is None:
        _real_exit = sys.exit
        sys.exit = _recording_exit


def uninstall_exit_hook():
    """``destroy_process_group``: exiting is no longer anybody else's business."""
    global _exit_pg, _real_exit
    _exit_pg = None
    if _real_exit is not None:
        if sys.exit is _recording_exit:
            sys.exit = _real_exit
        _real_exit = None
    _exit_status.clear()


class init_guard:
    """Bound start-up: if the block does not finish within ``seconds``, say why and end the process.

    ``MPI_Init`` waits for every rank the launcher started; one that exited or
    crashed before ``init_process_group`` leaves the others there forever.  A
    blocked ``MPI_Init`` holds the GIL, so no Python thread can act: the guard is a
    forked process (forked before MPI starts) that waits on a pipe; the block's end
    closes the pipe, and if that does not happen in time the guard writes the
    report and terminates this process.
    """

    def __init__(self, info, seconds):
        self.info, self.seconds = info, seconds
        self._pid = None

    def __enter__(self):
        if not hasattr(os, "fork"):
            return self
        parent = os.getpid()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the guard: nothing here may touch MPI or run the parent's atexit hooks
            try:
                os.close(w)
                ready, _, _ = select.select([r], [], [], self.seconds)
                if not ready:
                    self._expire(parent)
            finally:
                os._exit(0)
        os.close(r)
        self._pid, self._w = pid, w
        return self

    def __exit__(self, *exc):
        if self._pid is not None:
            os.close(self._w)  # the guard sees end-of-file and exits
            os.waitpid(self._pid, 0)
            self._pid = None
        return False

    def _expire(self, parent):
        i = self.info
        text = (f"[rank {i.rank}/{i.world_size}] init_process_group: start-up did not complete within "
                f"{self.seconds:g} s: some of the {i.world_size} ranks that {i.launcher} started never reached "
                "it (they exited, crashed or hang before init_process_group: look at their output above). "
                "Ending this rank so that the job does not hang; raise DISTGRAPH_INIT_TIMEOUT if start-up is "
                "legitimately this slow.")
        sys.stderr.write(text + "\n")
        _report_to_launcher(text)
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 0)):
            try:
                os.kill(parent, sig)
            except ProcessLookupError:
                return
            end = time.monotonic() + wait
            while time.monotonic() < end:
                try:
                    os.kill(parent, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)
