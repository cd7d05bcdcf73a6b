"""L-BFGS (PyTorch's ``torch.optim.LBFGS``), with an optional strong-Wolfe line search.

All parameters are treated as one flat vector. ``step(closure)`` runs up to
``max_iter`` quasi-Newton iterations, re-evaluating ``closure`` (which must zero
the gradients, compute the loss, call ``backward()`` and return the loss).
"""
from __future__ import annotations

import math

from distgraph import backend
from distgraph.autograd import enable_grad
from distgraph.autograd.tensor import bump_version
from distgraph.optim.optimizer import Optimizer, as_state_tensor

__all__ = ["LBFGS"]


def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through (x1, f1, g1), (x2, f2, g2), clipped to ``bounds`` (midpoint if none)."""
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 * d1 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(d2_square)
    if x1 <= x2:
        x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        x = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(x, lo), hi)


def _strong_wolfe(evaluate, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Line search along ``d`` from step ``t`` for the strong Wolfe conditions (Nocedal & Wright, alg. 3.5/3.6).

    ``evaluate(t)`` returns ``(loss, flat_grad)`` at ``x + t d``. Returns
    ``(loss, flat_grad, t, evaluations)`` of the accepted step.
    """
    xp = backend.get_array_module(d)
    d_norm = float(xp.abs(d).max())
    f_new, g_new = evaluate(t)
    evals, ls_iter = 1, 0
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    bracket = None
    # Bracketing phase: grow t until an interval surely holding an acceptable step is found.
    while ls_iter < max_ls:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, done = [[t, f_new, g_new, gtd_new]], True
            break
        if gtd_new >= 0:
            bracket = [[t_prev, f_prev, g_prev, gtd_prev], [t, f_new, g_new, gtd_new]]
            break
        t_next = _cubic_minimum(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, g_prev, gtd_prev = t, f_new, g_new, gtd_new
        t = t_next
        f_new, g_new = evaluate(t)
        evals, ls_iter = evals + 1, ls_iter + 1
        gtd_new = float(g_new @ d)
    if ls_iter == max_ls:
        bracket = [[0.0, f, g, None], [t, f_new, g_new, None]]
    # Zoom phase: shrink the bracket [low, high] by safeguarded cubic interpolation.
    insuf_progress = False
    low, high = (0, 1) if bracket[0][1] <= bracket[-1][1] else (1, 0)
    while not done and ls_iter < max_ls:
        (a, fa, _, ga), (b, fb, _, gb) = bracket
        if abs(b - a) * d_norm < tolerance_change:
            break
        t = _cubic_minimum(a, fa, ga, b, fb, gb)
        top, bottom = max(a, b), min(a, b)
        eps = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < eps:  # too close to an end: move away, unless that just happened
            if insuf_progress or t >= top or t <= bottom:
                t = top - eps if abs(t - top) < abs(t - bottom) else bottom + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = evaluate(t)
        evals, ls_iter = evals + 1, ls_iter + 1
        gtd_new = float(g_new @ d)
        if f_new > f + c1 * t * gtd or f_new >= bracket[low][1]:
            bracket[high] = [t, f_new, g_new, gtd_new]
            low, high = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high][0] - bracket[low][0]) >= 0:
                bracket[high] = list(bracket[low])
            bracket[low] = [t, f_new, g_new, gtd_new]
    t, f_new, g_new, _ = bracket[low]
    return f_new, g_new, t, evals


