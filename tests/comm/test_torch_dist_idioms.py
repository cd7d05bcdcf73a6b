"""torch.distributed idioms with real processes: torchrun's variables under ``mpiexec``, backend "gloo",
``init_process_group`` keyword checks, torchrun-started processes, ``mp.spawn`` and DDP's torch arguments.

Every multi-rank run goes through ``run_mpi`` (Hydra's MPIEXEC_TIMEOUT plus a subprocess timeout).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _mpirun import LAUNCHER_VARS, mpiexec, run_mpi

ROOT = Path(__file__).resolve().parent.parent.parent

TORCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_CLEAN = LAUNCHER_VARS + TORCH_VARS + ("TORCHELASTIC_RUN_ID", "GROUP_RANK", "DISTGRAPH_TORCH_ENV")


def _script(tmp_path, body, name="prog.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _python(args, env_extra=None, timeout=90):
    """Plain ``python args`` with no launcher or torchrun variables (plus ``env_extra``)."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=str(ROOT))


def _mpi(n, path, env_extra=None, timeout=90):
    # run_mpi drops the launcher variables; torchrun's must not leak in from this process either
    leaked = [k for k in _CLEAN if k in os.environ and k not in (env_extra or {})]
    if leaked:
        pytest.skip(f"{leaked} set in the test environment")
    return run_mpi(n, path, env=env_extra, timeout=timeout)[0]


def _records(stdout):
    return sorted((json.loads(line[len("@@"):]) for line in stdout.splitlines() if line.startswith("@@")),
                  key=lambda r: r["rank"])


# ------------------------------------------------- torchrun's variables, gloo and DDP args
TRAIN = """
import datetime, json, os, sys
rank_before = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                               "MASTER_ADDR", "MASTER_PORT")}
import distgraph as torch
import distgraph.distributed as dist
import distgraph.nn as nn
from distgraph.nn.parallel import DistributedDataParallel as DDP

seen = {k: os.environ.get(k) for k in rank_before}
rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
local_rank = int(os.environ["LOCAL_RANK"])
dist.init_process_group(backend="gloo", init_method="env://", rank=rank, world_size=world_size,
                        timeout=datetime.timedelta(seconds=60))
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
torch.manual_seed(0)
model = nn.Linear(3, 2)
ddp = DDP(model, device_ids=[local_rank], output_device=local_rank, broadcast_buffers=False,
          find_unused_parameters=True, gradient_as_bucket_view=True, static_graph=False,
          process_group=dist.group.WORLD)
(ddp(torch.ones(4, 3) * (rank + 1)).sum()).backward()
sys.stdout.write("@@" + json.dumps({"rank": rank, "before": rank_before, "seen": seen, "sum": t.item(),
                         "backend": dist.get_backend(), "dist_rank": dist.get_rank(),
                         "module_is_model": ddp.module is model,
                         "wgrad": model.weight.grad.tolist()}) + "\\n"); sys.stdout.flush()
dist.destroy_process_group()
"""


def _check_train(records, n, before_set):
    assert [r["rank"] for r in records] == list(range(n))
    mean_scale = sum(r + 1 for r in range(n)) / n
    for r in records:
        expect = {"RANK": str(r["rank"]), "WORLD_SIZE": str(n), "LOCAL_RANK": str(r["rank"]),
                  "LOCAL_WORLD_SIZE": str(n)}
        for k, v in expect.items():
            assert r["seen"][k] == v, (k, r)
            if before_set:
                assert r["before"][k] == v, (k, r)
        assert r["seen"]["MASTER_ADDR"] and r["seen"]["MASTER_PORT"]
        assert r["sum"] == sum(range(1, n + 1)) and r["dist_rank"] == r["rank"]
        assert r["module_is_model"]
        # d(sum(W x + b))/dW = sum over the batch of x = 4 * scale; DDP averages the ranks' scales
        assert r["wgrad"] == [[4 * mean_scale] * 3] * 2, r


@pytest.mark.mpiexec
def test_plain_mpiexec_exports_torchrun_variables_on_import_and_gloo_runs_on_mpi(tmp_path):
    p = _mpi(2, _script(tmp_path, TRAIN))
    assert p.returncode == 0, p.stdout + p.stderr
    records = _records(p.stdout)
    _check_train(records, 2, before_set=False)
    assert all(r["before"]["RANK"] is None for r in records)  # set by `import distgraph`, not by mpiexec


@pytest.mark.mpiexec
def test_user_set_values_that_agree_are_kept_and_gloo_logs_one_line(tmp_path):
    p = _mpi(2, _script(tmp_path, TRAIN), {"MASTER_ADDR": "10.1.2.3", "MASTER_PORT": "1234",
                                            "WORLD_SIZE": "2", "DISTGRAPH_LOG_LEVEL": "INFO"})
    assert p.returncode == 0, p.stdout + p.stderr
    records = _records(p.stdout)
    assert [(r["seen"]["MASTER_ADDR"], r["seen"]["MASTER_PORT"]) for r in records] == [("10.1.2.3", "1234")] * 2
    assert p.stderr.count("'gloo' runs on distgraph's MPI backend") <= 2  # one line (per rank at most)
    assert "'gloo' runs on distgraph's MPI backend" in p.stderr


