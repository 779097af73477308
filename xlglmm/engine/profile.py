"""Profile likelihoods of a fitted mixed model and the confidence intervals they give
(lme4's ``profile`` / ``confint(method = "profile")``).

For a parameter p the profile is the deviance minimised over all the other
parameters with p held at a value, on the signed square-root scale

    zeta(value) = sign(value - p_hat) * sqrt(deviance_min(value) - deviance_min)

which is a straight line of slope 1/SE where the likelihood is quadratic.  The
interval at level 1 - alpha is where |zeta| <= z_{1 - alpha/2}: unlike the Wald
interval it follows the likelihood's shape (a skewed SD, a rate near 0).

The parameters are lme4's: per random-effects term its SDs and correlations (the
``sdcor`` scale, lme4's order: the lower triangle column by column), the residual
SD ``sigma`` of a linear model, the negative binomial's shape ``nb_theta`` when the
fit estimated it, then the fixed effects.  A term's covariance is rebuilt from its
SDs and correlations as D C (D C)' with C the Cholesky factor of the correlation
matrix, so that an SD walks down to 0 and a correlation to +-1 -- the ends of their
ranges, where the walk stops: a limit there is the end itself, and the interval
says so (lme4 fails or warns there).

Each point minimises the model's own objective over the other parameters by BOBYQA,
starting from the previous point of the walk; the walk goes out from the estimate in
both directions, with steps adapted so that zeta moves by about a sixth of its range
a step, until |zeta| passes ``ZETA_MAX`` (2.6: a 99% interval).  The objectives:

* GLMMs: ``model.deviance(theta, beta)`` (Laplace or AGQ).  Families with a
  dispersion (Gamma) have it plugged in at each point as lme4's deviance does
  (``dev / n``, R's ``Gamma()$aic``): a profile over the other parameters with the
  dispersion concentrated out, not one of the dispersion itself (lme4 1.1-31
  refuses these models: "can't (yet) profile GLMMs with non-fixed scale
  parameters").  Their SDs are walked in theta and reported as ``varcorr`` shows
  them, sigma * theta (lme4's VarCorr), with sigma held at the fit's value.
* Negative binomial fits whose theta was estimated: log theta is one more
  parameter of the deviance; by default (``nb_theta="estimated"``) it is
  minimised over at each point of the other parameters, which is their profile
  likelihood; ``nb_theta="fixed"`` holds it at its estimate, as lme4's confint on
  a glmer.nb fit does (narrower intervals: theta's uncertainty left out).
* Linear mixed models: lme4's ``devfun2``, the log-likelihood in the SDs,
  correlations and sigma with beta at its estimate given theta
  (``LinearMixedModel.ml_deviance``), and for a fixed effect beta_j the model
  without x_j, y - x_j beta_j as its response, refitted by maximum likelihood at
  each point.  REML fits are profiled on the likelihood of their ML refit, as
  lme4 does (the REML criterion cannot compare models that differ in their fixed
  effects): the traces' estimates are the ML ones, and the intervals say so.

nAGQ = 0 fits are refused: their criterion (beta by PIRLS) is not a likelihood.

Every parameter's walk is a self-contained task, ``walk_parameter(problem, name,
budget)``, of the problem built once from the fitted model (``problem_of``): the
deviance function's warm starts are restored before each, so a walk's numbers do not
depend on which walks ran before it (or where).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import interpolate, special

from .covariance import random_effects_scale
from .negbin import NB_LOG_THETA_BOUNDS
from .optimize import Budget, bobyqa, hessian_fd
from .results import sd_label

ZETA_MAX = 2.6          # how far each walk goes: |zeta| beyond a 99% interval's 2.576
MAX_POINTS = 30         # points per direction at most
TARGET_STEP = ZETA_MAX / 6.0
INNER_XTOL = 1e-9
INNER_FTOL = 1e-11
NB_THETA_OPTIONS = ("estimated", "fixed")
NB_THETA_FIXED_NOTE = ("the negative binomial theta held at its estimate (lme4's "
                       "confint on a glmer.nb fit): its uncertainty is left out")
REML_NOTE = ("profiled on the likelihood of the maximum-likelihood refit, as lme4 "
             "does for REML fits")
DISPERSION_NOTE = ("the dispersion is plugged in at each point (dev/n, as lme4's "
                   "deviance), not profiled")
DISPERSION_SD_NOTE = (DISPERSION_NOTE + "; the SD is varcorr's (sigma * theta, as "
                      "lme4's VarCorr) with sigma held at the fit's value")
DISPERSION_FIXED_NOTE = ("the Gamma dispersion held at its maximum-likelihood estimate: "
                         "its uncertainty is left out")
PHI_FIXED_NOTE = "phi held at its maximum-likelihood estimate: its uncertainty is left out"


class ProfileError(ValueError):
    """The model's profile cannot be computed: says why."""


