"""The exact gradient of the Laplace deviance in (theta, beta) (Numba).

The Laplace deviance of ``devfun.GlmmDeviance.laplace`` is

    D(phi) = A(eta*) + |u*|^2 + log|M|,    M = Lambda'Z'W Z Lambda + I,

phi = (theta, beta), eta = offset + X beta + Z Lambda(theta) u, u* = u*(phi) the
minimiser of the penalised deviance P(phi, u) = sum_i d_i(eta_i) + |u|^2 (PIRLS),
W the Fisher weights at eta*, A the family's -2 conditional log-likelihood (for the
Gamma with its dispersion estimated from the deviance residuals, as lme4's aic).
Write F(phi, u) = A + |u|^2 + log|M| at any u; then by the chain rule and the
implicit function theorem (G = dP/du = 0 at u*, H = d2P/du2 = 2 M_obs with the
*observed* weights w_obs = -d wres/d eta, which differ from W for non-canonical
links: a second factorization then)

    dD/dphi = F_phi - lambda' G_phi,       lambda = H^{-1} F_u   (one solve).

Per row i, with a_i = Lambda'z_i, h_i = a_i'M^{-1}a_i (forward solves with the
blocked factor: M^{-1} on the row's own coordinates, from term 1's Dchol/Cval and the
inverse of the rest's Schur complement), wres_i, w_i the working residual and weight,
w'_i = dw_i/deta, A'_i = dA/deta_i:

    c_i = A'_i + h_i w'_i                   dF/deta_i at fixed u (and Lambda in M)
    F_u = sum c_i a_i + 2u
    r_i = c_i - 2 w_obs,i (a_i'lambda)      the total derivative in eta_i
    dD/dbeta_j = sum_i x_ij r_i
    dD/dtheta_j = sum_i z_i[row_j] (r_i u_(cj) + 2 w_i (M^{-1}a_i)_(cj) + 2 wres_i lambda_(cj))

where theta_j is entry (row_j, col_j) of its term's Lambda and "_(cj)" the entry of
the row's level of that term in column col_j: dLambda/dtheta_j' z_i is z_i[row_j] on
that one coordinate.  The second term is tr(M^{-1} dM/dtheta_j) at fixed W (the
bilinear form w_i (dLambda'z_i)'M^{-1}(Lambda'z_i), twice); the third is -lambda'
G_theta's part from dLambda in the score; r_i carries the weight part of the log
determinant through eta* = eta(phi, u*(phi)).

``laplace_gradient`` is the kernel (it takes the structs of ``linalg`` and
``pirls`` and a :class:`Mode`); :class:`LaplaceGradient` builds its inputs once per
design and evaluates (deviance, gradient) at a parameter value.  nAGQ > 1 has no
exact gradient here: the AGQ fits keep finite differences.  Tested against central
finite differences of ``laplace`` and a dense numpy version of the same formula
(``tests/engine/test_gradient.py``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from scipy import special

from . import pirls
from .family import (BINOMIAL, GAMMA, LOG, NB_THETA, NEGBIN, POISSON, general_likelihood,
                     is_canonical, loglik_mu_score, mu_eta, mu_eta2, observed_information,
                     unit_deviance, variance, variance_mu)
from .linalg import (LAPACK_MIN_R, Factor, envelope_starts, factorize, linear_predictor,
                     lower_inverse, new_factor, newton_step, rest_inverse)


class Mode(NamedTuple):
    """PIRLS's answer at a parameter value (sorted rows): the linear predictor, the
    fitted values and the spherical modes (u1: term 1's, v: the other terms')."""

    eta: np.ndarray
    mu: np.ndarray
    u1: np.ndarray
    v: np.ndarray


class GradientDesign(NamedTuple):
    """What the gradient needs besides the blocked layout (sorted rows): the fixed
    effects' columns and each row's random-effects covariates Z on its own
    coordinates (term 1's k1 columns, then the other terms' in ``rest_cols`` order),
    and ``kappa``: the factor of the Gamma family's dA/deta over its deviance's
    (its dispersion moves with mu; 1 elsewhere)."""

    X: np.ndarray           # n x p
    Zown: np.ndarray        # n x (k1 + m_use)
    kappa: float


@njit(cache=True, error_model="numpy")
def aic_mu_derivative(y, mu, wt, fd, kappa):
    """d/dmu of one row's -2 log-likelihood as ``family.conditional_aic`` counts it
    (the binomial's with its rounded successes and trials; the Gamma's times
    ``kappa``, the part of the estimated dispersion)."""
    fam = fd.family
    if general_likelihood(fd):
        return -2.0 * loglik_mu_score(y, mu, wt, fd)
    if fam == POISSON:
        return -2.0 * wt * (y - mu) / mu
    if fam == BINOMIAL:
        n = math.floor(wt + 0.5)
        k = math.floor(wt * y + 0.5)
        s = 0.0
        if n > 0.0:
            if k > 0.0:
                s += k / mu
            if n - k > 0.0:
                s -= (n - k) / (1.0 - mu)
        return -2.0 * s
    if fam == NEGBIN:
        t = fd.params[NB_THETA]
        return -2.0 * wt * (y / mu - (y + t) / (t + mu))
    if fam == GAMMA:
        return -2.0 * kappa * wt * (y - mu) / (mu * mu)
    return 0.0


@njit(cache=True, error_model="numpy")
def row_terms(fd, rows, eta, mu, kappa, w, wres, dw, wobs, da):
    """Per row: the determinant's weight w and its derivative dw/deta, the working
    residual wres (``pirls.working_weights``), the observed weight -d wres/deta and
    dA/deta.  The determinant's weights are Fisher's (lme4's Laplace) or, for the
    exact Laplace (``pirls.observed_determinant``), the observed ones: then w = wobs
    and dw is the observed information's derivative (the family's third one)."""
    pirls.working_weights(fd, rows, eta, mu, w, wres)
    y, pw = rows.y, rows.pw
    link = fd.link
    canonical = is_canonical(fd)
    observed = pirls.observed_determinant(fd)
    for i in range(y.shape[0]):
        m = mu[i]
        me = m if link == LOG else mu_eta(eta[i], link)
        if observed:
            wobs[i], dw[i] = observed_information(y[i], m, eta[i], pw[i], fd)
            w[i] = wobs[i]
        else:
            me2 = mu_eta2(eta[i], link)
            vr = variance(m, pw[i], fd)
            vp = variance_mu(m, fd)
            dw[i] = pw[i] * (2.0 * me * me2 / vr - me * me * me * vp / (vr * vr))
            if canonical:
                wobs[i] = w[i]
            else:
                wobs[i] = w[i] - pw[i] * (y[i] - m) * (me2 / vr - me * me * vp / (vr * vr))
        da[i] = aic_mu_derivative(y[i], m, pw[i], fd, kappa) * me


@njit(cache=True, error_model="numpy")
def gamma_dispersion_sums(rows, mu, fd):
    """(sum of deviance residuals, sum of weights, sum wt (log(y/mu) - y/mu)): what
    the Gamma's kappa needs (``LaplaceGradient``)."""
    y, pw = rows.y, rows.pw
    dev, sw, s = 0.0, 0.0, 0.0
    for i in range(y.shape[0]):
        dev += unit_deviance(y[i], mu[i], pw[i], fd)
        sw += pw[i]
        s += pw[i] * (math.log(y[i] / mu[i]) - y[i] / mu[i])
    return dev, sw, s


