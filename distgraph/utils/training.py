"""Resumable training: checkpoints of everything a run needs to continue exactly where it stopped.

    from distgraph.utils.training import CheckpointManager
    ckpt = CheckpointManager("ckpt/", keep=2)
    start = 0
    if args.resume and (state := ckpt.restore(model=model, optimizer=opt, scheduler=sched)):
        start = state["step"]                      # RNG states are restored too
    for step in range(start, total):
        ...
        if (step + 1) % every == 0:
            ckpt.save(step + 1, model=model, optimizer=opt, scheduler=sched, epoch=epoch)

A checkpoint is one ``dg.save`` file, ``<dir>/checkpoint-<step>.safetensors``,
written atomically by rank 0. It holds the ``state_dict()`` of every object
passed that has one (model, optimizer, scheduler, ...), the other values as
given (epoch, step, ...), every rank's random generator states (distgraph's
CPU generator and Python's ``random``), and a SHA-256 digest of its tensors.
The ``keep`` newest files are kept.

:meth:`CheckpointManager.restore` takes the newest checkpoint that loads, has
every field it needs with the right type, and whose digest matches; a damaged
one is skipped with a warning naming the file and the problem, the previous
one is used, and the damaged one is renamed ``*.corrupt``. When checkpoints
exist but every one is damaged, restore raises ``CheckpointError`` (listing
each file and its problem) rather than silently start again from step 0;
``restore(..., fresh_if_damaged=True)`` starts afresh instead. Every rank then
loads the file that rank 0 chose, so the directory must be visible to every
rank (a shared file system, or one host), and every rank returns or raises alike.

Not restored: CUDA generators (CuPy's generators expose no state; draw GPU
randomness from seeded per-step generators if a GPU run must resume bitwise)
and NumPy's legacy global ``np.random`` state.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re

import numpy as np

from distgraph import backend
from distgraph.autograd import Tensor
from distgraph.serialization import CheckpointError, _check_map_location, load, save
from distgraph.utils.logging import get_logger, rank_tag

__all__ = ["CheckpointManager", "device_for_rank", "rng_state", "set_rng_state", "state_digest"]

_log = get_logger(__name__)
_FORMAT = "distgraph-training-checkpoint-1"
_NAME = re.compile(r"^checkpoint-(\d+)\.safetensors$")
_TEMP = re.compile(r"^\.checkpoint-\d+\.safetensors\.[0-9a-f]+\.tmp$")  # dg.save's temporary name


# --------------------------------------------------------------- RNG states
def device_for_rank(spec: str = "cpu") -> str:
    """The device this rank trains on: ``"cpu"``, the given ``"cuda:N"``, or for plain
    ``"cuda"`` the GPU of this rank's local rank.

    Raises:
        SystemExit: a CUDA device was asked for where CuPy or a GPU is missing.
    """
    if not spec.startswith("cuda"):
        return "cpu"
    from distgraph import comm, cuda
    if not cuda.is_available():
        raise SystemExit(f"--device {spec}: no CUDA device (or CuPy) here; use --device cpu")
    return f"cuda:{comm.get_local_rank() if comm.is_initialized() else 0}" if spec == "cuda" else spec


def rng_state() -> str:
    """This process's random state (distgraph's CPU generator, Python's ``random``) as a JSON string."""
    cpu = backend.generator(backend.CPU).bit_generator.state
    py_version, py_internal, py_gauss = random.getstate()
    return json.dumps({"cpu": cpu, "python": [py_version, list(py_internal), py_gauss]})


def set_rng_state(state: str):
    """Restore a state from :func:`rng_state` (distgraph's CPU generator and Python's ``random``)."""
    data = json.loads(state)
    backend.generator(backend.CPU).bit_generator.state = data["cpu"]
    version, internal, gauss = data["python"]
    random.setstate((version, tuple(internal), gauss))


# ------------------------------------------------------------------ digests
def _host(arr):
    return arr if isinstance(arr, np.ndarray) else arr.get()