@dataclass
class ProfileTrace:
    """One parameter's profile: values (the estimates' scale) and their signed zeta,
    sorted by value.  ``kind``: "sd", "cor", "sigma", "nb_theta" or "fixed";
    ``lower_bound``/``upper_bound``: the parameter's range (0 for an SD, +-1 for a
    correlation); ``at_lower``/``at_upper``: the walk reached that end inside
    ``ZETA_MAX``; ``note``: how the parameter was profiled, when not plainly."""
    name: str
    kind: str
    estimate: float
    values: np.ndarray
    zeta: np.ndarray
    lower_bound: float = -math.inf
    upper_bound: float = math.inf
    at_lower: bool = False
    at_upper: bool = False
    evaluations: int = 0
    timed_out: bool = False     # the budget stopped a point's minimisation: too narrow
    lower_found: float = float("nan")   # a deviance below the fit's, if the walk met one
    note: str = ""

    @property
    def at_zero(self) -> bool:
        """An SD's walk down reached 0 inside ``ZETA_MAX``."""
        return self.at_lower and self.lower_bound == 0.0

    def limit(self, z: float) -> float:
        """The value where zeta = z (signed), by monotone interpolation of value
        against zeta; the end of the parameter's range when the profile stays
        inside z up to it; NaN when the walk did not reach z."""
        ok = np.isfinite(self.zeta) & np.isfinite(self.values)
        zeta, vals = self.zeta[ok], self.values[ok]
        if z < 0 and self.at_lower and z < zeta.min():
            return float(self.lower_bound)
        if z > 0 and self.at_upper and z > zeta.max():
            return float(self.upper_bound)
        if not (zeta.min() <= z <= zeta.max()):
            return float("nan")
        order = np.argsort(zeta)
        zs, vs = zeta[order], vals[order]
        keep = np.concatenate([[True], np.diff(zs) > 0])
        zs, vs = zs[keep], vs[keep]
        if len(zs) < 3:
            return float(np.interp(z, zs, vs))
        return float(interpolate.PchipInterpolator(zs, vs)(z))


@dataclass
class Profile:
    """Profiles of a fit's parameters (``traces``, by name), and their intervals."""
    traces: dict = field(default_factory=dict)
    seconds: float = float("nan")
    where: str = "in process"   # where the walks ran (engine.workers.Outcome.where)

    def conf_int(self, alpha: float = 0.05):
        """(lower, upper, note) per parameter at level 1 - alpha."""
        import pandas as pd
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be between 0 and 1")
        z = float(special.ndtri(1.0 - alpha / 2.0))
        rows = []
        for name, tr in self.traces.items():
            lo, hi = tr.limit(-z), tr.limit(z)
            rows.append((name, lo, hi, _note(tr, lo, hi, z)))
        return pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows],
                            columns=["lower", "upper", "note"])


