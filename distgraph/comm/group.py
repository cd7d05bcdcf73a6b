"""Creating, querying and destroying process groups (``torch.distributed``'s names).

Nothing happens at import: the default group exists only after
:func:`init_process_group`, and MPI is initialised (``import mpi4py.MPI``)
only when a multi-rank backend is chosen.
"""
from __future__ import annotations

import atexit
import os
import warnings

from distgraph.comm import daemon, env, exits, watchdog
from distgraph.comm.base import CommError, ProcessGroup
from distgraph.comm.single import SingleProcessGroup
from distgraph.utils import logging as _logging

log = _logging.get_logger(__name__)

__all__ = ["init_process_group", "is_initialized", "destroy_process_group", "new_group",
           "get_rank", "get_world_size", "get_local_rank", "get_local_world_size", "get_backend",
           "GroupMember", "default_group"]

BACKENDS = ("auto", "mpi", "nccl", "single", "gloo")
_world: ProcessGroup | None = None
_groups: list = []


class GroupMember:
    """``GroupMember.NON_GROUP_MEMBER``: what ``new_group`` returns on ranks outside the group.

    Collectives given this group return ``None`` without doing anything (with a
    warning), as in PyTorch.
    """

    class _NonMember:
        def __init__(self, ranks):
            self.ranks = list(ranks)

        def __repr__(self):
            return f"<non-member of group {self.ranks}>"

    NON_GROUP_MEMBER = _NonMember([])

    class _World:
        def __get__(self, obj, owner):
            return _world

    WORLD = _World()  # the default group (None before init_process_group), as torch's GroupMember.WORLD


def __getattr__(name):
    # ``dist.group.WORLD`` (this module is ``dist.group``): the default group, looked up when asked.
    if name == "WORLD":
        return _world
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def init_process_group(backend="auto", init_method=None, timeout=None, world_size=-1, rank=-1,
                       *, debug=None, device_id=None):
    """Create the default process group. Every rank must call this, in the same order.

    Args:
        backend: ``"auto"`` (MPI under an MPI or Slurm launcher, plus NCCL for GPU
            tensors when CuPy, a GPU and NCCL are present; a world of one under plain
            ``python``), ``"mpi"``, ``"nccl"`` (NCCL for GPU tensors, MPI for the
            bootstrap and for CPU tensors -- unlike PyTorch, CPU tensors work), or
            ``"single"``; ``"gloo"`` (PyTorch's CPU backend) runs on MPI, with one log line.
        init_method: only ``None`` / ``"env://"``: ranks come from the launcher.
        timeout: seconds (or a ``datetime.timedelta``) a collective may take before the
            job is aborted with a report; default ``DISTGRAPH_TIMEOUT`` or 1800 s.
        world_size, rank: optional cross-checks against what the launcher says.
        debug: compare a fingerprint of every collective across ranks before running
            it (default: ``DISTGRAPH_DEBUG=1``).
        device_id: the GPU for NCCL; default ``local_rank % device_count``.

    Raises:
        CommError: already initialised, or the arguments disagree with the launcher.
        ValueError: unknown backend or init_method.
    """
    global _world
    if _world is not None:
        raise CommError(f"{_world.tag()} init_process_group: already initialised (backend "
                        f"{get_backend()!r}); call destroy_process_group() first")
    name = (backend or "auto").lower()
    if name not in BACKENDS:
        raise ValueError(f"init_process_group: expected backend in {BACKENDS}, got {backend!r}")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_process_group: expected init_method None or 'env://', got "
                         f"{init_method!r}; distgraph takes ranks from the launcher (mpiexec, srun)")
    seconds = watchdog.timeout_from_env(timeout)
    watchdog.stall_from_env(refresh=True)
    alone = env.started_by_torchrun()
    if alone is not None:
        raise CommError(f"[rank {alone[0]}/{alone[1]}] init_process_group: this process was started by torchrun "
                        f"(or with RANK/WORLD_SIZE={alone[1]} set) but distgraph's ranks are MPI processes, so it "
                        f"would train alone; launch with `distgraph-run -n {alone[1]} script.py` or "
                        f"`mpiexec -n {alone[1]} python script.py`")
    info = env.discover()
    if name == "nccl":
        from distgraph.comm import nccl  # noqa: PLC0415 - CuPy is only looked at on request
        if not nccl.available():
            raise CommError(f"[rank {info.rank}/{info.world_size}] init_process_group: backend 'nccl' needs CuPy, "
                            "a CUDA GPU and NCCL, and this machine has not all three; on CPU use backend='gloo' "
                            "or 'mpi' (the same MPI backend), or run on a GPU machine with distgraph[cuda12]")
    if name == "gloo":
        # PyTorch's CPU backend: here MPI does the same job (a world of one under plain python)
        log.info("init_process_group: backend 'gloo' runs on distgraph's MPI backend")
        name = "auto"
        backend = "mpi" if env.under_launcher() else "single"
    if name == "auto":
        name = "mpi" if env.under_launcher() else "single"
    if name == "single":
        if info.world_size > 1:
            raise CommError(f"[rank {info.rank}/{info.world_size}] init_process_group: backend "
                            f"'single' is a world of one, but {info.launcher} started "
                            f"{info.world_size} ranks; use backend='auto' or 'mpi'")
        pg = SingleProcessGroup(seconds)
    else:
        pg = _init_mpi(name, backend, seconds, info, device_id)
    _check_expected(pg, world_size, rank)
    pg.debug = bool(debug) if debug is not None else os.environ.get("DISTGRAPH_DEBUG") == "1"
    if pg.gpu is not None:
        pg.gpu.debug = pg.debug
    _world = pg
    _groups.append(pg)
    _logging.set_rank_source(lambda: (pg.rank, pg.size))
    log.info("process group up: backend %s, %d rank(s), local rank %d, timeout %g s%s",
                              get_backend(), pg.size, info.local_rank, seconds, ", debug checks on" if pg.debug else "")


