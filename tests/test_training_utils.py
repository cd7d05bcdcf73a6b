"""distgraph.utils.training (checkpoints, RNG states), .metrics (CSV / JSON lines / TensorBoard) and .logging."""
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import distgraph as dg
import distgraph.nn as nn
from distgraph.utils import metrics as metrics_mod
from distgraph.utils.metrics import MetricsLogger, read_csv, read_jsonl
from distgraph.utils.training import CheckpointManager, rng_state, set_rng_state, state_digest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("safetensors")


def setup(seed=0):
    dg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()
    opt = dg.optim.AdamW(model.parameters(), lr=0.01)
    sched = dg.optim.lr_scheduler.SequentialLR(opt, [dg.optim.lr_scheduler.LinearLR(opt, 0.1, 1.0, 2),
                                                     dg.optim.lr_scheduler.CosineAnnealingLR(opt, 5)],
                                               milestones=[2])
    return model, opt, sched


def train_step(model, opt, sched, step):
    rng = np.random.default_rng(step)
    x = dg.tensor(rng.standard_normal((6, 4)))
    y = dg.tensor(rng.integers(0, 3, 6))
    h = nn.functional.dropout(model(x), 0.3)  # draws from distgraph's CPU generator: needs its state restored
    loss = nn.functional.cross_entropy(h, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def params(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- RNG state
def test_rng_state_round_trip_repeats_the_same_draws():
    dg.manual_seed(3)
    dg.randn(5)
    import random
    random.random()
    saved = rng_state()
    a, pa = dg.randn(4).numpy(), random.random()
    dg.randn(7)
    set_rng_state(saved)
    assert np.array_equal(dg.randn(4).numpy(), a) and random.random() == pa
    json.loads(saved)  # a plain JSON string: storable in any checkpoint


# --------------------------------------------------------------- checkpoints
def test_resume_from_checkpoint_matches_uninterrupted_training_bitwise(tmp_path):
    model, opt, sched = setup()
    for s in range(6):
        train_step(model, opt, sched, s)
    reference = params(model)

    model, opt, sched = setup()
    ckpt = CheckpointManager(tmp_path, keep=2)
    for s in range(3):
        train_step(model, opt, sched, s)
    ckpt.save(3, model=model, optimizer=opt, scheduler=sched, epoch=1, note="hello")
    model, opt, sched = setup(seed=99)  # a fresh process: other weights, other RNG state
    state = ckpt.restore(model=model, optimizer=opt, scheduler=sched)
    assert state == {"step": 3, "world_size": 1, "epoch": 1, "note": "hello"}
    for s in range(3, 6):
        train_step(model, opt, sched, s)
    resumed = params(model)
    assert reference.keys() == resumed.keys()
    for k in reference:
        assert np.array_equal(reference[k], resumed[k]), k


def test_keeps_only_the_newest_checkpoints(tmp_path):
    model, opt, sched = setup()
    ckpt = CheckpointManager(tmp_path / "sub", keep=2)
    assert ckpt.checkpoints() == [] and ckpt.restore(model=model) is None
    (tmp_path / "sub").mkdir()
    stale = tmp_path / "sub" / ".checkpoint-00000005.safetensors.0123456789ab.tmp"  # a write cut by a kill
    stale.write_bytes(b"partial")
    for s in (10, 20, 30):
        ckpt.save(s, model=model, optimizer=opt)
    assert [s for s, _ in ckpt.checkpoints()] == [20, 30]
    assert sorted(os.listdir(tmp_path / "sub")) == ["checkpoint-00000020.safetensors",
                                                    "checkpoint-00000030.safetensors"]


def damage_truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) * 2 // 3])


def damage_flip_bits(path):
    """Flip bytes in the tensor data only: the file still parses, the checksum must catch it."""
    data = bytearray(Path(path).read_bytes())
    header = int.from_bytes(data[:8], "little")
    for i in range(8 + header + 16, len(data), 97):
        data[i] ^= 0x5A
    Path(path).write_bytes(bytes(data))


def edit_header(edit):
    """A damage that applies ``edit(header)`` to the file's safetensors JSON header."""
    def damage(path):
        data = Path(path).read_bytes()
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        edit(header)
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        Path(path).write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])
    return damage


