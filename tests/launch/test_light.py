"""The launcher imports no array code: `distgraph-run` and the per-rank wrapper start in a blink,
and CUDA is not touched in the launcher (issue 15)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "distgraph", "cupy", "mpi4py", "torch")


def _run(code, **env):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env}, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_distgraph_run_imports_no_array_code(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    code = ("import sys\n"
            "from distgraph_launch import cli\n"
            f"assert cli.main(['-n', '2', '--dry-run', {str(script)!r}]) == 0\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
            "print('HEAVY', heavy)\n")
    out = _run(code)
    assert "HEAVY []" in out, out
    assert "distgraph_launch.rank" in out  # the wrapper the ranks run


def test_the_rank_wrapper_imports_no_array_code():
    # the wrapper runs the program as a child; here the program reports what its parent loaded
    code = ("import sys\n"
            "from distgraph_launch import rank\n"
            "assert rank.main(['--', sys.executable, '-c', 'pass']) == 0\n"
            f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
            "print('HEAVY', heavy)\n")
    out = _run(code, PMI_RANK="1", PMI_SIZE="2")
    assert "HEAVY []" in out, out


def test_gpus_are_counted_without_cuda(monkeypatch):
    from distgraph_launch import cli
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: object())  # "CuPy is installed"
    assert cli.gpu_count({"CUDA_VISIBLE_DEVICES": "0,1,3"}) == 3
    assert cli.gpu_count({"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert cli.gpu_count({"CUDA_VISIBLE_DEVICES": "-1"}) == 0
    expected = len(os.listdir("/proc/driver/nvidia/gpus")) if os.path.isdir("/proc/driver/nvidia/gpus") else 0
    assert cli.gpu_count({}) == expected
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)  # no CuPy: CPU ranks
    assert cli.gpu_count({"CUDA_VISIBLE_DEVICES": "0,1"}) == 0


def test_distgraph_launch_is_the_same_modules_as_distgraph_launch_package():
    import distgraph.launch.cli as a
    import distgraph_launch.cli as b
    from distgraph.comm import env
    from distgraph_launch import env as launcher_env
    assert a is b and env is launcher_env
    assert a.__spec__.name == "distgraph_launch.cli"


def test_version_is_read_without_importing_distgraph():
    code = ("import sys\nfrom distgraph_launch import cli\nv = cli.distgraph_version()\n"
            "print('V', v, 'distgraph' in sys.modules)\n")
    out = _run(code)
    import distgraph
    assert f"V {distgraph.__version__} False" in out, out