def _note(tr: ProfileTrace, lo: float, hi: float, z: float) -> str:
    """What a reader of one interval must know: a budget, a better optimum met, an
    end of the parameter's range reached, a level beyond the walk, how it was
    profiled."""
    notes = []
    if tr.timed_out:
        notes.append("the time budget stopped the profile: the interval may be too narrow")
    if math.isfinite(tr.lower_found):
        notes.append(f"the profile met a deviance {tr.lower_found:.3g} below the fit's: "
                     "the fit is not at the optimum (refit it)")
    if tr.kind == "sd" and lo == 0.0 and tr.at_lower:
        notes.append("the profile stays inside the interval down to 0: the lower limit is "
                     "0 (the data are consistent with no variation between groups)")
    for limit, end, reached, word in ((lo, tr.lower_bound, tr.at_lower, "down"),
                                      (hi, tr.upper_bound, tr.at_upper, "up")):
        if tr.kind == "cor" and reached and limit == end:
            notes.append(f"the profile stays inside the interval {word} to {end:+g}: the "
                         f"limit is {end:+g} (the data cannot tell the correlation from it)")
        elif tr.kind == "nb_theta" and reached and limit == end:
            notes.append(f"the profile stays inside the interval {word} to theta = {end:g}, "
                         "the end of theta's search: the limit is that end")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        if z > ZETA_MAX:
            notes.append(f"the profile was walked to |zeta| = {ZETA_MAX} (a 99% interval): "
                         "this level is beyond it")
        elif not tr.timed_out:
            notes.append(f"the profile is flat: it stays inside this level for {MAX_POINTS} "
                         "steps, the limit is beyond them (no limit)")
    if tr.note:
        notes.append(tr.note)
    return "; ".join(notes)


# -- the random effects' SD/correlation scale

def sdcor_names(terms) -> list:
    """(name, kind) of each term's SDs and correlations, in theta's order (the
    bootstrap's names: ``sd_x|g``, ``cor_x.y|g``)."""
    out = []
    for t in terms:
        for j in range(t.k):
            for i in range(j, t.k):
                if i == j:
                    out.append((sd_label(t.colnames[i], t.name), "sd"))
                else:
                    out.append((f"cor_{t.colnames[j]}.{t.colnames[i]}|{t.name}", "cor"))
    return out


def sdcor_of_theta(terms, theta, scale: float = 1.0) -> np.ndarray:
    """The SDs and correlations of theta's covariances (times ``scale``^2)."""
    out, k0 = [], 0
    for t in terms:
        k = t.k
        L = np.zeros((k, k))
        idx = [(i, j) for j in range(k) for i in range(j, k)]
        for (i, j), v in zip(idx, theta[k0:k0 + len(idx)]):
            L[i, j] = v
        cov = scale * scale * (L @ L.T)
        sd = np.sqrt(np.diag(cov))
        for i, j in idx:
            if i == j:
                out.append(sd[i] if k > 1 else abs(scale) * abs(L[0, 0]))
            else:
                den = sd[i] * sd[j]
                out.append(cov[i, j] / den if den > 0 else 0.0)
        k0 += len(idx)
    return np.array(out)


def theta_of_sdcor(terms, sdcor, scale: float = 1.0):
    """theta of the covariances with these SDs and correlations (divided by
    ``scale``^2): each term's factor D C with C the Cholesky factor of its
    correlation matrix (a scalar term's theta is its SD); None when the
    correlations are not a correlation matrix."""
    out, k0 = [], 0
    for t in terms:
        k = t.k
        idx = [(i, j) for j in range(k) for i in range(j, k)]
        vals = sdcor[k0:k0 + len(idx)]
        k0 += len(idx)
        if k == 1:
            out.append(vals[0] / scale)
            continue
        R = np.eye(k)
        sd = np.zeros(k)
        for (i, j), v in zip(idx, vals):
            if i == j:
                sd[i] = v
            else:
                R[i, j] = R[j, i] = v
        C = _semidefinite_cholesky(R)
        if C is None:
            return None
        L = (sd / scale)[:, None] * C
        out += [L[i, j] for i, j in idx]
    return np.array(out)


def _semidefinite_cholesky(R, tol: float = 1e-12):
    """The lower Cholesky factor of a positive semidefinite matrix (a zero pivot
    gives a zero column: a correlation of +-1), None when R is not semidefinite."""
    k = R.shape[0]
    C = np.zeros((k, k))
    for j in range(k):
        d = R[j, j] - C[j, :j] @ C[j, :j]
        if d < -tol:
            return None
        C[j, j] = math.sqrt(max(d, 0.0))
        for i in range(j + 1, k):
            r = R[i, j] - C[i, :j] @ C[j, :j]
            if C[j, j] > tol:
                C[i, j] = r / C[j, j]
            elif abs(r) > 1e-9:
                return None
    return C


# -- the problems: what a walk evaluates

