"""Fixtures for the comm tests."""
import pytest

from _mpirun import LAUNCHER_VARS


@pytest.fixture
def clean_env(monkeypatch):
    """No launcher variables and no comm settings: a plain `python` process."""
    for name in LAUNCHER_VARS + ("DISTGRAPH_TIMEOUT", "DISTGRAPH_DEBUG", "DISTGRAPH_STALL_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    from distgraph import comm
    if comm.is_initialized():
        comm.destroy_process_group()
