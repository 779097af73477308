"""Negative binomial (NB2) GLMMs with theta estimated by maximum likelihood (the
job of lme4's ``glmer.nb``).

theta is found by the Laplace log-likelihood profiled over log(theta) -- each
point a full fit with theta fixed -- maximised by bounded Brent; its SE from the
profile's curvature.  lme4's glmer.nb alternates theta and the GLMM instead; both
aim at the same maximum.  The estimate of theta is a stage of the model's fit, so
the result is built once, with theta, its SE and CI, the parameter count and the
notes already right.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize as _sciopt

from .family import Family
from .model import ModelError
from .optimize import Budget, BudgetExhausted, FitTimeout
from .results import GLMMResult

NB_LOG_THETA_BOUNDS = (math.log(1e-3), math.log(1e6))
PROFILE_STEP = 0.05         # log(theta) step of the profile's curvature (theta's SE)
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


class NegativeBinomialModel:
    """An NB2 GLMM whose theta is estimated.  ``fit_poisson()`` fits the Poisson
    GLMM (the start); ``fit_at(theta, se_method, time_budget)`` returns the fitted
    GLMM (``model.GeneralizedLinearMixedModel``, estimates made) with theta fixed.
    All of it shares one time budget: each nested fit gets the time left."""

    def __init__(self, fit_poisson, fit_at, *, se_method, time_budget, max_evals,
                 progress=None):
        self.budget = Budget(time_budget, max_evals)
        self.time_budget = time_budget
        self.se_method = se_method
        self.progress = progress
        self._fit_poisson = fit_poisson
        self._fit_at = fit_at
        self._profile: dict = {}        # log theta (rounded) -> Estimates at that theta
        self.poisson_fit: GLMMResult | None = None
        self.model = None               # the GLMM at the estimated theta

    def _left(self, least=0.0):
        """The budget's time left for a nested fit (each has its own clock): the
        whole estimate stays within the budget (plus the grace of the last fit)."""
        if self.time_budget is None:
            return None
        return max(self.time_budget - self.budget.clock.elapsed(), least, 1e-3)

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
        best, timed_out = self._search(start)
        hi = NB_LOG_THETA_BOUNDS[1]
        at_bound = best > hi - 0.05
        if at_bound:
            best = hi     # report the bound itself: the optimizer's end point there is arbitrary
        # the reported fit: theta fixed at its estimate, with the requested SEs
        self.model = self._fit_at(math.exp(best), self.se_method,
                                  self._left(0.25 * (self.time_budget or 0)))
        se_log = float("nan")
        if not at_bound and not timed_out:
            try:
                se_log = self._log_theta_se(best)
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
