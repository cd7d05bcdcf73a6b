"""``dg.linalg``'s inverses, determinants, solves, Cholesky and symmetric eigendecomposition against
torch.linalg on the same matrices (float64): values, gradients (through a loss that uses every
output), finite differences, and the errors torch raises."""
import numpy as np
import pytest

import distgraph as dg
from distgraph.autograd.gradcheck import gradcheck

torch = pytest.importorskip("torch")
TOL = 1e-9


def _spd(rng, *batch, n=4):
    m = rng.standard_normal(batch + (n, n))
    return m @ np.swapaxes(m, -1, -2) + n * np.eye(n)


def _compare(fn_dg, fn_torch, arrays, what, weights_seed=0):
    """Values and gradients of ``sum(out_i * W_i)`` for every output ``out_i``, against torch."""
    d_in = [dg.tensor(a, requires_grad=True) for a in arrays]
    t_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    d_out, t_out = fn_dg(*d_in), fn_torch(*t_in)
    d_out = d_out if isinstance(d_out, tuple) else (d_out,)
    t_out = t_out if isinstance(t_out, tuple) else (t_out,)
    rng = np.random.default_rng(weights_seed)
    d_loss, t_loss = 0, 0
    for i, (d, t) in enumerate(zip(d_out, t_out)):
        assert tuple(d.shape) == tuple(t.shape), f"{what} output {i}: shape {d.shape} vs {t.shape}"
        assert np.allclose(d.detach().numpy(), t.detach().numpy(), atol=TOL), f"{what} output {i}"
        if t.requires_grad:
            w = rng.standard_normal(tuple(t.shape))
            d_loss = d_loss + (d * dg.tensor(w)).sum()
            t_loss = t_loss + (t * torch.tensor(w)).sum()
    d_loss.backward()
    t_loss.backward()
    for i, (d, t) in enumerate(zip(d_in, t_in)):
        err = np.max(np.abs(d.grad.numpy() - t.grad.numpy()))
        assert err < TOL, f"{what}: gradient of input {i} differs from torch's by {err}"


def test_inv_det_slogdet_logdet():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 3)) + 3 * np.eye(3)
    _compare(dg.linalg.inv, torch.linalg.inv, [a], "inv")
    _compare(dg.linalg.det, torch.linalg.det, [a], "det")
    _compare(lambda x: tuple(dg.linalg.slogdet(x)), lambda x: tuple(torch.linalg.slogdet(x)), [a], "slogdet")
    _compare(dg.linalg.logdet, torch.logdet, [_spd(rng, 2)], "logdet")
    neg = np.diag([-1.0, 2.0])
    assert np.isnan(dg.linalg.logdet(dg.tensor(neg)).item()) and np.isnan(torch.logdet(torch.tensor(neg)).item())
    sign, logabs = dg.linalg.slogdet(dg.tensor(neg))
    assert sign.item() == -1.0 and abs(logabs.item() - np.log(2.0)) < 1e-15 and str(sign.dtype) == "float64"
    # torch's function and method names
    x, t = dg.tensor(a), torch.tensor(a)
    for name in ("inverse", "det", "logdet"):
        assert np.allclose(getattr(dg, name)(x).numpy(), getattr(torch, name)(t).numpy(), atol=TOL, equal_nan=True)
        assert np.allclose(getattr(x, name)().numpy(), getattr(t, name)().numpy(), atol=TOL, equal_nan=True)
    assert np.allclose(x.slogdet().logabsdet.numpy(), t.slogdet().logabsdet.numpy(), atol=TOL)
    for fn in (dg.linalg.inv, dg.linalg.det):
        assert gradcheck(fn, (dg.tensor(a[0], requires_grad=True),))
    with pytest.raises(RuntimeError, match="square matrices"):
        dg.linalg.inv(dg.ones(2, 3, dtype=dg.float64))


@pytest.mark.parametrize("a_shape,b_shape,left", [((3, 3), (3,), True), ((3, 3), (3, 2), True),
                                                  ((2, 3, 3), (3, 4), True), ((3, 3), (2, 3, 1), True),
                                                  ((2, 3, 3), (2, 3), True), ((3, 3), (2, 3), False)])
def test_solve_matches_torch_with_broadcasting(a_shape, b_shape, left):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(a_shape) + 3 * np.eye(3)
    b = rng.standard_normal(b_shape)
    _compare(lambda x, y: dg.linalg.solve(x, y, left=left), lambda x, y: torch.linalg.solve(x, y, left=left),
             [a, b], f"solve {a_shape} {b_shape}")


@pytest.mark.parametrize("upper,unit,left", [(False, False, True), (True, False, True), (True, True, False)])
def test_solve_triangular_matches_torch(upper, unit, left):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 3, 3)) + 3 * np.eye(3)
    b = rng.standard_normal((2, 3, 2) if left else (2, 2, 3))
    _compare(lambda x, y: dg.linalg.solve_triangular(x, y, upper=upper, left=left, unitriangular=unit),
             lambda x, y: torch.linalg.solve_triangular(x, y, upper=upper, left=left, unitriangular=unit),
             [a, b], "solve_triangular")


def test_cholesky_matches_torch_and_refuses_indefinite():
    rng = np.random.default_rng(3)
    a = _spd(rng, 2)
    _compare(dg.linalg.cholesky, torch.linalg.cholesky, [a], "cholesky")
    _compare(lambda x: dg.linalg.cholesky(x, upper=True), lambda x: torch.linalg.cholesky(x, upper=True), [a],
             "cholesky upper")
    # the factor reproduces A, and its gradient passes finite differences on symmetric inputs
    sym = lambda x: dg.linalg.cholesky((x + x.mT) / 2)  # noqa: E731
    assert gradcheck(sym, (dg.tensor(a[0], requires_grad=True),))
    with pytest.raises(RuntimeError, match="positive-definite"):
        dg.linalg.cholesky(dg.tensor(-np.eye(2)))
    with pytest.raises(Exception):
        torch.linalg.cholesky(torch.tensor(-np.eye(2)))


def test_eigh_and_eigvalsh_match_torch():
    rng = np.random.default_rng(4)
    a = _spd(rng, 2) + np.diag([0.0, 1.0, 2.5, 4.0])            # distinct eigenvalues
    # eigenvectors are defined up to sign: compare a sign-invariant function of them
    def use(lib):
        def f(x):
            w, v = lib.linalg.eigh(x)
            return w, (v * v), v @ v.mT
        return f
    _compare(lambda x: use(dg)(x), lambda x: use(torch)(x), [a], "eigh")
    _compare(dg.linalg.eigvalsh, torch.linalg.eigvalsh, [a], "eigvalsh")
    _compare(lambda x: dg.linalg.eigvalsh(x, UPLO="U"), lambda x: torch.linalg.eigvalsh(x, UPLO="U"),
             [a + np.triu(np.ones(4), 1)], "eigvalsh upper")
    # the gradient is the one for symmetric changes of A: finite differences along A + A^T
    wt = dg.tensor(rng.standard_normal((4, 4)))
    assert gradcheck(lambda x: (dg.linalg.eigh((x + x.mT) / 2).eigenvectors ** 2 * wt).sum(),
                     (dg.tensor(a[0], requires_grad=True),))
    res = dg.linalg.eigh(dg.tensor(a))
    assert res.eigenvalues.shape == (2, 4) and res.eigenvectors.shape == (2, 4, 4)
