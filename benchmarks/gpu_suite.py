"""The GPU validation suite's driver: runs every stage under its own time limit, writes one report.

Run it through ``bash benchmarks/gpu_suite.sh`` (which finds Python and MPI first);
see that file and docs/gpu.md.  ``--dry`` runs every stage's code on the CPU with
tiny sizes.  A stage that fails or runs out of time is recorded and the suite goes
on.  Every stage's output is appended to ``suite.log`` as it runs, and the report
(``report.md`` + ``report.json``) is rewritten before and after every stage, so a
suite killed from outside still leaves both.  The benchmarks run before the long
``pytest -m gpu`` stage, whose ``-v`` lines keep its counts even when it is cut short.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


class Stage:
    """One program of the suite; ``skip`` (a reason) records it as skipped without running it."""

    def __init__(self, name, what, argv, timeout, ranks=1, env=None, json_out=True, skip=None):
        self.name, self.what, self.argv, self.timeout = name, what, argv, timeout
        self.ranks, self.env, self.json_out, self.skip = ranks, env or {}, json_out, skip


# NCCL runs two ranks on one GPU only from 2.30 on, with NCCL_MULTI_RANK_GPU_ENABLE=1.
MULTI_RANK_GPU_NCCL = (2, 30, 0)

PROBE = """import json
out = {}
try:
    import cupy
    out["device_count"] = cupy.cuda.runtime.getDeviceCount()
    from cupy.cuda import nccl
    out["nccl_code"] = nccl.get_version()
