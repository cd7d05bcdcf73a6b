"""The GPU suite's CPU dry run: every stage's code runs here and the report is written.

``bash benchmarks/gpu_suite.sh --dry-run`` runs each stage program with ``--dry``
(device cpu, torch cpu, tiny sizes); this proves the suite's plumbing (stage
commands, time limits, result files, report), not anything about a GPU.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_suite  # noqa: E402

STAGES = ["env", "nccl_1rank", "nccl_2rank_1gpu", "mpi_staged_2rank", "bench_overhead",
          "bench_mlp", "bench_resnet18", "bench_gpt_float32", "bench_gpt_float16", "bench_allreduce",
          "tests_gpu"]  # the benchmarks before the long test stage
MULTI_RANK = {"nccl_2rank_1gpu", "mpi_staged_2rank", "bench_allreduce"}


def run_suite(out, *args, env=None):
    full = {k: v for k, v in os.environ.items() if k not in ("OUT", "DG_GPU_SUITE_DRY", "DG_GPU_SUITE_ONLY")}
    full.update({"OUT": str(out), "PYTHON": sys.executable})
    full.update(env or {})
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), *args], cwd=ROOT,
                          env=full, capture_output=True, text=True, timeout=240)


def check_markdown(text):
    """Every table row has as many cells as its header."""
    cells = None
    for line in text.splitlines():
        if line.startswith("|"):
            n = line.count("|")
            if cells is None:
                cells = n
            assert n == cells, f"ragged table row: {line}"
        else:
            cells = None


def test_dry_run_writes_a_report_that_lists_every_stage(tmp_path):
    t0 = time.monotonic()
    proc = run_suite(tmp_path, "--dry-run")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for name in ("report.md", "report.json", "suite.log"):
        assert (tmp_path / name).is_file(), out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dry_run"] is True
    assert report["stage_names"] == STAGES
    assert [s["name"] for s in report["stages"]] == STAGES
    has_mpiexec = gpu_suite.mpiexec_for(sys.executable) is not None
    for s in report["stages"]:
        allowed = {"passed"} if has_mpiexec or s["name"] not in MULTI_RANK else {"skipped"}
        assert s["status"] in allowed, (s["name"], s["status"], s["log_tail"])
    by = {s["name"]: s for s in report["stages"]}
    assert by["env"]["result"]["dry_run"] is True
    assert by["tests_gpu"]["result"]["source"] == "junit"
    assert by["tests_gpu"]["result"]["failed"] == 0
    for name in ("bench_mlp", "bench_resnet18", "bench_gpt_float32"):
        row = by[name]["result"]["rows"][0]
        assert row["distgraph"] > 0 and row["unit"] == "ms/step"
        if row["torch"] is not None:  # same weights, same first loss: the models agree
            assert row["first_loss_rel_diff"] < 1e-4, row
    if has_mpiexec:
        assert by["nccl_2rank_1gpu"]["result"]["world_size"] == 2
        assert by["bench_allreduce"]["result"]["rows"]
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# distgraph GPU suite (CPU DRY RUN")
    for name in STAGES:
        assert re.search(rf"^\| {name} \| \*\*\w+\*\* \|", md, re.M), name
    check_markdown(md)
    log = (tmp_path / "suite.log").read_text()
    assert log.startswith("distgraph GPU suite: out=")  # the shell's own lines come first
    assert "===== bench_allreduce" in log and "OK rank=0" in log  # stage output, in the one log
    assert re.search(r"test_cuda_api\.py::\S+ SKIPPED", log)  # pytest -v: one line per test
    assert report["budget_s"] == 400
    assert time.monotonic() - t0 < 120


def _wheels_for_this_python():
    """A folder with the mpich wheel and an mpi4py wheel for this Python, or None."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for folder in (ROOT / "build" / "gpu_wheels", Path("/opt/pypi/files"), Path("/opt/wheels")):
        mpich = sorted(folder.glob("mpich-*.whl"))
        mpi4py = sorted(folder.glob(f"mpi4py-*-{tag}-*.whl"))
        if mpich and mpi4py:
            return mpich[-1], mpi4py[-1]
    return None


