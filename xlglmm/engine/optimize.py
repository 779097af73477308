"""Optimisation of the deviance (lme4's ``optimizeGlmer`` stage) and its checks.

Stage 1 minimises the nAGQ=0 criterion over theta alone (PIRLS solves for the
fixed effects too) with BOBYQA (NLopt's implementation, the derivative-free
trust-region method MixedModels.jl uses; lme4 uses bobyqa then Nelder-Mead): it
respects the bounds on theta's diagonal and needs few evaluations on these smooth
objectives.  For nAGQ=0 that is the whole fit (as lme4).  Stage 2 minimises the
Laplace (or AGQ) deviance over theta and beta jointly from stage 1's answer by
projected quasi-Newton steps (``newton_refine``: BFGS updates of a starting
Hessian, or on large data of a cheap approximate one); BOBYQA, with beta on the
scale of its standard errors, is the fallback when that quadratic model fails.
The Laplace deviance has an exact gradient (``gradient.py``): the steps use it
(``fg``) and the Hessian is its central differences (``hessian_from_gradient``,
2k evaluations); AGQ's deviance is differenced itself.  Linear mixed models need
only BOBYQA over theta (lmm.py).

Then, as lme4 does: the gradient and Hessian of the deviance in (theta, beta) at
the optimum (``hessian_from_gradient``, or for AGQ ``hessian_fd``: central
differences on the axes and one diagonal pair per pair of parameters, step 1e-3
on the accurately converged deviance; ``deriv12``, lme4's own stencil, with steps
of 1% of each parameter's SE
when reproducing lme4's Hessian, see ``covariance.parameter_scales``: they give the
fixed-effect covariance 2 H^-1), lme4's convergence checks in plain words, the
boundary check (a theta within 1e-5 of its bound is set to the bound when that is
no worse), and the singular-fit test (a diagonal theta below 1e-4).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import nlopt
import numpy as np

from . import jit

BIG = 1e300
SINGULAR_TOL = 1e-4
BOUNDARY_TOL = 1e-5
GRAD_TOL = 2e-3
HESS_TOL = 1e-6
FD_DELTA = 1e-4          # lme4's deriv12 step (deriv12's default)
EXACT_FD_DELTA = 1e-3    # our step: PIRLS is converged to ~1e-10 in the deviance, so
                         # 1e-3 keeps rounding noise ~1e-4 while truncation is ~1e-6


class FitTimeout(Exception):
    """The time budget ran out (checked between evaluations, or inside a slow one):
    BOBYQA answers with the best point it had (``OptResult.timed_out``); a stage
    interrupted in its finite differences keeps the point it had (stage 1's optimum
    when stage 2 had none yet)."""


class BudgetExhausted(ValueError):
    """Even the grace period after the time budget ran out (``Budget.grace``) is
    over: the fit cannot finish its last evaluations (the fit refuses it).
    ``for_budget(seconds)``: the same words for another budget (a nested fit had a
    share of the user's)."""

    def __init__(self, seconds: float, grace: float):
        self.seconds, self.grace = seconds, grace
        super().__init__(self.for_budget(seconds))

    def for_budget(self, seconds: float) -> str:
        return (f"the time budget of {seconds:g} s ran out, and the fit could not "
                f"finish even its final evaluations in {self.grace:g} s more: each "
                "evaluation of this model is slow; use fewer rows, levels or predictors, "
                "or a larger budget")


#: nlopt's code of a stop by roundoff (its RoundoffLimited exception)
ROUNDOFF_LIMITED = -4


@dataclass
class OptResult:
    x: np.ndarray
    fun: float
    nevals: int
    code: int
    message: str = ""
    timed_out: bool = False


@dataclass
class Budget:
    """A wall-clock budget and an evaluation cap shared by the stages.  The clock
    does not count the one-time compilation of the kernels (``jit.Stopwatch``): a
    fit that compiles is neither stopped nor changed by it."""

    seconds: float | None = None
    max_evals: int = 100000
    clock: jit.Stopwatch = field(default_factory=jit.Stopwatch)
    stopped: bool = False       # the budget has run out (the fit is finishing)
    final: bool = False         # in a finishing step (``finishing``)

    def expired(self) -> bool:
        if self.seconds is not None and self.clock.elapsed() > self.seconds:
            self.stopped = True
            return True
        return False

    @property
    def grace(self) -> float:
        """Seconds after the budget for the evaluations that turn the best point so
        far into a result (at the optimizer's point, once or twice)."""
        return max(1.0, 0.5 * self.seconds)

    @contextlib.contextmanager
    def finishing(self):
        """Evaluations outside the optimizers (at the point they reached): they are
        not stopped at the budget, only after its grace period (BudgetExhausted)."""
        saved, self.final = self.final, True
        try:
            yield
        finally:
            self.final = saved

    def check_inside(self):
        """Inside an evaluation (between PIRLS iterations of slow models): raise
        FitTimeout when the budget has run out, or BudgetExhausted when it had and
        the grace period is over too."""
        if self.seconds is None:
            return
        elapsed = self.clock.elapsed()
        if not (self.stopped or self.final):
            if elapsed > self.seconds:
                self.stopped = True
                raise FitTimeout()
        elif elapsed > self.seconds + self.grace:
            raise BudgetExhausted(self.seconds, self.grace)


def bobyqa(fun, x0, lower, upper, step, xtol, ftol, maxeval, budget: Budget,
           ftol_rel=0.0) -> OptResult:
    """Minimise ``fun`` within [lower, upper] by NLopt's BOBYQA (stage 1; stage 2's
    fallback; lmer's only optimizer) from ``x0`` with initial ``step``, to absolute
    tolerances ``xtol`` (each coordinate) and ``ftol`` (and relative ``ftol_rel``), at
    most ``maxeval`` evaluations; a non-finite value counts as 1e300.  When ``budget``
    runs out: the best point so far, with ``timed_out``."""
    n = len(x0)
    best = {"x": np.array(x0, float), "f": np.inf, "n": 0}

    def obj(x, grad):
        if best["n"] and budget.expired():     # the start point is always evaluated
            raise FitTimeout()
        f = fun(x)
        best["n"] += 1
        if not np.isfinite(f):
            return BIG
        if f < best["f"]:
            best["f"], best["x"] = f, np.array(x, float)
        return f

    x0 = np.clip(np.asarray(x0, float), lower, upper)
    opt = nlopt.opt(nlopt.LN_BOBYQA, n)
    opt.set_min_objective(obj)
    opt.set_lower_bounds(np.where(np.isfinite(lower), lower, -BIG))
    opt.set_upper_bounds(np.where(np.isfinite(upper), upper, BIG))
    opt.set_initial_step(np.asarray(step, float))
    opt.set_xtol_abs(np.full(n, xtol))
    opt.set_ftol_abs(ftol)
    if ftol_rel:
        opt.set_ftol_rel(ftol_rel)
    opt.set_maxeval(int(maxeval))
    timed_out = False
    code = 0
    msg = ""
    try:
        opt.optimize(x0)
        code = opt.last_optimize_result()
    except FitTimeout:
        timed_out = True
        msg = "time budget reached"
    except SystemError as e:      # some nlopt builds wrap the callback's exception
        if not isinstance(e.__cause__, FitTimeout):
            raise
        timed_out = True
        msg = "time budget reached"
    except nlopt.RoundoffLimited:
        code = ROUNDOFF_LIMITED
        msg = "optimizer stopped at rounding limits"
    except (RuntimeError, ValueError) as e:   # nlopt failure on a degenerate problem
        code = -1
        msg = f"optimizer failure ({e})"
    if code == nlopt.MAXEVAL_REACHED:
        msg = "iteration limit reached"
    return OptResult(best["x"], best["f"], best["n"], code, msg, timed_out)


def deriv12(fun, x, fx=None, delta=FD_DELTA, budget: Budget | None = None, scale=None):
    """Central finite-difference gradient and Hessian (lme4's deriv12, no bounds).

    ``scale``: per-coordinate step multipliers: coordinate j moves by
    ``delta * scale[j]`` (default 1, lme4's absolute steps)."""
    x = np.asarray(x, float)
    n = len(x)
    if fx is None:
        fx = fun(x)
    d = np.full(n, float(delta)) if scale is None else float(delta) * np.asarray(scale, float)
    H = np.empty((n, n))
    g = np.empty(n)

    def at(i, si, j=None, sj=0.0):
        z = x.copy()
        z[i] += si
        if j is not None:
            z[j] += sj
        if budget is not None and budget.expired():
            raise FitTimeout()
        return fun(z)

    for j in range(n):
        fa = at(j, d[j])
        fs = at(j, -d[j])
        H[j, j] = (fa - 2.0 * fx + fs) / (d[j] * d[j])
        g[j] = (fa - fs) / (2.0 * d[j])
        for i in range(j):
            H[i, j] = H[j, i] = (at(i, d[i], j, d[j]) - at(i, d[i], j, -d[j])
                                 - at(i, -d[i], j, d[j]) + at(i, -d[i], j, -d[j])) \
                / (4.0 * d[i] * d[j])
    return g, H


def check_convergence(grad, hess) -> list[str]:
    """lme4's checkConv (gradient and Hessian parts), in plain words."""
    msgs = []
    if grad is None or not np.all(np.isfinite(grad)) or not np.all(np.isfinite(hess)):
        return ["Convergence could not be checked: the gradient or Hessian of the "
                "deviance has missing values."]
    try:
        R = np.linalg.cholesky(hess).T
        scgrad = np.linalg.solve(R.T, grad)   # R's solve(chol(H), g) with H = R'R
        mingrad = np.minimum(np.abs(scgrad), np.abs(grad))
        worst = float(np.max(mingrad))
        if worst > GRAD_TOL:
            msgs.append(f"Model failed to converge with max|grad| = {worst:.4g} "
                        f"(tol = {GRAD_TOL:g}): the optimum is not well determined; "
                        "estimates may be inaccurate. Try rescaling predictors or "
                        "simplifying the random effects.")
    except np.linalg.LinAlgError:
        msgs.append("Model failed to converge: unable to evaluate the scaled gradient "
                    "(the Hessian is not positive definite).")
    try:
        ev = np.linalg.eigvalsh((hess + hess.T) / 2.0)
    except np.linalg.LinAlgError:
        return msgs + ["Problem with the Hessian check (infinite or missing values)."]
    if np.any(ev < -HESS_TOL):
        msgs.append(f"Model failed to converge: degenerate Hessian with "
                    f"{int(np.sum(ev < -HESS_TOL))} negative eigenvalue(s); this is not a "
                    "clean optimum.")
    elif np.any(np.abs(ev) < HESS_TOL):
        msgs.append("Hessian is numerically singular: parameters are not uniquely "
                    "determined.")
    else:
        if ev.max() * HESS_TOL > 1:
            msgs.append("Model is nearly unidentifiable: very large eigenvalue - "
                        "rescale variables? (lme4's check; with many observations it "
                        "often only reflects the amount of data)")
        if ev.min() / ev.max() < HESS_TOL:
            msgs.append("Model is nearly unidentifiable: large eigenvalue ratio - "
                        "rescale variables?")
    return msgs


def is_singular(theta, lower) -> bool:
    bounded = np.isfinite(lower) & (lower == 0)
    return bool(np.any(np.asarray(theta)[bounded] < SINGULAR_TOL))


def check_boundary(fun, x, fx, lower):
    """lme4's check.boundary: thetas within BOUNDARY_TOL of their bound go to the
    bound when that does not increase the deviance."""
    x = np.array(x, float)
    nb = len(lower)
    diff = x[:nb] - lower
    edge = np.isfinite(diff) & (diff > 0) & (diff < BOUNDARY_TOL)
    if not edge.any():
        return x, fx
    for i in np.flatnonzero(edge):
        trial = x.copy()
        trial[i] = lower[i]
        ft = fun(trial)
        if ft < fx:
            x, fx = trial, ft
    return x, fx


def gradient(fun, x, delta=EXACT_FD_DELTA, budget: Budget | None = None,
             values: bool = False, warm=None, center=None, previous=None):
    """Central finite-difference gradient; with ``values`` also the function at
    x + delta e_j and x - delta e_j (the axis points ``hessian_fd`` needs) and the
    axis modes (see ``_axis_points``)."""
    x = np.asarray(x, float)
    n = len(x)
    g = np.empty(n)
    fp, fm, modes = _axis_points(fun, x, delta, budget, warm, center, previous)
    for j in range(n):
        g[j] = (float(fp[j]) - float(fm[j])) / (2 * delta)   # floats: inf - inf, no warning
    return (g, fp, fm, modes) if values else g


def _axis_points(fun, x, delta, budget, warm, center, previous):
    """f(x + delta e_j) and f(x - delta e_j), j = 1..n.  With ``warm`` (an object
    with ``save()`` -> token of the last evaluation's conditional modes and
    ``start(pairs)`` -> next warm start sum(c * token)) and ``center`` (the token at
    x), each mode search starts from a first-order prediction of its answer: x - d
    from 2 m(x) - m(x + d), x + d from m(x) + (m+ - m-)/2 of ``previous`` axis
    modes (another nearby center), so PIRLS starts O(d^2) from the mode (one
    iteration fewer).  Returns fp, fm and the modes (center, plus, minus) or None."""
    n = len(x)
    fp = np.empty(n)
    fm = np.empty(n)
    track = warm is not None and center is not None
    plus, minus = [None] * n, [None] * n
    z = x.copy()
    for j in range(n):
        if budget is not None and budget.expired():
            raise FitTimeout()
        z[j] = x[j] + delta
        if track:
            if previous is not None:
                warm.start(((1.0, center), (0.5, previous[1][j]), (-0.5, previous[2][j])))
            else:
                warm.start(((1.0, center),))
        fp[j] = fun(z)
        if track:
            plus[j] = warm.save()
            warm.start(((2.0, center), (-1.0, plus[j])))
        z[j] = x[j] - delta
        fm[j] = fun(z)
        if track:
            minus[j] = warm.save()
        z[j] = x[j]
    return fp, fm, ((center, plus, minus) if track else None)


@dataclass
class NewtonResult:
    x: np.ndarray
    fun: float
    grad: np.ndarray
    hess: np.ndarray
    moved: np.ndarray       # x - x0
    ok: bool
    steps: int
    axis_values: tuple | None = None   # (fp, fm, modes) of the gradient at x, if known


def newton_refine(fun, x0, f0, g0, H0, lower, budget: Budget, max_steps=8,
                  tol=1e-8, warm=None, modes0=None, fg=None) -> NewtonResult:
    """Projected quasi-Newton steps from a point near the optimum (stage 1's),
    starting from a good Hessian (finite differences) and updating it by BFGS with
    finite-difference gradients -- or, with ``fg`` (x -> (f, exact gradient), as
    ``gradient.LaplaceGradient``), with exact ones, evaluated with the function in
    the line search.  Parameters at a bound whose gradient points out
    of the box stay at the bound.  ``ok`` is False when the model is not
    positive definite or no step decreases the function: the caller then falls
    back to BOBYQA.  ``warm``, ``modes0``: warm starts of the mode searches in the
    gradients (see ``_axis_points``; modes0 the axis modes at x0, if known)."""
    n = len(x0)
    nb = len(lower)
    lo = np.concatenate([lower, np.full(n - nb, -np.inf)])
    x, f, g, H = np.array(x0, float), float(f0), np.array(g0, float), np.array(H0, float)
    steps = 0
    axis = None
    modes = modes0
    for steps in range(1, max_steps + 1):
        active = (x <= lo) & (g > 0)
        free = ~active
        try:
            L = np.linalg.cholesky(H[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            return NewtonResult(x, f, g, H, x - x0, False, steps, axis)
        step = np.zeros(n)
        step[free] = -np.linalg.solve(L.T, np.linalg.solve(L, g[free]))
        decrement = float(-g[free] @ step[free])
        if decrement < tol:
            return NewtonResult(x, f, g, H, x - x0, True, steps, axis)
        t = 1.0
        gn = None
        for _ in range(12):
            if budget.expired():
                raise FitTimeout()
            xn = np.maximum(x + t * step, lo)
            if fg is None:
                fn = fun(xn)
            else:
                fn, gn = fg(xn)
            if np.isfinite(fn) and fn <= f + 1e-4 * t * float(g @ (xn - x)) + 1e-12 * abs(f):
                break
            t *= 0.5
        else:
            return NewtonResult(x, f, g, H, x - x0, decrement < 1e-6, steps, axis)
        if fg is not None:
            if not np.all(np.isfinite(gn)):
                return NewtonResult(x, f, g, H, x - x0, False, steps, axis)
        else:
            center = warm.save() if warm is not None else None     # the modes at xn
            gn, fp, fm, modes = gradient(fun, xn, budget=budget, values=True, warm=warm,
                                         center=center, previous=modes)
        s, yv = xn - x, gn - g
        sy = float(s @ yv)
        if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(yv)) and sy > 0:
            Hs = H @ s
            H = H - np.outer(Hs, Hs) / float(s @ Hs) + np.outer(yv, yv) / sy
        x, f, g = xn, fn, gn
        axis = None if fg is not None else (fp, fm, modes)
    return NewtonResult(x, f, g, H, x - x0, False, steps, axis)


def hessian_from_gradient(fg, x, delta=EXACT_FD_DELTA, budget: Budget | None = None,
                          warm=None, g0=None):
    """The Hessian by central differences of an exact gradient (``fg``: x -> (f,
    gradient)) in 2k evaluations, symmetrised:  H[:, j] = (g(x + d e_j) -
    g(x - d e_j)) / (2d).  Second-order accurate like ``hessian_fd``, whose k^2 + k
    differences of values divide rounding noise by d^2 rather than d.  With ``g0``
    (the gradient at x): forward differences (g(x + d e_j) - g0) / d in k
    evaluations, first-order accurate (a starting Hessian for Newton steps).
    ``warm``: each mode search starts from the centre's modes (x - d from
    2 m(x) - m(x + d), as ``_axis_points``).  Returns H, or None when a gradient is
    not finite."""
    x = np.asarray(x, float)
    n = len(x)
    H = np.empty((n, n))
    center = warm.save() if warm is not None else None
    z = x.copy()
    for j in range(n):
        if budget is not None and budget.expired():
            raise FitTimeout()
        z[j] = x[j] + delta
        if center is not None:
            warm.start(((1.0, center),))
        _, gp = fg(z)
        if g0 is not None:
            z[j] = x[j]
            H[:, j] = (gp - g0) / delta
            continue
        if center is not None:
            plus = warm.save()
            warm.start(((2.0, center), (-1.0, plus)))
        z[j] = x[j] - delta
        _, gm = fg(z)
        z[j] = x[j]
        H[:, j] = (gp - gm) / (2.0 * delta)
    if center is not None:
        warm.start(((1.0, center),))
    if not np.all(np.isfinite(H)):
        return None
    return 0.5 * (H + H.T)


def hessian_fd(fun, x, fx=None, delta=EXACT_FD_DELTA, budget: Budget | None = None,
               axis_values=None, warm=None, center=None):
    """Gradient and Hessian by finite differences in k^2 + k evaluations (lme4's
    deriv12 takes 2k^2): central differences on the axes, and for each pair one
    evaluation at x + d(e_i + e_j) and one at x - d(e_i + e_j):

        H_ij = [f(x+d e_i+d e_j) + f(x-d e_i-d e_j) - f(x+d e_i) - f(x-d e_i)
                - f(x+d e_j) - f(x-d e_j) + 2 f(x)] / (2 d^2)

    which is second-order accurate like the four-point formula.  ``axis_values``
    (fp, fm, modes): f(x + d e_j), f(x - d e_j) and their modes when already known
    (``gradient`` with ``values=True`` at the same x and d), saving 2k evaluations.
    ``warm``, ``center``: first-order warm starts of the mode searches, as in
    ``_axis_points``; the pair points start from m(x +- d e_i) + m(x +- d e_j) - m(x)."""
    x = np.asarray(x, float)
    if fx is None:
        fx = fun(x)
        center = warm.save() if warm is not None else None
    with np.errstate(invalid="ignore", over="ignore"):
        if axis_values is None:
            fp, fm, modes = _axis_points(fun, x, delta, budget, warm, center, None)
        else:
            fp, fm, modes = axis_values
            fp, fm = np.array(fp, float), np.array(fm, float)
        return _hessian_fd(fun, x, fp, fm, modes, warm, budget, fx, delta)


def _hessian_fd(fun, x, fp, fm, modes, warm, budget, fx, delta):
    n = len(x)
    g = (fp - fm) / (2 * delta)
    H = np.empty((n, n))
    d2 = delta * delta
    track = warm is not None and modes is not None
    for j in range(n):
        H[j, j] = (fp[j] - 2 * fx + fm[j]) / d2
        for i in range(j):
            if budget is not None and budget.expired():
                raise FitTimeout()
            z = x.copy()
            z[i] += delta
            z[j] += delta
            if track:
                c, plus, minus = modes
                warm.start(((1.0, plus[i]), (1.0, plus[j]), (-1.0, c)))
            fpp = fun(z)
            z = x.copy()
            z[i] -= delta
            z[j] -= delta
            if track:
                warm.start(((1.0, minus[i]), (1.0, minus[j]), (-1.0, c)))
            fmm = fun(z)
            H[i, j] = H[j, i] = (fpp + fmm - fp[i] - fm[i] - fp[j] - fm[j]
                                 + 2 * fx) / (2 * d2)
    return g, H