@njit(cache=True, error_model="numpy")
def schur_inverse(LS):
    """S^{-1} = LS^{-T} LS^{-1} of the rest's Schur complement S = LS LS'.  Each
    row of LS is read only from its first nonzero (its envelope, as
    ``linalg.chol_lower``), and zero entries of LS^{-1} are skipped: a diagonal LS
    (nested designs: each level of term 1 inside one level of the rest) costs
    O(r^2), a dense one r^3/3."""
    r = LS.shape[0]
    first = envelope_starts(LS)
    Li = np.zeros((r, r))
    top = np.empty(r, np.int64)      # last nonzero row of each column of Li
    for j in range(r):
        Li[j, j] = 1.0 / LS[j, j]
        top[j] = j
        for a in range(j + 1, r):
            lo = max(j, first[a])
            if lo >= a:
                continue
            s = 0.0
            for b in range(lo, a):
                s -= LS[a, b] * Li[b, j]
            if s != 0.0:
                Li[a, j] = s / LS[a, a]
                top[j] = a
    Sinv = np.zeros((r, r))
    for a in range(r):
        for b in range(a + 1):
            s = 0.0
            for c in range(a, min(top[a], top[b]) + 1):     # Li[c, a] = 0 for c < a
                s += Li[c, a] * Li[c, b]
            Sinv[a, b] = s
            Sinv[b, a] = s
    return Sinv


