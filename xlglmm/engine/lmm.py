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

The quantities of a theta come from the model's cross-products, computed once
(``lmm_moments``: no pass over the rows per theta); the rows are read again only
for the fitted values at the optimum (``state_at``).

``LinearMixedModel`` is the model object (``profiled_deviance``, ``refit``, as
model.py's GLMM); ``lmer`` is a thin function over it.
"""
from __future__ import annotations

import dataclasses
import math
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import jit, pirls
from .. import numfmt
from .covariance import fit_scale_statistics, unscale
from .design import build_design
from .devfun import PirlsState, theta_start
from .family import Family, conditional_aic_fast
from .linalg import Factor
from .lmm_moments import LmmMoments
from .model import (DEFAULT_MAX_EVALS, SINGULAR_MESSAGE, Estimates, MixedModel, ModelError,
                    Optimum, check_model, timeout_message)
from .optimize import (ROUNDOFF_LIMITED, BudgetExhausted, bobyqa, check_boundary,
                       is_singular)
from .results import GLMMResult

GAUSSIAN = Family("gaussian")


#: the result's note on its p-values (a block with Satterthwaite's df replaces it)
NORMAL_APPROXIMATION_NOTE = ("p-values use the normal approximation (z); lme4 reports none "
                             "for linear mixed models, which have t statistics with "
                             "uncertain df.")


class LMMResult(GLMMResult):
    """A fitted linear mixed model: the GLMM result plus ``scale`` (residual
    variance), ``icc_by_group`` (intraclass correlation per random intercept),
    ``reml`` and ``REMLcrit``."""

    def __init__(self, model, estimates):
        super().__init__(model, estimates)
        reml = self.reml = model.reml
        self.scale = self.sigma ** 2
        self.method = "REML" if reml else "ML"
        self.REMLcrit = self.deviance if reml else None

    @cached_property
    def icc_by_group(self) -> dict:
        """The intraclass correlation of each random intercept term alone: its
        variance over the sum of the intercepts' variances and the residual's
        (computed on first access, as the result's other tables)."""
        total = sum(self.variance_components.values()) + self.scale
        return {g: v / total for g, v in self.variance_components.items()}

    def t_tests(self, ddf: str = "Satterthwaite") -> pd.DataFrame:
        """The fixed effects' t tests: estimate, SE, df, t and p, with Satterthwaite's
        degrees of freedom (``ddf="Satterthwaite"``, lmerTest's default; NaN df and p
        where they are undefined: a Hessian that is not positive definite) or the
        normal approximation the summary and blocks use (``ddf="z"``: df
        infinite, p from z)."""
        if ddf == "z":
            df = np.full(len(self.fe_params), np.inf)
            p = self.fe_pvalues.to_numpy()
        elif ddf == "Satterthwaite":
            from .satterthwaite import t_test
            df, _, p = t_test(self)
        else:
            raise ValueError("ddf must be 'Satterthwaite' or 'z'")
        return pd.DataFrame({"estimate": self.fe_params, "se": self.fe_bse, "df": df,
                             "t": self.fe_zvalues, "p": p})

    def _summary_head(self) -> list:
        return [f"Linear mixed model fit by {'REML' if self.reml else 'maximum likelihood'}",
                f"Formula: {self.formula_as_fitted()}"]

    def _summary_criterion(self) -> list:
        if self.reml:
            return [f"REML criterion at convergence: {self.REMLcrit:.1f}"]
        return super()._summary_criterion()

    def _summary_random(self) -> list:
        lines = super()._summary_random()
        if self.icc_by_group:
            lines.append("ICC: " + ", ".join(f"{g} {numfmt.number(v)}"
                                             for g, v in self.icc_by_group.items()))
        return lines


def lmer(formula, data, REML=True, *, offset=None, weights=None, groups=None,
         time_budget=None, max_evals=DEFAULT_MAX_EVALS, check_design=None) -> LMMResult:
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
    return LinearMixedModel(design, REML, time_budget=time_budget,
                            max_evals=max_evals).fit()


class LinearMixedModel(MixedModel):
    """A linear mixed model to be fitted by REML (``reml``) or maximum likelihood:
    theta by BOBYQA on the exact profiled deviance, beta and sigma profiled out."""

    nAGQ = 1        # the deviance is exact: no Laplace approximation to choose

    def __init__(self, design, reml=True, *, time_budget=None, max_evals=DEFAULT_MAX_EVALS,
                 devfun=None, moments_like=None):
        """``devfun``: a deviance function of this design already (a refit's, see
        ``MixedModel``), and then ``moments_like`` the ``LmmMoments`` of the model
        it was made from, whose cross-products of [Z, X] it shares."""
        super().__init__(design, GAUSSIAN, time_budget=time_budget, max_evals=max_evals,
                         devfun=devfun)
        dev = self.devfun
        n, p = dev.n, dev.p
        if reml and n <= p:
            raise ModelError("REML needs more observations than fixed effects")
        self.reml = bool(reml)
        self._df = (n - p) if reml else n
        # sum of the log prior weights: a constant of the Gaussian deviance
        self.log_weights = float(np.sum(np.log(dev.pw[dev.pw > 0])))
        self.moments = LmmMoments(dev, moments_like if devfun is not None else None)
        # the optimizer's evaluations reuse these arrays (``_terms``)
        self._work = (self.moments.new_factor(), np.zeros((dev.ng1, dev.k1)),
                      np.zeros(self.moments.r))
        self._centre = None     # (theta, state) to recentre the moments at, see _recentre
        # groups that explain all but ~1e-3 of y's variation (beyond OLS) leave the
        # cross-products too few digits: such a model is solved on the rows throughout
        self.on_rows = not self.moments.conditioned(theta_start(dev.terms), *self._work)

    def _same_model(self, design, **settings):
        kw = dict(reml=self.reml, time_budget=self.time_budget, max_evals=self.max_evals)
        kw.update(settings)
        if kw.get("devfun") is not None:    # this design, another response
            kw["moments_like"] = self.moments
        return LinearMixedModel(design, **kw)

    def ml_deviance(self, theta, sigma=None) -> float:
        """-2 log-likelihood at theta and the residual SD ``sigma`` (None: its
        maximum-likelihood value at theta), beta at its estimate given theta (which
        sigma does not change): lme4's ``devfun2`` of a linear model, the function
        its profiles walk (the REML criterion cannot compare fits that differ in
        their fixed effects)."""
        dev = self.devfun
        ok, logdet, _, pwrss = self._terms(theta)
        if not ok:
            return np.inf
        s2 = pwrss / dev.n if sigma is None else sigma * sigma
        if not s2 > 0.0:
            return np.inf
        return logdet - self.log_weights + pwrss / s2 + dev.n * math.log(2.0 * math.pi * s2)

    def profiled_deviance(self, theta) -> float:
        """The REML criterion (or -2 log-likelihood for ML) at theta, beta and sigma
        profiled out: the objective of the fit, on the fit's scale of rescaled
        columns (``devfun.x_exponents``; the REML criterion of the data's columns
        adds 2 log(2) sum(e), see ``estimate``)."""
        df = self._df
        ok, logdet, ldrx, pwrss = self._terms(theta)
        if not ok or not pwrss > 0.0:
            return np.inf
        d = logdet - self.log_weights + df * (1.0 + math.log(2.0 * math.pi * pwrss / df))
        if self.reml and self.devfun.p:
            d += ldrx
        return d

    def _terms(self, theta) -> tuple:
        """(ok, log|L|^2, log|RX|^2, pwrss) at theta: ``solve``'s numbers alone, its
        arrays this model's work arrays (the optimizer's evaluations, ~10 us of
        Python each spared)."""
        self._before_evaluation()
        got = None if self.on_rows else self.moments.deviance_terms(theta, *self._work)
        if got is not None:
            return got
        ok, st, ldrx = self._on_the_rows(theta)
        if not ok:
            return False, -np.inf, -np.inf, np.inf
        for mine, rows_ in zip(self._work[0], (st.Dchol, st.Cval, st.LS)):
            mine[...] = rows_       # (callers read the factor _terms filled)
        return True, st.logdet, ldrx, st.pdev

    def solve(self, theta) -> MomentSolve:
        """The penalized least-squares solve at theta from the moments: log|L|^2,
        log|RX|^2, pwrss, the factor and the modes (``MomentSolve``), in new
        arrays."""
        self._before_evaluation()
        got = None if self.on_rows else self.moments.evaluate(theta)
        if got is None:
            ok, st, ldrx = self._on_the_rows(theta)
            return MomentSolve(ok, st.logdet, ldrx, st.pdev,
                               Factor(st.Dchol.copy(), st.Cval.copy(), st.LS.copy()),
                               st.u1.copy(), st.v.copy())
        ev, factor, u1, v = got
        return MomentSolve(bool(ev.ok), ev.logdet, ev.ldrx, ev.pwrss, factor, u1, v)

    def _before_evaluation(self):
        """What every evaluation does first: the budget check inside a long fit (as
        ``devfun.pirls``), the recentring after the fit (``_recentre``), the count."""
        dev = self.devfun
        if dev.budget is not None and dev.piece_iterations:
            dev.budget.check_inside()
        if self._centre is not None:
            self._recentre(*self._centre)
        dev.evaluations += 1

    def _on_the_rows(self, theta) -> tuple:
        """(ok, PIRLS state, log|RX|^2) of the row-based solve at theta, where the
        moments cancel too much (``LmmMoments.trusted``): this model takes the rows
        from now on."""
        dev = self.devfun
        self.on_rows = True
        st = dev.pirls(theta)
        ok = bool(st.ok) and bool(np.isfinite(st.logdet))
        return ok, st, log_det_rx(st, dev.q2) if ok and dev.p else 0.0

    def _recentre(self, theta, st: PirlsState):
        """Take the moments' response part about the state's estimates (see
        ``lmm_moments.LmmMoments.recentre``): the later evaluations near them
        (Satterthwaite's df, profiles) get pwrss without cancellation.  Done at
        the first evaluation after the fit (``_centre``): a fit alone needs none."""
        dev = self.devfun
        self._centre = None
        if not st.ok:
            return
        b = dev.b_by_term(theta, st)
        bv = np.concatenate([x.reshape(-1) for x in b[1:]] + [st.v[dev.q2:]])
        self.moments.recentre(b[0], bv)

    def state_at(self, theta) -> PirlsState:
        """The state at theta as ``devfun.pirls`` leaves it (modes, beta in ``v``,
        factor, fitted values, pwrss), the solve from the moments and one pass over
        the rows for the linear predictor (and pwrss from the residuals)."""
        dev = self.devfun
        st = self.solve(theta)
        u1, v = st.u1, st.v
        if not st.ok:
            return PirlsState(pirls.PIRLS_NOT_PD, 1, np.inf, np.inf, np.inf, u1, v,
                              st.factor.Dchol, st.factor.Cval, st.factor.LS,
                              np.full(dev.n, np.nan), np.full(dev.n, np.nan), True, np.inf)
        dev.set_theta(theta)
        eta = np.empty(dev.n)
        mu = np.empty(dev.n)
        rows = dev.rows(dev.offset)
        pdev = pirls.penalized_deviance(dev._fd, rows, dev.layout(True), u1, v, eta, mu)
        aic = conditional_aic_fast(dev.y, mu, dev.pw, dev._fd, dev.aic_const)
        ussq = pirls.penalty(u1, v, dev.q2)
        f = st.factor
        state = PirlsState(pirls.PIRLS_OK, 1, st.logdet, float(pdev), float(aic), u1, v,
                           f.Dchol, f.Cval, f.LS, mu, eta, True, float(ussq))
        dev.state = state
        return state

    def fit(self) -> LMMResult:
        """Fit the model: its result (the estimates in ``self.estimates``)."""
        return LMMResult(self, self.estimate())

    def estimate(self) -> Estimates:
        """theta by BOBYQA from lme4's start (or a previous fit's optimum, ``refit``),
        lme4's boundary check, then beta, sigma and sigma^2 (RX'RX)^-1 at theta."""
        dev, budget, lower = self.devfun, self.budget, self.lower
        theta0 = theta_start(dev.terms) if self._warm_start is None else self._warm_start.theta
        upper = np.full(dev.ntheta, np.inf)
        res = bobyqa(self.profiled_deviance, theta0, lower, upper,
                     np.full(dev.ntheta, 0.2), 1e-8, 1e-12, self.max_evals, budget)
        if res.code == ROUNDOFF_LIMITED and not res.timed_out:
            # NLopt's roundoff stop (1 refit in ~400 from a warm start): BOBYQA again
            # from where it stopped, with a small first step; a second stop at the same
            # deviance (to 1e-10) is that optimum, which BOBYQA cannot refine further
            again = bobyqa(self.profiled_deviance, res.x, lower, upper,
                           np.full(dev.ntheta, 0.01), 1e-8, 1e-12, self.max_evals, budget)
            res = restarted(res, again)
        with budget.finishing():
            theta, fval = check_boundary(self.profiled_deviance, res.x, res.fun, lower)
            st = self.state_at(theta)
            self._centre = (theta, st)
        beta = dev.beta_of(st)
        self.optimum = Optimum(theta, beta, fval, st, message=res.message,
                               timed_out=res.timed_out)
        self.estimates = self._estimates(self.optimum)
        dev.budget = None       # the result's later evaluations are not the fit's
        return self.estimates

    def _estimates(self, opt: Optimum) -> Estimates:
        dev, p = self.devfun, self.devfun.p
        st, fval = opt.state, opt.deviance
        sigma = math.sqrt(st.pdev / self._df)
        messages = list(self.design.messages)
        singular = is_singular(opt.theta, self.lower)
        if singular:
            messages.append(SINGULAR_MESSAGE)
        if opt.timed_out:
            messages.append(timeout_message(self.time_budget))
        elif "limit" in opt.message:
            messages.append(f"Optimizer: {opt.message}; results may be unreliable.")
        if p:
            messages.append(NORMAL_APPROXIMATION_NOTE)
        self._finish_messages(messages)
        vcov = sigma ** 2 * unscaled_cov(st, dev.q2)
        se_z = fit_scale_statistics(dev, opt.beta, vcov)
        beta, vcov, _, _, _, _ = unscale(dev, opt.beta, vcov, None, None, messages=messages)
        if self.reml and dev.x_exp is not None:
            # log|RX|^2 of the data's columns X * 2^e: the REML criterion as defined on them
            fval = fval + 2.0 * math.log(2.0) * float(np.sum(dev.x_exp))
        return Estimates(theta=opt.theta, beta=beta, deviance=float(fval), state=st,
                         sigma=sigma, vcov=vcov, vcov_method="RX", vcov_rx=vcov,
                         vcov_exact=None, se_z=se_z, gradient=None, hessian=None,
                         converged=not opt.timed_out and "limit" not in opt.message,
                         singular=singular, messages=messages,
                         # (lmer has never set the flag: its note says it all)
                         stopped_by_budget=False, evaluations=dev.evaluations)


def restarted(first, again):
    """The answer of BOBYQA restarted after a roundoff stop (``first``): the
    restart's own (its point and message: a normal stop, the evaluation limit, the
    budget) when it went on from there, or -- when it too stopped by roundoff -- the
    better point, which counts as converged when the two stops agree to 1e-10 (an
    optimum BOBYQA cannot refine further) and keeps the roundoff message otherwise."""
    if again.code != ROUNDOFF_LIMITED:
        return again if again.fun <= first.fun else dataclasses.replace(
            first, message=again.message or first.message, timed_out=again.timed_out)
    best = again if again.fun <= first.fun else first
    if abs(again.fun - first.fun) <= 1e-10 * max(1.0, abs(first.fun)):
        return dataclasses.replace(best, message="")
    return best


class MomentSolve(NamedTuple):
    """``LinearMixedModel.solve``'s answer: what the deviance needs (``logdet`` of
    the random-effects part, ``ldrx`` = log|RX|^2, ``pdev`` = pwrss), the factor
    (``LS`` read as a PIRLS state's, for ``unscaled_cov``) and the modes (``u1``;
    ``v``: the rest's u, then beta)."""

    ok: bool
    logdet: float
    ldrx: float
    pdev: float
    factor: object
    u1: np.ndarray
    v: np.ndarray

    @property
    def LS(self):
        return self.factor.LS


def log_det_rx(st, q2) -> float:
    """log|RX|^2 of a PIRLS state: the fixed effects' part of the factor (the REML
    criterion's extra term)."""
    d = np.diag(st.LS)[q2:]
    return float(2.0 * np.sum(np.log(d)))


def unscaled_cov(st, q2) -> np.ndarray:
    """(RX'RX)^{-1} of a PIRLS state (``LS[q2:, q2:]`` is RX's lower factor): the
    fixed effects' covariance is sigma^2 times it."""
    LS = st.LS[q2:, q2:]
    if LS.shape[0] == 0:
        return np.zeros((0, 0))
    inv = np.linalg.inv(LS)
    return inv.T @ inv
