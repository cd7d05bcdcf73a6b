"""The launcher's output demultiplexer (launch/stream.py) on strings: per-chunk MPI tags, partial
lines, progress-bar updates, and lines that already carry their rank's tag."""
import io
import json
import os

import pytest

from distgraph.launch.cli import Watcher
from distgraph.launch.rank import FAIL_MARK
from distgraph.launch.stream import Demux, own_tag


def run(flavour, chunks, quiet_after=()):
    """Feed ``chunks`` in order, flushing after the indices in ``quiet_after`` (the stream went
    quiet); return every (rank, text, first) handed out, the end of stream included."""
    d = Demux(flavour, keep_whole=("@@mark ",))
    out = []
    for i, chunk in enumerate(chunks):
        out += d.feed(chunk)
        if i in quiet_after:
            out += d.flush()
    return out + d.close()


@pytest.mark.parametrize("flavour, chunks, quiet, expected", [
    # whole lines, one tag each
    ("mpich", ["[0] a\n[1] b\n"], (), [(0, "a\n", True), (1, "b\n", True)]),
    # a read that splits a line, a tag and a multi-line chunk
    ("mpich", ["[0] he", "llo\n[", "1] x\n"], (), [(0, "hello\n", True), (1, "x\n", True)]),
    # Hydra tags each chunk: a partial line's continuation carries the tag again
    ("mpich", ["[0] part", "[0] ial\n"], (0,), [(0, "part", True), (0, "ial\n", False)]),
    # progress bars of two ranks interleaved mid-line in one read
    ("mpich", ["[0] \rA1[1] \rA1"], (0,), [(0, "\r", True), (1, "\r", True), (0, "A1", True), (1, "A1", True)]),
    # a bar's update closes the previous one; the update itself is handed out when the stream is quiet
    ("mpich", ["[0] \rA1", "[0] \rA2", "[0] \n"], (0, 1),
     [(0, "\r", True), (0, "A1", True), (0, "\r", False), (0, "A2", True), (0, "\n", False)]),
    # user text that looks like a tag mid-line is text
    ("mpich", ["[1] x[0] = 3\n"], (), [(1, "x[0] = 3\n", True)]),
    # an untagged line is the launcher's own
    ("mpich", ["[0] a\n===== BAD TERMINATION\n"], (), [(0, "a\n", True), (None, "===== BAD TERMINATION\n", True)]),
    # the failure line is never split, even when the stream goes quiet in the middle of it
    ("mpich", ["[1] @@mark {\"ra", "nk\": 1}\n"], (0,), [(1, "@@mark {\"rank\": 1}\n", True)]),
    # ... also when it follows a partial line of the same rank
    ("mpich", ["[1] 50%@@ma", "rk {}\n"], (0,), [(1, "50%", True), (1, "@@mark {}\n", False)]),
    ("mpich", ["[1] \r50%", "[1] @@mark {}\n"], (0,), [(1, "\r", True), (1, "50%", True), (1, "@@mark {}\n", False)]),
    # a multi-byte character is whole once decoded; an incomplete last line comes out at the end
    ("mpich", ["[0] caf\u00e9 \u2588\u2588 50%"], (), [(0, "caf\u00e9 \u2588\u2588 50%", True)]),
    ("openmpi", ["[1,2]<stderr>: hi\n[1,3]<stdout>: a\rb"], (), [(2, "hi\n", True), (3, "a\r", True),
                                                                   (3, "b", True)]),
    ("slurm", ["  7: hello\n 8: x\r9: y\n"], (), [(7, "hello\n", True), (8, "x\r", True), (9, "y\n", True)]),
])
def test_segments_come_out_per_rank_as_soon_as_they_end(flavour, chunks, quiet, expected):
    assert run(flavour, chunks, quiet) == expected


def test_a_partial_update_is_held_only_until_the_stream_goes_quiet():
    d = Demux("mpich")
    assert d.feed("[0] \r 40%|####") == [(0, "\r", True)]
    assert d.has_partial()
    assert d.flush() == [(0, " 40%|####", True)]
    assert not d.has_partial()


@pytest.mark.parametrize("text, rank, expected", [
    ("[rank 1/2] STALL: all_reduce #5\n", 1, True), ("[rank 1] uncaught exception\n", 1, True),
    ("[rank 1/2] x\n", 0, False), ("[rank 10/16] x\n", 1, False), ("loss 0.5\n", 1, False),
])
def test_own_tag_is_recognised_only_for_the_same_rank(text, rank, expected):
    assert own_tag(text, rank) is expected


def through_watcher(data: bytes, **kw):
    """What the launcher writes for ``data`` read from the job's stderr, and the Watcher."""
    w = Watcher([], {}, None, "mpich", **kw)
    w.stopping = True  # no job to stop here
    r, wr = os.pipe()
    os.write(wr, data)
    os.close(wr)
    out = io.StringIO()
    try:
        w._stream(r, out, is_err=True)
    finally:
        os.close(r)
    return out.getvalue(), w


def test_the_watcher_prefixes_once_and_takes_the_failure_report_out_of_the_stream():
    report = {"rank": 1, "host": "h", "time": 1.0, "tail": [], "code": 3}
    data = (b"[1] \r50%[1] " + (FAIL_MARK + json.dumps(report)).encode() + b"\n"
            b"[0] [rank 0/2] STALL: all_reduce #5\n[1] [rank 0/2] said by rank 1\n[0] caf\xc3")
    text, w = through_watcher(data + b"\xa9\n")  # a character split between two writes
    assert text == ("\r[rank 1] 50%\n[rank 0/2] STALL: all_reduce #5\n[rank 1] [rank 0/2] said by rank 1\n"
                    "[rank 0] caf\u00e9\n")
    assert w.failures == [report]
    assert list(w.tails[0]) == ["[rank 0/2] STALL: all_reduce #5", "caf\u00e9"]


def test_no_prefix_still_takes_the_mpis_tags_off():
    text, _ = through_watcher(b"[0] a\n[1] \rb\n", prefix=False)
    assert text == "a\n\rb\n"
