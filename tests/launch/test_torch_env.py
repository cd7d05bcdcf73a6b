"""distgraph-run with torchrun's spellings, and torchrun's variables as every rank sees them."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distgraph.launch.cli import main, parser, resolve_plan
from distgraph.launch.command import LaunchError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
from mpi_util import LAUNCHER_VARS  # noqa: E402

_CLEAN = LAUNCHER_VARS + ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                          "TORCHELASTIC_RUN_ID", "GROUP_RANK", "DISTGRAPH_TORCH_ENV")

# Reads torchrun's variables before anything imports distgraph: the wrapper must have set them.
READER = """import os, sys
names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
sys.stdout.write("env " + " ".join(f"{k}={os.environ.get(k)}" for k in names) + "\\n")
"""


def _run(args, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "distgraph.launch", "--timeout", "90", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=str(ROOT))


@pytest.mark.parametrize("spelling", [["--nproc-per-node", "3"], ["--nproc_per_node", "3"],
                                      ["--nproc_per_node=3", "--standalone", "--nnodes", "1"],
                                      ["-n", "3", "--nproc-per-node", "3"]])
def test_torchrun_spellings_give_the_number_of_ranks(spelling, tmp_path):
    script = tmp_path / "t.py"
    script.write_text("")
    a = parser().parse_args([*spelling, "--skip-preflight", str(script)])
    assert resolve_plan(a).nprocs == 3


@pytest.mark.parametrize("args, message", [
    (["--nnodes", "2", "--nproc-per-node", "2"], "--nnodes: expected 1"),
    (["-n", "2", "--nproc-per-node", "3"], "disagree"),
    ([], "expected the number of ranks"),
])
def test_torchrun_options_that_do_not_map_fail_at_once(args, message, tmp_path, capsys):
    script = tmp_path / "t.py"
    script.write_text("")
    assert main([*args, str(script)]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(LaunchError, match=message.replace("-", r"\-")):
        resolve_plan(parser().parse_args([*args, "--skip-preflight", str(script)]))


def test_help_text_documents_the_torchrun_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "--nproc-per-node" in out and "--standalone" in out and "--nnodes" in out


@pytest.mark.mpiexec
def test_every_rank_sees_torchrun_variables_before_importing_distgraph(tmp_path):
    script = tmp_path / "reader.py"
    script.write_text(READER)
    p = _run(["--standalone", "--nproc-per-node", "2", script])
    assert p.returncode == 0, p.stdout + p.stderr
    for r in range(2):
        line = next((x for x in p.stdout.splitlines() if x.startswith(f"[rank {r}] env ")), None)
        assert line is not None, p.stdout
        got = dict(kv.split("=", 1) for kv in line.split()[3:])
        assert got["RANK"] == str(r) and got["LOCAL_RANK"] == str(r), got
        assert got["WORLD_SIZE"] == "2" and got["LOCAL_WORLD_SIZE"] == "2", got
        assert got["MASTER_ADDR"] != "None" and got["MASTER_PORT"] != "None", got


@pytest.mark.mpiexec
def test_a_torchrun_script_trains_under_distgraph_run(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import os\n"
        "local_rank = int(os.environ['LOCAL_RANK'])\n"
        "import distgraph as torch\nimport distgraph.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "t = torch.tensor([float(dist.get_rank() + 1)])\ndist.all_reduce(t)\n"
        "print(f'rank={os.environ[\"RANK\"]} local={local_rank} total={t.item()}', flush=True)\n"
        "dist.destroy_process_group()\n")
    p = _run(["--nproc_per_node", "2", script])
    assert p.returncode == 0, p.stdout + p.stderr
    for r in range(2):
        assert f"[rank {r}] rank={r} local={r} total=3.0" in p.stdout, p.stdout