@njit(cache=True, error_model="numpy")
def own_inverse_products(layout, factor, Sinv, Q):
    """Q[i] = M^{-1} a_i on row i's own coordinates (term 1's k1, then its m_use rest
    columns) and returns h_i = a_i'M^{-1}a_i.  Per level g of term 1, with
    C_g = Cval's block and Linv_g = Dchol[g]^{-1}: M^{-1}'s blocks are
    Linv_g'(I + C_g S^{-1} C_g')Linv_g (term 1), -Linv_g' C_g S^{-1} (term 1 x rest)
    and S^{-1} (rest), needed only on the level's rest columns (``loc_cols``)."""
    A1, gptr = layout.A1, layout.group_ptr
    Rv, Rc, Rloc, m = layout.rest_vals, layout.rest_cols, layout.rest_loc, layout.m_use
    loc_ptr, loc_cols = layout.loc_ptr, layout.loc_cols
    Dchol, Cval = factor.Dchol, factor.Cval
    ng = gptr.shape[0] - 1
    k1 = A1.shape[1]
    n = A1.shape[0]
    h = np.empty(n)
    maxloc = 1
    for g in range(ng):
        maxloc = max(maxloc, loc_ptr[g + 1] - loc_ptr[g])
    Wg = np.empty((k1, maxloc))
    V12 = np.empty((k1, maxloc))
    V11 = np.empty((k1, k1))
    Li = np.empty((k1, k1))
    T = np.empty((k1, k1))
    for g in range(ng):
        base = loc_ptr[g]
        nloc = loc_ptr[g + 1] - base
        D = Dchol[g]
        lower_inverse(D, Li)            # Li = D^{-1} (lower)
        for a in range(k1):             # Wg = C_g Sinv[loc, loc]
            for l in range(nloc):
                s = 0.0
                cl = loc_cols[base + l]
                for l2 in range(nloc):
                    s += Cval[a, base + l2] * Sinv[loc_cols[base + l2], cl]
                Wg[a, l] = s
        for a in range(k1):             # T = I + Wg C_g'
            for b in range(k1):
                s = 1.0 if a == b else 0.0
                for l in range(nloc):
                    s += Wg[a, l] * Cval[b, base + l]
                T[a, b] = s
        for a in range(k1):             # V11 = Li' T Li, V12 = -Li' Wg
            for b in range(k1):
                s = 0.0
                for c in range(a, k1):
                    for d in range(b, k1):
                        s += Li[c, a] * T[c, d] * Li[d, b]
                V11[a, b] = s
            for l in range(nloc):
                s = 0.0
                for c in range(a, k1):
                    s -= Li[c, a] * Wg[c, l]
                V12[a, l] = s
        for i in range(gptr[g], gptr[g + 1]):
            hi = 0.0
            for a in range(k1):
                s = 0.0
                for b in range(k1):
                    s += V11[a, b] * A1[i, b]
                for e in range(m):
                    s += V12[a, Rloc[i, e]] * Rv[i, e]
                Q[i, a] = s
                hi += s * A1[i, a]
            for e in range(m):
                s = 0.0
                le = Rloc[i, e]
                for b in range(k1):
                    s += V12[b, le] * A1[i, b]
                ce = Rc[i, e]
                for e2 in range(m):
                    s += Sinv[ce, Rc[i, e2]] * Rv[i, e2]
                Q[i, k1 + e] = s
                hi += s * Rv[i, e]
            h[i] = hi
    return h