def _fetch_wheels_for_this_python():
    """``gpu_suite.sh --fetch-wheels`` for this Python (the package registry is reachable where CI
    runs); None when it cannot download them."""
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--fetch-wheels"], cwd=ROOT,
                       env=dict(os.environ, PYTHON=sys.executable, DG_GPU_PYVER=ver), capture_output=True,
                       timeout=180)
    except subprocess.TimeoutExpired:
        return None
    return _wheels_for_this_python()


def test_dry_run_through_the_mpi_wheel_venv_from_a_venv_python(tmp_path):
    """The GPU machine's case: PYTHON is a venv's interpreter whose mpi4py is unusable, so the
    suite installs the carried wheels into a fresh venv.  That venv must still see the packages
    of PYTHON's environment (numpy, torch, pytest), not only the base interpreter's."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("needs to run from a venv's Python (as on the GPU machine)")
    wheels = _wheels_for_this_python() or _fetch_wheels_for_this_python()
    if wheels is None:
        pytest.skip("no mpich + mpi4py wheels for this Python, and pip could not download them: "
                    "bash benchmarks/gpu_suite.sh --fetch-wheels")
    folder = tmp_path / "wheels"
    folder.mkdir()
    for w in wheels:
        shutil.copy(w, folder)
    venv = tmp_path / "venv"
    proc = run_suite(tmp_path / "out", "--dry-run", env={
        "DG_GPU_SUITE_USE_WHEELS": "1", "DG_GPU_WHEELS": str(folder), "DG_GPU_SUITE_VENV": str(venv),
        "DG_GPU_SUITE_ONLY": "env,mpi_staged_2rank,bench_mlp,tests_gpu"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert f"MPI: ready ({venv}/bin/python" in out, out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["python"] == str(venv / "bin" / "python")
    by = {s["name"]: s for s in report["stages"]}
    assert all(s["status"] == "passed" for s in report["stages"]), {k: v["log_tail"] for k, v in by.items()}
    env = by["env"]["result"]
    parent_site = [d for d in __import__("site").getsitepackages() if d.startswith(sys.prefix)]
    for name in ("numpy", "pytest"):  # from the parent venv, not the base interpreter
        assert any(env["locations"][name].startswith(d) for d in parent_site), (name, env["locations"])
    assert env["locations"]["mpi4py"].startswith(str(venv)), env["locations"]  # the wheel's
    assert env["sys_prefix"] == str(venv)
    assert by["mpi_staged_2rank"]["result"]["world_size"] == 2
    assert by["mpi_staged_2rank"]["command"].startswith(f"DISTGRAPH_MPI_CUDA_AWARE=0 {venv}/bin/mpiexec")
    assert by["tests_gpu"]["result"]["source"] == "junit"
    assert list((venv / "lib").glob("libmpi.so*")), list((venv / "lib").iterdir())  # mpich's library


def test_dry_run_by_environment_and_one_stage(tmp_path):
    proc = run_suite(tmp_path, env={"DG_GPU_SUITE_DRY": "1", "DG_GPU_SUITE_ONLY": "env"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["dry_run"] is True and report["stage_names"] == ["env"]


def test_unknown_argument_is_refused(tmp_path):
    proc = run_suite(tmp_path, "--bogus")
    assert proc.returncode == 2 and "unknown argument '--bogus'" in proc.stderr


# ------------------------------------------------------ the driver's pieces
def test_a_stage_past_its_limit_is_killed_and_recorded(tmp_path):
    stage = gpu_suite.Stage("sleepy", "sleeps", [sys.executable, "-c", "import time; time.sleep(60)"],
                            timeout=2, json_out=False)
    with open(tmp_path / "log", "w") as log:
        t0 = time.monotonic()
        rec = gpu_suite.run_stage(stage, sys.executable, tmp_path, log, budget_left=100, min_limit=1)
    assert rec["status"] == "timeout" and time.monotonic() - t0 < 15
    failing = gpu_suite.Stage("bad", "fails", [sys.executable, "-c", "raise SystemExit(3)"], 10,
                              json_out=False)
    with open(tmp_path / "log", "w") as log:
        rec = gpu_suite.run_stage(failing, sys.executable, tmp_path, log, budget_left=100, min_limit=1)
    assert (rec["status"], rec["rc"]) == ("failed", 3)
    with open(tmp_path / "log", "w") as log:
        rec = gpu_suite.run_stage(failing, sys.executable, tmp_path, log, budget_left=10)
    assert rec["status"] == "skipped" and "out of suite time" in rec["reason"]


def test_the_test_stage_keeps_its_share_of_the_budget():
    chosen = gpu_suite.stages(sys.executable, False, Path("/tmp"), gpu=None)
    limits = {s.name: s.timeout for s in chosen}
    assert sum(limits.values()) > 400                   # the limits alone would not fit the budget
    used, left = 0.0, 400.0
    for i, s in enumerate(chosen):                      # every stage before it runs to its limit
        allowed = min(s.timeout, gpu_suite.time_for(chosen, i, left - used) - 5)
        if s.name == "tests_gpu":
            assert allowed >= gpu_suite.RESERVED["tests_gpu"] - 5, (allowed, used)
        used += max(allowed, 0)
    assert used <= 400


def test_a_suite_killed_in_a_stage_leaves_a_report_naming_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--dry",
                             "--only", "env,tests_gpu", "--out", str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        report = {}
        while time.monotonic() < deadline:          # wait until the test stage is running
            try:
                report = json.loads((tmp_path / "report.json").read_text())
            except (OSError, ValueError):
                report = {}
            if any(st["name"] == "tests_gpu" and st["status"] == "running" for st in report.get("stages", [])):
                break
            time.sleep(0.2)
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    report = json.loads((tmp_path / "report.json").read_text())
    names = {st["name"]: st["status"] for st in report["stages"]}
    assert names == {"env": "passed", "tests_gpu": "running"}, names
    assert "tests_gpu" in (tmp_path / "report.md").read_text()


def test_multi_rank_stage_without_mpiexec_is_skipped_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, "mpiexec_for", lambda py: None)
    stage = gpu_suite.Stage("two", "2 ranks", [sys.executable, "-c", "pass"], 60, ranks=2)
    with open(tmp_path / "log", "w") as log:
        rec = gpu_suite.run_stage(stage, sys.executable, tmp_path, log, budget_left=100)
    assert rec["status"] == "skipped" and "--fetch-wheels" in rec["reason"]


def test_multi_rank_nccl_stages_are_gated_on_the_nccl_version(tmp_path):
    old = {"device_count": 1, "nccl_code": 22803, "nccl_version": (2, 28, 3)}
    by = {s.name: s for s in gpu_suite.stages("py", False, tmp_path, old)}
    assert [s.name for s in gpu_suite.stages("py", False, tmp_path, old)] == STAGES
    reason = by["nccl_2rank_1gpu"].skip
    assert reason and "NCCL >= 2.30" in reason and "2.28.3" in reason
    assert by["bench_allreduce"].ranks == 1 and "NCCL_MULTI_RANK_GPU_ENABLE" not in by["bench_allreduce"].env
    assert by["mpi_staged_2rank"].skip is None and by["mpi_staged_2rank"].ranks == 2  # no NCCL in it
    for gpu in ({"device_count": 1, "nccl_version": (2, 30, 1)}, {"device_count": 2, "nccl_version": (2, 28, 3)},
                None, {"error": "no cupy"}):
        by = {s.name: s for s in gpu_suite.stages("py", False, tmp_path, gpu)}
        assert by["nccl_2rank_1gpu"].skip is None and by["bench_allreduce"].ranks == 2, gpu
    assert gpu_suite.nccl_version(22803) == (2, 28, 3) and gpu_suite.nccl_version(2708) == (2, 7, 8)
    # the skip and its reason reach both reports
    with open(tmp_path / "log", "w") as log:
        rec = gpu_suite.run_stage(gpu_suite.stages("py", False, tmp_path, old)[2], "py", tmp_path, log, 100)
    assert rec["status"] == "skipped" and rec["reason"] == reason
    report = {"dry_run": False, "started": "now", "python": "py", "git": "abc", "budget_s": 400,
              "seconds": 1.0, "gpu": old, "stage_names": [rec["name"]], "stages": [rec], "counts": {}}
    gpu_suite.write_report(tmp_path, report)
    assert json.loads((tmp_path / "report.json").read_text())["stages"][0]["reason"] == reason
    md = (tmp_path / "report.md").read_text()
    assert f"| nccl_2rank_1gpu | **skipped** |" in md and "NCCL >= 2.30" in md and "2.28.3" in md
    check_markdown(md)


def test_stage_output_reaches_the_suite_log_while_it_runs(tmp_path):
    """A stage killed at its limit still leaves what it printed in the suite log."""
    code = "import time; print('halfway there', flush=True); time.sleep(60)"
    stage = gpu_suite.Stage("chatty", "prints, then hangs", [sys.executable, "-c", code], 3, json_out=False)
    with open(tmp_path / "suite.log", "a") as log:
        log.write("before\n")
        rec = gpu_suite.run_stage(stage, sys.executable, tmp_path, log, budget_left=100, min_limit=1)
    text = (tmp_path / "suite.log").read_text()
    assert rec["status"] == "timeout" and "halfway there" in rec["log_tail"]
    assert text.index("before") < text.index("===== chatty") < text.index("halfway there") \
        < text.index("----- chatty: timeout")


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_ops" name="test_add[cuda]"/>
<testcase classname="tests.test_ops" name="test_mul[cuda]"><failure message="AssertionError: 1 != 2">x</failure></testcase>
<testcase classname="tests.test_ops" name="test_div[cuda]"><error message="RuntimeError: boom">x</error></testcase>
<testcase classname="tests.test_ops" name="test_sub[cuda]"><skipped message="needs CuPy and a CUDA GPU"/></testcase>
</testsuite></testsuites>"""


