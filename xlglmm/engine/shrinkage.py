"""How far each level's random intercept was pulled toward zero: the level's raw
(unshrunk) estimate from the population-level fit beside its BLUP -- the shrinkage
plot of the interlace results page.

The raw estimate of level l of factor g is the weighted mean over the level's rows
of the working residuals of the fit without g's random intercepts (the
population-level fit when g is the model's only term; every other random effect
stays in -- another factor's BLUPs, so that a month's raw estimate is not the
average of the plants it happens to hold, and g's own random slopes, so that a
subject's raw intercept is not its slope times the mean of x): with eta0 = the
fit's linear predictor minus g's random intercepts,
mu0 its mean, z = (y - mu0) / mu'(eta0) and the working weights
w = prior weight x mu'(eta0)^2 / V(mu0),

    raw_l = sum_l w z / sum_l w,

one Fisher-scoring step for a free intercept of level l from 0 on the link scale (a
linear model's mean residual of the level; a Poisson log model's observed over
expected counts minus 1).  The BLUP is the fitted random intercept (its
conditional mode) and ``shrinkage = 1 - BLUP / raw``: the share of the raw
estimate the model took away.  In a linear model with one random intercept this is
the textbook factor (sigma^2 / n_l) / (sigma_b^2 + sigma^2 / n_l): levels with few
rows, or with a small between-level variance, are shrunk most.  Only intercept
columns have a raw estimate (a slope's would need the level's own regression).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

INTERCEPT = "(Intercept)"


def intercept_contribution(result, group: str) -> np.ndarray:
    """Each row's random intercept of one grouping factor (its slopes left in)."""
    effects = result.random_effects[group]
    b = (effects if effects.ndim == 1 else effects[INTERCEPT]).to_numpy()
    term = next(t for t in result.design.re_terms
                if t.group == group and INTERCEPT in t.colnames)
    return b[term.codes]


def working_residuals(result, eta0) -> tuple:
    """(z, w): the working residuals and working weights of a linear predictor."""
    d = result.design
    fam = result.family
    mu0 = fam.linkinv(eta0)
    dmu = fam.mu_eta(eta0)
    if fam.zero_inflated:   # the response's mean (1 - p0) mu and its variance
        p0 = result.zero_prob
        dm = (1.0 - p0) * dmu
        return (d.y - (1.0 - p0) * mu0) / dm, dm ** 2 / fam.variance(mu0, p0)
    z = (d.y - mu0) / dmu
    w = d.weights * dmu ** 2 / fam.variance(mu0, d.weights)
    return z, w


def shrinkage(result) -> dict:
    """Per grouping factor with a random intercept: a DataFrame indexed by level with
    ``rows``, ``raw`` (the unshrunk estimate), ``blup`` (the fitted random
    intercept) and ``shrinkage`` (1 - blup / raw; NaN where raw is 0)."""
    eta = result.predict(type="link").to_numpy()
    out = {}
    for t in result.design.re_terms:
        if t.group in out or INTERCEPT not in t.colnames:
            continue
        z, w = working_residuals(result, eta - intercept_contribution(result, t.group))
        effects = result.random_effects[t.group]
        blup = (effects if effects.ndim == 1 else effects[INTERCEPT]).to_numpy()
        rows = np.bincount(t.codes, minlength=t.nlevels)
        weight = np.bincount(t.codes, weights=w, minlength=t.nlevels)
        raw = np.bincount(t.codes, weights=w * z, minlength=t.nlevels) / weight
        with np.errstate(divide="ignore", invalid="ignore"):
            shrunk = np.where(raw != 0.0, 1.0 - blup / raw, np.nan)
        out[t.group] = pd.DataFrame({"rows": rows, "raw": raw, "blup": blup,
                                     "shrinkage": shrunk},
                                    index=pd.Index(t.levels, name=t.group))
    return out