def edit_fields(edit):
    """A damage that rewrites the checkpoint with ``edit(ckpt)`` applied, through dg.save: the file is
    intact (its checksum matches), only the CheckpointManager fields are wrong."""
    def damage(path):
        ckpt = dg.load(path)
        edit(ckpt)
        dg.save(ckpt, path)
    return damage


def _set(key, value):
    def edit(ckpt):
        ckpt[key] = value
    return edit


def _structure(header, record):
    header["__metadata__"]["distgraph.structure"] = json.dumps(record)
    header["__metadata__"].pop("distgraph.checksum")  # as a file from before checksums: no check


def _first_tensor(header):
    return next(k for k in header if k != "__metadata__")


DAMAGES = [  # (id, damage, what the warning must say)
    ("truncated", damage_truncate, "truncated"),
    ("flipped-bits", damage_flip_bits, r"recorded checksum crc32:[0-9a-f]{8}, the data read back has crc32:"),
    ("empty", lambda p: Path(p).write_bytes(b""), "is empty"),
    ("header-not-json", lambda p: Path(p).write_bytes(Path(p).read_bytes()[:8] + b"{" * 8 + Path(p).read_bytes()[16:]),
     "header is not valid JSON"),
    ("header-length-huge", lambda p: Path(p).write_bytes((2 ** 40).to_bytes(8, "little") + Path(p).read_bytes()[8:]),
     "header announces 1099511627776 bytes, more than the 100000000-byte limit"),
    ("header-shape-wrong-type", edit_header(lambda h: h[_first_tensor(h)].update(shape="4x8")), "expected 'shape'"),
    ("header-offsets-missing", edit_header(lambda h: h[_first_tensor(h)].pop("data_offsets")),
     r"missing \['data_offsets'\]"),
    ("metadata-wrong-type", edit_header(lambda h: h.update(__metadata__=["distgraph"])),
     "expected an object of strings"),
    ("metadata-missing", edit_header(lambda h: h.pop("__metadata__")), "not a CheckpointManager checkpoint"),
    ("metadata-value-wrong-type", edit_header(lambda h: h["__metadata__"].update({"distgraph.structure": 5})),
     "expected an object of strings"),
    ("structure-missing", edit_header(lambda h: h["__metadata__"].pop("distgraph.structure")),
     "has no 'distgraph.structure' record"),
    ("structure-not-json", edit_header(lambda h: _structure(h, None) or h["__metadata__"].update(
        {"distgraph.structure": "{'step': 2"})), "structure record: not valid JSON"),
    ("structure-malformed", edit_header(lambda h: _structure(h, {"__dict__": [["step", {"__tensor__": 2}]]})),
     "malformed structure record"),
    ("checksum-wrong-type", edit_header(lambda h: h["__metadata__"].update({"distgraph.checksum": "md5:1"})),
     "expected 'crc32:' and 8 hex digits"),
    ("format-missing", edit_fields(lambda c: c.pop("format")), "not a CheckpointManager checkpoint"),
    ("step-missing", edit_fields(lambda c: c.pop("step")), r"has no \['step'\]"),
    ("step-a-string", edit_fields(_set("step", "2")), r"expected 'step' to be an integer >= 0, got '2' \(str\)"),
    ("step-a-list", edit_fields(_set("step", [2])), "expected 'step' to be an integer"),
    ("world-size-a-dict", edit_fields(_set("world_size", {"n": 1})), "expected 'world_size' to be an integer >= 1"),
    ("rng-a-string", edit_fields(_set("rng", "{}")), "expected 'rng' to be a list of 1 RNG states"),
    ("rng-a-list-of-ints", edit_fields(_set("rng", [1])), "expected 'rng' to be a list"),
    ("rng-not-json", edit_fields(_set("rng", ["{not json"])), "the RNG state of rank 0 can't be restored"),
    ("rng-wrong-keys", edit_fields(_set("rng", ['{"cpu": {}, "python": [3, [], null]}'])),
     "the RNG state of rank 0 can't be restored"),
    ("digest-missing", edit_fields(lambda c: c.pop("digest")), r"has no \['digest'\]"),
    ("digest-an-int", edit_fields(_set("digest", 7)), "expected 'digest' to be a SHA-256 digest"),
    ("digest-differs", edit_fields(_set("digest", "0" * 64)), "expected the tensors' SHA-256 digest '0000"),
    ("model-a-string", edit_fields(_set("model", "weights")), r"expected 'model' to be a state dict \(a dict\)"),
    ("optimizer-a-list", edit_fields(_set("optimizer", [])), "expected 'optimizer' to be a state dict"),
]


