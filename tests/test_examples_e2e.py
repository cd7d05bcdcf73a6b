"""The training examples end to end: a few steps on one process and on 2 ranks, determinism, a crashed
2-rank run resumed to the same parameters bitwise (float64), a damaged checkpoint skipped, metrics and plots.

Tiny configurations (width 4 ResNet, 1-layer char model) keep the whole file to about a minute on 2 cores.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mpi_util import LAUNCHER_VARS, run_mpi  # noqa: E402

import distgraph as dg  # noqa: E402
from distgraph.utils.metrics import read_csv, read_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESNET, CHARLM, PLOT = (ROOT / "examples" / n for n in ("train_resnet.py", "train_charlm.py", "plot_metrics.py"))
pytest.importorskip("safetensors")
pytest.importorskip("tqdm")

# a few steps of each; 2 ranks x 16 images = 32 per step, 128 images: 4 steps per epoch on 2 ranks
RESNET_TINY = ["--width", "4", "--synthetic-size", "128", "--batch-size", "16", "--min-accuracy", "0"]
CHARLM_TINY = ["--corpus-chars", "30000", "--dim", "32", "--layers", "1", "--heads", "2", "--block-size", "16",
               "--batch-size", "8", "--eval-every", "1000", "--eval-batches", "2", "--sample-chars", "40",
               "--margin", "-1"]


# One BLAS thread per rank: 2 ranks x N OpenBLAS threads on 2 cores thrash (tens of times slower).
MPI_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def run_python(*args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=str(ROOT))


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def final_state(ckpt_dir):
    """The model and optimizer tensors of the newest checkpoint, as NumPy arrays by name."""
    from distgraph.utils.training import CheckpointManager
    steps = CheckpointManager(ckpt_dir).checkpoints()
    assert steps, f"no checkpoint in {ckpt_dir}"
    ckpt = dg.load(steps[-1][1])
    out = {f"model.{k}": v.numpy() for k, v in ckpt["model"].items()}
    for pid, st in ckpt["optimizer"]["state"].items():
        out.update({f"optimizer.{pid}.{k}": v.numpy() for k, v in st.items() if hasattr(v, "numpy")})
    return steps[-1][0], out


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    diff = [k for k in a if a[k].dtype != b[k].dtype or not np.array_equal(a[k], b[k])]
    assert not diff, f"{len(diff)} tensors differ, e.g. {diff[:3]}"


# ------------------------------------------------------------------ one process
def test_resnet_one_process_logs_metrics_checkpoints_and_is_deterministic(tmp_path):
    outs = []
    for run in ("a", "b"):
        outs.append(ok(run_python(RESNET, *RESNET_TINY, "--steps", "3", "--checkpoint-dir", tmp_path / run / "ckpt",
                                  "--log-dir", tmp_path / run / "logs", "--log-every", "1")))
    assert "summary: ResNet-18 w4, 1 rank(s), 3 steps" in outs[0]
    assert "ResNet-18 width 4" in outs[0] and outs[0].count("summary:") == 1
    # the same seed gives the same run, to the bit
    step, a = final_state(tmp_path / "a" / "ckpt")
    _, b = final_state(tmp_path / "b" / "ckpt")
    assert step == 3
    assert_bitwise_equal(a, b)
    recs = read_jsonl(tmp_path / "a" / "logs")
    assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) for r in recs if "loss" in r)
    lrs = [r["lr"] for r in recs if "lr" in r]
    assert lrs[0] > lrs[1] > lrs[2] == pytest.approx(0.0, abs=1e-12)  # cosine to zero at the last step
    assert any("test/accuracy" in r for r in recs)
    assert set(read_csv(tmp_path / "a" / "logs")) == {"loss", "lr", "test/accuracy"}
    # resuming a finished run does nothing more, and says so
    again = ok(run_python(RESNET, *RESNET_TINY, "--steps", "3", "--checkpoint-dir", tmp_path / "a" / "ckpt",
                          "--resume"))
    assert "resuming from step 3" in again and "summary: ResNet-18 w4, 1 rank(s), 3 steps" in again
    # and the plot of those metrics
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    out = ok(run_python(PLOT, tmp_path / "a" / "logs", "-o", png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "loss" in out and "test/accuracy" in out


def test_charlm_one_process_samples_and_reports_entropy(tmp_path):
    out = ok(run_python(CHARLM, *CHARLM_TINY, "--steps", "4"))
    assert "unigram entropy" in out and "sample:\ndef " in out
    line = next(ln for ln in out.splitlines() if ln.startswith("summary: char-LM, 1 rank(s), 4 steps"))
    assert "nats/char vs unigram entropy" in line


def test_charlm_fails_its_own_check_when_the_loss_is_not_below_the_entropy():
    proc = run_python(CHARLM, *CHARLM_TINY[:-2], "--steps", "1", "--margin", "0.5", "--sample-chars", "0")
    assert proc.returncode != 0 and "is not 0.5 nats below the unigram entropy" in proc.stderr


def test_resume_without_checkpoint_dir_is_refused():
    proc = run_python(RESNET, "--resume")
    assert proc.returncode == 2 and "--resume needs --checkpoint-dir" in proc.stderr


# --------------------------------------------------------------------- 2 ranks
@pytest.mark.mpiexec
def test_resnet_two_ranks_sync_bn_runs_and_reports(tmp_path):
    proc, _ = run_mpi(2, RESNET, *RESNET_TINY, "--steps", "2", "--sync-bn", "--timeline", tmp_path / "t.json",
                      timeout=180, env=MPI_ENV)
    out = ok(proc)
    assert "summary: ResNet-18 w4, 2 rank(s), 2 steps" in out and "all-reduce overlap" in out
    assert out.count("summary:") == 1  # rank 0 only
    import json
    trace = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    assert {e["pid"] for e in trace} == {0, 1} and any(e.get("cat") == "allreduce" for e in trace)


def crash_and_resume(script, args, steps, crash_at, ckpt, damage_latest=False):
    """Run to ``crash_at`` (rank 0 SIGKILLs itself there), optionally damage the newest checkpoint, then resume."""
    proc, _ = run_mpi(2, script, *args, "--steps", steps, "--checkpoint-dir", ckpt, "--crash-at-step", crash_at,
                      timeout=180, env=MPI_ENV)
    assert proc.returncode != 0, "the run should have been killed"
    assert "summary:" not in proc.stdout
    if damage_latest:
        from distgraph.utils.training import CheckpointManager
        latest = CheckpointManager(ckpt).checkpoints()[-1][1]
        data = Path(latest).read_bytes()
        Path(latest).write_bytes(data[:len(data) // 2])
    proc, _ = run_mpi(2, script, *args, "--steps", steps, "--checkpoint-dir", ckpt, "--resume", timeout=180, env=MPI_ENV)
    return proc


@pytest.mark.mpiexec
def test_resnet_killed_on_two_ranks_resumes_to_the_same_parameters_bitwise(tmp_path):
    args = [*RESNET_TINY, "--dtype", "float64", "--checkpoint-every", "2"]
    proc, _ = run_mpi(2, RESNET, *args, "--steps", "6", "--checkpoint-dir", tmp_path / "full", timeout=180, env=MPI_ENV)
    ok(proc)
    # killed after step 5 (checkpoints at 2 and 4); resumed from 4, across an epoch boundary (4 steps/epoch)
    proc = crash_and_resume(RESNET, args, "6", "5", tmp_path / "crash")
    out = ok(proc)
    assert "resuming from step 4" in out and "summary: ResNet-18 w4, 2 rank(s), 6 steps" in out
    step_a, a = final_state(tmp_path / "full")
    step_b, b = final_state(tmp_path / "crash")
    assert step_a == step_b == 6
    assert_bitwise_equal(a, b)


@pytest.mark.mpiexec
def test_charlm_killed_with_damaged_latest_checkpoint_resumes_from_the_previous_one_bitwise(tmp_path):
    # dropout on: the resumed run needs the saved random generator states to match
    args = [*CHARLM_TINY, "--dtype", "float64", "--dropout", "0.1", "--checkpoint-every", "2",
            "--sample-chars", "0", "--log-every", "1"]
    proc, _ = run_mpi(2, CHARLM, *args, "--log-dir", tmp_path / "full_logs", "--steps", "6", "--checkpoint-dir",
                      tmp_path / "full", timeout=180, env=MPI_ENV)
    ok(proc)
    # killed after step 5 (checkpoints 2, 4); checkpoint 4 truncated: resumes from 2 with a warning
    proc = crash_and_resume(CHARLM, [*args, "--log-dir", tmp_path / "logs"], "6", "5", tmp_path / "crash", damage_latest=True)
    out = ok(proc)
    assert "resuming from step 2" in out
    assert "WARNING [rank 0/2]" in proc.stderr and "checkpoint-00000004.safetensors is damaged" in proc.stderr
    _, a = final_state(tmp_path / "full")
    _, b = final_state(tmp_path / "crash")
    assert_bitwise_equal(a, b)
    # the metrics of the resumed run: every step once, the same losses as the uninterrupted run
    full = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "full_logs") if "loss" in r]
    resumed = [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "logs") if "loss" in r]
    assert [s for s, _ in full] == list(range(1, 7))
    assert resumed == full


def test_resnet_reads_cifar10_python_batches(tmp_path):
    import pickle
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (16, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 16))}
        (folder / name).write_bytes(pickle.dumps(batch))
    out = ok(run_python(RESNET, "--data", tmp_path, "--width", "4", "--batch-size", "16", "--steps", "2"))
    assert "80 CIFAR-10 images" in out and "summary: ResNet-18 w4, 1 rank(s), 2 steps" in out
    (folder / "test_batch").unlink()
    proc = run_python(RESNET, "--data", folder, "--width", "4", "--steps", "1")
    assert proc.returncode != 0 and "test_batch is missing" in proc.stderr