def _init_mpi(name, requested, seconds, info, device_id):
    from distgraph.comm import nccl  # noqa: PLC0415 - CuPy is only looked at on request
    want_nccl = name == "nccl" or (requested.lower() == "auto" and nccl.available())
    device = None
    if want_nccl:
        # Bind the GPU before MPI_Init and before any other CUDA call: otherwise every
        # rank opens a context on GPU 0 (and CUDA-aware MPI may do so inside MPI_Init).
        device = nccl.bind_device(info.local_rank if device_id is None else device_id)
    with exits.init_guard(info, watchdog.init_timeout_from_env(seconds)):
        from distgraph.comm.mpi import MPIProcessGroup  # noqa: PLC0415 - MPI_Init happens here
        pg = MPIProcessGroup.world(seconds)
        if pg.size > 1:
            # Stop the daemon before mpi4py's own exit hook runs MPI_Finalize (atexit is LIFO),
            # and send the exit notice before that (registered later, so it runs earlier).
            atexit.register(daemon.stop_daemon)
            if pg.state_server is not None:
                daemon.daemon().add_server(pg.state_server)
            exits.install_excepthook(pg.tag(), pg.abort)
            exits.install_exit_hook(pg)
        if want_nccl:
            pg.gpu = nccl.NCCLProcessGroup(pg, device)
    return pg


def _check_expected(pg, world_size, rank):
    if world_size not in (-1, None) and world_size != pg.size:
        raise CommError(f"{pg.tag()} init_process_group: expected world_size={world_size}, but the "
                        f"launcher started {pg.size} ranks; drop the argument or fix the launch")
    if rank not in (-1, None) and rank != pg.rank:
        raise CommError(f"{pg.tag()} init_process_group: expected rank={rank}, but the launcher "
                        f"made this process rank {pg.rank}; drop the argument")


def is_initialized() -> bool:
    """Whether :func:`init_process_group` has been called (and not destroyed)."""
    return _world is not None


def is_available() -> bool:
    """Whether the distributed package can be used: always (MPI comes with the install; a plain
    ``python`` run is a world of one), as ``torch.distributed.is_available()`` on a build with it."""
    return True


def is_mpi_available() -> bool:
    """Whether mpi4py (and an MPI library for it) can be imported: the multi-process backend."""
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


def is_gloo_available() -> bool:
    """Whether ``"gloo"`` can be asked for: it runs on MPI here (init_process_group says so in a log line)."""
    return is_mpi_available()


def is_nccl_available() -> bool:
    """Whether CuPy with its NCCL binding can be imported (a GPU is still needed to use it)."""
    try:
        from cupy.cuda import nccl  # noqa: F401, PLC0415 - looked at only when asked
    except Exception:  # noqa: BLE001 - ImportError, or CUDA libraries missing
        return False
    return True


