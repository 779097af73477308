"""Satterthwaite's degrees of freedom for the fixed effects of a linear mixed model
(lmerTest's ``summary(m, ddf = "Satterthwaite")``).

For a fixed effect k with variance v(phi) = Var(beta_k), a function of the variance
parameters phi = (theta, sigma), the t statistic beta_k / sqrt(v) is referred to a
t distribution with

    df = 2 v^2 / (g' A g),    g = dv/dphi,    A = 2 H^{-1}

where H is the Hessian of the (REML or ML) deviance in phi -- with sigma *not*
profiled out -- at the estimates, so A is phi's asymptotic covariance.  As lmerTest:
the deviance at (theta, sigma) is log|L|^2 + pwrss / sigma^2 + n log(2 pi sigma^2)
(REML: + log|RX|^2 - p log(2 pi sigma^2)), and v(phi) = sigma^2 [(RX'RX)^{-1}]_kk.
The derivatives are central finite differences refined by Richardson extrapolation
(numDeriv's method, which lmerTest uses), on the exact deviance of ``lmm`` (one
penalized least-squares solve per point, from the model's moments).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .lmm import unscaled_cov

RICHARDSON_STEPS = 4          # numDeriv's default r
STEP = 1e-4                   # relative to max(|phi|, 1) (numDeriv: d = 1e-4)


class SatterthwaiteError(ValueError):
    """The degrees of freedom cannot be computed (e.g. the Hessian is singular)."""


def _fixed_effects_system(model, phi, cov):
    """(deviance at phi, covariance of beta at phi -- None unless ``cov``) of the
    linear mixed model, by its solve from the moments (``LinearMixedModel._terms``:
    no iteration, so the derivatives do not depend on the order of the points or
    on a warm start)."""
    dev = model.devfun
    nt = dev.ntheta
    theta, sigma = phi[:nt], phi[nt]
    s2 = sigma * sigma
    ok, logdet, ldrx, pwrss = model._terms(theta)
    n, p = dev.n, dev.p
    if not ok:
        return np.inf, np.full((p, p), np.nan)
    d = logdet - model.log_weights + pwrss / s2 + n * math.log(2.0 * math.pi * s2)
    if model.reml and p:
        d += ldrx - p * math.log(2.0 * math.pi * s2)
    if not cov:
        return d, None
    return d, s2 * unscaled_cov(model._work[0], dev.q2)     # the factor _terms filled


def _richardson(f, x, j, h, steps=RICHARDSON_STEPS):
    """d f / d x_j by central differences at h, h/2, h/4, ... refined by Richardson
    extrapolation (errors of order h^2, h^4, ...); f returns arrays."""
    table = []
    for r in range(steps):
        hr = h / 2.0 ** r
        xp, xm = x.copy(), x.copy()
        xp[j] += hr
        xm[j] -= hr
        table.append((np.asarray(f(xp)) - np.asarray(f(xm))) / (2.0 * hr))
    for m in range(1, steps):
        table = [(4.0 ** m * table[i + 1] - table[i]) / (4.0 ** m - 1.0)
                 for i in range(len(table) - 1)]
    return table[0]


def satterthwaite_df(result, theta=None, sigma=None) -> np.ndarray:
    """Satterthwaite's df for each fixed effect of a fitted linear mixed model, at
    its estimates (or at the given ``theta``, ``sigma``: another fit's, to compare
    the method apart from where two optimizers stopped)."""
    model = result.model
    dev = model.devfun
    phi0 = np.concatenate([np.atleast_1d(np.asarray(model.optimum.theta if theta is None
                                                    else theta, float)),
                           [float(result.sigma if sigma is None else sigma)]])
    if dev.p == 0:
        return np.zeros(0)
    h = STEP * np.maximum(np.abs(phi0), 1.0)

    def deviance(phi):
        return _fixed_effects_system(model, phi, False)[0]

    def covariance(phi):
        return _fixed_effects_system(model, phi, True)[1]

    def gradient(phi):
        return np.array([_richardson(deviance, phi, j, h[j]) for j in range(len(phi))])

    k = len(phi0)
    H = np.empty((k, k))
    for j in range(k):
        H[:, j] = _richardson(gradient, phi0, j, h[j])
    H = 0.5 * (H + H.T)
    try:
        A = 2.0 * np.linalg.inv(H)
    except np.linalg.LinAlgError:
        raise SatterthwaiteError("the Hessian of the deviance in the variance parameters "
                                 "is singular (a variance at its boundary?)") from None
    V = covariance(phi0)
    J = np.array([_richardson(covariance, phi0, j, h[j]) for j in range(k)])  # k x p x p
    out = np.empty(dev.p)
    for i in range(dev.p):
        g = J[:, i, i]
        denom = float(g @ A @ g)
        # an indefinite or broken Hessian: no df (NaN), never a silent normal test
        out[i] = 2.0 * V[i, i] ** 2 / denom if (denom > 0 and np.isfinite(denom)) \
            else np.nan
    return out


def t_test(result):
    """(df, t, p) of each fixed effect with Satterthwaite's df."""
    df = satterthwaite_df(result)
    t = result.fe_zvalues.to_numpy()
    p = 2.0 * stats.t.sf(np.abs(t), df)
    return df, t, p

