"""Profile likelihoods of a fitted GLMM and the confidence intervals they give
(lme4's ``profile`` / ``confint(method = "profile")``).

For a parameter p (a fixed effect, or the SD of a scalar random-effects term) the
profile is the deviance minimised over all the other parameters with p held at a
value, on the signed square-root scale

    zeta(value) = sign(value - p_hat) * sqrt(deviance_min(value) - deviance_min)

which is a straight line of slope 1/SE where the likelihood is quadratic.  The
interval at level 1 - alpha is where |zeta| <= z_{1 - alpha/2}: unlike the Wald
interval it follows the likelihood's shape (a skewed SD, a rate near 0).  Each point
minimises the model's own objective (``model.deviance(theta, beta)``, Laplace or
AGQ) over the other parameters by BOBYQA, starting from the previous point of the
walk; the walk goes out from the estimate in both directions, with steps adapted so
that zeta moves by about a sixth of its range a step, until |zeta| passes
``zeta_max`` (2.6: a 99% interval) -- or, for an SD, until it reaches 0: then the
lower limit is 0 when the profile is still inside the level there, and the interval
says so (lme4 fails or warns there).

Parameters are those of the fit's scale (``model.optimum``); fixed effects of
rescaled columns are reported on the data's scale.  Not yet: correlated
random-effects terms, families with a dispersion parameter, linear mixed models
(their own profiled deviance), nAGQ = 0 fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import interpolate, special

from .optimize import Budget, bobyqa, hessian_fd
from .results import sd_label

ZETA_MAX = 2.6          # how far each walk goes: |zeta| beyond a 99% interval's 2.576
MAX_POINTS = 30         # points per direction at most
TARGET_STEP = ZETA_MAX / 6.0
INNER_XTOL = 1e-9
INNER_FTOL = 1e-11


class ProfileError(ValueError):
    """The model's profile cannot be computed (yet): says why."""


@dataclass
class ProfileTrace:
    """One parameter's profile: values (data scale) and their signed zeta, sorted
    by value; ``at_zero``: the SD's walk down reached 0 inside ``ZETA_MAX``."""
    name: str
    kind: str                   # "sd" or "fixed"
    estimate: float
    values: np.ndarray
    zeta: np.ndarray
    at_zero: bool = False
    evaluations: int = 0
    timed_out: bool = False     # the budget stopped a point's minimisation: too narrow
    lower_found: float = float("nan")   # a deviance below the fit's, if the walk met one

    def limit(self, z: float) -> float:
        """The value where zeta = z (signed), by monotone interpolation of value
        against zeta; 0 for an SD whose profile stays above z down to 0; NaN when
        the walk did not reach z (beyond ZETA_MAX)."""
        ok = np.isfinite(self.zeta) & np.isfinite(self.values)
        zeta, vals = self.zeta[ok], self.values[ok]
        if z < 0 and self.at_zero and z < zeta.min():
            return 0.0
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

    def conf_int(self, alpha: float = 0.05):
        """(lower, upper, note) per parameter at level 1 - alpha."""
        import pandas as pd
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be between 0 and 1")
        z = float(special.ndtri(1.0 - alpha / 2.0))
        rows = []
        for name, tr in self.traces.items():
            lo, hi = tr.limit(-z), tr.limit(z)
            note = ""
            if tr.timed_out:
                note = ("the time budget stopped the profile: the interval may be too "
                        "narrow; ")
            if math.isfinite(tr.lower_found):
                note += (f"the profile met a deviance {tr.lower_found:.3g} below the fit's: "
                         "the fit is not at the optimum (refit it) ")
            if tr.kind == "sd" and lo == 0.0:
                note += ("the profile stays inside the interval down to 0: the lower limit "
                         "is 0 (the data are consistent with no variation between groups)")
            elif not (math.isfinite(lo) and math.isfinite(hi)):
                note += (f"the profile was walked to |zeta| = {ZETA_MAX} (a 99% interval): "
                         "this level is beyond it")
            rows.append((name, lo, hi, note.strip()))
        return pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows],
                            columns=["lower", "upper", "note"])


def parameter_names(model) -> list:
    """(name, kind, index in (theta, beta)) of the profiled parameters: each scalar
    term's SD (lme4's order, named ``sd_(Intercept)|group``), then the fixed effects."""
    dev = model.devfun
    out = []
    k0 = 0
    for t in dev.terms:
        if t.k != 1:
            raise ProfileError("profiles of correlated random effects (a term with more "
                               "than one column, e.g. (1 + x | g)) are not available yet")
        out.append((sd_label(t.colnames[0], t.group), "sd", k0))
        k0 += t.ntheta
    for j, nm in enumerate(model.design.x_names):
        out.append((nm, "fixed", dev.ntheta + j))
    return out