@njit(cache=True, error_model="numpy")
def laplace_gradient(fd, rows, layout, factor, mode, gd, Sinv_given):
    """(G, gbeta, ok, scale, h, al): the gradient of the Laplace deviance at PIRLS's
    mode (see the module docstring), and per row h_i = a_i'M^{-1}a_i and
    al_i = a_i'lambda, with which the derivative in any parameter tau of the rows'
    log-likelihoods is sum_i (dA_i/dtau + h_i dw_i/dtau + 2 al_i dwres_i/dtau) at fixed
    eta (``row_parameter_derivative``); ``scale`` = sum_i (w_i h_i + 2 wres_i al_i): the
    derivative of log|M| and of the modes' shift in the log of a factor that scales
    every weight and working residual alike (the exact Laplace's Gamma shape 1/phi,
    ``LaplaceGradient.log_dispersion_derivative``).  ``factor`` is the blocked factor of M at the mode's Fisher
    weights (beta not in the system: ``layout.r`` = ``layout.npen``).
    ``Sinv_given``: the inverse of the rest's Schur complement when the caller has it
    (a large dense block: ``linalg.rest_inverse``, LAPACK), else a 0 x 0 array and the
    kernel inverts the factor itself (``schur_inverse``).
    ``G[o1, o2] = sum_i Zown[i, o1] zeta_i[o2]`` over the rows' own coordinates; the
    derivative in theta_j (entry (row_j, col_j) of a term whose coordinates start at
    o) is G[o + row_j, o + col_j].  gbeta = X'r.  ok is False when the observed
    information is not positive definite."""
    A1, gptr = layout.A1, layout.group_ptr
    Rc, m = layout.rest_cols, layout.m_use
    ng = gptr.shape[0] - 1
    k1 = A1.shape[1]
    n = A1.shape[0]
    r = layout.r
    nown = k1 + m
    X, Zown = gd.X, gd.Zown
    p = X.shape[1]
    w = np.empty(n)
    wres = np.empty(n)
    dw = np.empty(n)
    wobs = np.empty(n)
    da = np.empty(n)
    row_terms(fd, rows, mode.eta, mode.mu, gd.kappa, w, wres, dw, wobs, da)
    if Sinv_given.shape[0] == r:
        Sinv = Sinv_given
    else:
        Sinv = schur_inverse(factor.LS) if r > 0 else np.zeros((0, 0))
    Q = np.empty((n, nown))
    h = own_inverse_products(layout, factor, Sinv, Q)
    c = np.empty(n)
    for i in range(n):
        c[i] = da[i] + h[i] * dw[i]
    # lambda = (2 M_obs)^{-1} F_u: newton_step solves M x = A'c/2 + u when given
    # wres = c/2 and the modes negated
    obs = factor
    if not (is_canonical(fd) or pirls.observed_determinant(fd)):
        obs = new_factor(layout)
        _, ok = factorize(layout, wobs, obs)
        if not ok:
            return (np.full((nown, nown), np.nan), np.full(p, np.nan), False, np.nan, h,
                    np.full(n, np.nan))
    half = np.empty(n)
    for i in range(n):
        half[i] = 0.5 * c[i]
    lam1 = np.empty((ng, k1))
    lamv = np.empty(r)
    newton_step(layout, obs, half, -mode.u1, -mode.v, lam1, lamv)
    al = np.empty(n)
    linear_predictor(layout, np.zeros(n), lam1, lamv, al)
    gbeta = np.zeros(p)
    G = np.zeros((nown, nown))
    zeta = np.empty(nown)
    u1, v = mode.u1, mode.v
    scale = 0.0
    for g in range(ng):
        for i in range(gptr[g], gptr[g + 1]):
            scale += w[i] * h[i] + 2.0 * wres[i] * al[i]
            ri = c[i] - 2.0 * wobs[i] * al[i]
            for j in range(p):
                gbeta[j] += X[i, j] * ri
            tw = 2.0 * w[i]
            tr = 2.0 * wres[i]
            for a in range(k1):
                zeta[a] = ri * u1[g, a] + tw * Q[i, a] + tr * lam1[g, a]
            for e in range(m):
                ce = Rc[i, e]
                zeta[k1 + e] = ri * v[ce] + tw * Q[i, k1 + e] + tr * lamv[ce]
            for o1 in range(nown):
                z = Zown[i, o1]
                if z != 0.0:
                    for o2 in range(nown):
                        G[o1, o2] += z * zeta[o2]
    return G, gbeta, True, scale, h, al


def row_parameter_derivative(dA, dw, dwres, h, al) -> float:
    """dD/dtau of the Laplace deviance for a parameter tau of the rows'
    log-likelihoods (a zero-inflation coefficient, a family's shape), from its
    per-row partial derivatives at fixed eta -- of A_i (-2 the row's log-likelihood,
    constants included), of the determinant's weight w_i and of the working residual
    wres_i -- and the kernel's h, al (``laplace_gradient``): the same chain rule as
    beta's, dA/dtau + tr(M^-1 dM/dtau) - lambda' dG/dtau, with the modes' shift."""
    return float(np.sum(dA + h * dw + 2.0 * al * dwres))