@pytest.mark.parametrize("damage,problem", [d[1:] for d in DAMAGES], ids=[d[0] for d in DAMAGES])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path, damage, problem, capfd):
    model, opt, sched = setup()
    ckpt = CheckpointManager(tmp_path, keep=2)
    train_step(model, opt, sched, 0)
    ckpt.save(1, model=model, optimizer=opt, scheduler=sched)
    good = params(model)
    train_step(model, opt, sched, 1)
    latest = ckpt.save(2, model=model, optimizer=opt, scheduler=sched)
    damage(latest)
    model2, opt2, sched2 = setup(seed=5)
    state = ckpt.restore(model=model2, optimizer=opt2, scheduler=sched2)
    assert state["step"] == 1
    assert all(np.array_equal(v, good[k]) for k, v in params(model2).items())
    err = capfd.readouterr().err
    assert "WARNING [rank 0/1]" in err and f"checkpoint {latest} is damaged" in err, err
    assert re.search(problem, err), f"expected the warning to say {problem!r}, got:\n{err}"
    # the damaged file is set aside, so the next save and resume never see it again
    assert os.path.exists(latest + ".corrupt") and [s for s, _ in ckpt.checkpoints()] == [1]


def test_every_checkpoint_damaged_raises_naming_each_file(tmp_path, capfd):
    model, opt, _ = setup()
    ckpt = CheckpointManager(tmp_path)
    first = ckpt.save(1, model=model)
    second = ckpt.save(2, model=model)
    damage_truncate(first)
    edit_fields(_set("step", "two"))(second)
    before = params(model)
    with pytest.raises(dg.serialization.CheckpointError) as info:
        ckpt.restore(model=model)
    message = str(info.value)
    assert f"every checkpoint in {tmp_path} is damaged" in message and "fresh_if_damaged=True" in message, message
    assert re.search(re.escape(first) + ": .*truncated", message), message
    assert re.search(re.escape(second) + r": .*expected 'step' to be an integer", message), message
    assert all(np.array_equal(v, before[k]) for k, v in params(model).items())  # nothing was changed
    # the files stay where they are: a second attempt raises again instead of starting from step 0
    assert [s for s, _ in ckpt.checkpoints()] == [1, 2]
    with pytest.raises(dg.serialization.CheckpointError, match="every checkpoint"):
        ckpt.load_latest()
    assert "is damaged" in capfd.readouterr().err


def test_every_checkpoint_damaged_with_fresh_if_damaged_starts_afresh(tmp_path, capfd):
    model, _, _ = setup()
    ckpt = CheckpointManager(tmp_path)
    damage_truncate(ckpt.save(1, model=model))
    before = params(model)
    assert ckpt.restore(model=model, fresh_if_damaged=True) is None
    assert all(np.array_equal(v, before[k]) for k, v in params(model).items())
    err = capfd.readouterr().err
    assert "starting afresh from step 0 (fresh_if_damaged=True)" in err, err
    assert ckpt.checkpoints() == [] and os.listdir(tmp_path) == ["checkpoint-00000001.safetensors.corrupt"]
    assert ckpt.restore(model=model) is None  # set aside: the next resume is a plain first run


def test_no_checkpoint_at_all_is_a_first_run(tmp_path):
    model, _, _ = setup()
    assert CheckpointManager(tmp_path).restore(model=model) is None
    assert CheckpointManager(tmp_path / "missing").load_latest() is None


def test_a_bad_map_location_is_an_argument_error_not_a_damaged_file(tmp_path):
    model, _, _ = setup()
    ckpt = CheckpointManager(tmp_path)
    path = ckpt.save(1, model=model)
    with pytest.raises(ValueError, match="map_location 'gpu' is not a device"):
        ckpt.restore(model=model, map_location="gpu")
    with pytest.raises(TypeError, match="map_location must be"):
        ckpt.restore(model=model, map_location=3.5)
    assert [p for _, p in ckpt.checkpoints()] == [path]  # not renamed *.corrupt


