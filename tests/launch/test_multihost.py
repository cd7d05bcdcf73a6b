"""2 hosts x 2 ranks for real: each host is a network namespace on this machine, joined by a
bridge; MPICH's Hydra reaches them through its ssh hook (tests/launch/nsexec.sh)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
HOSTS = ["10.77.0.2", "10.77.0.3"]


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def two_hosts():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create network namespaces as hosts")
    teardown = "ip netns del dgns2; ip netns del dgns3; ip link del dgbr0"
    sh(teardown)
    setup = ["ip link add dgbr0 type bridge", "ip addr add 10.77.0.1/24 dev dgbr0", "ip link set dgbr0 up"]
    for i in (2, 3):
        setup += [f"ip netns add dgns{i}", f"ip link add dgv{i} type veth peer name eth0 netns dgns{i}",
                  f"ip link set dgv{i} master dgbr0 up", f"ip netns exec dgns{i} ip addr add 10.77.0.{i}/24 dev eth0",
                  f"ip netns exec dgns{i} ip link set eth0 up", f"ip netns exec dgns{i} ip link set lo up"]
    for cmd in setup:
        r = sh(cmd)
        if r.returncode != 0:
            sh(teardown)
            pytest.skip(f"cannot create network namespaces here ({cmd}: {r.stderr.strip()})")
    yield HOSTS
    sh(teardown)


def launch(*args, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "SLURM_"))}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "distgraph.launch", "-n", "4", "-H", ",".join(f"{h}:2" for h in HOSTS),
           "--mpi-arg=-launcher", "--mpi-arg=ssh", "--mpi-arg=-launcher-exec", f"--mpi-arg={HERE / 'nsexec.sh'}",
           "--mpi-arg=-iface", "--mpi-arg=dgbr0", "-x", "FI_PROVIDER=tcp", "-x", "FI_TCP_IFACE=eth0",
           "-x", f"PYTHONPATH={ROOT}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ROOT))


@pytest.mark.mpiexec
def test_two_hosts_two_ranks_each(two_hosts):
    p = launch(str(HERE / "progs.py"), "sum")
    assert p.returncode == 0, p.stdout + p.stderr
    for r in range(4):
        assert f"[rank {r}] sum=[10.0, 10.0] world=4 local={r % 2}" in p.stdout, p.stdout + p.stderr


@pytest.mark.mpiexec
def test_failure_in_a_multi_host_job_is_named(two_hosts):
    p = launch(str(HERE / "progs.py"), "raise")
    assert p.returncode != 0
    assert re.search(r"rank 1 on host \S+ failed first", p.stderr) and "planned failure at step 3" in p.stderr, \
        p.stderr[-2000:]
