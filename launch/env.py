"""Rank discovery: who am I, how many are we, and am I under a launcher at all.

This module belongs to the launcher (which must not import array code) and is
also the comm layer's ``distgraph.comm.env`` (the same module object).

The launchers each export their own variables; this module reads them without
touching MPI, so that ``backend="auto"`` can tell ``python train.py`` (a world
of one) from ``mpiexec -n 4 python train.py`` before deciding to load MPI.

==========  ======================  ======================  ==========================
launcher    rank                    world size              local rank / local size
==========  ======================  ======================  ==========================
OpenMPI     OMPI_COMM_WORLD_RANK    OMPI_COMM_WORLD_SIZE    OMPI_COMM_WORLD_LOCAL_RANK /
                                                            OMPI_COMM_WORLD_LOCAL_SIZE
MPICH/Hydra PMI_RANK                PMI_SIZE                MPI_LOCALRANKID / MPI_LOCALNRANKS
PMIx        PMIX_RANK               (PMI_SIZE if present)   (none)
Slurm srun  SLURM_PROCID            SLURM_NTASKS            SLURM_LOCALID / SLURM_NTASKS_PER_NODE
==========  ======================  ======================  ==========================

The first launcher whose rank variable is set wins, in the order of the table
(an ``mpirun`` inside a Slurm allocation sets both; the MPI launcher's numbers
are the ones MPI will use).  Once MPI is initialised, ``mpi4py`` is the
authority and these numbers are only a cross-check.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

__all__ = ["LaunchInfo", "discover", "under_launcher", "export_torch_env", "started_by_torchrun"]


@dataclass(frozen=True)
class LaunchInfo:
    """What the environment says about this process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    launcher: str = "none"


# (launcher, rank var, size var, local rank var, local size var)
_LAUNCHERS = (
    ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
     "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("pmix", "PMIX_RANK", "PMI_SIZE", None, None),
    ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
)


def _int(env, name, default):
    """Read an integer variable; a malformed value is an error, not a silent default."""
    if name is None or name not in env:
        return default
    raw = env[name]
    # Slurm writes SLURM_NTASKS_PER_NODE as e.g. "2(x3)" on heterogeneous jobs.
    head = raw.split("(")[0].split(",")[0].strip()
    try:
        return int(head)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an integer, got {raw!r}; "
                         "unset it or fix the launcher configuration") from None


def discover(environ=None) -> LaunchInfo:
    """Read rank, world size and local rank from the launcher's environment.

    Args:
        environ: a mapping to read instead of ``os.environ`` (for tests).

    Returns:
        A :class:`LaunchInfo`; ``launcher="none"`` and a world of one when no
        launcher variable is set (plain ``python train.py``).

    Raises:
        ValueError: a variable is not an integer, or rank is outside ``[0, world_size)``.
    """
    env = os.environ if environ is None else environ
    for name, rank_var, size_var, lrank_var, lsize_var in _LAUNCHERS:
        if rank_var not in env:
            continue
        rank = _int(env, rank_var, 0)
        size = _int(env, size_var, None)
        if size is None:
            # PMIx exports no size variable of its own; MPI will tell us later.
            size = rank + 1
        if not 0 <= rank < size:
            raise ValueError(f"{name} launcher: expected 0 <= {rank_var} < {size_var}, got rank "
                             f"{rank} of {size}; check the launcher's environment")
        local_rank = _int(env, lrank_var, None)
        if local_rank is None:
            # No local rank exported: assume one rank per node (correct for
            # CPU runs; GPU runs on several ranks per node need the variable).
            local_rank = 0
        local_size = _int(env, lsize_var, None) or max(local_rank + 1, 1)
        return LaunchInfo(rank, size, local_rank, local_size, name)
    return LaunchInfo()


def under_launcher(environ=None) -> bool:
    """True when a launcher variable says this process is one of several ranks.

    A one-rank launch (``mpiexec -n 1``) counts as launched: MPI is present,
    and a user who asked for it should get it.
    """
    return discover(environ).launcher != "none"


# ------------------------------------------------------------ torchrun's names
TORCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def export_torch_env(environ=None) -> None:
    """Under an MPI or Slurm launcher, set torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
    ``LOCAL_WORLD_SIZE`` (and a placeholder ``MASTER_ADDR``/``MASTER_PORT``) from the launcher's own
    variables, so scripts that read them before ``init_process_group`` work under ``mpiexec``.
    Reads environment variables only (MPI is not started).  Values already set that agree with the
    launcher are kept; one that disagrees (e.g. ``RANK=0`` exported to every rank by a job script)
    would make ranks collide, so it is replaced, with a warning."""
    env = os.environ if environ is None else environ
    try:
        info = discover(env)
    except ValueError:
        return
    if info.launcher == "none":
        return
    values = {"RANK": info.rank, "WORLD_SIZE": info.world_size, "LOCAL_RANK": info.local_rank,
              "LOCAL_WORLD_SIZE": info.local_world_size}
    for k, v in values.items():
        old = env.get(k)
        if old is not None and old.strip() != str(v):
            logging.getLogger("distgraph.comm.env").warning("[rank %d/%d] %s=%s disagrees with the %s launcher; set to %d",
                                         info.rank, info.world_size, k, old, info.launcher, v)
        env[k] = str(v)
    env.setdefault("MASTER_ADDR", "localhost")
    env.setdefault("MASTER_PORT", "29500")
    env.setdefault("DISTGRAPH_TORCH_ENV", "1")   # marks these as ours, not torchrun's


def started_by_torchrun(environ=None):
    """``(rank, world_size)`` when this process looks started by torchrun or by hand with RANK and
    WORLD_SIZE > 1 but by no MPI launcher (so it would silently train alone), else None."""
    env = os.environ if environ is None else environ
    if discover(env).launcher != "none" or env.get("DISTGRAPH_TORCH_ENV") == "1":
        return None
    size = _int(env, "WORLD_SIZE", 1)
    if "TORCHELASTIC_RUN_ID" in env or "GROUP_RANK" in env or size > 1:
        return _int(env, "RANK", 0), size
    return None
