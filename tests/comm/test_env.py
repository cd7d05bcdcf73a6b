"""Rank discovery from each launcher's environment variables (no processes started)."""
import pytest

from distgraph.comm import env


@pytest.mark.parametrize("environ, want", [
    ({}, env.LaunchInfo(0, 1, 0, 1, "none")),
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
      "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, env.LaunchInfo(3, 8, 1, 2, "openmpi")),
    ({"PMI_RANK": "5", "PMI_SIZE": "6", "MPI_LOCALRANKID": "2", "MPI_LOCALNRANKS": "3"},
     env.LaunchInfo(5, 6, 2, 3, "mpich")),
    ({"PMIX_RANK": "2", "PMI_SIZE": "4"}, env.LaunchInfo(2, 4, 0, 1, "pmix")),
    ({"SLURM_PROCID": "7", "SLURM_NTASKS": "16", "SLURM_LOCALID": "3",
      "SLURM_NTASKS_PER_NODE": "4(x4)"}, env.LaunchInfo(7, 16, 3, 4, "slurm")),
    # mpirun inside a Slurm allocation: the MPI launcher's numbers win
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "OMPI_COMM_WORLD_RANK": "1",
      "OMPI_COMM_WORLD_SIZE": "2"}, env.LaunchInfo(1, 2, 0, 1, "openmpi")),
], ids=["none", "openmpi", "mpich", "pmix", "slurm", "openmpi-in-slurm"])
def test_discover(environ, want):
    assert env.discover(environ) == want
    assert env.under_launcher(environ) == (want.launcher != "none")


@pytest.mark.parametrize("environ, match", [
    ({"PMI_RANK": "x", "PMI_SIZE": "2"}, "PMI_RANK: expected an integer, got 'x'"),
    ({"PMI_RANK": "2", "PMI_SIZE": "2"}, "expected 0 <= PMI_RANK < PMI_SIZE, got rank 2 of 2"),
])
def test_discover_rejects_bad_values(environ, match):
    with pytest.raises(ValueError, match=match):
        env.discover(environ)


def test_discover_reads_os_environ(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert env.discover().rank == 1 and env.discover().launcher == "slurm"
