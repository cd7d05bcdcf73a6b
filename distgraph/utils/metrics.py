"""Training metrics on rank 0: CSV, JSON lines, and TensorBoard event files when a writer is installed.

    from distgraph.utils.metrics import MetricsLogger
    metrics = MetricsLogger("runs/resnet")               # on every rank: only rank 0 writes
    metrics.log(step, loss=0.71, lr=0.1)                 # tags "loss", "lr"
    metrics.log(step, prefix="val/", loss=0.65, accuracy=0.81)
    metrics.close()

Files in ``log_dir``:

- ``metrics.jsonl``: one JSON object per :meth:`MetricsLogger.log` call,
  ``{"step": 100, "time": 1714550000.1, "loss": 0.71, "lr": 0.1}``;
- ``metrics.csv``: one row per value, ``step,tag,value,time`` (a long table, so
  that train and validation rows with different tags share one file);
- TensorBoard event files (``events.out.tfevents.*``) when ``tensorboardX`` or
  ``torch.utils.tensorboard`` is importable (``tensorboard=True`` requires one).

After a resume, pass ``purge_step=step``: rows that the interrupted run wrote
after ``step`` (the checkpoint it resumes from) are dropped, so every step is
logged once. ``examples/plot_metrics.py`` draws these files.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time

__all__ = ["MetricsLogger", "read_jsonl", "read_csv", "tensorboard_writer_class"]

JSONL, CSV = "metrics.jsonl", "metrics.csv"
CSV_HEADER = ["step", "tag", "value", "time"]


def _rank():
    from distgraph.comm import group
    return group.get_rank() if group.is_initialized() else 0


def tensorboard_writer_class():
    """``SummaryWriter`` from ``tensorboardX``, else from ``torch.utils.tensorboard``, else ``None``."""
    try:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    except ImportError:
        pass
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter
    except ImportError:  # torch without the tensorboard package raises ImportError here too
        return None


def _number(tag, value):
    if hasattr(value, "item"):  # a one-element Tensor or NumPy scalar
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"MetricsLogger.log: expected a number for {tag!r}, got {type(value).__name__} {value!r}")
    return value


class MetricsLogger:
    """Append scalar metrics to ``log_dir`` (rank 0 only; on other ranks every call does nothing).

    Args:
        log_dir: the directory (created if missing).
        rank: the rank that writes is 0; default: the process group's rank (0 without one).
        purge_step: drop records with ``step > purge_step`` already in the files
            (use the step of the checkpoint a resumed run starts from); ``None``: keep all.
        tensorboard: ``"auto"`` (write event files when a writer is importable),
            ``True`` (require one), ``False`` (never).

    Raises:
        ImportError: ``tensorboard=True`` and neither ``tensorboardX`` nor
            ``torch.utils.tensorboard`` is installed.
    """

    def __init__(self, log_dir, *, rank=None, purge_step=None, tensorboard="auto"):
        self.log_dir = os.fspath(log_dir)
        self.rank = _rank() if rank is None else int(rank)
        self.active = self.rank == 0
        self._tb = None
        if not self.active:
            return
        os.makedirs(self.log_dir, exist_ok=True)
        if purge_step is not None:
            self._purge(int(purge_step))
        self._jsonl = open(os.path.join(self.log_dir, JSONL), "a", encoding="utf-8")
        csv_path = os.path.join(self.log_dir, CSV)
        new_csv = not os.path.exists(csv_path) or os.path.getsize(csv_path) == 0
        self._csv_file = open(csv_path, "a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._csv_file)
        if new_csv:
            self._csv.writerow(CSV_HEADER)
        if tensorboard:
            writer = tensorboard_writer_class()
            if writer is None and tensorboard is True:
                raise ImportError("MetricsLogger(tensorboard=True): needs tensorboardX or torch's tensorboard: "
                                  "pip install tensorboardX (or tensorboard)")
            if writer is not None:
                kwargs = {} if purge_step is None else {"purge_step": int(purge_step) + 1}
                self._tb = writer(self.log_dir, **kwargs)

    def _purge(self, step):
        """Rewrite the files without the records of steps after ``step`` (written atomically)."""
        for name, keep in ((JSONL, lambda line: json.loads(line)["step"] <= step),
                           (CSV, lambda line: line.startswith("step,") or int(line.split(",", 1)[0]) <= step)):
            path = os.path.join(self.log_dir, name)
            if not os.path.exists(path):
                continue
            with open(path, encoding="utf-8") as f:
                lines = [ln for ln in f if ln.strip() and _parses(keep, ln)]
            tmp = f"{path}.tmp"
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.writelines(lines)
            os.replace(tmp, path)

    def log(self, step, *, prefix="", **values):
        """Record ``values`` (numbers or one-element tensors) at ``step``, tagged ``prefix + name``.

        Every rank may call it; only rank 0 writes. Lines are flushed at once, so
        a killed run keeps what it logged.
        """
        if not self.active:
            return
        step, now = int(step), time.time()
        record = {"step": step, "time": now}
        for name, value in values.items():
            tag = prefix + name
            v = _number(tag, value)
            record[tag] = v if math.isfinite(v) else repr(float(v))  # JSON has no NaN/inf
            self._csv.writerow([step, tag, repr(float(v)) if isinstance(v, float) else v, f"{now:.3f}"])
            if self._tb is not None:
                self._tb.add_scalar(tag, v, step)
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._csv_file.flush()

    def close(self):
        if not self.active:
            return
        for f in (self._jsonl, self._csv_file):
            if not f.closed:
                f.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _parses(keep, line):
    try:
        return keep(line)
    except (ValueError, KeyError):  # a line cut short by a kill: drop it
        return False


def read_jsonl(path):
    """The records of a ``metrics.jsonl`` file (a file or its directory), skipping a truncated last line."""
    path = os.path.join(path, JSONL) if os.path.isdir(path) else path
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def read_csv(path):
    """``{tag: ([steps], [values])}`` from a ``metrics.csv`` file (a file or its directory)."""
    path = os.path.join(path, CSV) if os.path.isdir(path) else path
    series = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            try:
                step, value = int(row["step"]), float(row["value"])
            except (TypeError, ValueError):
                continue
            steps, values = series.setdefault(row["tag"], ([], []))
            steps.append(step)
            values.append(value)
    return series