@pytest.mark.mpiexec
def test_a_stale_rank_exported_to_every_rank_is_corrected_with_a_warning(tmp_path):
    p = _mpi(2, _script(tmp_path, TRAIN), {"RANK": "0"})
    assert p.returncode == 0, p.stdout + p.stderr
    _check_train(_records(p.stdout), 2, before_set=False)
    assert "RANK=0 disagrees" in p.stderr


@pytest.mark.mpiexec
@pytest.mark.parametrize("kwargs, word", [("world_size=3", "world_size=3"), ("rank=1 - int(os.environ['RANK'])",
                                                                             "expected rank=")])
def test_rank_or_world_size_contradicting_mpi_is_a_clear_error(tmp_path, kwargs, word):
    body = f"import os\nimport distgraph.distributed as dist\ndist.init_process_group('gloo', {kwargs})\n"
    p = _mpi(2, _script(tmp_path, body))
    assert p.returncode != 0
    assert word in p.stderr and "[rank " in p.stderr, p.stderr


# ------------------------------------------------------------ single process
def test_gloo_under_plain_python_is_a_world_of_one(tmp_path):
    body = ("import datetime, distgraph.distributed as dist\n"
            "dist.init_process_group('gloo', init_method='env://', rank=0, world_size=1,"
            " timeout=datetime.timedelta(seconds=5))\n"
            "print(dist.get_rank(), dist.get_world_size(), dist.is_initialized())\n")
    p = _python([_script(tmp_path, body)])
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "1", "True"]


def test_nccl_without_a_gpu_says_to_use_gloo_or_mpi(tmp_path):
    from distgraph.comm import nccl
    if nccl.available():
        pytest.skip("NCCL is available here")
    body = ("import distgraph.distributed as dist\n"
            "try:\n    dist.init_process_group('nccl')\n"
            "except RuntimeError as e:\n    print('RuntimeError', e)\n")
    p = _python([_script(tmp_path, body)])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("RuntimeError") and "'gloo'" in p.stdout and "'mpi'" in p.stdout and "GPU" in p.stdout


