"""More schedulers against PyTorch's, step by step: plateau, warm restarts, polynomial, cyclic, chained."""
import math
import warnings

import pytest

import distgraph as dg
from distgraph import optim
from distgraph.autograd import Parameter
from distgraph.optim import lr_scheduler as dgs

torch = pytest.importorskip("torch")
ths = torch.optim.lr_scheduler


class Halving:
    """A callable object (its __dict__ is saved by state_dict())."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, x):
        return self.rate ** x


# (name, optimizer, steps, factory(lib, opt)) where lib is distgraph's or torch's scheduler module
CASES = [
    ("poly", "SGD", 12, lambda s, o: s.PolynomialLR(o, total_iters=8, power=2.0)),
    ("poly-default", "Adam", 8, lambda s, o: s.PolynomialLR(o)),
    ("multiplicative", "SGD", 10, lambda s, o: s.MultiplicativeLR(o, lambda e: 0.95)),
    ("multiplicative-list", "SGD", 10, lambda s, o: s.MultiplicativeLR(o, [lambda e: 0.9, Halving(0.99)])),
    ("warm-restarts", "SGD", 30, lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=4, eta_min=0.001)),
    ("warm-restarts-mult", "SGD", 40, lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2)),
    ("cyclic", "SGD", 25, lambda s, o: s.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4)),
    ("cyclic-down-2", "SGD", 40, lambda s, o: s.CyclicLR(
        o, base_lr=[0.01, 0.02], max_lr=[0.1, 0.3], step_size_up=3, step_size_down=5, mode="triangular2",
        base_momentum=[0.7, 0.8], max_momentum=[0.9, 0.95])),
    ("cyclic-exp-adam", "Adam", 30, lambda s, o: s.CyclicLR(
        o, base_lr=0.001, max_lr=0.01, step_size_up=5, mode="exp_range", gamma=0.97)),
    ("cyclic-scale-fn", "SGD", 30, lambda s, o: s.CyclicLR(
        o, 0.01, 0.1, step_size_up=2, scale_fn=Halving(0.9), scale_mode="iterations", cycle_momentum=False)),
    ("cyclic-scale-fn-cycle", "Adam", 20, lambda s, o: s.CyclicLR(
        o, 0.01, 0.1, step_size_up=3, scale_fn=lambda c: 1 / c)),
    ("chained", "SGD", 20, lambda s, o: s.ChainedScheduler(
        [s.ConstantLR(o, factor=0.5, total_iters=4), s.ExponentialLR(o, gamma=0.9)])),
    ("chained-opt", "SGD", 15, lambda s, o: s.ChainedScheduler(
        [s.StepLR(o, 3), s.PolynomialLR(o, total_iters=10)], optimizer=o)),
    ("sequential-poly", "SGD", 20, lambda s, o: s.SequentialLR(
        o, [s.LinearLR(o, start_factor=0.2, total_iters=4), s.PolynomialLR(o, total_iters=12)], milestones=[4])),
]


def _optimizers(kind):
    dg_groups = [{"params": [Parameter(dg.zeros(2))]}, {"params": [Parameter(dg.zeros(3))], "lr": 0.05}]
    th_groups = [{"params": [torch.zeros(2, requires_grad=True)]},
                 {"params": [torch.zeros(3, requires_grad=True)], "lr": 0.05}]
    kw = dict(lr=0.1, momentum=0.9) if kind == "SGD" else dict(lr=0.1)
    return getattr(optim, kind)(dg_groups, **kw), getattr(torch.optim, kind)(th_groups, **kw)


def _check_same(dg_opt, th_opt, dg_sched, th_sched, where):
    assert len(dg_sched.get_last_lr()) == 2
    for a, b in zip(dg_sched.get_last_lr(), th_sched.get_last_lr()):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), (where, a, b)
    for key in ("lr", "momentum", "betas"):
        for g, h in zip(dg_opt.param_groups, th_opt.param_groups):
            if key in h:
                assert g[key] == pytest.approx(h[key], rel=1e-12, abs=1e-15), (where, key)


@pytest.mark.parametrize("name,kind,steps,make", CASES, ids=[c[0] for c in CASES])
def test_curve_matches_torch(name, kind, steps, make):
    dg_opt, th_opt = _optimizers(kind)
    dg_sched, th_sched = make(dgs, dg_opt), make(ths, th_opt)
    _check_same(dg_opt, th_opt, dg_sched, th_sched, "init")
    for step in range(steps):
        dg_opt.step(), th_opt.step()
        dg_sched.step(), th_sched.step()
        _check_same(dg_opt, th_opt, dg_sched, th_sched, step)
        assert getattr(dg_sched, "last_epoch", None) == getattr(th_sched, "last_epoch", None)


@pytest.mark.parametrize("name,kind,steps,make", CASES, ids=[c[0] for c in CASES])
def test_state_dict_resume(name, kind, steps, make):
    dg_opt, _ = _optimizers(kind)
    ref = make(dgs, dg_opt)
    half = steps // 2
    for _ in range(half):
        dg_opt.step(), ref.step()
    opt_sd, sched_sd = dg_opt.state_dict(), ref.state_dict()
    assert "optimizer" not in sched_sd
    expected = []
    for _ in range(steps - half):
        dg_opt.step(), ref.step()
        expected.append(ref.get_last_lr())
    opt2, _ = _optimizers(kind)
    sched2 = make(dgs, opt2)
    opt2.load_state_dict(opt_sd)
    sched2.load_state_dict(sched_sd)
    for want in expected:
        opt2.step(), sched2.step()
        assert sched2.get_last_lr() == pytest.approx(want, rel=1e-12)


def test_state_dict_keys_match_torch():
    for name, kind, _, make in CASES:
        dg_opt, th_opt = _optimizers(kind)
        ours, theirs = set(make(dgs, dg_opt).state_dict()), set(make(ths, th_opt).state_dict())
        assert theirs - {"_get_lr_called_within_step", "_is_initial"} <= ours, name


@pytest.mark.parametrize("T_mult", [1, 2, 3])
def test_warm_restarts_fractional_epochs(T_mult):
    dg_opt, th_opt = _optimizers("SGD")
    s = dgs.CosineAnnealingWarmRestarts(dg_opt, T_0=2, T_mult=T_mult, eta_min=0.005)
    t = ths.CosineAnnealingWarmRestarts(th_opt, T_0=2, T_mult=T_mult, eta_min=0.005)
    iters = 7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither library warns about the epoch argument here
        for epoch in range(9):
            for i in range(iters):
                dg_opt.step(), th_opt.step()
                s.step(epoch + i / iters), t.step(epoch + i / iters)
                _check_same(dg_opt, th_opt, s, t, (epoch, i))
                assert (s.T_cur, s.T_i, s.last_epoch) == pytest.approx((t.T_cur, t.T_i, t.last_epoch))
    s.step(3), t.step(3)  # jumping back is allowed
    _check_same(dg_opt, th_opt, s, t, "back")
    for lib, sched in ((ValueError, s), (ValueError, t)):
        with pytest.raises(lib):
            sched.step(-1)


PLATEAU = [
    dict(),
    dict(mode="max", factor=0.5, patience=2),
    dict(patience=1, threshold=0.1, threshold_mode="abs", cooldown=2),
    dict(mode="max", patience=0, threshold=0.05, threshold_mode="abs", min_lr=[0.02, 0.001]),
    dict(patience=1, factor=0.3, min_lr=0.004, eps=1e-3, cooldown=1),
]


@pytest.mark.parametrize("kwargs", PLATEAU, ids=lambda k: ",".join(f"{a}={v}" for a, v in k.items()) or "default")
def test_plateau_matches_torch(kwargs):
    dg_opt, th_opt = _optimizers("SGD")
    s, t = dgs.ReduceLROnPlateau(dg_opt, **kwargs), ths.ReduceLROnPlateau(th_opt, **kwargs)
    metrics = [1.0, 0.9, 0.95, 0.89, 0.91, 0.92, 0.93, 0.5, 0.6, 0.7, 0.55, 0.56, 0.57, 0.58, 0.59] * 3
    for i, m in enumerate(metrics):
        dg_opt.step(), th_opt.step()
        s.step(m if i % 2 else dg.tensor(m)), t.step(m)
        _check_same(dg_opt, th_opt, s, t, i)
        assert (s.best, s.num_bad_epochs, s.cooldown_counter, s.last_epoch) == \
            (t.best, t.num_bad_epochs, t.cooldown_counter, t.last_epoch)
    sd = s.state_dict()
    opt2, _ = _optimizers("SGD")
    s2 = dgs.ReduceLROnPlateau(opt2)
    s2.load_state_dict(sd)
    for k in ("best", "num_bad_epochs", "patience", "mode", "threshold_mode", "min_lrs"):
        assert getattr(s2, k) == getattr(s, k)
    with pytest.warns(UserWarning):
        s.step(0.1, epoch=99)
    assert s.last_epoch == 99


def test_warnings_match_torch():
    def caught(lib, make, call):
        o = _optimizers("SGD")[0 if lib is dgs else 1]
        sched = make(lib, o)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            call(sched)
        return len(w) > 0

    for make, call in [
        (lambda s, o: s.PolynomialLR(o), lambda x: x.step()),
        (lambda s, o: s.CyclicLR(o, 0.01, 0.1), lambda x: x.step()),
        (lambda s, o: s.MultiplicativeLR(o, lambda e: 0.9), lambda x: x.step()),
        (lambda s, o: s.CosineAnnealingWarmRestarts(o, 3), lambda x: x.step()),
        (lambda s, o: s.CosineAnnealingWarmRestarts(o, 3), lambda x: x.step(1.5)),
        (lambda s, o: s.ReduceLROnPlateau(o), lambda x: x.step(1.0)),
        (lambda s, o: s.ReduceLROnPlateau(o), lambda x: x.step(1.0, 3)),
    ]:
        assert caught(dgs, make, call) == caught(ths, make, call)


ERRORS = [
    lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=0),
    lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=2.5),
    lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=0),
    lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=1.5),
    lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=3, eta_min="a"),
    lambda s, o: s.ReduceLROnPlateau(o, factor=1.0),
    lambda s, o: s.ReduceLROnPlateau(o, mode="avg"),
    lambda s, o: s.ReduceLROnPlateau(o, threshold_mode="pct"),
    lambda s, o: s.ReduceLROnPlateau(o, min_lr=[0.1, 0.2, 0.3]),
    lambda s, o: s.CyclicLR(o, 0.01, 0.1, mode="sine"),
    lambda s, o: s.CyclicLR(o, [0.01], 0.1),
    lambda s, o: s.ChainedScheduler([]),
    lambda s, o: s.ChainedScheduler([s.StepLR(o, 2), s.ReduceLROnPlateau(o)]),
]


@pytest.mark.parametrize("make", ERRORS)
def test_errors_match_torch(make):
    dg_opt, th_opt = _optimizers("SGD")
    with pytest.raises(Exception) as th_err:
        make(ths, th_opt)
    with pytest.raises(type(th_err.value)):
        make(dgs, dg_opt)


def test_chained_and_cyclic_errors():
    (a, ta), (b, tb) = _optimizers("SGD"), _optimizers("SGD")
    with pytest.raises(ValueError):
        ths.ChainedScheduler([ths.StepLR(ta, 2), ths.StepLR(tb, 2)])
    with pytest.raises(ValueError, match="same optimizer"):
        dgs.ChainedScheduler([dgs.StepLR(a, 2), dgs.StepLR(b, 2)])
    with pytest.raises(ValueError):
        ths.CyclicLR(torch.optim.Adagrad([torch.zeros(1, requires_grad=True)]), 0.01, 0.1)
    with pytest.raises(ValueError, match="momentum or betas"):
        dgs.CyclicLR(optim.Adagrad([Parameter(dg.zeros(1))]), 0.01, 0.1)


def test_cyclic_state_dict_keeps_callable_objects_only():
    opt, _ = _optimizers("SGD")
    fn = Halving(0.5)
    sched = dgs.CyclicLR(opt, 0.01, 0.1, scale_fn=fn)
    sd = sched.state_dict()
    assert sd["_scale_fn_custom"] == {"rate": 0.5}
    assert dgs.CyclicLR(opt, 0.01, 0.1, scale_fn=lambda x: 1.0).state_dict()["_scale_fn_custom"] is None
    fn.rate = 0.1
    sched.load_state_dict(sd)
    assert fn.rate == 0.5


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LambdaLR",
                                  "OneCycleLR", "LinearLR", "ConstantLR", "SequentialLR", "ChainedScheduler",
                                  "MultiplicativeLR", "PolynomialLR", "CosineAnnealingWarmRestarts", "CyclicLR",
                                  "ReduceLROnPlateau", "LRScheduler"])
def test_every_torch_scheduler_exists(name):
    assert hasattr(dgs, name) and name in dgs.__all__ and hasattr(ths, name)