RESTORE_SCRIPT = """
import sys
from distgraph import comm
import distgraph.nn as nn
from distgraph.serialization import CheckpointError
from distgraph.utils.training import CheckpointManager

comm.init_process_group("mpi")
rank = comm.get_rank()
ckpt = CheckpointManager(sys.argv[1])
model = nn.Linear(2, 2)
ckpt.save(1, model=model)
comm.barrier()
if rank == 0:
    with open(ckpt.path(1), "r+b") as f:
        f.truncate(100)
comm.barrier()
try:
    ckpt.restore(model=model)
except CheckpointError as e:
    print(f"rank {rank} raised: {str(e).splitlines()[0]}", flush=True)
state = ckpt.restore(model=model, fresh_if_damaged=True)
print(f"rank {rank} fresh: {state}", flush=True)
ckpt.save(2, model=model)
print(f"rank {rank} resumed at step {ckpt.restore(model=model)['step']}", flush=True)
comm.destroy_process_group()
"""


@pytest.mark.mpiexec
def test_every_checkpoint_damaged_raises_on_every_rank(tmp_path):
    from mpi_util import run_mpi
    script = tmp_path / "restore.py"
    script.write_text(RESTORE_SCRIPT)
    p, secs = run_mpi(2, script, tmp_path / "ckpt", timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert secs < 60, secs     # the ranks agree at once: nobody waits for a timeout
    assert "rank 0 raised: CheckpointManager: every checkpoint" in p.stdout, p.stdout + p.stderr
    assert "rank 1 raised: [rank 1/2] CheckpointManager: rank 0 found no checkpoint" in p.stdout, p.stdout
    assert "rank 0 fresh: None" in p.stdout and "rank 1 fresh: None" in p.stdout, p.stdout
    assert "rank 0 resumed at step 2" in p.stdout and "rank 1 resumed at step 2" in p.stdout, p.stdout


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="keep should be an integer >= 1"):
        CheckpointManager("x", keep=0)
    with pytest.raises(ValueError, match="'step' is a reserved name"):
        CheckpointManager("x").save(1, step=3)


def test_restore_names_a_missing_entry(tmp_path):
    model, opt, _ = setup()
    ckpt = CheckpointManager(tmp_path)
    ckpt.save(1, model=model)
    with pytest.raises(KeyError, match="has no 'optimizer'"):
        ckpt.restore(model=model, optimizer=opt)


def test_state_digest_depends_on_values_and_names():
    a = {"w": dg.tensor([1.0, 2.0]), "b": np.zeros(2)}
    assert state_digest(a) == state_digest({"w": dg.tensor([1.0, 2.0]), "b": np.zeros(2)})
    assert state_digest(a) != state_digest({"w": dg.tensor([1.0, 2.5]), "b": np.zeros(2)})
    assert state_digest(a) != state_digest({"v": dg.tensor([1.0, 2.0]), "b": np.zeros(2)})


