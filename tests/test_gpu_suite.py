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

STAGES = ["env", "tests_gpu", "nccl_1rank", "nccl_2rank_1gpu", "mpi_staged_2rank", "bench_overhead",
          "bench_mlp", "bench_resnet18", "bench_gpt_float32", "bench_gpt_float16", "bench_allreduce"]
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
    assert "===== bench_allreduce" in (tmp_path / "suite.log").read_text()
    assert time.monotonic() - t0 < 120


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


def test_multi_rank_stage_without_mpiexec_is_skipped_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, "mpiexec_for", lambda py: None)
    stage = gpu_suite.Stage("two", "2 ranks", [sys.executable, "-c", "pass"], 60, ranks=2)
    with open(tmp_path / "log", "w") as log:
        rec = gpu_suite.run_stage(stage, sys.executable, tmp_path, log, budget_left=100)
    assert rec["status"] == "skipped" and "--fetch-wheels" in rec["reason"]


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
