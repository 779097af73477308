"""The fixed effects' covariance of a fitted GLMM (lme4's ``vcov`` choices) and the
way back from the fit's scale of rescaled columns to the data's.

* RX: (RX'RX)^-1, the PIRLS cross-product, conditional on theta (``rx_cov``);
* the accurate Hessian: 2 x the inverse Hessian of the deviance in (theta, beta),
  beta block (``cov_from_hessian``), from central differences of the exact gradient
  (Laplace; ``gradient.py``) or of the deviance itself (AGQ);
* lme4's own finite-difference Hessian, reproduced (``parameter_scales`` are its
  steps) so the SEs equal lme4's printed ones;

and ``choose_cov``, which of them a fit reports.
"""
from __future__ import annotations

import numpy as np

from . import cost
from .devfun import GlmmDeviance

LME4_SE_MAX_N = 10_000       # 'auto' reproduces lme4's own FD Hessian below this size
#: ... and with at most this many (theta, beta) parameters: lme4's deriv12 stencil
#: takes 2k^2 evaluations of lme4's early-stopped PIRLS (648 on issue 16's binomial
#: with 17 parameters: a third of the fit), while the accurate Hessian takes 2k
#: exact gradients.  Every shared reference model is below this; above it 'auto'
#: reports the accurate Hessian's SEs (lme4's differ from them by 0-1.5% on small
#: data, within the project's 1-2% bar).
LME4_STENCIL_MAX_PARAMS = 10
FD_HESSIAN_MAX_WORK = 2e7    # n * k^2 above which 'auto' takes SEs from RX (see docs)
ROW_WORK = 100.0             # multiply-adds per row of one evaluation (fd_hessian_too_large)
LME4_HESSIAN_STEP = 0.01     # finite-difference step of lme4's Hessian, in standard errors
SE_AGREEMENT = 0.05

LARGE_DATA_NOTE = (
    "Standard errors come from the PIRLS cross-product (RX), as the data are too "
    "large for a finite-difference Hessian; they treat the variance parameters as "
    "known and can be a few percent small for random slopes (se_method='hessian' "
    "computes the Hessian).")


def unscale(dev: GlmmDeviance, beta, vcov, v_rx, v_exact, grad=None, hess=None,
            messages=None):
    """The coefficients and their covariances (and the gradient and Hessian in
    (theta, beta)) on the data's scale, from the fit's scale of fixed-effect
    columns of extreme size (``devfun.x_exponents``, column j divided by 2^e_j):
    beta * s and diag(s) V diag(s) with s = 2^-e, applied with ldexp (s itself may
    be beyond double precision).  A variance beyond double
    precision's range (a column of values beyond ~1e150 or below ~1e-150: its SE
    squared) is named in a note in ``messages``; the standard errors, z and p values
    come from ``fit_scale_statistics`` and stay right."""
    e = dev.x_exp
    if e is None:
        return beta, vcov, v_rx, v_exact, grad, hess
    e = np.asarray(e, np.int64)
    # s = 2^-e: the data's beta is the fit's beta * s (its column was divided by s)
    ee = -(e[:, None] + e[None, :])

    def cov(v):
        return None if v is None else np.ldexp(v, ee)
    nt = dev.ntheta
    ed = np.concatenate([np.zeros(nt, np.int64), e])
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        grad = None if grad is None else np.ldexp(grad, ed)
        hess = None if hess is None else np.ldexp(hess, ed[:, None] + ed[None, :])
        out = np.ldexp(beta, -e), cov(vcov), cov(v_rx), cov(v_exact), grad, hess
        v_fit, v_out = np.diag(vcov), np.diag(out[1])
        lost = (v_fit > 0) & np.isfinite(v_fit) & ~((v_out >= np.finfo(float).tiny)
                                                    & np.isfinite(v_out))
    if lost.any() and messages is not None:
        names = ", ".join(dev.design.x_names[j] for j in np.flatnonzero(lost))
        se = fit_scale_statistics(dev, beta, vcov)[0][lost]
        what = ("their standard errors are shown, and the z and p values are exact"
                if np.all(np.isfinite(se) & (se > 0)) else
                "where a standard error or estimate is beyond it too it is left blank; the z "
                "and p values are exact")
        messages.append(f"The variances of {names} are beyond double precision's range "
                        "(a predictor with values beyond about 1e150 or below 1e-150), so "
                        f"the covariance matrix cannot hold them: {what}; rescaling the "
                        "predictor avoids this.")
    return out