@pytest.mark.parametrize("env_extra", [
    {"TORCHELASTIC_RUN_ID": "abc", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"},
    {"GROUP_RANK": "0", "RANK": "0", "WORLD_SIZE": "1"},
    {"RANK": "3", "WORLD_SIZE": "4"}])
def test_a_process_started_by_torchrun_refuses_to_train_alone(tmp_path, env_extra):
    body = "import distgraph.distributed as dist\ndist.init_process_group('gloo')\nprint('trained alone')\n"
    p = _python([_script(tmp_path, body)], env_extra)
    assert p.returncode != 0 and "trained alone" not in p.stdout
    n = env_extra["WORLD_SIZE"]
    assert f"distgraph-run -n {n} script.py" in p.stderr and f"mpiexec -n {n} python script.py" in p.stderr
    assert f"[rank {env_extra['RANK']}/{n}]" in p.stderr


def test_rank_and_world_size_of_one_without_launcher_is_fine(tmp_path):
    body = "import distgraph.distributed as dist\ndist.init_process_group('gloo')\nprint(dist.get_world_size())\n"
    p = _python([_script(tmp_path, body)], {"RANK": "0", "WORLD_SIZE": "1"})
    assert p.returncode == 0 and p.stdout.split() == ["1"], p.stderr


# ------------------------------------------------------------------ mp.spawn
SPAWN = """
import json, os, sys
import distgraph as torch
import distgraph.distributed as dist
import distgraph.multiprocessing as mp

RAN_MAIN = []


def demo(rank, world_size, fail_rank):
    os.environ["MASTER_ADDR"] = "localhost"
    os.environ["MASTER_PORT"] = "12355"
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    if rank == fail_rank:
        raise ValueError(f"boom on rank {rank}")
    record = {"rank": rank, "sum": t.item(), "name": __name__, "ran_main": RAN_MAIN}
    sys.stdout.write("@@" + json.dumps(record) + "\\n")
    sys.stdout.flush()
    dist.destroy_process_group()


if __name__ == "__main__":
    RAN_MAIN.append(1)
    world_size, fail_rank = int(sys.argv[1]), int(sys.argv[2])
    mp.set_start_method("spawn", force=True)
    try:
        mp.spawn(demo, args=(world_size, fail_rank), nprocs=world_size, join=True)
    except mp.ProcessRaisedException as e:
        record = {"rank": -1, "error_index": e.error_index, "msg": str(e)}
        sys.stdout.write("@@" + json.dumps(record) + "\\n")
"""


@pytest.mark.mpiexec
def test_mp_spawn_runs_the_ddp_tutorial_pattern(tmp_path):
    if mpiexec() is None:
        pytest.skip("needs mpiexec")
    p = _python([_script(tmp_path, SPAWN), 2, -1], {"DISTGRAPH_SPAWN_TIMEOUT": "90"}, timeout=150)
    assert p.returncode == 0, p.stdout + p.stderr
    records = _records(p.stdout)
    assert [r["rank"] for r in records] == [0, 1]
    for r in records:
        # the main script was imported as __mp_main__: its __main__ block did not run again
        assert r["sum"] == 3.0 and r["name"] == "__mp_main__" and r["ran_main"] == []


@pytest.mark.mpiexec
def test_mp_spawn_failing_rank_raises_in_the_parent_naming_rank_and_traceback(tmp_path):
    if mpiexec() is None:
        pytest.skip("needs mpiexec")
    p = _python([_script(tmp_path, SPAWN), 2, 1], {"DISTGRAPH_SPAWN_TIMEOUT": "90"}, timeout=150)
    assert p.returncode == 0, p.stdout + p.stderr
    err = [r for r in _records(p.stdout) if r["rank"] == -1]
    assert len(err) == 1, p.stdout + p.stderr
    assert err[0]["error_index"] == 1 and "rank 1" in err[0]["msg"]
    assert "Traceback" in err[0]["msg"] and "ValueError: boom on rank 1" in err[0]["msg"]


@pytest.mark.mpiexec
def test_mp_spawn_inside_an_mpi_world_of_the_same_size_runs_in_place(tmp_path):
    body = """
    import json, sys
    import distgraph.distributed as dist
    import distgraph.multiprocessing as mp

    def fn(rank, tag):
        dist.init_process_group("gloo", rank=rank, world_size=2)
        record = {"rank": rank, "tag": tag, "world": dist.get_world_size()}
        sys.stdout.write("@@" + json.dumps(record) + "\\n")
        sys.stdout.flush()
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(fn, args=("x",), nprocs=2)
        try:
            mp.spawn(fn, args=("x",), nprocs=3)
        except ValueError as e:
            sys.stdout.write("@@" + json.dumps({"rank": 9, "tag": str(e), "world": 0}) + "\\n"); sys.stdout.flush()
    """
    p = _mpi(2, _script(tmp_path, body))
    assert p.returncode == 0, p.stdout + p.stderr
    records = _records(p.stdout)
    assert [(r["rank"], r["tag"], r["world"]) for r in records[:2]] == [(0, "x", 2), (1, "x", 2)]
    assert len(records) == 4 and all("nprocs=3" in r["tag"] for r in records[2:])


def test_mp_spawn_arguments_and_aliases():
    import distgraph.multiprocessing as mp
    with pytest.raises(NotImplementedError):
        mp.spawn(print, nprocs=2, join=False)
    with pytest.raises(ValueError):
        mp.spawn(print, nprocs=0)
    assert mp.set_start_method("spawn", force=True) is None
    assert mp.get_start_method() == "spawn" and "spawn" in mp.get_all_start_methods()
    assert mp.get_context("spawn").get_start_method() == "spawn"
    assert issubclass(mp.ProcessRaisedException, mp.ProcessException)
    assert issubclass(mp.ProcessExitedException, mp.ProcessException)


def test_node_local_rank_comes_from_the_environment_or_the_fallback(monkeypatch):
    import distgraph.distributed as dist
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert dist.get_node_local_rank(fallback_rank=0) == 0
    with pytest.raises(RuntimeError, match="LOCAL_RANK is not in the environment.*fallback_rank"):
        dist.get_node_local_rank()
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert dist.get_node_local_rank() == 3 and dist.get_node_local_rank(fallback_rank=0) == 3


def test_torch_submodule_paths_give_distgraphs_own_modules():
    import distgraph.comm.elastic.multiprocessing.errors as real
    from distgraph.distributed.algorithms.ddp_comm_hooks import default_hooks
    from distgraph.distributed.elastic.multiprocessing.errors import record
    import distgraph.comm.algorithms.ddp_comm_hooks.default_hooks as hooks
    assert record is real.record and default_hooks is hooks


def test_record_writes_torchelastics_error_file_and_raises_again(tmp_path, monkeypatch):
    from distgraph.distributed.elastic.multiprocessing.errors import record
    path = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(path))

    @record
    def main():
        raise KeyError("missing")
    with pytest.raises(KeyError):
        main()
    err = json.loads(path.read_text())["message"]
    assert err["message"] == "KeyError: 'missing'" and "in main" in err["extraInfo"]["py_callstack"]

    @record
    def leaves(code):
        raise SystemExit(code)
    path.unlink()
    with pytest.raises(SystemExit):
        leaves(2)
    assert leaves(0) is None      # as torch's: a clean exit returns
    assert not path.exists()      # an exit is not an error to record