class ProfileProblem:
    """The parameters of a fitted model on the profile's scale (``names``,
    ``kinds``, ``estimate``, ``lower``, ``upper``), its deviance there, and the
    minimum over the other parameters at each point (``point``).  Built once per
    profile (``problem_of``); ``prepare`` finds the steps' scale (an SE per
    parameter), ``close`` leaves the model as it was."""

    def __init__(self, model, names, kinds, estimate, lower, upper):
        self.model = model
        self.note_of = {}           # kind -> the note every trace of that kind carries
        self.names, self.kinds = list(names), list(kinds)
        self.estimate = np.asarray(estimate, float)
        self.lower, self.upper = np.asarray(lower, float), np.asarray(upper, float)
        self.se = None
        self.fhat = float("nan")
        self.free = np.ones(len(self.names), bool)     # minimised over at each point
        self._saved = model.devfun.warm_starts()

    def deviance(self, x) -> float:
        raise NotImplementedError

    def prepare(self, budget):
        """The deviance at the estimate and the SEs the walks step by."""
        self.fhat = self.deviance(self.estimate)
        self.se = _standard_errors(self.deviance, self.estimate, self.fhat, budget)

    def report(self, j, values):
        """Values of parameter j as the trace reports them."""
        return np.asarray(values, float)

    def start(self, j):
        """The state a walk of parameter j starts from (the estimate)."""
        return self.estimate.copy()

    def point(self, j, value, state, budget):
        """min over the other free parameters of the deviance with parameter j at
        ``value``, from ``state`` (the previous point's): (state, deviance,
        evaluations, stopped by the budget)."""
        x = np.array(state, float)
        x[j] = value
        others = np.flatnonzero(self.free & (np.arange(len(x)) != j))
        if len(others) == 0:
            return x, self.deviance(x), 1, False

        def f(y):
            x[others] = y
            return self.deviance(x)
        lo, hi = self.lower[others], self.upper[others]
        # (BOBYQA's first step must fit a correlation's range)
        step = np.minimum(np.maximum(0.25 * self.se[others], 1e-4), 0.25 * (hi - lo))
        res = bobyqa(f, np.clip(state[others], lo, hi), lo, hi, step, INNER_XTOL, INNER_FTOL,
                     5000, budget)
        x[others] = res.x
        return x.copy(), float(res.fun), res.nevals, res.timed_out

    def restore(self):
        self.model.devfun.restore_warm_starts(self._saved)

    def close(self):
        self.restore()


