"""Splitting the MPI's merged, rank-tagged output stream into per-rank segments, live.

MPICH's Hydra (``-prepend-rank``) tags every chunk a rank writes, not every
line: ``"[0] part"`` then ``"[0] ial\\n"``, and a progress bar's ``"\\rA1"``
becomes ``"[0] \\rA1"``.  Chunks of different ranks interleave mid-line
(``"[0] \\rA1[1] \\rA1"``), and reading the pipe may merge several chunks into
one read.  :class:`Demux` undoes that: it is fed text as it arrives and
returns *segments* -- a rank and text ending in ``"\\r"`` or ``"\\n"`` -- at
once, so that progress bars stay live; text without an ending yet is held per
rank and handed out by :meth:`Demux.flush` when the stream goes quiet.

Where a tag is recognised:

* at the start of the stream and after ``"\\n"`` (every flavour's per-line tag;
  a line without one is the launcher's own output, rank ``None``);
* after ``"\\r"`` and, mid-line, when the tag is directly followed by
  ``"\\r"``/``"\\n"`` (Hydra's per-chunk tag in front of a progress-bar
  update) or by a line kept whole (the wrapper's failure report).  A mid-line
  ``"[0] "`` followed by anything else stays text: ``x[0] = 3`` is common.

Nothing here runs a process: every case is tested on strings.
"""
from __future__ import annotations

import re

from .command import _TAGS

# Hydra's per-chunk tag in the middle of a line: taken only in front of a line ending (or a
# line that is kept whole, see Demux).
_MIDLINE = {"mpich": r"\[(\d+)\] ", "intel": r"\[(\d+)\] ", "openmpi": r"\[\d+,(\d+)\]<std(?:out|err)>: ?"}
_ENDS = re.compile(r"[\r\n]")
_HOLD = 32  # a text this short at a line start may still be a tag that is arriving


class Demux:
    """Per-rank segments of one output stream (stdout or stderr) of the whole job.

    Args:
        flavour: the MPI flavour whose tags the stream carries (see ``command.split_tag``).
        keep_whole: prefixes of lines that must never be split into partial pieces
            (the wrapper's machine-readable failure line).

    :meth:`feed` and :meth:`flush` return ``(rank, text, first)`` triples:
    ``first`` is false when ``text`` continues a segment whose beginning was
    already handed out by :meth:`flush` (so it must not get a rank prefix again).
    """

    def __init__(self, flavour: str, keep_whole=()):
        self.start = re.compile(_TAGS[flavour].pattern.lstrip("^"))  # matched at a position, not at 0
        self.keep_whole = tuple(keep_whole)
        ahead = "|".join([r"[\r\n]"] + [re.escape(k) for k in self.keep_whole])
        self.mid = re.compile(f"{_MIDLINE[flavour]}(?={ahead})") if flavour in _MIDLINE else None
        self.buf = ""            # text not parsed yet (may end in a tag that is still arriving)
        self.rank = None         # the rank the text being parsed belongs to
        self.line_start = True   # at the start of the stream or just after "\n"
        self.may_tag = False     # just after "\r" or a quiet spell: a chunk may begin (no tag keeps the rank)
        self.pending = {}        # rank -> the beginning of its current segment, not handed out yet
        self.opened = set()      # ranks whose current segment was partly handed out by flush()

    def _take(self, rank, text, out):
        """Hand out a complete segment of ``rank`` (its held beginning first)."""
        out.append((rank, self.pending.pop(rank, "") + text, rank not in self.opened))
        self.opened.discard(rank)

    def _tag_at(self, i, force):
        """At a line start or after "\\r": the position after the tag there, if any; None: wait for more."""
        m = self.start.match(self.buf, i)
        if m:
            self.rank = int(m.group(1))
            i = m.end()
        elif not force and len(self.buf) - i < _HOLD and not _ENDS.search(self.buf, i):
            return None
        elif self.line_start:
            self.rank = None  # an untagged line: the launcher's own words
        self.line_start = self.may_tag = False
        return i

    def feed(self, text: str, force=False):
        """Parse ``text`` (appended to what is held); return the segments now complete."""
        buf = self.buf = self.buf + text
        out, i = [], 0
        while i < len(buf):
            if self.line_start or self.may_tag:
                j = self._tag_at(i, force)
                if j is None:
                    break
                i = j
            end = _ENDS.search(buf, i)
            mid = self.mid.search(buf, i, end.end() if end else len(buf)) if self.mid else None
            if mid and (end is None or mid.start() < end.start()):
                # another chunk begins mid-line: what came before is a partial segment of the old rank
                if mid.start() > i:
                    self.pending[self.rank] = self.pending.get(self.rank, "") + buf[i:mid.start()]
                self.rank, i = int(mid.group(1)), mid.end()
                continue
            if end is None:
                # hold a trailing "[..." that may be a tag still arriving; the rest waits in pending
                cut = len(buf)
                bracket = buf.rfind("[", i)
                if not force and bracket >= 0 and len(buf) - bracket < _HOLD:
                    cut = bracket
                if cut > i:
                    self.pending[self.rank] = self.pending.get(self.rank, "") + buf[i:cut]
                i = cut
                break
            self._take(self.rank, buf[i:end.end()], out)
            self.line_start, self.may_tag = end.group() == "\n", end.group() == "\r"
            i = end.end()
        self.buf = buf[i:]
        return out

    def has_partial(self) -> bool:
        return bool(self.buf) or any(self.pending.values())

    def flush(self):
        """The stream went quiet: hand out every partial segment as it is (a progress bar's latest state)."""
        out = self.feed("", force=True) if self.buf else []
        for rank in list(self.pending):
            text = self.pending[rank]
            cut = self._cut(text)
            if not cut:
                continue
            out.append((rank, text[:cut], rank not in self.opened))
            self.opened.add(rank)
            self.pending[rank] = text[cut:]
        # After a quiet spell the next text is a new chunk, which the MPI tags.
        self.may_tag = self.may_tag or not self.line_start
        return out

    def _cut(self, text):
        """How much of a partial segment may go out now: all of it but a ``keep_whole`` line
        (or the beginning of one, at the end)."""
        cut = len(text)
        for k in self.keep_whole:
            i = text.find(k)
            if i >= 0:
                cut = min(cut, i)
                continue
            for n in range(min(len(k) - 1, len(text)), 0, -1):
                if text.endswith(k[:n]):
                    cut = min(cut, len(text) - n)
                    break
        return cut

    def close(self):
        """End of stream: everything left, the failure lines included."""
        out = self.feed("", force=True) if self.buf else []
        for rank, text in self.pending.items():
            if text:
                out.append((rank, text, rank not in self.opened))
        self.pending.clear()
        self.opened.clear()
        return out


def own_tag(text: str, rank: int) -> bool:
    """Whether ``text`` already starts with this rank's own ``[rank R/N]`` or ``[rank R]`` tag
    (the comm layer's errors and stall reports carry one)."""
    head = f"[rank {rank}"
    return text.startswith(head) and text[len(head):len(head) + 1] in ("]", "/")