except Exception as e:
    out["error"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def probe_gpu(py, timeout=60):
    """``{"device_count", "nccl_version"}`` as seen by ``py`` (a subprocess: the driver keeps
    no CUDA context), or ``{"error": ...}``."""
    try:
        proc = subprocess.run([py, "-c", PROBE], capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        return {"error": f"probe failed: {type(e).__name__}: {e}"}
    if "nccl_code" in info:
        info["nccl_version"] = nccl_version(info["nccl_code"])
    return info


def nccl_version(code):
    """``(major, minor, patch)`` from ``ncclGetVersion``'s code (the rule of distgraph.comm.nccl)."""
    code = int(code)
    if code >= 10000:
        return code // 10000, code % 10000 // 100, code % 100
    return code // 1000, code % 1000 // 100, code % 100


def multi_rank_gpu_gate(gpu):
    """Why 2 NCCL ranks cannot run here (one GPU and NCCL < 2.30), or None when they can."""
    if not gpu or gpu.get("device_count", 0) >= 2 or "nccl_version" not in gpu:
        return None
    have = tuple(gpu["nccl_version"])
    if have >= MULTI_RANK_GPU_NCCL:
        return None
    need = ".".join(map(str, MULTI_RANK_GPU_NCCL[:2]))
    return (f"2 NCCL ranks on one GPU need NCCL >= {need} (NCCL_MULTI_RANK_GPU_ENABLE); this "
            f"machine has 1 GPU and NCCL {'.'.join(map(str, have))}")


def mpiexec_for(py):
    """The mpiexec next to the interpreter (the mpich wheel's), else the one on PATH."""
    local = Path(py).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def stages(py, dry, work, gpu=None):
    """The suite, in order: the benchmarks before the long test stage.  Dry: the same
    programs on the CPU with tiny sizes.  ``gpu``: :func:`probe_gpu`'s answer (None: no gate)."""
    d = ["--dry"] if dry else []
    cap = ["--time-cap", "2" if dry else "8"]
    pytest = [py, "-m", "pytest", "-v", "-m", "gpu", "-p", "no:cacheprovider", "-rfEs",
              f"--junitxml={work / 'junit.xml'}", "-o", "addopts=", "-o", "console_output_style=count"]
    if importlib.util.find_spec("pytest_timeout"):
        pytest.append("--timeout=60")
    if not dry and importlib.util.find_spec("xdist"):
        pytest += ["-n", "4"]  # four processes share the GPU: the kernel-compile time overlaps
    pytest += ["tests/test_cuda_api.py"] if dry else ["tests"]
    comm = str(BENCH / "gpu_comm_check.py")
    nccl = "mpi" if dry else "nccl"
    bench = str(BENCH / "gpu_bench.py")
    gate = None if dry else multi_rank_gpu_gate(gpu)
    multi = {"NCCL_MULTI_RANK_GPU_ENABLE": "1"}
    if gate:
        allreduce = Stage("bench_allreduce", "all-reduce, nccl backend vs CuPy NCCL direct, world of one "
                          f"(2 ranks skipped: {gate})", [py, str(BENCH / "gpu_allreduce.py"), *cap, *d], 45)
    else:
        allreduce = Stage("bench_allreduce", "all-reduce busbw, nccl backend vs CuPy NCCL direct, 2 ranks",
                          [py, str(BENCH / "gpu_allreduce.py"), *cap, *d], 45, ranks=2, env=multi)
    return [
        Stage("env", "versions, GPU, what is importable", [py, str(BENCH / "gpu_env.py"), *d], 45),
        Stage("nccl_1rank", "collectives + DDP, nccl backend, world of one",
              [py, comm, "--backend", nccl, "--world", "1", *d], 45),
        Stage("nccl_2rank_1gpu", "collectives + DDP, nccl backend, 2 ranks on one GPU",
              [py, comm, "--backend", nccl, "--world", "2", *d], 60, ranks=2, env=multi, skip=gate),
        Stage("mpi_staged_2rank", "collectives + DDP, mpi backend, device arrays staged via host",
              [py, comm, "--backend", "mpi", "--world", "2", *d], 45, ranks=2,
              env={"DISTGRAPH_MPI_CUDA_AWARE": "0"}),
        Stage("bench_overhead", "per-op overhead, 16x16 elementwise chain",
              [py, bench, "--case", "overhead", *cap, *d], 30),
        Stage("bench_mlp", "MLP 784-4096-4096-10 b1024", [py, bench, "--case", "mlp", *cap, *d], 45),
        Stage("bench_resnet18", "ResNet-18 CIFAR b256 (im2col, no cuDNN)",
              [py, bench, "--case", "resnet18", *cap, *d], 75),
        Stage("bench_gpt_float32", "GPT block d1024 h16 T1024 b8 float32",
              [py, bench, "--case", "gpt", "--dtype", "float32", *cap, *d], 50),
        Stage("bench_gpt_float16", "GPT block d1024 h16 T1024 b8 float16",
              [py, bench, "--case", "gpt", "--dtype", "float16", *cap, *d], 50),
        allreduce,
        Stage("tests_gpu", "pytest -m gpu -v (the cuda-parametrized twins of the CPU tests)",
              pytest, 25 if dry else 240, json_out=False),
    ]


# ------------------------------------------------------------------ running
RESERVED = {"tests_gpu": 150}  # seconds of the budget kept for a stage, whatever the stages before it take


def time_for(chosen, i, left):
    """Seconds of ``left`` that stage ``i`` may use: what is reserved for the stages after it stays
    theirs (the stage limits add up to more than the budget; the test stage still gets its share)."""
    return left - sum(min(RESERVED.get(s.name, 0), s.timeout) for s in chosen[i + 1:])

def run_stage(stage, py, work, log, budget_left, min_limit=15):
    """Run one stage in its own process group, its output appended to ``log`` (an open file)
    as it comes; kill the group at its time limit."""
    rec = {"name": stage.name, "what": stage.what, "ranks": stage.ranks, "timeout_s": None,
           "status": None, "rc": None, "seconds": 0.0, "result": None, "log_tail": ""}
    if stage.skip:
        rec["status"], rec["reason"] = "skipped", stage.skip
        _note(log, f"----- {stage.name}: skipped: {stage.skip}")
        return rec
    limit = min(stage.timeout, budget_left - 5)
    if limit < min_limit:
        rec["status"] = "skipped"
        rec["reason"] = f"out of suite time ({budget_left:.0f} s left)"
        _note(log, f"----- {stage.name}: skipped: {rec['reason']}")
        return rec
    rec["timeout_s"] = round(limit)
    argv = list(stage.argv)
    out_json = work / f"{stage.name}.json"
    if stage.json_out:
        argv += ["--json", str(out_json)]
    if stage.ranks > 1:
        exe = mpiexec_for(py)
        if exe is None:
            rec["status"] = "skipped"
            rec["reason"] = ("no mpiexec next to the interpreter or on PATH: run "
                             "`bash benchmarks/gpu_suite.sh --fetch-wheels` here and carry "
                             "build/gpu_wheels (see docs/gpu.md)")
            _note(log, f"----- {stage.name}: skipped: {rec['reason']}")
            return rec
        argv = [exe, "-n", str(stage.ranks)] + argv
    env = dict(os.environ)
    env.update(stage.env)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPIEXEC_TIMEOUT", str(int(limit)))  # Hydra kills its ranks too
    # An Open MPI mpiexec refuses root without these (the GPU machine runs as root).
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    rec["command"] = " ".join(f"{k}={v}" for k, v in stage.env.items()) + (" " if stage.env else "") \
        + " ".join(str(a) for a in argv)
    _note(log, f"\n===== {stage.name}: {rec['command']} (limit {limit:.0f} s)")
    start = log.tell()
    t0 = time.monotonic()
    # The child writes straight into the suite log: a suite killed mid-stage keeps the output.
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        proc.wait(timeout=limit)
        rec["status"] = "passed" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        rec["status"] = "timeout"
        _kill_group(proc)
    rec["rc"] = proc.returncode
    rec["seconds"] = round(time.monotonic() - t0, 1)
    log.seek(0, os.SEEK_END)
    end = log.tell()
    with open(log.name, "rb") as f:
        f.seek(start)
        text = f.read(end - start).decode(errors="replace")
    _note(log, f"----- {stage.name}: {rec['status']} (rc {rec['rc']}) in {rec['seconds']} s")
    rec["log_tail"] = text[-3000:]
    if out_json.exists():
        try:
            rec["result"] = json.loads(out_json.read_text())
        except ValueError as e:
            rec["result"] = {"error": f"unreadable result: {e}"}
    if stage.name == "tests_gpu":
        rec["result"] = pytest_summary(work / "junit.xml", text)
    return rec


def _note(log, line):
    """A line of the driver's own, in the suite log and on stdout."""
    log.write(line + "\n")
    log.flush()
    print(line.strip(), flush=True)


def _kill_group(proc):
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def pytest_summary(junit, text):
    """Counts and failures from the JUnit XML, or from the log when pytest was killed."""
    out = {"source": None, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [],
           "skip_reasons": {}}
    if junit.exists():
        try:
            root = ET.parse(junit).getroot()
            out["source"] = "junit"
            for case in root.iter("testcase"):
                cid = f"{case.get('classname')}::{case.get('name')}"
                kinds = {child.tag for child in case}
                if "failure" in kinds or "error" in kinds:
                    key = "failed" if "failure" in kinds else "errors"
                    out[key] += 1
                    child = case.find("failure") if "failure" in kinds else case.find("error")
                    msg = (child.get("message") or "").strip().splitlines()
                    out["failures"].append({"test": cid, "message": msg[0][:300] if msg else ""})
                elif "skipped" in kinds:
                    out["skipped"] += 1
                    reason = (case.find("skipped").get("message") or "")[:120]
                    out["skip_reasons"][reason] = out["skip_reasons"].get(reason, 0) + 1
                else:
                    out["passed"] += 1
            out["failures"] = out["failures"][:40]
            return out
        except ET.ParseError:
            pass
    # No JUnit file: pytest was killed.  Its -v lines name every test that finished, in
    # either layout: "tests/x.py::t[cuda] PASSED [ 3/675]" or, under xdist,
    # "[gw1] [ 3%] PASSED tests/x.py::t[cuda]".
    out["source"] = "log (pytest did not finish: counts are partial)"
    last = {}
    for m in _VERBOSE.finditer(text):
        last[m.group("t1") or m.group("t2")] = m.group("s1") or m.group("s2")
    key = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "errors",
           "SKIPPED": "skipped", "XFAIL": "skipped"}
    for test, status in last.items():
        out[key[status]] += 1
        if status in ("FAILED", "ERROR"):
            out["failures"].append({"test": test, "message": ""})
    final = re.search(r"^=+ (.*\d+ (?:passed|failed|error|skipped).*) in [\d.]+s", text, re.M)
    if final:  # pytest finished after all (its JUnit file is missing): its own counts
        out["source"] = "log"
        for k, pat in (("passed", r"(\d+) passed"), ("failed", r"(\d+) failed"),
                       ("errors", r"(\d+) errors?"), ("skipped", r"(\d+) skipped")):
            m = re.search(pat, final.group(1))
            out[k] = int(m.group(1)) if m else 0
    out["failures"] = out["failures"][:40]
    return out


_STATUS = r"PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS"
_VERBOSE = re.compile(rf"^(?:\[gw\d+\]\s+(?:\[[^\]]*\]\s+)?(?P<s1>{_STATUS})\s+(?P<t1>\S+::\S+)"
                      rf"|(?P<t2>\S+::\S+)\s+(?P<s2>{_STATUS})\b)", re.M)


# ------------------------------------------------------------------ report
def stage_summary(rec):
    r = rec.get("result") or {}
    if rec["status"] == "skipped":
        return rec.get("reason", "")
    name = rec["name"]
    if name == "env" and isinstance(r, dict):
        dgi = r.get("distgraph") if isinstance(r.get("distgraph"), dict) else {}
        return f"{dgi.get('device', 'no GPU')}; cupy {r.get('packages', {}).get('cupy')}; torch " \
               f"{r.get('packages', {}).get('torch')}; mpiexec {r.get('mpiexec')}"
    if name == "tests_gpu":
        return (f"{r.get('passed', 0)} passed, {r.get('failed', 0)} failed, {r.get('errors', 0)} "
                f"errors, {r.get('skipped', 0)} skipped ({r.get('source')})")
    if name.startswith(("nccl", "mpi")) and r:
        return f"world {r.get('world_size')}, {r.get('checks_rank0')} checks on rank 0, " \
               f"{r.get('device')}, MPI path: {r.get('mpi_path')}"
    if name == "bench_allreduce" and r.get("rows"):
        last = r["rows"][-1]
        return (f"world {r.get('world_size')}; largest {last['bytes'] >> 20} MiB: bw ratio "
                f"{last['ratio_bw']:.3f} (aim >= 0.95)")
    if r.get("rows"):
        x = r["rows"][0]
        return f"ratio {x['ratio']:.2f}x (aim {x['aim']})" if x.get("ratio") else "torch missing"
    tail = [ln for ln in rec.get("log_tail", "").splitlines() if ln.strip()]
    return tail[-1][:200] if tail else ""


def fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def sci(v):
    return "-" if v is None else f"{v:.1e}"


def write_report(out_dir, report):
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, default=str))
    os.replace(tmp, out_dir / "report.json")
    lines = [f"# distgraph GPU suite{' (CPU DRY RUN: nothing here ran on a GPU)' if report['dry_run'] else ''}",
             "", f"- started {report['started']}, {report['seconds']:.0f} s in all "
             f"(budget {report['budget_s']} s)",
             f"- python {report['python']}; git {report['git']}",
             f"- stages: {report['counts']}"]
    if report.get("gpu") is not None:
        lines.append(f"- GPU probe: {json.dumps(report['gpu'], default=str).replace('|', '/')}")
    skipped = [s for s in report["stages"] if s["status"] == "skipped"]
    if skipped:
        lines += ["", "## Skipped stages", ""] + [f"- `{s['name']}`: {s.get('reason', '')}" for s in skipped]
    lines.append("")
    env = next((s.get("result") for s in report["stages"] if s["name"] == "env"), None)
    if isinstance(env, dict):
        lines += ["## Environment", "", "| what | value |", "| --- | --- |"]
        for k in ("python", "platform", "nvidia_smi", "mpiexec"):
            lines.append(f"| {k} | {str(env.get(k)).replace('|', '/')} |")
        for k, v in (env.get("packages") or {}).items():
            lines.append(f"| {k} | {str(v).replace('|', '/')} |")
        for k in ("cupy", "torch", "distgraph", "mpi"):
            lines.append(f"| {k} | {json.dumps(env.get(k), default=str).replace('|', '/')[:400]} |")
        lines.append("")
    lines += ["## Stages", "", "| stage | status | seconds | limit | summary |",
              "| --- | --- | --- | --- | --- |"]
    for s in report["stages"]:
        lines.append(f"| {s['name']} | **{s['status']}** | {s['seconds']} | {fmt(s.get('timeout_s'))} "
                     f"| {stage_summary(s).replace('|', '/')} |")
    bench = [(s, r) for s in report["stages"] if s["name"].startswith("bench_") and s["name"] !=
             "bench_allreduce" for r in ((s.get("result") or {}).get("rows") or [])]
    if bench:
        lines += ["", "## Benchmarks beside PyTorch (same process, same device)", "",
                  "| benchmark | unit | distgraph | torch | ratio | aim | first loss rel. diff | peak MiB dg / torch |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for s, r in bench:
            lines.append(f"| {r['name']} | {r['unit']} | {fmt(r['distgraph'], 3)} | {fmt(r['torch'], 3)} "
                         f"| {fmt(r['ratio'])}x | {fmt(r['aim'])}x | {sci(r.get('first_loss_rel_diff'))} "
                         f"| {fmt(r.get('distgraph_peak_mib'), 0)} / {fmt(r.get('torch_peak_mib'), 0)} |")
    ar = next((s.get("result") for s in report["stages"] if s["name"] == "bench_allreduce"), None)
    if ar and ar.get("rows"):
        lines += ["", f"## All-reduce ({ar.get('backend')}, {ar.get('world_size')} ranks, {ar.get('device')})", "",
                  "| bytes | distgraph us | direct us | distgraph busbw GB/s | direct busbw GB/s | bw ratio |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in ar["rows"]:
            lines.append(f"| {r['bytes']} | {fmt(r['distgraph_us'], 1)} | {fmt(r['direct_us'], 1)} | "
                         f"{fmt(r['distgraph_busbw_GBps'])} | {fmt(r['direct_busbw_GBps'])} | "
                         f"{fmt(r['ratio_bw'], 3)} |")
    tests = next((s.get("result") for s in report["stages"] if s["name"] == "tests_gpu"), None)
    if tests and tests.get("failures"):
        lines += ["", "## Failing GPU tests (first 40)", ""]
        lines += [f"- `{f['test']}`: {f['message']}" for f in tests["failures"]]
    bad = [s for s in report["stages"] if s["status"] in ("failed", "timeout")]
    if bad:
        lines += ["", "## Logs of failed stages (tails; full log in suite.log)", ""]
        for s in bad:
            lines += [f"### {s['name']} ({s['status']})", "", "```", s["log_tail"][-1500:], "```", ""]
    lines += ["", "See docs/gpu.md for what each stage proves and what has not yet run on a GPU.", ""]
    tmp = out_dir / "report.md.tmp"
    tmp.write_text("\n".join(lines))
    os.replace(tmp, out_dir / "report.md")


def git_rev():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "gpu_report"))
    ap.add_argument("--budget", type=float, default=400.0,
                    help="seconds for the whole suite (default 400: one 10-minute device call still has room "
                         "for the set-up and a rerun of the stages that failed, with --only)")
    ap.add_argument("--only", default="", help="comma-separated stage names (default: all)")
    args = ap.parse_args()
    py = sys.executable
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dg_gpu_suite_"))
    start = time.monotonic()
    gpu = None if args.dry else probe_gpu(py)
    chosen = stages(py, args.dry, work, gpu)
    if args.only:
        keep = set(args.only.split(","))
        chosen = [s for s in chosen if s.name in keep]
    report = {"dry_run": args.dry, "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "python": py, "git": git_rev(), "budget_s": args.budget, "seconds": 0.0, "gpu": gpu,
              "stage_names": [s.name for s in chosen], "stages": [], "counts": {}}
    # Appended to: gpu_suite.sh has written its own lines (Python, MPI) at the top.
    with open(out_dir / "suite.log", "a") as log:
        if gpu is not None:
            _note(log, f"GPU probe: {gpu}")
        for i, stage in enumerate(chosen):
            left = time_for(chosen, i, args.budget - (time.monotonic() - start))
            running = {"name": stage.name, "what": stage.what, "ranks": stage.ranks, "status": "running",
                       "timeout_s": None, "rc": None, "seconds": 0.0, "result": None, "log_tail": ""}
            write_report(out_dir, _with(report, running, start))  # a kill now still leaves a report
            report["stages"].append(run_stage(stage, py, work, log, left))
            write_report(out_dir, _with(report, None, start))
    shutil.rmtree(work, ignore_errors=True)
    print(f"report: {out_dir / 'report.md'} and report.json; counts {report['counts']}")
    return 0


def _with(report, running, start):
    """``report`` with its time and counts brought up to date (and the stage now running, if any)."""
    report["seconds"] = time.monotonic() - start
    report["counts"] = {k: sum(1 for s in report["stages"] if s["status"] == k)
                        for k in ("passed", "failed", "timeout", "skipped")}
    return dict(report, stages=report["stages"] + [running]) if running else report


if __name__ == "__main__":
    sys.exit(main())