def fit_scale_statistics(dev: GlmmDeviance, beta, vcov):
    """(standard errors on the data's scale, z values) of a fit whose columns were
    rescaled (``dev.x_exp``), from the fit's own scale: z = beta / se there, which
    does not depend on the scale (a power of two) -- on the data's scale the
    variance of a predictor in units of 1e200 underflows to 0, and z came out blank
    and p 0.  The SE is sqrt(V_jj) * 2^-e_j with ldexp: NaN (blank) only when it is
    itself beyond double precision.  None when nothing was rescaled."""
    e = dev.x_exp
    if e is None or len(beta) == 0:
        return None
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        se_fit = np.sqrt(np.diag(vcov))
        z = np.asarray(beta, float) / se_fit
        se = np.ldexp(se_fit, -np.asarray(e, np.int64))
    se = np.where(np.isfinite(se) & ((se > 0) | (se_fit == 0)), se, np.nan)
    return se, z


def fd_hessian_too_large(n: int, k: int, terms) -> bool:
    """A finite-difference Hessian in the k parameters (theta, beta) -- k^2
    evaluations -- is too much work for se_method 'auto': (rows + the rest block's
    Cholesky in rows' worth, ``ROW_WORK`` multiply-adds a row) x k^2 above
    ``FD_HESSIAN_MAX_WORK``.  The Cholesky counts for two large crossed factors,
    whose rest block is dense: 2,000 x 2,000 levels on 1e5 rows make one
    evaluation cost as much as 1e7 rows.  The envelope (exact, O(n log n)) is
    computed only when the dense bound would decide "too large"."""
    if n * k * k > FD_HESSIAN_MAX_WORK:
        return True
    if len(terms) < 2:
        return False

    def big(chol_work):
        return (n + chol_work / ROW_WORK) * k * k > FD_HESSIAN_MAX_WORK
    return big(cost.rest_cholesky_work(terms)) and big(cost.rest_cholesky_work(terms, True))


def rx_cov(dev: GlmmDeviance, theta, st) -> np.ndarray:
    """(RX'RX)^{-1}: the fixed-effect block of the inverse of the PIRLS system at the
    state's weights (lme4's ``unsc()``)."""
    p = dev.p
    if p == 0:
        return np.zeros((0, 0))
    _, _, LS, _, _, ok = dev.factor_at(theta, st, with_beta=True)
    if not ok:
        return np.full((p, p), np.nan)
    inv = np.linalg.inv(LS[dev.q2:, dev.q2:])   # lower factor of the Schur complement
    return inv.T @ inv


def sigma(dev: GlmmDeviance, st) -> float:
    """lme4's sigma for families with a scale (Gamma, Gaussian):
    sqrt((Pearson chi^2 + |u|^2) / n); the exact Laplace's Gamma: sqrt(phi), its
    dispersion a parameter of the likelihood; 1 otherwise."""
    if not dev.family.has_dispersion:
        return 1.0
    if dev.family.likelihood_dispersion:
        return float(np.sqrt(dev.family.dispersion))
    mu = st.mu
    wrss = float(np.sum(dev.pw * (dev.y - mu) ** 2 / dev.family.variance(mu)))
    ussq = float(np.sum(st.u1 ** 2) + np.sum(st.v[:dev.q2] ** 2))
    return float(np.sqrt((wrss + ussq) / dev.n))


def random_effects_scale(family, sigma: float) -> float:
    """What the relative covariance factor Lambda is multiplied by to give the random
    effects' covariance (sigma^2 Lambda Lambda'): sigma where the weights leave the
    dispersion out (LMMs, lme4's Laplace for the Gamma), 1 where the kernels'
    weights carry it (the exact Laplace's Gamma: Lambda is the SDs' own scale)."""
    return 1.0 if family.likelihood_dispersion else float(sigma)


