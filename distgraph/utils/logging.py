"""The framework's own log lines: every one carries the rank, ``DISTGRAPH_LOG_LEVEL`` sets the level.

    from distgraph.utils.logging import get_logger
    log = get_logger(__name__)         # a logging.Logger under the "distgraph" logger
    log.warning("checkpoint %s is truncated; using %s", bad, good)
    # 2024-05-01 12:00:00,123 WARNING [rank 1/4] distgraph.utils.training: checkpoint ... is truncated; ...

``DISTGRAPH_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING`` (default), ``ERROR``,
``CRITICAL`` or a number) is read when the first logger is made; call
:func:`set_level` to change it later. The rank is read at each line: from the
process group once one exists, else from the launcher's environment (so lines
written before ``init_process_group`` carry it too).

Only the ``"distgraph"`` logger gets a handler (to stderr), and it does not
propagate to the root logger, so an application's own ``logging`` set-up is
left alone and nothing is printed twice.
"""
from __future__ import annotations

import logging
import os
import sys

__all__ = ["get_logger", "set_level", "set_rank_source", "rank_tag", "LOG_LEVEL_ENV", "FORMAT"]

LOG_LEVEL_ENV = "DISTGRAPH_LOG_LEVEL"
FORMAT = "%(asctime)s %(levelname)s [rank %(rank)s/%(world_size)s] %(name)s: %(message)s"
_ROOT = "distgraph"
_configured = False


_rank_source = None  # () -> (rank, world size), set by the comm layer while a process group is up


def set_rank_source(source):
    """``source() -> (rank, world_size)``: where log lines read the rank from (``init_process_group``
    sets it; None: the launcher's environment).  The comm layer calls this, so that logging needs
    nothing from comm."""
    global _rank_source
    _rank_source = source


def _rank_world():
    """(rank, world size): the process group's when initialised, else the launcher's environment."""
    try:
        if _rank_source is not None:
            return _rank_source()
        from distgraph_launch.env import discover  # stdlib only: no import of distgraph.comm
        info = discover()
        return info.rank, info.world_size
    except Exception:  # a malformed launcher variable must not break logging
        return 0, 1


def rank_tag() -> str:
    """``"[rank R/N]"`` for this process, the prefix of distgraph's error messages and log lines."""
    rank, world = _rank_world()
    return f"[rank {rank}/{world}]"


class _RankFilter(logging.Filter):
    """Fills ``%(rank)s`` and ``%(world_size)s`` of every record that reaches the handler."""

    def filter(self, record):
        record.rank, record.world_size = _rank_world()
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each line (so redirections made later are followed)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the property always answers sys.stderr
        pass


def _parse_level(raw):
    if raw is None or raw.strip() == "":
        return logging.WARNING
    text = raw.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    level = logging.getLevelName(text.upper())
    if not isinstance(level, int):
        raise ValueError(f"{LOG_LEVEL_ENV}: expected DEBUG, INFO, WARNING, ERROR, CRITICAL or a number, "
                         f"got {raw!r}")
    return level


def _configure():
    global _configured
    if _configured:
        return
    root = logging.getLogger(_ROOT)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_RankFilter())
    root.addHandler(handler)
    root.propagate = False
    root.setLevel(_parse_level(os.environ.get(LOG_LEVEL_ENV)))
    _configured = True


def get_logger(name: str = _ROOT) -> logging.Logger:
    """The ``logging.Logger`` for ``name``, placed under ``"distgraph"`` (``distgraph.<name>``) if not already.

    Raises:
        ValueError: ``DISTGRAPH_LOG_LEVEL`` holds something that is not a level.
    """
    _configure()
    if name != _ROOT and not name.startswith(_ROOT + "."):
        name = f"{_ROOT}.{name}"
    return logging.getLogger(name)


def set_level(level):
    """Set the level of all of distgraph's loggers (a name such as ``"INFO"`` or a number)."""
    _configure()
    logging.getLogger(_ROOT).setLevel(_parse_level(str(level)))