class GlmmProblem(ProfileProblem):
    """A GLMM: (SDs and correlations, [log nb theta], beta on the fit's scale)."""

    def __init__(self, model, nb_theta="estimated"):
        dev, opt = model.devfun, model.optimum
        self.terms = dev.terms
        sdcor = sdcor_names(dev.terms)
        self.nv = len(sdcor)
        names = [n for n, _ in sdcor]
        kinds = [k for _, k in sdcor]
        est = list(sdcor_of_theta(dev.terms, opt.theta))
        lower = [0.0 if k == "sd" else -1.0 for k in kinds]
        upper = [math.inf if k == "sd" else 1.0 for k in kinds]
        self.family = model.family
        self.nb = model.estimates is not None and model.estimates.nb is not None
        if self.nb:
            names.append("nb_theta")
            kinds.append("nb_theta")
            est.append(math.log(model.family.nb_theta))
            lower.append(NB_LOG_THETA_BOUNDS[0])
            upper.append(NB_LOG_THETA_BOUNDS[1])
        p = len(opt.beta)
        names += list(model.design.x_names)
        kinds += ["fixed"] * p
        super().__init__(model, names, kinds, np.concatenate([est, opt.beta]),
                         lower + [-math.inf] * p, upper + [math.inf] * p)
        self.beta_scale = (np.ones(p) if dev.x_exp is None
                           else np.ldexp(1.0, -np.asarray(dev.x_exp, np.int64)))
        self.nb_fixed = self.nb and nb_theta == "fixed"
        if self.nb_fixed:
            self.free[self.nv] = False
        if self.family.likelihood_dispersion:
            self.note_of = {k: DISPERSION_FIXED_NOTE for k in ("sd", "cor", "fixed")}
        elif self.family.has_phi:
            self.note_of = {k: PHI_FIXED_NOTE for k in ("sd", "cor", "fixed")}
        elif self.family.has_dispersion:
            self.note_of = {"sd": DISPERSION_SD_NOTE, "cor": DISPERSION_NOTE,
                            "fixed": DISPERSION_NOTE}
        elif self.nb_fixed:
            self.note_of = {k: NB_THETA_FIXED_NOTE for k in ("sd", "cor", "fixed")}
        self._nb_theta = None
        # a dispersion family's SDs are reported as varcorr reports them (sigma * theta),
        # so that the profile's estimate is the block's SD
        self.sd_scale = random_effects_scale(self.family, model.estimates.sigma) \
            if self.family.has_dispersion else 1.0

    def deviance(self, x) -> float:
        theta = theta_of_sdcor(self.terms, x[:self.nv])
        if theta is None:
            return math.inf
        first = self.nv
        if self.nb:
            self._set_nb_theta(math.exp(x[self.nv]))
            first += 1
        return self.model.deviance(theta, x[first:])

    def _set_nb_theta(self, theta):
        if theta != self._nb_theta:
            self.model.devfun.set_family(dataclasses.replace(self.family, nb_theta=theta))
            self._nb_theta = theta

    def prepare(self, budget):
        opt = self.model.optimum
        scalar = all(t.k == 1 for t in self.terms) and not self.nb
        if scalar and opt.hessian is not None and opt.hessian_is_fd:
            # theta is the SDs here: the fit's finite-difference Hessian is this one's
            self.fhat = self.deviance(self.estimate)
            self.se = _se_of_hessian(opt.hessian, self.estimate)
        else:
            super().prepare(budget)

    def report(self, j, values):
        values = np.asarray(values, float)
        if self.kinds[j] == "nb_theta":
            return np.exp(values)
        if self.kinds[j] == "fixed":
            return values * self.beta_scale[j - len(self.names) + len(self.beta_scale)]
        if self.kinds[j] == "sd" and self.family.has_dispersion:
            return values * self.sd_scale
        return values

    def restore(self):
        if self.nb:
            self._set_nb_theta(self.family.nb_theta)
        super().restore()


class LmmProblem(ProfileProblem):
    """A linear mixed model, on the likelihood of its ML fit: (SDs and correlations,
    sigma, beta on the data's scale)."""

    def __init__(self, model, budget: Budget | None = None):
        ml = model if not model.reml else model.refit(
            model.design.y, reml=False, time_budget=_seconds_left(budget)).model
        self.ml = ml        # the model evaluated (``model`` itself when fitted by ML)
        opt, est = ml.optimum, ml.estimates
        dev = ml.devfun
        self.terms = dev.terms
        sdcor = sdcor_names(dev.terms)
        self.nv = len(sdcor) + 1        # and sigma
        kinds = [k for _, k in sdcor] + ["sigma"]
        p = len(est.beta)
        super().__init__(
            ml, [n for n, _ in sdcor] + ["sigma"] + list(model.design.x_names),
            kinds + ["fixed"] * p,
            np.concatenate([sdcor_of_theta(dev.terms, opt.theta, est.sigma), [est.sigma],
                            est.beta]),
            [0.0 if k in ("sd", "sigma") else -1.0 for k in kinds] + [-math.inf] * p,
            [1.0 if k == "cor" else math.inf for k in kinds] + [math.inf] * p)
        self.free[self.nv:] = False     # beta is the ML estimate given theta
        self.note_of = ({k: REML_NOTE for k in ("sd", "cor", "sigma", "fixed")}
                        if model.reml else {})
        self._reduced = {}

    def deviance(self, x) -> float:
        sigma = x[self.nv - 1]
        theta = theta_of_sdcor(self.terms, x[:self.nv - 1], sigma) if sigma > 0 else None
        if theta is None:
            return math.inf
        return self.ml.ml_deviance(theta, sigma)

    def prepare(self, budget):
        nv = self.nv
        self.fhat = self.deviance(self.estimate)
        se = _standard_errors(lambda v: self.deviance(np.concatenate([v, self.estimate[nv:]])),
                              self.estimate[:nv], self.fhat, budget)
        self.se = np.concatenate([se, self.ml.estimates.vcov.diagonal() ** 0.5])

    def start(self, j):
        return self.estimate.copy() if j < self.nv else None

    def point(self, j, value, state, budget):
        if j < self.nv:
            return super().point(j, value, state, budget)
        # beta_j held: the model without x_j, its response y - x_j value, by ML
        d = self.ml.design
        xj = d.X[:, j - self.nv]
        y = d.y - xj * value
        left = _seconds_left(budget)
        if state is None:
            reduced = dataclasses.replace(
                d, X=np.delete(d.X, j - self.nv, axis=1), y=y, messages=[],
                x_names=[n for i, n in enumerate(d.x_names) if i != j - self.nv])
            model = type(self.ml)(reduced, reml=False, time_budget=left)
            res = model.fit()
        else:
            res = state.refit(y, time_budget=left)
            model = res.model
        # (an LMM's result does not flag a budget stop: its note says it; the clock does)
        return model, float(res.deviance), int(res.evaluations), budget.expired()


