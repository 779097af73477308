"""Starting values of a GLMM fit (as lme4's ``glmer`` takes them, and better).

* ``mustart``: R's starting fitted values for the family;
* ``glm_beta``: the fixed effects of the GLM without random effects, by IRLS from
  ``mustart`` (lme4 starts from ``glm()``'s coefficients);
* ``moment_theta``: the random intercepts' SDs from a moment estimate on the GLM's
  working residuals (lme4 starts at 1).

These run once per fit, in numpy: nothing here is compiled.
"""
from __future__ import annotations

import numpy as np

from . import pirls
from .devfun import GlmmDeviance, theta_start
from .family import Family


def mustart(fam: Family, y, w):
    """R's mustart: where the GLM iterations begin (the family's own)."""
    return fam.mustart(y, w)


def glm_beta(fam: Family, dev: GlmmDeviance, mu0, maxit: int = 100,
             tol: float = 1e-10) -> np.ndarray:
    """The GLM's coefficients by IRLS (R's glm.fit: working weights and response,
    step halving when the deviance rises), started at eta = g(mustart); zeros when
    there is no usable GLM fit (e.g. extreme offsets, separation)."""
    p = dev.p
    if p == 0:
        return np.zeros(0)
    y, pw, offset, X = dev.y, dev.pw, dev.offset, dev.X
    eta = fam.linkfun(np.asarray(mu0, float)[dev.order])
    beta = np.zeros(p)
    dev_old = np.inf
    # the families with a phi (not exponential families): Fisher scoring on their own
    # score and weight (PIRLS's ``working_weights``); quasi-likelihood steps would aim
    # at another point than their deviance's minimum and halve their way to maxit;
    # the zero-inflated families likewise (the kernels' weights are each row's p0)
    general = fam.has_phi or fam.zero_inflated
    rows = pirls.Rows(y, dev.kernel_pw, offset) if general else None
    with np.errstate(all="ignore"):
        mu = fam.linkinv(eta)
        for it in range(maxit):
            if rows is not None:
                w, wres = np.empty(len(y)), np.empty(len(y))
                pirls.working_weights(dev._fd, rows, np.ascontiguousarray(eta),
                                      np.ascontiguousarray(mu), w, wres)
                z = eta - offset + wres / w
            else:
                me = fam.mu_eta(eta)
                w = pw * me * me / fam.variance(mu)
                z = eta - offset + (y - mu) / me
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(z))):
                return np.zeros(p)
            Xw = X * w[:, None]
            try:
                new_beta = np.linalg.solve(Xw.T @ X, Xw.T @ z)
            except np.linalg.LinAlgError:
                return np.zeros(p)
            step, trial, deviance = 1.0, new_beta, np.inf
            for _ in range(30):
                trial = new_beta if it == 0 else beta + step * (new_beta - beta)
                eta = offset + X @ trial
                mu = fam.linkinv(eta)
                deviance = (-2.0 * float(np.sum(fam.log_density(y, mu, dev.kernel_pw)))
                            if general else float(np.sum(fam.dev_resids(y, mu, pw))))
                if np.isfinite(deviance) and (it == 0 or deviance <= dev_old + 1e-10 * abs(dev_old)):
                    break
                step *= 0.5
            beta = trial
            if abs(deviance - dev_old) < tol * (abs(deviance) + 0.1):
                break
            dev_old = deviance
    return beta if np.all(np.isfinite(beta)) else np.zeros(p)


def moment_theta(dev: GlmmDeviance, fam: Family, beta0) -> np.ndarray:
    """Starting theta: lme4's (identity) except that each random intercept starts at
    a moment estimate of its SD from the GLM fit's working residuals -- the spread
    of the group means beyond their sampling noise -- clipped to [0.1, 3].  With
    several intercept terms, the coarsest factor (fewest levels) goes first and its
    shrunken group means are taken out of the residuals before the next one, so a
    fine factor (e.g. one level per row) does not also claim the coarse factor's
    variance.  A start near the optimum saves stage-1 evaluations; the optimum
    itself is unaffected."""
    theta = theta_start(dev.terms)
    fam = fam.count_family          # (zero-inflated: the count model's working residuals)
    eta = dev.offset + dev.X @ beta0
    mu = fam.linkinv(eta)
    me = fam.mu_eta(eta)
    w = dev.pw * me ** 2 / np.maximum(fam.variance(mu, dev.pw), 1e-300)
    z = (dev.y - mu) / np.where(me != 0, me, 1e-300)
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(z))):
        return theta
    intercepts = []
    k0 = 0
    for t in dev.terms:
        if t.k == 1 and t.colnames == ["(Intercept)"]:
            intercepts.append((t.nlevels, k0, t))
        k0 += t.ntheta
    for _, k0, t in sorted(intercepts, key=lambda e: e[0]):
        codes = t.codes[dev.order]
        sw = np.bincount(codes, weights=w, minlength=t.nlevels)
        swz = np.bincount(codes, weights=w * z, minlength=t.nlevels)
        ok = sw > 0
        if ok.sum() >= 2:
            means = swz[ok] / sw[ok]
            between = max(float(np.var(means)) - float(np.mean(1.0 / sw[ok])), 0.0)
            theta[k0] = float(np.clip(np.sqrt(between), 0.1, 3.0))
            if len(intercepts) > 1:
                b = np.zeros(t.nlevels)
                b[ok] = means * between / (between + 1.0 / sw[ok])
                z = z - b[codes]
    return theta
