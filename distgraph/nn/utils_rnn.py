"""Variable-length sequences for the recurrent layers (PyTorch's ``nn.utils.rnn``).

A ``PackedSequence`` stores a batch of sequences time-major without padding: ``data`` holds, for
each step ``t``, the rows of the ``batch_sizes[t]`` sequences still running, longest first.
``sorted_indices[j]`` is the original batch index of the j-th longest sequence (``None`` when the
batch came sorted), ``unsorted_indices`` its inverse. Packing and unpacking are one
``index_select`` each, so gradients flow back to the padded tensor.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from distgraph.autograd.creation import full, tensor
from distgraph.autograd.ops._common import as_tensor
from distgraph.autograd.ops.index import index_select
from distgraph.autograd.ops.shape import cat, stack
from distgraph.autograd.tensor import Tensor

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence", "pack_sequence",
           "unpad_sequence", "unpack_sequence"]


def _host_ints(x):
    """A list / tensor of lengths or indices as a host int64 NumPy array."""
    if isinstance(x, Tensor):
        x = x.array
    return np.asarray(x.get() if hasattr(x, "get") else x, dtype=np.int64).reshape(-1)


class PackedSequence(namedtuple("PackedSequence", ["data", "batch_sizes", "sorted_indices", "unsorted_indices"])):
    """A packed batch (see the module docstring); build it with ``pack_padded_sequence``."""

    def __new__(cls, data, batch_sizes=None, sorted_indices=None, unsorted_indices=None):
        if unsorted_indices is None and sorted_indices is not None:
            unsorted_indices = tensor(np.argsort(_host_ints(sorted_indices)), device=sorted_indices.device)
        return super().__new__(cls, data, batch_sizes, sorted_indices, unsorted_indices)

    def _with(self, data, indices_device=None):
        move = (lambda i: i if i is None or indices_device is None else i.to(indices_device))
        return type(self)(data, self.batch_sizes, move(self.sorted_indices), move(self.unsorted_indices))

    def to(self, *args, **kwargs):
        data = self.data.to(*args, **kwargs)
        return self if data is self.data else self._with(data, data.device)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(device if device is not None else "cuda")

    def double(self):
        return self._with(self.data.double())

    def float(self):
        return self._with(self.data.float())

    def half(self):
        return self._with(self.data.half())

    @property
    def is_cuda(self):
        return self.data.is_cuda


def _sorting(lengths, enforce_sorted):
    """Lengths in descending order, and the permutation that sorts them (None if already sorted)."""
    if len(lengths) == 0 or lengths.min() <= 0:
        raise RuntimeError(f"pack_padded_sequence: expected every length > 0, got {lengths.tolist()}")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise RuntimeError(f"pack_padded_sequence: expected lengths sorted in decreasing order, got "
                               f"{lengths.tolist()}; pass enforce_sorted=False to have them sorted")
        return lengths, None
    order = np.argsort(-lengths, kind="stable")
    return lengths[order], order


def _batch_sizes(sorted_lengths):
    steps = np.arange(sorted_lengths[0])
    return (sorted_lengths[None, :] > steps[:, None]).sum(1).astype(np.int64)


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Pack a padded batch ``(T, B, *)`` (``(B, T, *)`` with ``batch_first``) of sequences of ``lengths``.

    Raises:
        RuntimeError: a length <= 0, or lengths not decreasing while ``enforce_sorted``.
        ValueError: more lengths than the batch, or a length beyond the padded length.
    """
    x = as_tensor(input)
    lengths = _host_ints(lengths)
    if batch_first:
        x = x.transpose(0, 1)
    T, B = x.shape[0], x.shape[1]
    if len(lengths) != B:
        raise ValueError(f"pack_padded_sequence: expected {B} lengths (the batch size), got {len(lengths)}")
    sorted_lengths, order = _sorting(lengths, enforce_sorted)
    if sorted_lengths[0] > T:
        raise ValueError(f"pack_padded_sequence: a length {sorted_lengths[0]} exceeds the padded length {T}")
    batch_sizes = _batch_sizes(sorted_lengths)
    cols = np.arange(B) if order is None else order
    rows = np.concatenate([t * B + cols[:n] for t, n in enumerate(batch_sizes)])
    data = index_select(x.reshape(T * B, *x.shape[2:]), 0, tensor(rows, device=x.device))
    sorted_indices = None if order is None else tensor(order, device=x.device)
    return PackedSequence(data, tensor(batch_sizes), sorted_indices, None)


def _layout(sequence):
    """Per (step, original batch index): the row of ``data`` holding it, or -1 past its end."""
    batch_sizes = _host_ints(sequence.batch_sizes)
    T, B = len(batch_sizes), int(batch_sizes[0])
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)[:-1]])
    pos = np.arange(B) if sequence.unsorted_indices is None else _host_ints(sequence.unsorted_indices)
    rows = offsets[:, None] + pos[None, :]
    live = pos[None, :] < batch_sizes[:, None]
    return np.where(live, rows, -1), live.sum(0).astype(np.int64), T, B


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Undo ``pack_padded_sequence``: returns ``(padded, lengths)`` in the original batch order.

    Raises:
        ValueError: ``total_length`` shorter than the longest sequence.
    """
    rows, lengths, T, B = _layout(sequence)
    if total_length is not None:
        if total_length < T:
            raise ValueError(f"pad_packed_sequence: expected total_length >= {T} (the longest sequence), got "
                             f"{total_length}")
        rows = np.concatenate([rows, np.full((total_length - T, B), -1, np.int64)])
    data = sequence.data
    n = data.shape[0]
    pad = full((1, *data.shape[1:]), padding_value, dtype=data.dtype, device=data.device)
    src = cat([data, pad])
    out = index_select(src, 0, tensor(np.where(rows < 0, n, rows).reshape(-1), device=data.device))
    out = out.reshape(rows.shape[0], B, *data.shape[1:])
    return (out.transpose(0, 1) if batch_first else out), tensor(lengths)


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stack sequences ``(L_i, *)`` into ``(T, B, *)`` (``(B, T, *)`` with ``batch_first``), padded
    with ``padding_value`` on ``padding_side`` ("right" or "left") to the longest ``T``."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: expected padding_side 'right' or 'left', got {padding_side!r}")
    seqs = [as_tensor(s) for s in sequences]
    T = max(s.shape[0] for s in seqs)
    padded = []
    for s in seqs:
        if s.shape[0] < T:
            fill = full((T - s.shape[0], *s.shape[1:]), padding_value, dtype=s.dtype, device=s.device)
            s = cat([s, fill] if padding_side == "right" else [fill, s])
        padded.append(s)
    return stack(padded, 0 if batch_first else 1)


def pack_sequence(sequences, enforce_sorted=True):
    """``pack_padded_sequence`` of a list of sequences ``(L_i, *)``."""
    lengths = [as_tensor(s).shape[0] for s in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)


def unpad_sequence(padded_sequences, lengths, batch_first=False):
    """The list of sequences ``(L_i, *)`` in a padded batch."""
    x = padded_sequences if batch_first else padded_sequences.transpose(0, 1)
    return [x[i, :int(n)] for i, n in enumerate(_host_ints(lengths))]


def unpack_sequence(packed_sequences):
    """The list of sequences ``(L_i, *)`` in a ``PackedSequence``, in the original order."""
    padded, lengths = pad_packed_sequence(packed_sequences, batch_first=True)
    return unpad_sequence(padded, lengths, batch_first=True)