NO_INVERSE = np.zeros((0, 0))    # laplace_gradient's Sinv_given: invert in the kernel


class LaplaceGradient:
    """(deviance, gradient) of a GlmmDeviance's Laplace deviance in (theta, beta):
    PIRLS at the point (``dev.pirls``, its warm starts and counters), then the
    kernel.  The per-design inputs (Z on each row's own coordinates, where each
    theta entry's derivative sits in the kernel's G) are built once."""

    def __init__(self, dev):
        self.dev = dev
        self.Zown = np.ascontiguousarray(np.hstack([dev.Z1] + list(dev.rest_Z))
                                         if dev.rest_Z else dev.Z1, dtype=np.float64)
        idx_r, idx_c = [], []
        off = 0
        for t, pos in zip(dev.terms, dev.theta_pos):
            for i, j in pos:
                idx_r.append(off + i)
                idx_c.append(off + j)
            off += t.k
        self.idx = (np.array(idx_r, np.int64), np.array(idx_c, np.int64))
        self.evaluations = 0
        self.last_scale = float("nan")  # the kernel's ``scale`` at the last evaluation
        self.last_rows = None           # its (h, al): ``row_parameter_derivative``

    def kappa(self, st) -> float:
        """The Gamma's dA/deta over -2 wres (its dispersion dev/sum(wt) moves with
        mu): a + 2 a^2 S_a / sum(wt), a = 1/dispersion, S_a = d loglik / d a; 1 for
        the other families (never read)."""
        dev = self.dev
        if dev._fd.family != GAMMA or dev._fd.exact:    # exact: the dispersion is a parameter
            return 1.0
        d, sw, s = gamma_dispersion_sums(dev.rows(dev.offset), st.mu, dev._fd)
        a = sw / d
        s_a = sw * (-special.digamma(a) + math.log(a) + 1.0) + s
        return float(a + 2.0 * a * a * s_a / sw)

    def __call__(self, theta, beta):
        """(D, gradient in (theta, beta)) at the point; (inf, nan) where the deviance
        is not finite or the observed information not positive definite."""
        dev = self.dev
        theta = np.asarray(theta, float)
        beta = np.asarray(beta, float)
        k = dev.ntheta + dev.p
        st = dev.pirls(theta, beta)
        if st.status not in (pirls.PIRLS_OK, pirls.PIRLS_MAXIT) or not np.isfinite(st.logdet):
            return np.inf, np.full(k, np.nan)
        f = float(st.aic + st.ussq + st.logdet)
        self.evaluations += 1
        gd = GradientDesign(dev.X, self.Zown, self.kappa(st))
        mode = Mode(st.eta, st.mu, st.u1, st.v)
        # (the kernel reads the rows' y and weights only)
        layout = dev.layout(False)
        # a dense rest block of thousands of columns (two large crossed factors):
        # LAPACK's inverse, a fraction of the kernel's loops
        Sinv = rest_inverse(st.LS) if layout.r >= LAPACK_MIN_R else NO_INVERSE
        G, gbeta, ok, scale, h, al = laplace_gradient(dev._fd, dev._offset_rows, layout,
                                                      Factor(st.Dchol, st.Cval, st.LS),
                                                      mode, gd, Sinv)
        self.last_scale = scale
        self.last_rows = (h, al)
        if not ok:
            return f, np.full(k, np.nan)
        return f, np.concatenate([G[self.idx], gbeta])

    def log_dispersion_derivative(self) -> float:
        """dD/d log(phi) at the last evaluation, for the exact Laplace's Gamma (its
        dispersion phi a parameter, shape a = 1/phi carried in the kernels' weights
        pw a): minus (a dA/da at fixed modes, by the digamma of the shape, plus the
        kernel's ``scale``, the log determinant's and the modes' part)."""
        dev = self.dev
        st = dev.state
        a = 1.0 / float(dev.family.dispersion)
        y, pw, mu = dev.y, dev.pw, st.mu
        dA_da = -2.0 * float(np.sum(pw * (-special.digamma(a) + math.log(a) + 1.0
                                          + np.log(y) - np.log(mu) - y / mu)))
        return -(a * dA_da + self.last_scale)
