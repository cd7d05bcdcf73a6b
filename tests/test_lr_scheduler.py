"""Scheduler curves against PyTorch's schedulers, step by step, on optimizers with two param groups."""
import math
import warnings

import pytest

import distgraph as dg
from distgraph import optim
from distgraph.autograd import Parameter
from distgraph.optim import lr_scheduler as dgs

torch = pytest.importorskip("torch")
ths = torch.optim.lr_scheduler


class Scale:
    """A callable object: LambdaLR saves its __dict__ in state_dict()."""

    def __init__(self, rate):
        self.rate = rate

    def __call__(self, epoch):
        return self.rate ** epoch


# (name, optimizer, steps, factory(lib, opt)) where lib is distgraph's or torch's scheduler module
CASES = [
    ("step", "SGD", 25, lambda s, o: s.StepLR(o, step_size=7, gamma=0.5)),
    ("multistep", "SGD", 25, lambda s, o: s.MultiStepLR(o, milestones=[3, 8, 8, 15], gamma=0.3)),
    ("exponential", "SGD", 20, lambda s, o: s.ExponentialLR(o, gamma=0.9)),
    ("cosine", "SGD", 45, lambda s, o: s.CosineAnnealingLR(o, T_max=10, eta_min=0.001)),
    ("lambda", "SGD", 15, lambda s, o: s.LambdaLR(o, lambda e: 1.0 / (1 + e))),
    ("lambda-list", "SGD", 15, lambda s, o: s.LambdaLR(o, [lambda e: 0.9 ** e, Scale(0.8)])),
    ("linear", "SGD", 12, lambda s, o: s.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=6)),
    ("linear-default", "Adam", 8, lambda s, o: s.LinearLR(o)),
    ("constant", "SGD", 8, lambda s, o: s.ConstantLR(o, factor=0.5, total_iters=3)),
    ("onecycle-cos", "SGD", 30, lambda s, o: s.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=30)),
    ("onecycle-linear-adam", "Adam", 20, lambda s, o: s.OneCycleLR(
        o, max_lr=0.01, epochs=4, steps_per_epoch=5, anneal_strategy="linear", pct_start=0.25)),
    ("onecycle-three-phase", "SGD", 40, lambda s, o: s.OneCycleLR(
        o, max_lr=0.1, total_steps=40, three_phase=True, div_factor=10.0, final_div_factor=100.0)),
    ("onecycle-no-momentum", "SGD", 10, lambda s, o: s.OneCycleLR(o, max_lr=0.1, total_steps=10,
                                                                  cycle_momentum=False)),
    ("sequential", "SGD", 30, lambda s, o: s.SequentialLR(
        o, [s.LinearLR(o, start_factor=0.1, total_iters=5), s.CosineAnnealingLR(o, T_max=20)], milestones=[5])),
    ("sequential-3", "SGD", 30, lambda s, o: s.SequentialLR(
        o, [s.ConstantLR(o, factor=0.1, total_iters=2), s.ExponentialLR(o, gamma=0.9),
            s.StepLR(o, step_size=4, gamma=0.5)], milestones=[4, 12])),
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
        dg_opt.step()
        th_opt.step()
        dg_sched.step()
        th_sched.step()
        _check_same(dg_opt, th_opt, dg_sched, th_sched, step)
        assert dg_sched.last_epoch == th_sched.last_epoch


@pytest.mark.parametrize("name,kind,steps,make", CASES, ids=[c[0] for c in CASES])
def test_state_dict_resume(name, kind, steps, make):
    """Stop halfway, save both states, rebuild, load, finish: the same curve as an uninterrupted run."""
    dg_opt, th_opt = _optimizers(kind)
    ref_sched = make(dgs, dg_opt)
    half = steps // 2
    for _ in range(half):
        dg_opt.step()
        ref_sched.step()
    opt_sd, sched_sd = dg_opt.state_dict(), ref_sched.state_dict()
    expected = []
    for _ in range(steps - half):
        dg_opt.step()
        ref_sched.step()
        expected.append(ref_sched.get_last_lr())

    opt2, _ = _optimizers(kind)
    sched2 = make(dgs, opt2)
    opt2.load_state_dict(opt_sd)
    sched2.load_state_dict(sched_sd)
    for want in expected:
        opt2.step()
        sched2.step()
        assert sched2.get_last_lr() == pytest.approx(want, rel=1e-12)
        assert [g["lr"] for g in opt2.param_groups] == pytest.approx(want, rel=1e-12)


def test_lambda_state_dict_keeps_callable_objects_only():
    opt, _ = _optimizers("SGD")
    fn = Scale(0.5)
    sched = dgs.LambdaLR(opt, [lambda e: 1.0, fn])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [None, {"rate": 0.5}] and "optimizer" not in sd
    fn.rate = 0.1
    sched.load_state_dict(sd)
    assert fn.rate == 0.5


def test_closed_form_epoch_argument():
    opt, th = _optimizers("SGD")
    sched, th_sched = dgs.StepLR(opt, step_size=3, gamma=0.5), ths.StepLR(th, step_size=3, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched.step(7)
        th_sched.step(7)
    assert sched.get_last_lr() == pytest.approx(th_sched.get_last_lr())
    assert sched.get_last_lr()[0] == pytest.approx(0.1 * 0.25)


def test_warns_when_stepped_before_optimizer():
    opt, _ = _optimizers("SGD")
    sched = dgs.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    opt2, _ = _optimizers("SGD")
    sched2 = dgs.StepLR(opt2, step_size=2)
    opt2.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched2.step()


def test_errors():
    opt, _ = _optimizers("SGD")
    with pytest.raises(TypeError, match="expected a distgraph Optimizer"):
        dgs.StepLR(object(), step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        dgs.StepLR(opt, step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="expected 2 values for max_lr"):
        dgs.OneCycleLR(opt, max_lr=[0.1, 0.2, 0.3], total_steps=10)
    with pytest.raises(ValueError, match="total_steps, or both epochs"):
        dgs.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        dgs.OneCycleLR(opt, max_lr=0.1, total_steps=5, anneal_strategy="exp")
    with pytest.raises(ValueError, match="momentum or betas"):
        dgs.OneCycleLR(optim.Optimizer([Parameter(dg.zeros(1))], {"lr": 0.1}), max_lr=0.1, total_steps=5)
    with pytest.raises(ValueError, match="one milestone fewer"):
        dgs.SequentialLR(opt, [dgs.StepLR(opt, 2), dgs.StepLR(opt, 3)], milestones=[])
    other, _ = _optimizers("SGD")
    with pytest.raises(ValueError, match="belong to the given optimizer"):
        dgs.SequentialLR(opt, [dgs.StepLR(other, 2)], milestones=[])
    with pytest.raises(ValueError, match="start_factor"):
        dgs.LinearLR(opt, start_factor=0)
    sched = dgs.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(3):
            sched.step()
        with pytest.raises(ValueError, match="tried to step 4 times"):
            sched.step()