class LBFGS(Optimizer):
    r"""Limited-memory BFGS over all parameters as one vector (one param group only).

    Each iteration: direction ``d = -H g`` from the last ``history_size`` pairs
    ``(s, y)`` (two-loop recursion, ``H0 = (y.s / y.y) I``); step ``t = lr``
    (the first ever iteration uses ``min(1, 1/|g|_1) * lr``), or a strong-Wolfe
    line search from there; stop on ``max_iter``, ``max_eval`` evaluations,
    ``max|g| <= tolerance_grad``, or changes below ``tolerance_change``.

    Args:
        lr (1), max_iter (20), max_eval (``max_iter * 5 // 4``), tolerance_grad (1e-7),
        tolerance_change (1e-9), history_size (100), line_search_fn (None or "strong_wolfe").

    Raises:
        ValueError: a bad option, or more than one param group.
    """

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None):
        if isinstance(lr, (int, float)) and lr < 0:
            raise ValueError(f"Invalid learning rate: {lr} (LBFGS expects lr >= 0)")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size,
                        line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"LBFGS doesn't support per-parameter options (parameter groups); got "
                             f"{len(self.param_groups)} groups, pass one list of parameters")
        self._params = self.param_groups[0]["params"]

    # ------------------------------------------------------------ flat vectors
    def _flat_grad(self):
        xp = backend.get_array_module(self._params[0].array)
        parts = [xp.zeros(p.array.size, p.array.dtype) if p.grad is None else p.grad.array.reshape(-1)
                 for p in self._params]
        return xp.concatenate(parts)

    def _add_to_params(self, t, d):
        offset = 0
        for p in self._params:
            n = p.array.size
            p.array += (t * d[offset:offset + n]).reshape(p.array.shape).astype(p.array.dtype, copy=False)
            bump_version(p)
            offset += n

    def _evaluate(self, closure):
        with enable_grad():
            loss = float(closure())
        return loss, self._flat_grad()

    # ---------------------------------------------------------------- stepping
    def step(self, closure):
        """Run up to ``max_iter`` iterations; returns the loss from the first closure call.

        Raises:
            TypeError: ``closure`` is not callable.
            RuntimeError: ``line_search_fn`` is neither None nor "strong_wolfe".
        """
        if not callable(closure):
            raise TypeError(f"LBFGS.step: expected a closure that re-evaluates the model and returns the loss, "
                            f"got {type(closure).__name__}")
        self._opt_called = True
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        history_size, line_search = group["history_size"], group["line_search_fn"]
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        with enable_grad():
            orig_loss = closure()
        loss = float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        g = self._flat_grad()
        xp = backend.get_array_module(g)
        if float(xp.abs(g).max()) <= tol_grad:
            return orig_loss

        unwrap = lambda v: v.array if hasattr(v, "array") else v  # noqa: E731 (state holds Tensors)
        d, t = unwrap(state.get("d")), state.get("t")
        old_dirs = [unwrap(v) for v in state.get("old_dirs", [])]
        old_stps = [unwrap(v) for v in state.get("old_stps", [])]
        ro = list(state.get("ro", []))
        H_diag = state.get("H_diag")
        prev_g, prev_loss = unwrap(state.get("prev_flat_grad")), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d, old_dirs, old_stps, ro, H_diag = -g, [], [], [], 1.0
            else:
                y = g - prev_g
                s = d * t
                ys = float(y @ s)
                if ys > 1e-10:  # keep the pair only if it keeps H positive definite
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
                    old_dirs.append(y), old_stps.append(s), ro.append(1.0 / ys)
                    H_diag = ys / float(y @ y)
                al = [0.0] * len(old_dirs)
                q = -g
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = float(old_stps[i] @ q) * ro[i]
                    q = q - al[i] * old_dirs[i]
                r = q * H_diag
                for i in range(len(old_dirs)):
                    be_i = float(old_dirs[i] @ r) * ro[i]
                    r = r + (al[i] - be_i) * old_stps[i]
                d = r
            prev_g = g.copy()
            prev_loss = loss
            t = min(1.0, 1.0 / float(xp.abs(g).sum())) * lr if state["n_iter"] == 1 else lr
            gtd = float(g @ d)
            if gtd > -tol_change:  # not a descent direction
                break

            ls_evals = 0
            opt_cond = False
            if line_search is not None:
                if line_search != "strong_wolfe":
                    raise RuntimeError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got {line_search!r}")
                x0 = [p.array.copy() for p in self._params]

                def evaluate(step, d=d, x0=x0):
                    self._add_to_params(step, d)
                    out = self._evaluate(closure)
                    for p, a in zip(self._params, x0):
                        p.array[...] = a
                        bump_version(p)
                    return out

                loss, g, t, ls_evals = _strong_wolfe(evaluate, t, d, loss, g, gtd)
                self._add_to_params(t, d)
                opt_cond = float(xp.abs(g).max()) <= tol_grad
            else:
                self._add_to_params(t, d)
                if n_iter != max_iter:  # re-evaluate, unless this was the last iteration
                    loss, g = self._evaluate(closure)
                    opt_cond = float(xp.abs(g).max()) <= tol_grad
                    ls_evals = 1
            evals += ls_evals
            state["func_evals"] += ls_evals

            if n_iter == max_iter or evals >= max_eval or opt_cond:
                break
            if float(xp.abs(d * t).max()) <= tol_change or abs(loss - prev_loss) < tol_change:
                break

        wrap = lambda v: None if v is None else as_state_tensor(v)  # noqa: E731
        state.update(d=wrap(d), t=t, old_dirs=[wrap(v) for v in old_dirs], old_stps=[wrap(v) for v in old_stps],
                     ro=ro, H_diag=H_diag, prev_flat_grad=wrap(prev_g), prev_loss=prev_loss)
        return orig_loss