def profile(model, which=None, budget_seconds=None) -> Profile:
    """The profiles of a fitted GLMM's parameters (all, or the names in ``which``)."""
    import time
    t0 = time.perf_counter()
    if model.family.has_dispersion:
        raise ProfileError(f"profiles of {model.family.name} models (a dispersion "
                           "parameter) are not available yet")
    opt = getattr(model, "optimum", None)
    if opt is None:
        raise ProfileError("profile needs a fitted model")
    est = getattr(model, "estimates", None)
    if est is not None and est.nb is not None:
        raise ProfileError("profiles of a negative binomial fit whose theta was estimated "
                           "are not available yet (theta would be held at its estimate)")
    if model.nAGQ == 0:
        raise ProfileError("profiles need the Laplace or AGQ deviance (nAGQ >= 1)")
    params = parameter_names(model)
    if isinstance(which, str):
        which = [which]
    if which is not None:
        unknown = set(which) - {p[0] for p in params}
        if unknown:
            raise ProfileError(f"no parameter named {', '.join(sorted(unknown))}")
        params = [p for p in params if p[0] in which]
    dev = model.devfun
    nt = dev.ntheta
    xhat = np.concatenate([opt.theta, opt.beta])
    budget = Budget(budget_seconds, 10 ** 7)
    fhat = model._joint_deviance(xhat)
    lower = np.concatenate([dev.lower, np.full(len(xhat) - nt, -np.inf)])
    se = _standard_errors(model, xhat, fhat, opt, budget)
    scale = np.ones(len(xhat))
    if dev.x_exp is not None:
        scale[nt:] = np.ldexp(1.0, -np.asarray(dev.x_exp, np.int64))
    out = Profile()
    saved = dev.warm_starts()
    try:
        for name, kind, j in params:
            values, zeta, at_zero, evals, timed_out, fmin = _walk(model, xhat, fhat, j, se,
                                                                  lower, budget)
            order = np.argsort(values)
            below = fhat - fmin if fmin < fhat - 1e-6 else float("nan")
            out.traces[name] = ProfileTrace(name, kind, float(xhat[j] * scale[j]),
                                            values[order] * scale[j], zeta[order], at_zero,
                                            evals, timed_out, below)
    finally:
        dev.restore_warm_starts(saved)
    out.seconds = time.perf_counter() - t0
    return out


def _standard_errors(model, xhat, fhat, opt, budget) -> np.ndarray:
    """sqrt(diag(2 H^-1)) of the deviance Hessian in (theta, beta): the walk's step
    scale (the fit's finite-difference Hessian when it has one)."""
    H = opt.hessian if (opt.hessian is not None and opt.hessian_is_fd) else None
    if H is None:
        _, H = hessian_fd(model._joint_deviance, xhat, fx=fhat, budget=budget)
    try:
        v = np.diag(2.0 * np.linalg.inv(H))
    except np.linalg.LinAlgError:
        v = np.full(len(xhat), np.nan)
    se = np.sqrt(np.where(np.isfinite(v) & (v > 0), v, np.nan))
    return np.where(np.isfinite(se), se, 0.1 * np.maximum(np.abs(xhat), 1.0))


def _walk(model, xhat, fhat, j, se, lower, budget):
    """zeta along parameter j, out from the estimate both ways."""
    values, zetas = [xhat[j]], [0.0]
    at_zero = timed_out = False
    evals = 0
    fmin = fhat
    others = np.array([i for i in range(len(xhat)) if i != j])
    for direction in (-1.0, 1.0):
        x = xhat.copy()
        step = 0.5 * se[j]
        value, z_prev = xhat[j], 0.0
        for _ in range(MAX_POINTS):
            value = value + direction * step
            boundary = False
            if value <= lower[j]:
                value, boundary = lower[j], True
            x, f, n, stopped = _minimise_others(model, x, j, value, others, se, lower, budget)
            evals += n
            fmin = min(fmin, f)
            if stopped:
                timed_out = True
            z = direction * math.sqrt(max(f - fhat, 0.0))
            values.append(value)
            zetas.append(z)
            if abs(z) >= ZETA_MAX or stopped:
                break
            if boundary:
                at_zero = True
                break
            dz = abs(z - z_prev)
            step *= min(2.0, max(0.5, TARGET_STEP / dz)) if dz > 0 else 2.0
            z_prev = z
    return np.array(values), np.array(zetas), at_zero, evals, timed_out, fmin


def _minimise_others(model, x0, j, value, others, se, lower, budget):
    """min over the parameters but j of the deviance, x[j] = value; from x0."""
    x = np.array(x0, float)
    x[j] = value

    def f(y):
        x[others] = y
        return model._joint_deviance(x)
    start = np.maximum(x0[others], lower[others])
    res = bobyqa(f, start, lower[others], np.full(len(others), np.inf),
                 np.maximum(0.25 * se[others], 1e-4), INNER_XTOL, INNER_FTOL, 5000, budget)
    x[others] = res.x
    return x.copy(), float(res.fun), res.nevals, res.timed_out
