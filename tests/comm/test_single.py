"""The single backend in this very process (a world of one), and init/teardown errors."""
import datetime
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import distgraph as dg
from distgraph import comm
from distgraph.comm import watchdog

sys.path.insert(0, str(Path(__file__).parent))
import mpi_collectives  # noqa: E402


def test_every_collective_in_a_world_of_one(clean_env):
    comm.init_process_group()  # no launcher: auto picks the single backend
    assert (comm.get_backend(), comm.get_rank(), comm.get_world_size()) == ("single", 0, 1)
    assert (comm.get_local_rank(), comm.get_local_world_size()) == (0, 1)
    assert mpi_collectives.run_checks() > 60


def test_single_backend_does_not_load_mpi(clean_env):
    import subprocess
    code = ("import sys; from distgraph import comm; comm.init_process_group(); "
            "import numpy as np, distgraph as dg; t = dg.ones(3); comm.all_reduce(t); "
            "print('mpi4py.MPI' in sys.modules, t.array.tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=str(Path(__file__).parents[2]))
    assert out.stdout.split() == ["False", "[1.0,", "1.0,", "1.0]"], out.stderr


def test_collectives_before_init_are_errors(clean_env):
    assert not comm.is_initialized()
    with pytest.raises(comm.CommError, match="init_process_group"):
        comm.all_reduce(dg.ones(2))
    with pytest.raises(comm.CommError, match="not initialised"):
        comm.get_rank()


def test_init_errors(clean_env):
    with pytest.raises(ValueError, match="expected backend in"):
        comm.init_process_group("ucc")
    with pytest.raises(ValueError, match="init_method"):
        comm.init_process_group(init_method="tcp://x:1")
    with pytest.raises(ValueError, match="timeout > 0"):
        comm.init_process_group(timeout=0)
    with pytest.raises(comm.CommError, match="world_size=2"):
        comm.init_process_group(world_size=2)
    comm.destroy_process_group()
    comm.init_process_group(timeout=datetime.timedelta(seconds=7))
    assert comm.get_world_size() == 1
    with pytest.raises(comm.CommError, match=r"\[rank 0/1\] init_process_group: already"):
        comm.init_process_group()
    comm.destroy_process_group()
    assert not comm.is_initialized()


def test_single_refuses_a_multi_rank_launch(clean_env):
    clean_env.setenv("PMI_RANK", "0")
    clean_env.setenv("PMI_SIZE", "2")
    with pytest.raises(comm.CommError, match="backend 'single' is a world of one"):
        comm.init_process_group("single")


def test_send_to_self_is_an_error(clean_env):
    comm.init_process_group("single")
    with pytest.raises(comm.CommError, match="is this rank"):
        comm.send(dg.ones(2), dst=0)


def test_receive_from_any_source_needs_another_rank(clean_env):
    comm.init_process_group("single")
    with pytest.raises(comm.CommError, match=r"src=None\) needs the MPI backend.*pass src="):
        comm.recv(dg.zeros(2))


def test_async_work_in_a_world_of_one(clean_env):
    comm.init_process_group("single")
    t = dg.ones(3)
    work = comm.all_reduce(t, op=comm.ReduceOp.AVG, async_op=True)
    assert work.is_completed() and work.wait() is True
    assert work.result() == [t]
    np.testing.assert_array_equal(t.array, np.ones(3, np.float32))


def test_timeout_settings(clean_env):
    assert watchdog.timeout_from_env() == watchdog.DEFAULT_TIMEOUT
    clean_env.setenv("DISTGRAPH_TIMEOUT", "12.5")
    assert watchdog.timeout_from_env() == 12.5
    assert watchdog.timeout_from_env(3) == 3.0
    clean_env.setenv("DISTGRAPH_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="DISTGRAPH_TIMEOUT: expected a number of seconds"):
        watchdog.timeout_from_env()
    clean_env.setenv("DISTGRAPH_STALL_SECONDS", "2")
    assert watchdog.stall_from_env(refresh=True) == 2.0


def test_fingerprint_round_trip():
    desc = comm.base.OpDesc("all_reduce", 4, (2, 3), np.dtype(np.float32), -1, comm.ReduceOp.MAX)
    assert str(desc) == "all_reduce #4 shape=(2, 3) dtype=float32 op=MAX"


def test_periodic_check_digest_is_the_same_in_every_process():
    # The periodic check compares hash(tuple(desc.key() ...)) across ranks: it must not depend on
    # the per-process string-hash seed (ranks get different seeds), only on the collectives.
    import subprocess
    import sys
    code = ("import numpy as np; from distgraph.comm.base import OpDesc, ReduceOp; "
            "w = [OpDesc(n, i, s, None if d is None else np.dtype(d), r, o) for i, (n, s, d, r, o) in enumerate(["
            "('all_reduce', (8, 3), 'float32', -1, ReduceOp.AVG), ('broadcast', (2,), 'int64', 1, None), "
            "('barrier', (), None, -1, None), ('all_gather_object', (), None, -1, None)])]; "
            "print(hash(tuple(d.key() for d in w)))")
    digests = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1, digests
    # ...and it tells a dtype, a shape and a reduce op apart
    base = comm.base.OpDesc("all_reduce", 4, (2, 3), np.dtype(np.float32), -1, comm.ReduceOp.SUM)
    for other in (comm.base.OpDesc("all_reduce", 4, (2, 3), np.dtype(np.int32), -1, comm.ReduceOp.SUM),
                  comm.base.OpDesc("all_reduce", 4, (3, 2), np.dtype(np.float32), -1, comm.ReduceOp.SUM),
                  comm.base.OpDesc("all_reduce", 4, (2, 3), np.dtype(np.float32), -1, comm.ReduceOp.MAX)):
        assert hash(other.key()) != hash(base.key())
