"""Linear mixed models (lme4's ``lmer``): the exact profiled REML/ML deviance.

For a Gaussian response the conditional modes and the fixed effects solve one
penalized least-squares problem, so for each theta a single solve on the same
blocked factor as the GLMM code gives

    pwrss = |W^(1/2)(y - X beta - Z Lambda u)|^2 + |u|^2
    ML:    d(theta) = log|L|^2 + n (1 + log(2 pi pwrss / n))
    REML:  d(theta) = log|L|^2 + log|RX|^2 + (n - p)(1 + log(2 pi pwrss / (n - p)))

(minus sum(log w) with prior weights), with sigma^2 = pwrss / n (ML) or / (n - p)
(REML) profiled out -- no Laplace approximation.  theta is optimised by BOBYQA; the
fixed-effect covariance is sigma^2 (RX'RX)^-1, as lme4's vcov for lmer.
"""
from __future__ import annotations

import math

import numpy as np

from . import jit
from .. import numfmt
from .design import build_design
from .devfun import theta_start
from .family import Family
from .fit import (SINGULAR_MESSAGE, ModelError, check_model, dropped_rows_message, prepare,
                  timeout_message, unscale, fit_scale_statistics)
from .optimize import BudgetExhausted, bobyqa, check_boundary, is_singular
from .results import GLMMResult

GAUSSIAN = Family("gaussian")


class LMMResult(GLMMResult):
    """A fitted linear mixed model: the GLMM result plus ``scale`` (residual
    variance), ``icc`` (intraclass correlation per random intercept),
    ``reml`` and ``REMLcrit``."""

    def __init__(self, *, reml: bool, **kw):
        super().__init__(**kw)
        self.reml = reml
        self.scale = self.sigma ** 2
        self.method = "REML" if reml else "ML"
        self.REMLcrit = self.deviance if reml else None
        total = sum(self.variance_components.values()) + self.scale
        self.icc = {g: v / total for g, v in self.variance_components.items()}

    def _summary_head(self) -> list:
        return [f"Linear mixed model fit by {'REML' if self.reml else 'maximum likelihood'}",
                f"Formula: {self.formula_as_fitted()}"]

    def _summary_criterion(self) -> list:
        if self.reml:
            return [f"REML criterion at convergence: {self.REMLcrit:.1f}"]
        return super()._summary_criterion()

    def _summary_random(self) -> list:
        lines = super()._summary_random()
        if self.icc:
            lines.append("ICC: " + ", ".join(f"{g} {numfmt.number(v)}"
                                             for g, v in self.icc.items()))
        return lines


def lmer(formula, data, REML=True, *, offset=None, weights=None, groups=None,
         time_budget=None, max_evals=20000, check_design=None) -> LMMResult:
    """Fit a linear mixed model by REML (default) or maximum likelihood.

    Arguments as :func:`xlglmm.glmer` (without family/link/nAGQ).  p-values in the
    result use the normal approximation (lme4 prints none for LMMs); a note says so.
    """
    try:
        return jit.timed(_lmer, formula, data, REML, offset=offset, weights=weights,
                         groups=groups, time_budget=time_budget, max_evals=max_evals,
                         check_design=check_design)
    except BudgetExhausted as e:
        raise ModelError(str(e)) from None


def _lmer(formula, data, REML, *, offset, weights, groups, time_budget,
          max_evals, check_design=None) -> LMMResult:
    design = build_design(formula, data, GAUSSIAN, offset=offset, weights=weights,
                          groups=groups, time_budget=time_budget)
    if check_design is not None:
        check_design(design, GAUSSIAN)
    check_model(design, GAUSSIAN, 1)
    dev, budget = prepare(design, GAUSSIAN, time_budget, max_evals)
    n, p = dev.n, dev.p
    if REML and n <= p:
        raise ModelError("REML needs more observations than fixed effects")
    df = (n - p) if REML else n
    ldw = float(np.sum(np.log(dev.pw[dev.pw > 0])))

    def deviance(theta):
        st = dev.pirls(theta)
        if not st.ok or not np.isfinite(st.logdet):
            return np.inf
        d = st.logdet - ldw + df * (1.0 + math.log(2.0 * math.pi * st.pdev / df))
        if REML and p:
            d += _log_det_rx(st, dev.q2)
        return d

    lower = dev.lower
    res = bobyqa(deviance, theta_start(dev.terms), lower, np.full(dev.ntheta, np.inf),
                 np.full(dev.ntheta, 0.2), 1e-8, 1e-12, max_evals, budget)
    with budget.finishing():
        theta, fval = check_boundary(deviance, res.x, res.fun, lower)
        st = dev.pirls(theta)
    beta = dev.beta_of(st)
    sigma = math.sqrt(st.pdev / df)
    messages = list(design.messages)
    singular = is_singular(theta, lower)
    if singular:
        messages.append(SINGULAR_MESSAGE)
    if res.timed_out:
        messages.append(timeout_message(time_budget))
    if p:
        messages.append("p-values use the normal approximation (z); lme4 reports none for "
                        "linear mixed models, which have t statistics with uncertain df.")
    if design.n_dropped:
        messages.append(dropped_rows_message(design))
    LS = st.LS[dev.q2:, dev.q2:]
    inv = np.linalg.inv(LS) if p else np.zeros((0, 0))
    vcov = sigma ** 2 * (inv.T @ inv) if p else np.zeros((0, 0))
    se_z = fit_scale_statistics(dev, beta, vcov)
    beta, vcov, _, _, _, _ = unscale(dev, beta, vcov, None, None, messages=messages)
    dev.budget = None       # the result's later evaluations are not the fit's
    if REML and dev.x_exp is not None:
        # log|RX|^2 of the data's columns X * 2^e: the REML criterion as defined on them
        fval = fval + 2.0 * math.log(2.0) * float(np.sum(dev.x_exp))
    return LMMResult(
        reml=bool(REML), design=design, devfun=dev, family=GAUSSIAN, nAGQ=1, theta=theta,
        beta=beta, vcov=vcov, vcov_method="RX", vcov_rx=vcov, vcov_exact=None,
        deviance_value=float(fval), state=st, sigma=sigma,
        converged=not res.timed_out and "limit" not in res.message, singular=singular,
        messages=messages, gradient=None, hessian=None, evaluations=dev.evaluations,
        seconds=float("nan"), formula=design.spec.formula.text, se_z=se_z)


def _log_det_rx(st, q2) -> float:
    d = np.diag(st.LS)[q2:]
    return float(2.0 * np.sum(np.log(d)))