def is_backend_available(backend: str) -> bool:
    """``is_{backend}_available()`` for "mpi", "gloo", "nccl"; True for "single" and "auto"."""
    name = str(backend).lower()
    checks = {"mpi": is_mpi_available, "gloo": is_gloo_available, "nccl": is_nccl_available,
              "single": lambda: True, "auto": lambda: True}
    return name in checks and checks[name]()


class Backend(str):
    """Backend names, as ``torch.distributed.Backend``: ``Backend.GLOO == "gloo"``; ``Backend("NCCL")``
    is ``"nccl"``.  "gloo" runs on MPI in distgraph."""

    UNDEFINED, GLOO, NCCL, MPI, UCC = "undefined", "gloo", "nccl", "mpi", "ucc"

    def __new__(cls, name: str):
        if not isinstance(name, str):
            raise ValueError(f"Backend name must be a string, but got: {name!r}")
        value = getattr(cls, name.upper(), name.lower())
        return str.__new__(cls, value)


def is_torchelastic_launched() -> bool:
    """Whether a torchrun-style launcher started this process: torchrun (``TORCHELASTIC_RUN_ID``, the
    variable PyTorch looks at) or ``distgraph-run``; False under plain ``mpiexec`` or ``python``."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "DISTGRAPH_RESTART_COUNT" in os.environ


def default_group(what="this call") -> ProcessGroup:
    if _world is None:
        raise CommError(f"{what}: the default process group is not initialised; call "
                        "dg.comm.init_process_group() first (under plain `python` it makes a "
                        "world of one)")
    return _world


def resolve(group, what):
    """The ProcessGroup for ``group`` (None = default); None for a non-member group."""
    if group is None:
        return default_group(what)
    if isinstance(group, GroupMember._NonMember):
        warnings.warn(f"{what}: this rank is not a member of {group}; the call does nothing "
                      "(as in PyTorch)", stacklevel=3)
        return None
    if not isinstance(group, ProcessGroup):
        raise TypeError(f"{what}: expected group to be None or a group from new_group(), got "
                        f"{type(group).__name__}")
    if group not in _groups:
        raise CommError(f"{group.tag()} {what}: the group was destroyed; create it again with "
                        "new_group()")
    return group


def destroy_process_group(group=None):
    """Destroy ``group``, or every group and the default group when ``group`` is None.

    Every member must call this, in the same order.  Afterwards
    :func:`init_process_group` may be called again.
    """
    global _world
    if group is None:
        for pg in _groups:  # the collectives not yet compared (see ProcessGroup.begin)
            pg.finish_check(partial=True)
        # The daemon uses the communicators: stop it before freeing them.
        daemon.stop_daemon()
        for pg in reversed(_groups):
            _shutdown(pg)
        _groups.clear()
        _world = None
        _logging.set_rank_source(None)
        exits.uninstall_excepthook()
        exits.uninstall_exit_hook()
        return
    if isinstance(group, GroupMember._NonMember):
        return  # nothing was created on this rank
    pg = resolve(group, "destroy_process_group")
    if pg in _groups:
        pg.finish_check(partial=True)
        _shutdown(pg)
        _groups.remove(pg)


def _shutdown(pg):
    if pg.gpu is not None:
        pg.gpu.shutdown()
    pg.shutdown()


def new_group(ranks=None, timeout=None, backend=None):
    """Create a sub-group of ``ranks`` (world ranks). Every rank must call this, in the same order.

    Every rank of the world calls it -- also ranks not in ``ranks`` -- with the
    same list.  Members get a group to pass as ``group=`` to collectives; the
    others get ``GroupMember.NON_GROUP_MEMBER``.  In collectives on a group,
    ``src``/``dst`` are world ranks, as in PyTorch.

    Raises:
        ValueError: a rank outside ``[0, world_size)`` or listed twice.
    """
    world = default_group("new_group")
    ranks = list(range(world.size)) if ranks is None else [int(r) for r in ranks]
    bad = [r for r in ranks if not 0 <= r < world.size]
    if bad or len(set(ranks)) != len(ranks):
        raise ValueError(f"{world.tag()} new_group: expected distinct ranks in [0, {world.size}), "
                         f"got {ranks}")
    if backend is not None and str(backend).lower() not in ("auto", world.backend, "nccl", "gloo", "mpi"):
        raise ValueError(f"{world.tag()} new_group: expected backend None, 'gloo', 'mpi', 'nccl' or that of "
                         f"the default group ({get_backend()!r}), got {backend!r}")
    ranks = sorted(ranks)
    world.begin("new_group")
    sub = world.new_group(ranks)
    if sub is None:
        return GroupMember._NonMember(ranks)
    if world.gpu is not None:
        sub.gpu = world.gpu.subgroup(sub)  # collective over the members only
    if timeout is not None:
        sub.timeout = watchdog.timeout_from_env(timeout)
    _groups.append(sub)
    return sub


def new_subgroups(group_size=None, group=None, timeout=None, backend=None, pg_options=None):
    """Cut the world into groups of ``group_size`` consecutive ranks (default: the ranks of one node,
    ``get_local_world_size()``).  Every rank must call it.  Returns ``(this rank's group, every
    group)`` as PyTorch's; ``group`` and ``pg_options`` are accepted and must be None.

    Raises:
        ValueError: ``group_size`` is not positive, or does not divide the world size.
    """
    world = default_group("new_subgroups")
    if group is not None or pg_options is not None:
        raise ValueError(f"{world.tag()} new_subgroups: only subgroups of the world are supported: pass group=None, "
                         "pg_options=None")
    size = world.local_world_size if group_size is None else int(group_size)
    if size <= 0 or world.size % size:
        raise ValueError(f"{world.tag()} new_subgroups: expected a group_size > 0 that divides the world "
                         f"size {world.size}, got {group_size}")
    groups = [new_group(list(range(k, k + size)), timeout=timeout, backend=backend)
              for k in range(0, world.size, size)]
    return groups[world.rank // size], groups


def get_process_group_ranks(group) -> list:
    """The world ranks of ``group``'s members, in group order (None: the world)."""
    if isinstance(group, GroupMember._NonMember):
        return list(group.ranks)
    pg = resolve(group, "get_process_group_ranks")
    return list(pg.ranks)