def test_pytest_summary_from_junit_and_from_a_killed_log(tmp_path):
    (tmp_path / "junit.xml").write_text(JUNIT)
    s = gpu_suite.pytest_summary(tmp_path / "junit.xml", "")
    assert (s["passed"], s["failed"], s["errors"], s["skipped"]) == (1, 1, 1, 1)
    assert s["failures"][0] == {"test": "tests.test_ops::test_mul[cuda]",
                                "message": "AssertionError: 1 != 2"}
    assert s["skip_reasons"] == {"needs CuPy and a CUDA GPU": 1}
    log = "tests/test_ops.py::test_add[cuda] PASSED\ntests/test_ops.py::test_mul[cuda] PASSED\n"
    s = gpu_suite.pytest_summary(tmp_path / "missing.xml", log)
    assert s["passed"] == 2 and s["source"].startswith("log")
    # pytest -v cut short, serial and xdist layouts: every finished test counts
    log = ("tests/test_ops.py::test_add[cuda] PASSED                      [  1/675]\n"
           "tests/test_ops.py::test_mul[cuda] FAILED                      [  2/675]\n"
           "tests/test_ops.py::test_sub[cuda] SKIPPED (needs CuPy)        [  3/675]\n"
           "[gw1] [  1%] PASSED tests/test_nn.py::test_linear[cuda] \n"
           "[gw0] [  2%] ERROR tests/test_nn.py::test_conv[cuda] \n"
           "[gw2] [  3%] XFAIL tests/test_nn.py::test_pool[cuda] \n")
    s = gpu_suite.pytest_summary(tmp_path / "missing.xml", log)
    assert (s["passed"], s["failed"], s["errors"], s["skipped"]) == (2, 1, 1, 2), s
    assert {f["test"] for f in s["failures"]} == {"tests/test_ops.py::test_mul[cuda]",
                                                  "tests/test_nn.py::test_conv[cuda]"}
    assert s["source"].startswith("log (pytest did not finish")


def test_report_is_written_for_an_empty_run(tmp_path):
    report = {"dry_run": False, "started": "now", "python": "py", "git": "abc", "budget_s": 1,
              "seconds": 0.0, "stage_names": [], "stages": [], "counts": {}}
    gpu_suite.write_report(tmp_path, report)
    assert json.loads((tmp_path / "report.json").read_text())["stages"] == []
    check_markdown((tmp_path / "report.md").read_text())


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_help_names_every_stage():
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--help"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for name in STAGES:
        assert name in text.replace("# ", ""), name