def rx_sigma(dev: GlmmDeviance, st) -> float:
    """The scale RX's covariance takes (sigma^2 (RX'RX)^-1): ``sigma`` where the
    weights leave the dispersion out (lme4's), 1 where the kernels' weights carry it
    (the exact Laplace's Gamma, ``GlmmDeviance.kernel_pw``)."""
    return 1.0 if dev.family.likelihood_dispersion else sigma(dev, st)


def parameter_scales(hess, nt: int) -> np.ndarray:
    """Each parameter's standard error, sqrt(diag(2 H^-1)) of the deviance Hessian
    in (theta, beta): the steps of lme4's Hessian are ``LME4_HESSIAN_STEP`` of these.

    lme4 differences its deviance with absolute steps of 1e-4.  Rounding noise in
    the deviance (~1e-12) then reaches 1e-4 relative in the SEs of parameters with
    large SEs -- the last bits of the CPU's arithmetic, amplified -- while a
    parameter with a tiny SE moves by a sizeable part of it.  A step of 1% of each
    parameter's SE makes the noise ~1e-8 relative on every parameter; the stencil's
    truncation error is ~1e-4 of the Hessian, deterministic, and below lme4's own
    noise.  (The stencil differences lme4's function with its iteration count held
    at the centre's, see ``GlmmDeviance.lme4_devfun``, so it is smooth.)"""
    try:
        se = np.sqrt(np.abs(np.diag(2.0 * np.linalg.inv(hess))))
    except np.linalg.LinAlgError:
        se = np.full(hess.shape[0], np.nan)
    scale = np.where(np.isfinite(se) & (se > 0), np.clip(se, 1e-6, 1e3), 0.01)
    scale[:nt] = np.minimum(scale[:nt], 5.0)   # theta moves by at most 0.05 (its scale is 1)
    return scale


def cov_from_hessian(h, nt):
    """lme4's calc.vcov.hess: (H^-1 + H^-T) restricted to beta; None unless finite
    and positive definite."""
    if h is None or not np.all(np.isfinite(h)):
        return None
    try:
        Hi = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return None
    V = (Hi + Hi.T)[nt:, nt:]
    if not np.all(np.isfinite(V)) or np.linalg.eigvalsh(V).min() <= 0:
        return None
    return V


def choose_cov(se_method, nAGQ, v_exact, v_lme4, v_rx):
    """Which covariance the fit reports, its label, and a note when it is not the one
    asked for.  'auto': lme4's own finite-difference Hessian when it agrees with the
    exact one within 5% in every SE (then the SEs equal lme4's printed ones), else
    the exact Hessian (the caller computes lme4's only for small models:
    ``LME4_SE_MAX_N``, ``LME4_STENCIL_MAX_PARAMS``); PIRLS-only fits (nAGQ=0) use RX, as lme4."""
    if v_rx.shape[0] == 0:
        return v_rx, "none", ""
    if se_method == "rx" or nAGQ == 0:
        return v_rx, "RX", ""
    fallback = ("variance-covariance matrix computed from finite-difference Hessian is "
                "not positive definite or contains NA values: falling back to var-cov "
                "estimated from RX")
    if se_method == "hessian" or nAGQ > 1 or (v_lme4 is None and se_method == "auto"):
        if v_exact is not None:
            return v_exact, "Hessian", ""
        return v_rx, "RX", fallback
    # 'lme4' or 'auto' with lme4's version available
    if v_exact is None:
        return (v_lme4, "Hessian (lme4's finite differences)", "") if v_lme4 is not None \
            else (v_rx, "RX", fallback)
    if v_lme4 is None:
        return v_exact, "Hessian", ("lme4's finite-difference Hessian is not positive "
                                    "definite here; the accurate Hessian is used")
    ratio = np.sqrt(np.diag(v_lme4) / np.diag(v_exact))
    worst = float(np.max(np.abs(ratio - 1.0)))
    if se_method == "lme4" or worst <= SE_AGREEMENT:
        return v_lme4, "Hessian (lme4's finite differences)", ""
    return v_exact, "Hessian", (
        f"lme4's finite-difference standard errors would be off by up to {100 * worst:.0f}% "
        "here (its inner iterations stop early); the accurately computed Hessian is used.")