def get_global_rank(group, group_rank) -> int:
    """The world rank of ``group``'s member ``group_rank``.

    Raises:
        ValueError: ``group_rank`` is not a rank of the group."""
    ranks = get_process_group_ranks(group)
    if not 0 <= int(group_rank) < len(ranks):
        raise ValueError(f"{default_group().tag()} get_global_rank: group rank {group_rank} is not part of the "
                         f"group (its ranks are 0..{len(ranks) - 1})")
    return ranks[int(group_rank)]


def get_group_rank(group, global_rank) -> int:
    """The rank within ``group`` of the world rank ``global_rank``.

    Raises:
        ValueError: ``global_rank`` is not a member of the group (PyTorch's error)."""
    ranks = get_process_group_ranks(group)
    if int(global_rank) not in ranks:
        raise ValueError(f"{default_group().tag()} get_group_rank: global rank {global_rank} is not part of "
                         f"the group {ranks}")
    return ranks.index(int(global_rank))


def get_rank(group=None) -> int:
    """This process's rank in ``group`` (default: the world); -1 if not a member."""
    if isinstance(group, GroupMember._NonMember):
        return -1
    return int(resolve(group, "get_rank").rank)


def get_world_size(group=None) -> int:
    """Number of ranks in ``group`` (default: the world); -1 if not a member."""
    if isinstance(group, GroupMember._NonMember):
        return -1
    return int(resolve(group, "get_world_size").size)


def get_local_rank() -> int:
    """This process's rank among the ranks on its node (what picks its GPU)."""
    return default_group("get_local_rank").local_rank


def get_node_local_rank(fallback_rank=None) -> int:
    """``LOCAL_RANK`` from the environment (set by torchrun, distgraph-run and, from the MPI launcher's
    own variables, under mpiexec/srun), else ``fallback_rank``; as PyTorch's, a ``RuntimeError`` when
    neither is there.  Needs no process group."""
    raw = os.environ.get("LOCAL_RANK")
    if raw is not None:
        return int(raw)
    if fallback_rank is not None:
        return int(fallback_rank)
    raise RuntimeError("get_node_local_rank: LOCAL_RANK is not in the environment (no launcher set it) and "
                       "no fallback_rank was given; pass fallback_rank=0 for a single process")


def get_local_world_size() -> int:
    """Number of ranks on this process's node."""
    return default_group("get_local_world_size").local_world_size


def get_backend(group=None) -> str:
    """``"nccl"`` when GPU tensors go through NCCL, else ``"mpi"`` or ``"single"``."""
    pg = resolve(group, "get_backend")
    if pg is None:
        raise CommError("get_backend: this rank is not a member of the group")
    return "nccl" if pg.gpu is not None else pg.backend
