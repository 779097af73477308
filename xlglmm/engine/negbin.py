"""Negative binomial (NB2) GLMMs with theta estimated by maximum likelihood (the
job of lme4's ``glmer.nb``).

theta is estimated *inside* the optimisation: after the Poisson GLMM (the start)
and one fit with theta fixed at a moment estimate, projected quasi-Newton steps
(``optimize.newton_refine``) minimise the Laplace deviance over (the random
effects' theta, psi, beta) jointly, psi = log(upper bound) - log(theta) >= 0 so
that the Poisson limit is a bound the steps stop at.  The deviance is the full -2
log-likelihood in theta (its normalising terms included: ``family.loglik_constant``
moves with theta, ``GlmmDeviance.set_family``), so the joint optimum is the maximum
of the profile over log(theta) that the fit reported before -- without a full fit
at each point of that profile.  The reported fit is then one fit with theta fixed
at the estimate, warm-started at the joint optimum, with the requested SEs: the
fixed effects' covariance conditional on theta, as lme4's glmer.nb.

theta's SE: the profile's curvature in log(theta) is the Schur complement of the
joint Hessian, H_tt - H_tr H_rr^-1 H_rt (r: the other free parameters); the
reported fit's finite-difference Hessian is H_rr, one column of finite differences
at its optimum adds the rest (without that Hessian -- se_method 'rx', large data --
the whole joint one, or the profile's second difference when that is cheaper).

When the quadratic model fails (no positive-definite Hessian -- as when the data
show no overdispersion and the likelihood is flat in theta --, no descent, theta
beyond its lower limit), the fit at the moment estimate did not converge, or for
nAGQ = 0 (whose criterion is not the Laplace deviance), theta is found as before: the profile
over log(theta), each point a fit with theta fixed, maximised by bounded Brent,
the SE from the profile's curvature.  Either way the estimate of theta is a stage
of the model's fit, so the result is built once, with theta, its SE and CI, the
parameter count and the notes already right.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize as _sciopt

from .devfun import ModeWarmStarts
from .family import Family
from .model import ModelError, Optimum
from .optimize import (EXACT_FD_DELTA, Budget, BudgetExhausted, FitTimeout, gradient,
                       hessian_fd, newton_refine)
from .results import GLMMResult

NB_LOG_THETA_BOUNDS = (math.log(1e-3), math.log(1e6))
PROFILE_STEP = 0.05         # log(theta) step of the profile's curvature (theta's SE)
AT_BOUND = 0.05             # log(theta) this close to the upper limit: theta is at it
JOINT_MAX_STEPS = 40        # quasi-Newton steps of the joint search
JOINT_TOL = 1e-10           # its Newton decrement at the optimum (the deviance to ~1e-10)
Z_975 = 1.959964


def NegativeBinomial2(theta: float, link: str = "log") -> Family:
    """The NB2 family with a fixed shape: variance mu + mu^2 / theta."""
    if not (isinstance(theta, (int, float)) and theta > 0 and math.isfinite(theta)):
        raise ModelError("the negative binomial theta must be a positive number")
    return Family("negbin", link, float(theta))


@dataclass
class ThetaEstimate:
    """The maximum-likelihood theta, its standard error and 95% Wald interval (from
    log theta's), and the Poisson GLMM the search started from."""
    theta: float
    se: float
    ci: tuple
    poisson_fit: GLMMResult


class JointDeviance:
    """The Laplace deviance of a fitted NB2 model as a function of x = (the random
    effects' theta, t, beta on the fit's scale), t the NB theta's log
    (``psi=False``) or psi = log(upper limit) - log(theta) (``psi=True``: the
    search's, bounded below by 0).  Changes the model's family as it evaluates;
    ``close()`` puts back the model's own family and warm starts."""

    def __init__(self, model, psi: bool):
        self.model = model
        self.dev = model.devfun
        self.nt = model.devfun.ntheta
        self.psi = psi
        self._family = model.family
        self._nb_theta = model.family.nb_theta
        self._saved = self.dev.warm_starts()
        self.warm = ModeWarmStarts(self.dev)

    def log_theta(self, t) -> float:
        return NB_LOG_THETA_BOUNDS[1] - t if self.psi else t

    def t_of(self, log_theta) -> float:
        return NB_LOG_THETA_BOUNDS[1] - log_theta if self.psi else log_theta

    def __call__(self, x) -> float:
        nt = self.nt
        theta = math.exp(self.log_theta(float(x[nt])))
        if theta != self._nb_theta:
            if not (0.0 < theta < math.inf):
                return math.inf
            self.dev.set_family(dataclasses.replace(self._family, nb_theta=theta))
            self._nb_theta = theta
        return self.model.deviance(x[:nt], x[nt + 1:])

    def point(self, theta_re, log_theta, beta) -> np.ndarray:
        return np.concatenate([theta_re, [self.t_of(log_theta)], beta])

    def close(self):
        self.dev.set_family(self._family)
        self._nb_theta = self._family.nb_theta
        self.dev.restore_warm_starts(self._saved)


def hessian_column(fun, x, k, fx, budget=None, warm=None, delta=EXACT_FD_DELTA):
    """The gradient of ``fun`` at x and column k of its Hessian, by the finite
    differences of ``optimize.hessian_fd`` (the same steps and pair formula) in
    4n - 2 evaluations instead of n^2 + n."""
    x = np.asarray(x, float)
    n = len(x)
    center = warm.save() if warm is not None else None
    g, fp, fm, modes = gradient(fun, x, delta, budget, values=True, warm=warm, center=center)
    col = np.empty(n)
    d2 = delta * delta
    col[k] = (fp[k] - 2.0 * fx + fm[k]) / d2
    for j in range(n):
        if j == k:
            continue
        if budget is not None and budget.expired():
            raise FitTimeout()
        z = x.copy()
        z[j] += delta
        z[k] += delta
        if modes is not None:
            warm.start(((1.0, modes[1][j]), (1.0, modes[1][k]), (-1.0, modes[0])))
        fpp = fun(z)
        z = x.copy()
        z[j] -= delta
        z[k] -= delta
        if modes is not None:
            warm.start(((1.0, modes[2][j]), (1.0, modes[2][k]), (-1.0, modes[0])))
        fmm = fun(z)
        col[j] = (fpp + fmm - fp[j] - fm[j] - fp[k] - fm[k] + 2.0 * fx) / (2.0 * d2)
    return g, col


def with_column(H_rest, col, k) -> np.ndarray:
    """The n x n Hessian of H_rest (the others') with row and column k inserted."""
    n = len(col)
    others = [j for j in range(n) if j != k]
    H = np.empty((n, n))
    H[np.ix_(others, others)] = H_rest
    H[k, :] = col
    H[:, k] = col
    return H


def schur_se(H, k, free) -> float:
    """The SE of parameter k of a deviance (-2 log-likelihood) with Hessian H, the
    others profiled out (those in ``free``; the rest, at their bounds, held):
    sqrt(2 / (H_kk - H_kr H_rr^-1 H_rk)); NaN when that curvature is not positive."""
    r = [j for j in range(len(H)) if j != k and free[j]]
    s = H[k, k]
    if r:
        try:
            s -= float(H[k, r] @ np.linalg.solve(H[np.ix_(r, r)], H[r, k]))
        except np.linalg.LinAlgError:
            return float("nan")
    return math.sqrt(2.0 / s) if s > 0 and math.isfinite(s) else float("nan")


class NegativeBinomialModel:
    """An NB2 GLMM whose theta is estimated.  ``fit_poisson()`` fits the Poisson
    GLMM (the start); ``model_at(theta, se_method, time_budget)`` returns the GLMM
    (``model.GeneralizedLinearMixedModel``, not yet fitted) with theta fixed.  All
    of it shares one time budget: each nested fit gets the time left."""

    def __init__(self, fit_poisson, model_at, *, se_method, time_budget, max_evals,
                 progress=None):
        self.budget = Budget(time_budget, max_evals)
        self.time_budget = time_budget
        self.se_method = se_method
        self.progress = progress
        self._fit_poisson = fit_poisson
        self._model_at = model_at
        self._profile: dict = {}        # log theta (rounded) -> Estimates at that theta
        self.poisson_fit: GLMMResult | None = None
        self.model = None               # the GLMM at the estimated theta
        self.method = None              # "joint" or "profile": how theta was found

    def _left(self, least=0.0):
        """The budget's time left for a nested fit (each has its own clock): the
        whole estimate stays within the budget (plus the grace of the last fit)."""
        if self.time_budget is None:
            return None
        return max(self.time_budget - self.budget.clock.elapsed(), least, 1e-3)

    def _fit_at(self, theta, se_method, seconds, warm: Optimum | None = None):
        """The GLMM fitted with theta fixed (estimates made), started at ``warm``'s
        theta and beta when given (else as ``model_at`` made it)."""
        model = self._model_at(theta, se_method, seconds)
        if warm is not None:
            model.start_at(warm)
        model.estimate()
        return model

    def deviance_at(self, log_theta) -> float:
        """Half the Laplace deviance (minus the log-likelihood) of the fit with theta
        fixed at exp(log_theta), each point fitted once; FitTimeout when the budget
        runs out (a fit it stopped is not a point of the profile)."""
        key = round(float(log_theta), 12)
        fits = self._profile
        if key not in fits:
            if self.budget.expired():
                raise FitTimeout()
            try:
                fits[key] = self._fit_at(math.exp(key), "rx", self._left()).estimates
            except BudgetExhausted:     # started with too little time left to finish
                raise FitTimeout() from None
            if self.progress is not None:
                self.progress("negative binomial theta", len(fits))
            if fits[key].stopped_by_budget:
                del fits[key]           # not a value of the profile: out of time
                raise FitTimeout()
        return -fits[key].llf

    def fit(self) -> GLMMResult:
        self.poisson_fit = self._fit_poisson()
        start = self._start_theta()
        hi = NB_LOG_THETA_BOUNDS[1]
        found = self._search_joint(start)
        if found is not None:
            best, timed_out, warm = found
            self.method = "joint"
        else:
            (best, timed_out), warm = self._search(start), None
            self.method = "profile"
        at_bound = best > hi - AT_BOUND
        if at_bound:
            best = hi     # report the bound itself: the optimizer's end point there is arbitrary
        # the reported fit: theta fixed at its estimate, with the requested SEs
        self.model = self._fit_at(math.exp(best), self.se_method,
                                  self._left(0.25 * (self.time_budget or 0)), warm)
        se_log = float("nan")
        if not at_bound and not timed_out:
            try:
                se_log = (self._log_theta_se_joint() if self.method == "joint"
                          else self._log_theta_se(best))
            except FitTimeout:
                timed_out = True
        est = self.model.estimates
        messages = list(est.messages)
        if at_bound:
            messages.append(
                f"The negative binomial theta ran to its upper limit ({math.exp(hi):.0e}): "
                "the data show no overdispersion beyond the random effects, and the model "
                "reduces to the Poisson GLMM (compare their AICs).")
        if timed_out:
            messages.append("Stopped at the time budget while estimating theta: NOT "
                            "converged.")
        theta = math.exp(best)
        ci = (math.exp(best - Z_975 * se_log), math.exp(best + Z_975 * se_log)) \
            if math.isfinite(se_log) else (float("nan"), float("nan"))
        nb = ThetaEstimate(theta, theta * se_log, ci, self.poisson_fit)
        self.model.estimates = dataclasses.replace(
            est, messages=messages, converged=est.converged and not timed_out, nb=nb)
        return GLMMResult(self.model, self.model.estimates)

    def _start_theta(self) -> float:
        """A moment estimate from the Poisson fit's overdispersion."""
        y, mu = self.poisson_fit.design.y, self.poisson_fit.fittedvalues.to_numpy()
        extra = float(np.mean((y - mu) ** 2 - y))
        return float(np.clip(np.mean(mu) ** 2 / extra, 0.01, 1e5)) if extra > 0 else 1e5

    def _ml_start_theta(self, moment) -> float:
        """The joint search's start: theta maximising the NB2 log-likelihood of the
        counts with the means fixed at the Poisson GLMM's fitted values (a 1-d
        search, no fit; closer to the estimate than the moment one, so fewer
        quasi-Newton steps), within the moment estimate's limits; the moment
        estimate when that says there is no overdispersion."""
        if moment >= 1e5:
            return moment
        p = self.poisson_fit
        y, w = p.design.y, p.design.weights
        mu = p.fittedvalues.to_numpy()
        fam = NegativeBinomial2(1.0, p.family.link)

        def minus_loglik(log_theta):
            f = dataclasses.replace(fam, nb_theta=math.exp(log_theta))
            return -float(np.sum(f.log_density(y, mu, w)))
        lo, hi = math.log(0.01), math.log(1e5)
        opt = _sciopt.minimize_scalar(minus_loglik, bounds=(lo, hi), method="bounded",
                                      options={"xatol": 1e-3})
        return math.exp(float(opt.x)) if np.isfinite(opt.fun) else moment

    # -- theta inside the optimisation
    def _search_joint(self, start):
        """(log theta, whether the budget stopped the search, the joint optimum as
        the reported fit's start), or None when the joint quasi-Newton search is
        not the way (nAGQ = 0, no quadratic model, out of theta's range): then the
        profile's search.  Starts from a fit at ``_ml_start_theta``, itself started
        at the Poisson GLMM's optimum, with that fit's quasi-Newton Hessian in
        (theta, beta) and one finite-difference column for psi."""
        lo, hi = NB_LOG_THETA_BOUNDS
        start = self._ml_start_theta(start)
        try:
            m0 = self._fit_at(start, "rx", self._left(), self.poisson_fit.model.optimum)
        except BudgetExhausted:     # started with too little time left (as deviance_at)
            return math.log(start), True, None
        opt = m0.optimum
        if m0.nAGQ == 0 or opt is None or m0.estimates.stopped_by_budget \
                or not m0.estimates.converged:
            return None
        fun = JointDeviance(m0, psi=True)
        nt = fun.nt
        x0 = fun.point(opt.theta, math.log(start), opt.beta)
        lower = np.concatenate([m0.lower, [0.0]])
        try:
            f0 = fun(x0)
            g0, col = hessian_column(fun, x0, nt, f0, self.budget, fun.warm)
            H_rest = opt.hessian if opt.hessian is not None and \
                opt.hessian.shape == (len(x0) - 1,) * 2 else None
            if H_rest is None:
                g0, H0 = hessian_fd(fun, x0, fx=f0, budget=self.budget)
            else:
                H0 = with_column(H_rest, col, nt)
            nr = newton_refine(fun, x0, f0, g0, H0, lower, self.budget,
                               max_steps=JOINT_MAX_STEPS, tol=JOINT_TOL, warm=fun.warm)
        except FitTimeout:
            return math.log(start), True, None
        finally:
            fun.close()
        if self.progress is not None:
            self.progress("negative binomial theta", nr.steps)
        log_theta = fun.log_theta(float(nr.x[nt]))
        if not nr.ok or not lo < log_theta <= hi:
            return None
        warm = Optimum(nr.x[:nt], nr.x[nt + 1:], nr.fun, m0.devfun.state)
        return log_theta, False, warm

    def _log_theta_se_joint(self) -> float:
        """log theta's SE from the joint Hessian at the reported fit's optimum (its
        finite-difference Hessian in (theta, beta) and one column for log theta):
        the Schur complement is the profile's curvature.  Parameters at a bound
        (a zero variance) are held there, as the profile holds them.  Without
        that Hessian (se_method 'rx', large data) the whole joint Hessian, or the
        profile's curvature (two more fits) when that takes fewer evaluations."""
        model = self.model
        opt = model.optimum
        nt = model.devfun.ntheta
        log_theta = math.log(model.family.nb_theta)
        fun = JointDeviance(model, psi=False)
        x = fun.point(opt.theta, log_theta, opt.beta)
        have_rest = opt.hessian is not None and opt.hessian_is_fd
        if not have_rest and len(x) * (len(x) + 1) > 2 * model.estimates.evaluations:
            fun.close()
            # the reported fit is the profile's point at the estimate
            self._profile[round(log_theta, 12)] = model.estimates
            return self._log_theta_se(log_theta)
        try:
            fx = fun(x)
            if have_rest:
                _, col = hessian_column(fun, x, nt, fx, self.budget, fun.warm)
                H = with_column(opt.hessian, col, nt)
            else:
                _, H = hessian_fd(fun, x, fx=fx, budget=self.budget, warm=fun.warm,
                                  center=fun.warm.save())
        finally:
            fun.close()
        lower = np.concatenate([model.lower, [-np.inf], np.full(len(opt.beta), -np.inf)])
        return schur_se(H, nt, ~(x <= lower))

    # -- the profile over log theta (the fallback)
    def _search(self, start) -> tuple[float, bool]:
        """(log theta maximising the profile, whether the budget stopped the search:
        then the best point so far)."""
        lo, hi = NB_LOG_THETA_BOUNDS
        try:
            opt = _sciopt.minimize_scalar(
                self.deviance_at, bracket=(max(lo, math.log(start) - 1.0),
                                           min(hi, math.log(start) + 1.0)),
                bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
            return float(opt.x), False
        except FitTimeout:
            fits = self._profile
            return (min(fits, key=lambda k: -fits[k].llf) if fits else math.log(start)), True

    def _log_theta_se(self, best) -> float:
        """log theta's SE from the profile's curvature (NaN when it is not convex)."""
        h = PROFILE_STEP
        f = self.deviance_at
        d2 = 2.0 * (f(best + h) - 2.0 * f(best) + f(best - h)) / (h * h)
        return math.sqrt(2.0 / d2) if d2 > 0 else float("nan")