def _seconds_left(budget: Budget | None) -> float | None:
    """What is left of ``budget`` for a refit (None: no budget)."""
    if budget is None or budget.seconds is None:
        return None
    return max(budget.seconds - budget.clock.elapsed(), 1e-3)


def _se_of_hessian(H, x) -> np.ndarray:
    """sqrt(diag(2 H^-1)) of a deviance Hessian, 0.1 max(|x|, 1) where it is not
    positive (a boundary estimate): the walk's step scale."""
    try:
        v = np.diag(2.0 * np.linalg.inv(H))
    except np.linalg.LinAlgError:
        v = np.full(len(x), np.nan)
    se = np.sqrt(np.where(np.isfinite(v) & (v > 0), v, np.nan))
    return np.where(np.isfinite(se), se, 0.1 * np.maximum(np.abs(x), 1.0))


def _standard_errors(fun, x, fx, budget) -> np.ndarray:
    """The steps' scale from the finite-difference Hessian of ``fun`` at x."""
    _, H = hessian_fd(fun, x, fx=fx, budget=budget)
    return _se_of_hessian(H, x)


# -- the walks

def problem_of(model, nb_theta: str = "estimated", budget: Budget | None = None
               ) -> ProfileProblem:
    """The profile's problem of a fitted model (a GLMM, an LMM, an NB fit), or a
    ProfileError saying why there is none."""
    from .lmm import LinearMixedModel
    if nb_theta not in NB_THETA_OPTIONS:
        raise ProfileError("nb_theta must be 'estimated' or 'fixed'")
    if getattr(model, "optimum", None) is None:
        raise ProfileError("profile needs a fitted model")
    if model.nAGQ == 0:
        raise ProfileError("profiles need the Laplace or AGQ deviance (nAGQ >= 1): the "
                           "nAGQ = 0 criterion is not a likelihood")
    if isinstance(model, LinearMixedModel):
        return LmmProblem(model, budget)
    return GlmmProblem(model, nb_theta)


def parameter_names(model) -> list:
    """The profiled parameters' names: each term's SDs and correlations (lme4's
    order), ``sigma`` of a linear model, ``nb_theta`` of an NB fit that estimated
    it, then the fixed effects."""
    from .lmm import LinearMixedModel
    names = [n for n, _ in sdcor_names(model.devfun.terms)]
    if isinstance(model, LinearMixedModel):
        names.append("sigma")
    elif model.estimates is not None and model.estimates.nb is not None:
        names.append("nb_theta")
    return names + list(model.design.x_names)


