"""DistributedDataParallel with real mpiexec ranks (2 and 4), and as a world of one."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
from distgraph import comm
from distgraph.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mpi_util import run_mpi  # noqa: E402

HERE = Path(__file__).resolve().parent
CHECKS = ["equivalence", "adam", "grad_view", "buckets", "no_sync", "unused", "batchnorm", "sync_batchnorm",
          "fp16_hook", "comm_hooks", "mismatch", "timeline", "scaler"]


def run_checks(n, prog, checks, timeout):
    """Run ``prog`` on ``n`` ranks; every check must print "OK <name> rank <r>" on every rank."""
    proc, secs = run_mpi(n, HERE / prog, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for name in checks:
        ranks = sorted(int(r) for r in re.findall(rf"OK {name} rank (\d+)", out))
        assert ranks == list(range(n)), f"check {name}: ranks {ranks} reported OK\n{out[-3000:]}"
    return out, secs


@pytest.mark.mpiexec
@pytest.mark.parametrize("n", [2, 4])
def test_ddp_checks_on_real_ranks(n):
    run_checks(n, "ddp_prog.py", CHECKS, timeout=240)


JOIN_CHECKS = ["join", "effective", "hook", "buffers", "throw", "compiled", "disabled"]


@pytest.mark.mpiexec
@pytest.mark.parametrize("n", [2, 3])
def test_join_on_uneven_inputs_equals_the_updates_by_hand(n):
    # 3 ranks: one of them has no batch at all (it shadows from the first step on)
    out, secs = run_checks(n, "ddp_join_prog.py", JOIN_CHECKS, timeout=180)
    early = 2 if n == 3 else 0     # the rank with the fewest batches joins first and says so
    assert f"THROWN rank {early}: Rank {early} exhausted all inputs." in out, out
    others = [r for r in range(n) if r != early]
    for r in others:
        assert f"THROWN rank {r}: Detected at least one rank that exhausted inputs. Throwing across all ranks." in out
    assert secs < 120, secs


@pytest.mark.mpiexec
def test_rank_failing_mid_backward_ends_the_job():
    proc, secs = run_mpi(2, HERE / "ddp_fail.py", timeout=90)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "rank 1 fails mid-backward on purpose" in out
    assert "finished, which it should not" not in out
    assert secs < 60, f"took {secs:.0f} s to stop"


def test_different_bucket_caps_are_refused_on_every_rank():
    proc, _ = run_mpi(2, HERE / "ddp_layout.py", timeout=90)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for r in (0, 1):
        assert f"REFUSED rank={r}: [rank {r}/2] DistributedDataParallel: ranks cut the gradients into " \
               "different buckets: bucket 0 holds parameters [5, 4, 3, 2, 1, 0] on rank 0 (bucket_cap_mb=25)" in out, out
        assert f"AFTER rank={r}" in out, out
    assert "Pass the same bucket_cap_mb on every rank" in out


def test_world_of_one_is_a_transparent_wrapper():
    if comm.is_initialized():
        comm.destroy_process_group()
    dg.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    twin = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    twin.load_state_dict(m.state_dict())
    net = DDP(m)
    assert comm.get_world_size() == 1 and net.module is m
    assert list(net.state_dict()) == ["module." + k for k in m.state_dict()]
    x = dg.tensor(np.random.default_rng(0).standard_normal((5, 3)))
    net(x).sum().backward()
    twin(x).sum().backward()
    for p, q in zip(m.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    net.eval()
    assert not m.training
    comm.destroy_process_group()


def test_framework_log_lines_carry_the_rank_at_the_level_asked(tmp_path):
    import os
    import subprocess
    import sys as _sys
    prog = tmp_path / "p.py"
    prog.write_text("import distgraph as dg, distgraph.nn as nn\n"
                    "from distgraph.nn.parallel import DistributedDataParallel as DDP\n"
                    "DDP(nn.Linear(2, 2))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "SLURM_"))}
    env.update(PYTHONPATH=str(HERE.parent.parent), DISTGRAPH_LOG_LEVEL="INFO")
    p = subprocess.run([_sys.executable, str(prog)], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert "INFO [rank 0/1] distgraph.comm.group: process group up: backend single" in p.stderr, p.stderr
    assert "INFO [rank 0/1] distgraph.nn.parallel.distributed: DistributedDataParallel: 2 parameters" in p.stderr
    env["DISTGRAPH_LOG_LEVEL"] = "WARNING"
    p = subprocess.run([_sys.executable, str(prog)], capture_output=True, text=True, timeout=60, env=env)
    assert "INFO" not in p.stderr, p.stderr


def test_a_dropped_wrapper_stops_reducing_and_releases_its_hooks():
    import gc
    import weakref
    if comm.is_initialized():
        comm.destroy_process_group()
    m = nn.Linear(3, 2)
    first = DDP(m)
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is None, "the model's hooks keep a dropped DDP wrapper alive"
    assert all(len(p._hooks["post"]) == 0 for p in m.parameters())
    second = DDP(m)
    second(dg.randn(4, 3)).sum().backward()
    assert all(len(p._hooks["post"]) == 1 for p in m.parameters())
    assert second.reducer.timeline[-1] == ("done", len(second.reducer.buckets) - 1)
    comm.destroy_process_group()