# ------------------------------------------------------------------- metrics
def test_metrics_are_written_as_jsonl_and_csv(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as m:
        m.log(1, loss=2.5, lr=dg.tensor(0.1))
        m.log(2, prefix="val/", loss=np.float64(2.0), accuracy=0.5)
        m.log(3, loss=float("nan"))
    recs = read_jsonl(tmp_path)
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert recs[0]["loss"] == 2.5 and recs[0]["lr"] == pytest.approx(0.1)
    assert recs[1] == {"step": 2, "time": recs[1]["time"], "val/loss": 2.0, "val/accuracy": 0.5}
    assert recs[2]["loss"] == "nan"
    series = read_csv(tmp_path)
    assert series["loss"][0] == [1, 3] and series["loss"][1][0] == 2.5 and np.isnan(series["loss"][1][1])
    assert series["val/accuracy"] == ([2], [0.5])
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "step,tag,value,time"


def test_metrics_purge_drops_steps_after_the_resumed_checkpoint(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as m:
        for s in range(1, 6):
            m.log(s, loss=float(s))
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # a line cut short by a kill
    with MetricsLogger(tmp_path, purge_step=3, tensorboard=False) as m:
        m.log(4, loss=40.0)
    assert [(r["step"], r["loss"]) for r in read_jsonl(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    assert read_csv(tmp_path)["loss"] == ([1, 2, 3, 4], [1.0, 2.0, 3.0, 40.0])


def test_metrics_only_rank_zero_writes_and_values_must_be_numbers(tmp_path):
    m = MetricsLogger(tmp_path / "r1", rank=1)
    m.log(1, loss=1.0)
    m.close()
    assert not (tmp_path / "r1").exists()
    with MetricsLogger(tmp_path, tensorboard=False) as m, pytest.raises(TypeError, match="expected a number for 'x'"):
        m.log(1, x="high")


def test_metrics_go_to_a_tensorboard_writer_when_one_is_importable(tmp_path, monkeypatch):
    calls = []

    class FakeWriter:
        def __init__(self, logdir, **kw):
            calls.append(("init", logdir, kw))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "tensorboardX", types.SimpleNamespace(SummaryWriter=FakeWriter))
    assert metrics_mod.tensorboard_writer_class() is FakeWriter
    with MetricsLogger(tmp_path, purge_step=4) as m:
        m.log(5, loss=1.5)
    assert calls == [("init", str(tmp_path), {"purge_step": 5}), ("loss", 1.5, 5), ("close",)]


def test_tensorboard_required_but_missing_is_an_import_error(tmp_path, monkeypatch):
    monkeypatch.setattr(metrics_mod, "tensorboard_writer_class", lambda: None)
    with pytest.raises(ImportError, match="pip install tensorboardX"):
        MetricsLogger(tmp_path, tensorboard=True)


# ------------------------------------------------------------------- logging
LOG_SCRIPT = """
from distgraph.utils.logging import get_logger
log = get_logger("demo")
log.debug("dbg-line"); log.info("info-line"); log.warning("warn-line")
"""


def run_logging(env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "SLURM_"))
           and k != "DISTGRAPH_LOG_LEVEL"}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", LOG_SCRIPT], capture_output=True, text=True, env=env, timeout=60)


def test_log_lines_carry_the_rank_and_default_to_warning():
    p = run_logging({"PMI_RANK": "1", "PMI_SIZE": "3"})
    assert p.returncode == 0, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and " WARNING [rank 1/3] distgraph.demo: warn-line" in lines[0], p.stderr


def test_log_level_follows_distgraph_log_level():
    p = run_logging({"DISTGRAPH_LOG_LEVEL": "debug"})
    assert p.returncode == 0, p.stderr
    assert [ln.split(": ")[-1] for ln in p.stderr.strip().splitlines()] == ["dbg-line", "info-line", "warn-line"]
    assert "[rank 0/1]" in p.stderr
    p = run_logging({"DISTGRAPH_LOG_LEVEL": "ERROR"})
    assert p.returncode == 0 and p.stderr == ""
    p = run_logging({"DISTGRAPH_LOG_LEVEL": "loud"})
    assert p.returncode != 0 and "DISTGRAPH_LOG_LEVEL: expected DEBUG, INFO" in p.stderr


def test_metrics_in_real_tensorboard_event_files(tmp_path):
    tbx = pytest.importorskip("tensorboardX")
    from tensorboardX.proto import event_pb2
    with MetricsLogger(tmp_path, tensorboard=True) as m:
        m.log(1, loss=2.5)
        m.log(2, loss=1.5, accuracy=0.75)
    events = []
    for path in sorted(tmp_path.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i + 12 <= len(data):            # TFRecord: u64 length, u32 crc, payload, u32 crc
            n = int.from_bytes(data[i:i + 8], "little")
            events.append(event_pb2.Event.FromString(data[i + 12:i + 12 + n]))
            i += 12 + n + 4
    scalars = [(e.step, v.tag, round(v.simple_value, 6)) for e in events for v in e.summary.value]
    assert scalars == [(1, "loss", 2.5), (2, "loss", 1.5), (2, "accuracy", 0.75)], (tbx.__version__, scalars)