def walk_parameter(problem: ProfileProblem, name: str, budget: Budget) -> ProfileTrace:
    """One parameter's profile: zeta along it, out from the estimate both ways (a
    task of its own: the deviance function starts from the fit's warm starts)."""
    problem.restore()
    j = problem.names.index(name)
    est, se = problem.estimate[j], problem.se[j]
    lo, hi = problem.lower[j], problem.upper[j]
    values, zetas = [est], [0.0]
    reached = {-1.0: False, 1.0: False}
    timed_out = False
    evals = 0
    fmin = problem.fhat
    for direction in (-1.0, 1.0):
        state = problem.start(j)
        step = 0.5 * se
        value, z_prev = est, 0.0
        for _ in range(MAX_POINTS):
            value = value + direction * step
            boundary = False
            if value <= lo or value >= hi:
                value, boundary = (lo if direction < 0 else hi), True
            state, f, n, stopped = problem.point(j, value, state, budget)
            evals += n
            fmin = min(fmin, f)
            if stopped or budget.expired():
                timed_out = True
            z = direction * math.sqrt(max(f - problem.fhat, 0.0))
            values.append(value)
            zetas.append(z)
            if abs(z) >= ZETA_MAX or timed_out:
                break
            if boundary:
                reached[direction] = True
                break
            dz = abs(z - z_prev)
            step *= min(2.0, max(0.5, TARGET_STEP / dz)) if dz > 0 else 2.0
            z_prev = z
        if timed_out:
            break
    values, zetas = np.array(values), np.array(zetas)
    order = np.argsort(values)
    kind = problem.kinds[j]
    below = problem.fhat - fmin if fmin < problem.fhat - 1e-6 else float("nan")
    return ProfileTrace(name, kind, float(problem.report(j, est)),
                        problem.report(j, values[order]), zetas[order],
                        float(problem.report(j, lo)), float(problem.report(j, hi)),
                        reached[-1.0], reached[1.0], evals, timed_out, below,
                        problem.note_of.get(kind, ""))


def profile(model, which=None, budget_seconds=None, nb_theta="estimated", *,
            workers=None, client=None) -> Profile:
    """The profiles of a fitted model's parameters (all, or the names in ``which``);
    ``nb_theta``: "estimated" (re-estimated at each point) or "fixed" (lme4's).
    Each parameter's walk is a task of ``engine.workers.run``: ``client`` (a
    ``dask.distributed.Client``) spreads them over a cluster, ``workers`` sets the
    local processes (by default the walks stay in this process unless the rest of
    them would take over ``workers.POOL_WORTH_SECONDS``); every walk starts from the
    fit's own state, so the traces are the same wherever they ran."""
    from . import workers as pool
    if model.family.zero_inflated:
        # each point of a profile would have to re-estimate the zero-inflation
        # coefficients (and theta) with the others; holding them at their estimates
        # gives intervals that are too narrow
        raise ProfileError("profile intervals are not available for zero-inflated models "
                           "yet: use the Wald or bootstrap intervals")
    t0 = time.perf_counter()
    names = parameter_names(model)
    if isinstance(which, str):
        which = [which]
    if which is not None:
        unknown = set(which) - set(names)
        if unknown:
            raise ProfileError(f"no parameter named {', '.join(sorted(unknown))}")
        names = [n for n in names if n in which]
    budget = Budget(budget_seconds, 10 ** 7)
    problem = problem_of(model, nb_theta, budget)
    out = Profile()
    try:
        problem.prepare(budget)
        left = _seconds_left(budget)
        deadline = None if left is None else time.time() + left
        done = pool.run(_walk_task, (problem, tuple(names), deadline), range(len(names)),
                        client=client, workers=workers, time_budget=left)
    finally:
        problem.close()
    traces = dict(zip(done.indices, done.results))
    for k, name in enumerate(names):
        if k in traces:
            out.traces[name] = traces[k]
        else:       # the budget ran out before this walk started
            out.traces[name] = _unwalked(problem, name)
    out.where = done.where
    out.seconds = time.perf_counter() - t0
    return out


def _walk_task(shared, k: int) -> ProfileTrace:
    """Walk parameter ``k`` of the shared (problem, names, deadline): a task of
    ``workers.run``, with what is left of the profile's time budget."""
    problem, names, deadline = shared
    left = None if deadline is None else max(deadline - time.time(), 1e-3)
    return walk_parameter(problem, names[k], Budget(left, 10 ** 7))


def _unwalked(problem: ProfileProblem, name: str) -> ProfileTrace:
    """The trace of a parameter the time budget left no time to walk: its estimate
    only, marked as stopped (its interval is NaN, with the budget's note)."""
    j = problem.names.index(name)
    est = float(problem.report(j, problem.estimate[j]))
    return ProfileTrace(name, problem.kinds[j], est, np.array([est]), np.array([0.0]),
                        float(problem.report(j, problem.lower[j])),
                        float(problem.report(j, problem.upper[j])), timed_out=True,
                        note=problem.note_of.get(problem.kinds[j], ""))
