"""The GPU validation suite's driver: runs every stage under its own time limit, writes one report.

Run it through ``bash benchmarks/gpu_suite.sh`` (which finds Python and MPI first);
see that file and docs/gpu.md.  ``--dry`` runs every stage's code on the CPU with
tiny sizes.  A stage that fails or runs out of time is recorded and the suite goes
on; the report (``report.md`` + ``report.json`` + ``suite.log``) is written after
every stage, so a suite killed from outside still leaves one.
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
    def __init__(self, name, what, argv, timeout, ranks=1, env=None, json_out=True):
        self.name, self.what, self.argv, self.timeout = name, what, argv, timeout
        self.ranks, self.env, self.json_out = ranks, env or {}, json_out


def mpiexec_for(py):
    """The mpiexec next to the interpreter (the mpich wheel's), else the one on PATH."""
    local = Path(py).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def stages(py, dry, work):
    """The suite, in order.  Dry: the same programs on the CPU with tiny sizes."""
    d = ["--dry"] if dry else []
    cap = ["--time-cap", "2" if dry else "8"]
    pytest = [py, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "-rfEs",
              f"--junitxml={work / 'junit.xml'}", "-o", "addopts="]
    if importlib.util.find_spec("pytest_timeout"):
        pytest.append("--timeout=60")
    if not dry and importlib.util.find_spec("xdist"):
        pytest += ["-n", "4"]  # four processes share the GPU: the kernel-compile time overlaps
    pytest += ["tests/test_cuda_api.py"] if dry else ["tests"]
    comm = str(BENCH / "gpu_comm_check.py")
    nccl = "mpi" if dry else "nccl"
    bench = str(BENCH / "gpu_bench.py")
    return [
        Stage("env", "versions, GPU, what is importable", [py, str(BENCH / "gpu_env.py"), *d], 60),
        Stage("tests_gpu", "pytest -m gpu (the cuda-parametrized twins of the CPU tests)",
              pytest, 25 if dry else 170, json_out=False),
        Stage("nccl_1rank", "collectives + DDP, nccl backend, world of one",
              [py, comm, "--backend", nccl, "--world", "1", *d], 60),
        Stage("nccl_2rank_1gpu", "collectives + DDP, nccl backend, 2 ranks on one GPU",
              [py, comm, "--backend", nccl, "--world", "2", *d], 75, ranks=2,
              env={"NCCL_MULTI_RANK_GPU_ENABLE": "1"}),
        Stage("mpi_staged_2rank", "collectives + DDP, mpi backend, device arrays staged via host",
              [py, comm, "--backend", "mpi", "--world", "2", *d], 60, ranks=2,
              env={"DISTGRAPH_MPI_CUDA_AWARE": "0"}),
        Stage("bench_overhead", "per-op overhead, 16x16 elementwise chain",
              [py, bench, "--case", "overhead", *cap, *d], 40),
        Stage("bench_mlp", "MLP 784-4096-4096-10 b1024", [py, bench, "--case", "mlp", *cap, *d], 60),
        Stage("bench_resnet18", "ResNet-18 CIFAR b256 (im2col, no cuDNN)",
              [py, bench, "--case", "resnet18", *cap, *d], 90),
        Stage("bench_gpt_float32", "GPT block d1024 h16 T1024 b8 float32",
              [py, bench, "--case", "gpt", "--dtype", "float32", *cap, *d], 60),
        Stage("bench_gpt_float16", "GPT block d1024 h16 T1024 b8 float16",
              [py, bench, "--case", "gpt", "--dtype", "float16", *cap, *d], 60),
        Stage("bench_allreduce", "all-reduce busbw, nccl backend vs CuPy NCCL direct, 2 ranks",
              [py, str(BENCH / "gpu_allreduce.py"), *cap, *d], 60, ranks=2,
              env={"NCCL_MULTI_RANK_GPU_ENABLE": "1"}),
    ]


# ------------------------------------------------------------------ running
def run_stage(stage, py, work, log, budget_left, min_limit=15):
    """Run one stage in its own process group; kill the group at its time limit."""
    rec = {"name": stage.name, "what": stage.what, "ranks": stage.ranks, "timeout_s": None,
           "status": None, "rc": None, "seconds": 0.0, "result": None, "log_tail": ""}
    limit = min(stage.timeout, budget_left - 5)
    if limit < min_limit:
        rec["status"] = "skipped"
        rec["reason"] = f"out of suite time ({budget_left:.0f} s left)"
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
    header = f"\n===== {stage.name}: {rec['command']} (limit {limit:.0f} s)\n"
    log.write(header)
    log.flush()
    print(header.strip(), flush=True)
    stage_log = work / f"{stage.name}.log"
    t0 = time.monotonic()
    with open(stage_log, "w") as f:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=limit)
            rec["status"] = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            rec["status"] = "timeout"
            _kill_group(proc)
        rec["rc"] = proc.returncode
    rec["seconds"] = round(time.monotonic() - t0, 1)
    text = stage_log.read_text(errors="replace")
    log.write(text)
    log.write(f"----- {stage.name}: {rec['status']} (rc {rec['rc']}) in {rec['seconds']} s\n")
    log.flush()
    print(f"----- {stage.name}: {rec['status']} (rc {rec['rc']}) in {rec['seconds']} s", flush=True)
    rec["log_tail"] = text[-3000:]
    if out_json.exists():
        try:
            rec["result"] = json.loads(out_json.read_text())
        except ValueError as e:
            rec["result"] = {"error": f"unreadable result: {e}"}
    if stage.name == "tests_gpu":
        rec["result"] = pytest_summary(work / "junit.xml", text)
    return rec


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
    out["source"] = "log (pytest did not finish: counts are partial)"
    m = re.search(r"(\d+) passed", text)
    out["passed"] = int(m.group(1)) if m else len(re.findall(r"\bPASSED\b", text))
    for key, pat in (("failed", r"(\d+) failed"), ("errors", r"(\d+) error"), ("skipped", r"(\d+) skipped")):
        m = re.search(pat, text)
        out[key] = int(m.group(1)) if m else 0
    out["failures"] = [{"test": t, "message": ""} for t in re.findall(r"^FAILED (\S+)", text, re.M)][:40]
    return out


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
        return f"largest {last['bytes'] >> 20} MiB: bw ratio {last['ratio_bw']:.3f} (aim >= 0.95)"
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
             f"- stages: {report['counts']}", ""]
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
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole suite")
    ap.add_argument("--only", default="", help="comma-separated stage names (default: all)")
    args = ap.parse_args()
    py = sys.executable
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dg_gpu_suite_"))
    chosen = stages(py, args.dry, work)
    if args.only:
        keep = set(args.only.split(","))
        chosen = [s for s in chosen if s.name in keep]
    start = time.monotonic()
    report = {"dry_run": args.dry, "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "python": py, "git": git_rev(), "budget_s": args.budget, "seconds": 0.0,
              "stage_names": [s.name for s in chosen], "stages": [], "counts": {}}
    with open(out_dir / "suite.log", "w") as log:
        for stage in chosen:
            left = args.budget - (time.monotonic() - start)
            rec = run_stage(stage, py, work, log, left)
            report["stages"].append(rec)
            report["seconds"] = time.monotonic() - start
            report["counts"] = {k: sum(1 for s in report["stages"] if s["status"] == k)
                                for k in ("passed", "failed", "timeout", "skipped")}
            write_report(out_dir, report)  # after every stage: a killed suite still leaves one
    shutil.rmtree(work, ignore_errors=True)
    print(f"report: {out_dir / 'report.md'} and report.json; counts {report['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