def _arrays(obj, path=""):
    """(path, array) for every tensor and array in ``obj``, in a fixed order."""
    if isinstance(obj, Tensor):
        yield path, _host(obj.array)
    elif isinstance(obj, np.ndarray):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _arrays(v, f"{path}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _arrays(v, f"{path}/{i}")


def state_digest(obj) -> str:
    """SHA-256 over every tensor of ``obj`` (path, dtype, shape and bytes): detects flipped bits in a file."""
    h = hashlib.sha256()
    for path, arr in _arrays(obj):
        arr = np.ascontiguousarray(arr)
        h.update(f"{path}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.data if arr.size else b"")
    return h.hexdigest()


# ------------------------------------------------------------- collectives
def _group():
    """(rank, world size, comm module or None when there is no group of several ranks)."""
    from distgraph import comm
    if not comm.is_initialized() or comm.get_world_size() == 1:
        return 0, 1, None
    return comm.get_rank(), comm.get_world_size(), comm


class CheckpointManager:
    """Write and find the checkpoints of one run in ``directory``.

    Args:
        directory: where the checkpoints live (created by rank 0 when missing).
        keep: how many of the newest checkpoints to keep (at least 1; 2 leaves
            one to fall back to when the newest is damaged).
    """

    def __init__(self, directory, keep: int = 2):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"CheckpointManager: keep should be an integer >= 1, got {keep!r}")
        self.directory, self.keep = os.fspath(directory), keep

    def path(self, step: int) -> str:
        return os.path.join(self.directory, f"checkpoint-{int(step):08d}.safetensors")

    def checkpoints(self) -> list:
        """``[(step, path)]`` of the checkpoints in the directory, oldest first."""
        if not os.path.isdir(self.directory):
            return []
        found = []
        for name in os.listdir(self.directory):
            m = _NAME.match(name)
            if m:
                found.append((int(m.group(1)), os.path.join(self.directory, name)))
        return sorted(found)

    # ------------------------------------------------------------------ save
    def save(self, step: int, /, **objects) -> str:
        """Write checkpoint ``step`` holding ``objects`` (every rank must call this, at the same step).

        Objects with a ``state_dict()`` are saved as their state dict, anything
        else as it is (numbers, strings, tensors, containers of those). Rank 0
        gathers every rank's RNG state and writes the file; the call returns on
        every rank once the file is complete on disk, and the oldest checkpoints
        beyond ``keep`` are then deleted.

        Returns:
            The checkpoint's path.
        """
        for reserved in ("step", "rng", "format", "world_size", "digest"):
            if reserved in objects:
                raise ValueError(f"CheckpointManager.save: {reserved!r} is a reserved name; pick another")
        rank, world, comm = _group()
        # A collective: every rank contributes its generator state, in rank order.
        states = [rng_state()]
        if comm is not None:
            states = [None] * world
            comm.all_gather_object(states, rng_state())
        path = self.path(step)
        if rank == 0:
            body = {name: (obj.state_dict() if hasattr(obj, "state_dict") else obj) for name, obj in objects.items()}
            ckpt = {"format": _FORMAT, "step": int(step), "world_size": world, "rng": states, **body}
            ckpt["digest"] = state_digest(body)
            os.makedirs(self.directory, exist_ok=True)
            save(ckpt, path)
            # Only rank 0 writes, one file at a time: any temporary file left now is
            # from a run killed mid-write.
            stale = [os.path.join(self.directory, n) for n in os.listdir(self.directory) if _TEMP.match(n)]
            for old in stale + [p for _, p in self.checkpoints()[:-self.keep]]:
                try:
                    os.remove(old)
                except OSError:
                    pass
            _log.info("saved checkpoint %s", path)
        if comm is not None:
            comm.barrier()  # the file exists for every rank once save returns
        return path

    # --------------------------------------------------------------- restore
    def _load_verified(self, path, map_location, wanted=()):
        """The checkpoint at ``path``; CheckpointError when it is unreadable, has a field that is missing or
        of the wrong type, or its digest differs. ``wanted``: entries that must be state dicts."""
        ckpt = load(path, map_location=map_location)
        _check_fields(ckpt, path, wanted)
        got = state_digest({k: v for k, v in ckpt.items() if k not in _RESERVED})
        if got != ckpt["digest"]:
            raise CheckpointError(f"{path}: expected the tensors' SHA-256 digest {_brief(ckpt['digest'])} "
                                  f"stored with them, got {got!r} (the file is corrupt)")
        return ckpt

    def load_latest(self, map_location=None, *, fresh_if_damaged=False):
        """The newest intact checkpoint as a dict, or ``None`` when there is none (every rank must call this).

        Rank 0 tries the checkpoints newest first; a damaged one (unreadable, truncated,
        flipped bits, a field missing or of the wrong type, a digest that differs) is
        skipped with a warning naming the file and the problem, and the previous one is
        tried. Once one loads, the damaged ones are renamed ``<name>.corrupt``, so no
        later resume sees them. The path rank 0 settles on is broadcast, every other
        rank loads it, and the ranks check that all of them could before any returns.

        Args:
            map_location: as for ``dg.load``.
            fresh_if_damaged: what to do when checkpoints exist but every one is damaged:
                ``False`` (default) raises, so that a run never silently restarts from step 0;
                ``True`` warns, renames them ``*.corrupt`` and returns ``None`` (start afresh).
                A directory with no checkpoint at all returns ``None`` either way.

        Raises:
            CheckpointError: on every rank alike, when every checkpoint is damaged (naming each
                file and its problem; the files are left in place, so a rerun raises again), or
                when a rank other than 0 can't read the file rank 0 chose (the directory is
                not shared between the ranks' hosts?).
        """
        return self._load_latest(map_location, fresh_if_damaged, ())

    def _load_latest(self, map_location, fresh_if_damaged, wanted):
        _check_map_location(map_location)  # a bad argument must never be taken for damaged files
        rank, world, comm = _group()
        chosen = ckpt = failure = None
        if rank == 0:
            try:
                chosen, ckpt = self._choose(map_location, fresh_if_damaged, wanted)
            except Exception as e:
                if comm is None:
                    raise
                failure = e
        if comm is None:
            return ckpt
        # A collective: every rank learns rank 0's choice, or why it has none. A rank that raised
        # alone would leave the others waiting for it in their next collective.
        box = [chosen, None if failure is None else f"{type(failure).__name__}: {failure}"]
        comm.broadcast_object_list(box, src=0)
        chosen, reason = box
        if failure is not None:
            raise failure
        if reason is not None:
            raise CheckpointError(f"{rank_tag()} CheckpointManager: rank 0 found no checkpoint to resume from: "
                                  f"{reason}")
        if chosen is None:
            return None
        problem = None
        if rank != 0:
            try:
                ckpt = self._load_verified(chosen, map_location, wanted)
            except _DAMAGE as e:
                problem = _problem(e)
        # A collective again: all ranks resume, or all raise.
        problems = [None] * world
        comm.all_gather_object(problems, problem)
        bad = [f"rank {r} can't read it ({p})" for r, p in enumerate(problems) if p is not None]
        if bad:
            raise CheckpointError(f"{rank_tag()} CheckpointManager: rank 0 resumes from {chosen}, but "
                                  f"{'; '.join(bad)}; the checkpoint directory must be visible to every rank")
        return ckpt

    def _choose(self, map_location, fresh_if_damaged, wanted):
        """``(path, checkpoint)`` of the newest intact checkpoint, else ``(None, None)`` (rank 0's part)."""
        found = list(reversed(self.checkpoints()))
        damaged = []
        for i, (_, path) in enumerate(found):
            try:
                ckpt = self._load_verified(path, map_location, wanted)
            except _DAMAGE as e:
                damaged.append((path, _problem(e)))
                _log.warning("checkpoint %s is damaged (%s); %s", path, damaged[-1][1],
                             "falling back to the previous one" if i + 1 < len(found) else "no older one is left")
                continue
            _set_aside(damaged)
            return path, ckpt
        if not damaged:
            return None, None
        listing = "\n".join(f"  {path}: {problem}" for path, problem in damaged)
        if not fresh_if_damaged:
            raise CheckpointError(f"CheckpointManager: every checkpoint in {self.directory} is damaged, so there is "
                                  f"none to resume from:\n{listing}\nRestore one from a good copy, or pass "
                                  "fresh_if_damaged=True to restore() to start afresh from step 0")
        _log.warning("every checkpoint in %s is damaged; starting afresh from step 0 (fresh_if_damaged=True) and "
                     "renaming them *.corrupt:\n%s", self.directory, listing)
        _set_aside(damaged)
        return None, None

    def restore(self, *, map_location=None, fresh_if_damaged=False, **objects):
        """Load the newest intact checkpoint into ``objects`` and restore this rank's RNG state.

        Every rank must call this. Each object is given its saved entry through
        ``load_state_dict``; the RNG state is this rank's (rank ``r`` of the run
        that wrote it; with another world size, a warning, and rank ``r mod n``'s).
        Damaged checkpoints are skipped as :meth:`load_latest` says.

        Args:
            map_location: as for ``dg.load``.
            fresh_if_damaged: ``True`` to start afresh (return ``None``) when checkpoints exist
                but every one is damaged; by default that raises CheckpointError.

        Returns:
            The other saved entries (``"step"``, and whatever else was passed to
            :meth:`save`), or ``None`` when there is no checkpoint (nothing is changed).

        Raises:
            CheckpointError: every checkpoint is damaged (see :meth:`load_latest`).
            KeyError: an object's name is not in the checkpoint.
        """
        wanted = tuple(name for name, obj in objects.items() if hasattr(obj, "load_state_dict"))
        ckpt = self._load_latest(map_location, fresh_if_damaged, wanted)
        if ckpt is None:
            return None
        rank, world, _ = _group()
        for name, obj in objects.items():
            if name not in ckpt:
                raise KeyError(f"CheckpointManager.restore: the checkpoint of step {ckpt['step']} has no "
                               f"{name!r} (it has {sorted(k for k in ckpt if k != 'digest')})")
            obj.load_state_dict(ckpt[name])
        states = ckpt["rng"]
        if len(states) != world:
            _log.warning("checkpoint of step %d was written by %d rank(s), resuming on %d: random streams "
                         "will differ from an uninterrupted run", ckpt["step"], len(states), world)
        set_rng_state(states[rank % len(states)])
        return {k: v for k, v in ckpt.items() if k not in objects and k not in ("format", "rng", "digest")}


# ------------------------------------------------------------- validation
_RESERVED = ("format", "step", "world_size", "rng", "digest")
# What loading a damaged checkpoint raises: dg.load raises CheckpointError for every kind of damage it
# knows; the others are for damage nobody has imagined yet, which must not stop a resume that an older
# checkpoint can serve (map_location is checked before any file is read, so they are not the caller's).
_DAMAGE = (CheckpointError, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


def _brief(value):
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def _problem(error):
    return str(error) if isinstance(error, CheckpointError) else f"{type(error).__name__}: {error}"


def _set_aside(damaged):
    for path, _ in damaged:
        try:
            os.replace(path, path + ".corrupt")
        except OSError:
            pass


def _check_rng_state(state):
    """Raise ValueError, TypeError or KeyError when :func:`set_rng_state` would refuse ``state`` (a dry run)."""
    data = json.loads(state)
    type(backend.generator(backend.CPU).bit_generator)().state = data["cpu"]
    version, internal, gauss = data["python"]
    random.Random().setstate((version, tuple(internal), gauss))


def _check_fields(ckpt, path, wanted):
    """CheckpointError naming the first reserved field of ``ckpt`` (or entry in ``wanted``) that is missing
    or of the wrong type, so that restore() never fails half-way through on a damaged file."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a CheckpointManager checkpoint: expected a dict with format "
                              f"{_FORMAT!r}, got " + (f"format {_brief(ckpt.get('format'))}" if isinstance(ckpt, dict)
                                                      else _brief(ckpt)))
    missing = [k for k in _RESERVED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: expected the fields {list(_RESERVED)}, the checkpoint has no {missing}")

    def wrong(field, expected):
        return CheckpointError(f"{path}: expected {field!r} to be {expected}, got {_brief(ckpt[field])}")

    step, world, states = ckpt["step"], ckpt["world_size"], ckpt["rng"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise wrong("step", "an integer >= 0")
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise wrong("world_size", "an integer >= 1")
    if not (isinstance(states, list) and len(states) == world and all(isinstance(s, str) for s in states)):
        raise wrong("rng", f"a list of {world} RNG states (strings, one per rank of the run that wrote it)")
    for r, state in enumerate(states):
        try:
            _check_rng_state(state)
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"{path}: the RNG state of rank {r} can't be restored ({type(e).__name__}: "
                                  f"{e})") from None
    if not isinstance(ckpt["digest"], str):
        raise wrong("digest", "a SHA-256 digest (a hex string)")
    for name in wanted:
        if name in ckpt and not isinstance(ckpt[name], dict):
            raise wrong(name, "a state dict (a dict)")
