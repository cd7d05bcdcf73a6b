"""DataLoader(timeout=0) with a worker that is alive but stuck: a warning names it, the wait goes on."""
import logging
import math
import multiprocessing
import re
import time

import numpy as np
import pytest

from distgraph.utils.data import DataLoader, Dataset, get_worker_info
from distgraph.utils.data.worker import STALL_ENV, _stall_seconds

LINE = re.compile(r"WARNING \[rank 0/1\] distgraph\.utils\.data\.worker: DataLoader: waited [\d.]+ s for batch 0 "
                  r"of this epoch \(indices \[0\]\) from worker 0; nothing produced by worker 0 \(pid \d+\) "
                  r"for [\d.]+ s\. With timeout=0 the loader waits forever: pass DataLoader\(timeout=SECONDS\)")


class SlowFirst(Dataset):
    """Sample 0 takes ``seconds`` in a worker process (instantly in the main process)."""

    def __init__(self, seconds, n=4):
        self.seconds, self.n = seconds, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == 0 and get_worker_info() is not None:
            time.sleep(self.seconds)
        return np.full(2, i, dtype=np.float32)


@pytest.fixture(autouse=True)
def warnings_shown():
    root = logging.getLogger("distgraph")
    level = root.level
    root.setLevel(logging.WARNING)
    yield
    root.setLevel(level)


def test_a_stuck_worker_is_reported_at_doubling_intervals_and_waited_for(monkeypatch, capfd):
    stall = 0.5
    monkeypatch.setenv(STALL_ENV, str(stall))
    start = time.monotonic()
    got = [b[:, 0].tolist() for b in DataLoader(SlowFirst(2.6), batch_size=1, num_workers=2)]
    elapsed = time.monotonic() - start
    assert got == [[0.0], [1.0], [2.0], [3.0]]  # timeout=0 still waits for the batch
    lines = [ln for ln in capfd.readouterr().err.splitlines() if "DataLoader: waited" in ln]
    assert lines and all(LINE.search(ln) for ln in lines), "expected lines like\n" + LINE.pattern + "\ngot:\n" + \
        "\n".join(lines)
    assert not any("worker 1 (pid" in ln for ln in lines), lines  # worker 1 answered: it is not stuck
    # warnings at 0.5, 1, 2, 4, ... s of waiting: never more than that, at least the first two
    most = int(math.log2(elapsed / stall)) + 1
    assert 2 <= len(lines) <= most, f"expected 2..{most} warnings in {elapsed:.1f} s, got {len(lines)}:\n" + \
        "\n".join(lines)


@pytest.mark.parametrize("env,timeout", [("0.3", 30), ("0", 0)], ids=["with-a-timeout", "turned-off"])
def test_no_warning_with_a_timeout_or_when_turned_off(monkeypatch, capfd, env, timeout):
    monkeypatch.setenv(STALL_ENV, env)
    got = [b[:, 0].tolist() for b in DataLoader(SlowFirst(1.2), batch_size=2, num_workers=2, timeout=timeout)]
    assert got == [[0.0, 1.0], [2.0, 3.0]]
    err = capfd.readouterr().err
    assert "DataLoader: waited" not in err, err


def test_the_stall_setting_is_checked_before_workers_start(monkeypatch):
    monkeypatch.delenv(STALL_ENV, raising=False)
    assert _stall_seconds() == 60.0
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(STALL_ENV, bad)
        with pytest.raises(ValueError, match=f"{STALL_ENV}: expected a number of seconds >= 0 .*got '{bad}'"):
            iter(DataLoader(SlowFirst(0), num_workers=2))
    assert multiprocessing.active_children() == []
