"""Adaptive Gauss-Hermite quadrature for one random-effects term on one grouping
factor: the rule for a standard normal (``gauss_hermite``), its tensor product in k
dimensions (``product_rule``), and the deviance they give at the conditional modes
and factor PIRLS found -- ``agq_deviance`` (Numba) for a scalar term (one random
intercept), ``agq_deviance_vector`` for a vector term of k effects per level
(``(x|g)``: a correlated intercept and slope, k = 2).

The rule, per level g of the grouping factor, in the spherical random effects u_g
(prior N(0, I_k)):  with u_hat_g the conditional mode and L_g the lower Cholesky
factor of the level's k x k block of  Lambda'Z'WZ Lambda + I  (PIRLS's ``Dchol[g]``,
W the Fisher weights at the mode), the substitution  u = u_hat_g + L_g^{-T} z  turns
the level's integral into

    |L_g|^{-1}  E_z[ exp(l_g(u) - |u|^2/2 + |z|^2/2) ],   z ~ N(0, I_k),

and the expectation is taken by the product Gauss-Hermite rule: nAGQ points per
dimension, nAGQ^k nodes z with weights the products of the 1-D weights.  Its -2 log,
summed over levels, is the deviance (-2 log-likelihood, the constants of the
family's density included): with one node (z = 0, weight 1) it is
-2 l_g(u_hat) + |u_hat|^2 + 2 log|L_g|, the Laplace deviance term by term, so AGQ is
on the Laplace scale.  Any positive-definite L_g makes the rule exact as nAGQ grows;
the Fisher-weight factor is the one PIRLS has (for the canonical links it is the
observed information, so the centring and scaling are the Laplace approximation's).

Cost per level with n_g rows: nAGQ^k * n_g evaluations of the inverse link and the
log-density (plus k multiply-adds each for the linear predictor), after one k x k
triangular inverse; the whole deviance costs nAGQ^k * nobs row-node evaluations,
which ``model.check_model`` caps at ``MAX_ROW_NODES``.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from .family import (BINOMIAL, EPS, LOG, LOGIT, POISSON, linkinv, unit_loglik_const,
                     unit_loglik_var)

_LOG_EPS = math.log(EPS)              # log of the links' clamp

#: the most row-node evaluations (nAGQ^k * nobs) one vector-term AGQ deviance may
#: cost: 12-35 ns each measured (Poisson-log the cheapest, binomial probit the dearest;
#: one core of the project's 2-core Xeon VM), so 0.1-0.35 s a deviance, and a fit
#: takes a few hundred of them
MAX_ROW_NODES = 10_000_000


def gauss_hermite(n: int):
    """Nodes and log-weights of the n-point rule for a standard normal density."""
    z, logw = _gauss_hermite(int(n))
    return z.copy(), logw.copy()


@functools.lru_cache(maxsize=16)
def _gauss_hermite(n: int):
    # numpy's rule costs ~0.2 ms (an eigenvalue problem): computed once per n
    z, w = np.polynomial.hermite_e.hermegauss(n)
    w = w / np.sqrt(2.0 * np.pi)
    return np.ascontiguousarray(z), np.ascontiguousarray(np.log(w))


def product_rule(nodes, logw, k: int):
    """The k-dimensional tensor product of a 1-D rule for a standard normal: nodes
    (K x k, K = len(nodes)^k; the last coordinate varies fastest) and their log
    weights (sums of the 1-D log weights), as C-contiguous float64 arrays."""
    nodes = np.asarray(nodes, dtype=np.float64)
    logw = np.asarray(logw, dtype=np.float64)
    grids = np.meshgrid(*([nodes] * k), indexing="ij")
    wgrids = np.meshgrid(*([logw] * k), indexing="ij")
    Z = np.ascontiguousarray(np.stack([g.ravel() for g in grids], axis=1))
    LW = np.ascontiguousarray(np.sum([g.ravel() for g in wgrids], axis=0), dtype=np.float64)
    return Z, LW.reshape(-1)


def row_node_evaluations(nAGQ: int, k: int, nobs: int) -> float:
    """The work of one AGQ deviance: nAGQ^k nodes for every row (a float: it can be
    far past an int64 for a hostile nAGQ and k)."""
    return float(nAGQ) ** k * float(nobs)


@njit(cache=True, error_model="numpy")
def agq_deviance(fd, rows, a1, group_ptr, u1, Dchol, nodes, logw):
    """-2 log of the marginal likelihood for one scalar random-effects term by
    adaptive Gauss-Hermite quadrature: for each level, nodes are placed at
    u_hat + z_k / L_g (L_g the conditional precision's square root), so that one
    node reproduces the Laplace value exactly.  ``logw`` are the log weights of the
    rule for a standard normal (summing to one).

    Poisson-log and binomial-logit levels whose rows share one ``a1`` (a random
    intercept) take exp(eta_base + a u) as exp(eta_base) exp(a u): one exp per row,
    then one per node, instead of one per row and node (``_agq_level_fast``)."""
    y, pw, eta_base = rows.y, rows.pw, rows.eta_base
    fam, link = fd.family, fd.link
    ng = group_ptr.shape[0] - 1
    K = nodes.shape[0]
    total = 0.0
    terms = np.empty(K)
    fast = (fam == POISSON and link == LOG) or (fam == BINOMIAL and link == LOGIT)
    n = y.shape[0] if fast else 0
    E = np.empty(n)         # exp(eta_base)
    cnt = np.empty(n)       # Poisson: y; binomial: successes k
    tot = np.empty(n)       # Poisson: pw; binomial: trials m
    for i in range(n):
        E[i] = math.exp(eta_base[i])
        if fam == POISSON:
            cnt[i] = y[i]
            tot[i] = pw[i]
        else:
            tot[i] = math.floor(pw[i] + 0.5)
            cnt[i] = math.floor(pw[i] * y[i] + 0.5)
    for g in range(ng):
        lo = group_ptr[g]
        hi = group_ptr[g + 1]
        Lg = Dchol[g, 0, 0]
        const = 0.0                       # the lgamma terms, once per level
        for i in range(lo, hi):
            const += unit_loglik_const(y[i], pw[i], fd)
        level_fast = fast
        for i in range(lo, hi):
            if not fast or a1[i] != a1[lo] or not (abs(eta_base[i]) < 700.0):
                level_fast = False
                break
        for k in range(K):
            u = u1[g, 0] + nodes[k] / Lg
            if level_fast and abs(a1[lo] * u) < 700.0:
                ll = const + _agq_level_fast(fam, eta_base, E, cnt, tot, lo, hi,
                                             a1[lo] * u)
            else:
                ll = const
                for i in range(lo, hi):
                    m = linkinv(eta_base[i] + a1[i] * u, link)
                    ll += unit_loglik_var(y[i], m, pw[i], fd)
            terms[k] = logw[k] + ll - 0.5 * u * u + 0.5 * nodes[k] * nodes[k]
        mx = terms.max()
        s = 0.0
        for k in range(K):
            s += math.exp(terms[k] - mx)
        total += -2.0 * (mx + math.log(s)) + 2.0 * math.log(Lg)
    return total


@njit(cache=True, error_model="numpy")
def _agq_level_fast(fam, eta_base, E, cnt, tot, lo, hi, shift):
    """sum over rows lo..hi-1 of unit_loglik_var at eta = eta_base + shift, for
    Poisson-log (cnt = y, tot = prior weight) or binomial-logit (cnt = successes,
    tot = trials), with exp(eta) = E * exp(shift) and the links' clamps of
    ``linkinv``; log(mu) is eta itself (no log per row for the Poisson)."""
    es = math.exp(shift)
    ll = 0.0
    if fam == POISSON:
        for i in range(lo, hi):
            m = E[i] * es
            if m > EPS:
                lm = eta_base[i] + shift
            else:
                m = EPS
                lm = _LOG_EPS
            ll += tot[i] * (cnt[i] * lm - m) if cnt[i] > 0.0 else -tot[i] * m
        return ll
    for i in range(lo, hi):        # binomial, logit: k log(mu) + (m - k) log(1 - mu)
        if tot[i] <= 0.0:
            continue
        eta = eta_base[i] + shift
        if eta < -30.0:
            t, lt = EPS, _LOG_EPS
        elif eta > 30.0:
            t, lt = 1.0 / EPS, -_LOG_EPS
        else:
            t, lt = E[i] * es, eta
        l1 = math.log1p(t)              # -log(1 - mu); log(mu) = log(t) - log1p(t)
        ll += cnt[i] * lt - tot[i] * l1
    return ll


@njit(cache=True, error_model="numpy")
def _row_loglik(fam, link, y, pw, eta, fd):
    """unit_loglik_var at eta; Poisson-log and binomial-logit without the inverse
    link's round trip (log(mu) = eta, log(1 - mu) = -log1p(exp(eta))), with the
    clamps of ``linkinv``; other families and links through ``linkinv``."""
    if fam == POISSON and link == LOG:
        if eta > _LOG_EPS:
            m, lm = math.exp(eta), eta
        else:
            m, lm = EPS, _LOG_EPS
        return pw * (y * lm - m) if y > 0.0 else -pw * m
    if fam == BINOMIAL and link == LOGIT:
        tot = math.floor(pw + 0.5)
        if tot <= 0.0:
            return 0.0
        cnt = math.floor(pw * y + 0.5)
        if eta < -30.0:
            t, lt = EPS, _LOG_EPS
        elif eta > 30.0:
            t, lt = 1.0 / EPS, -_LOG_EPS
        else:
            t, lt = math.exp(eta), eta
        return cnt * lt - tot * math.log1p(t)
    return unit_loglik_var(y, linkinv(eta, link), pw, fd)


@njit(cache=True, error_model="numpy")
def agq_deviance_vector(fd, rows, A1, group_ptr, u1, Dchol, Z, logw):
    """-2 log of the marginal likelihood for one random-effects term of k effects per
    level (A1: n x k, row i is Lambda' z_i) by the product rule ``Z`` (K x k nodes for
    a standard normal in k dimensions) with log weights ``logw`` (summing to one),
    centred at the conditional modes u1 (levels x k) and scaled by the levels'
    lower Cholesky factors Dchol (levels x k x k): u = u_hat + L_g^{-T} z (see the
    module docstring).  One node at z = 0 gives the Laplace deviance."""
    y, pw, eta_base = rows.y, rows.pw, rows.eta_base
    fam, link = fd.family, fd.link
    ng = group_ptr.shape[0] - 1
    k = A1.shape[1]
    K = Z.shape[0]
    terms = np.empty(K)
    Rt = np.empty((k, k))                    # L_g^{-T}, upper triangular
    nmax = 0
    for g in range(ng):
        nmax = max(nmax, group_ptr[g + 1] - group_ptr[g])
    base = np.empty(nmax)                    # eta at the mode
    C = np.empty((nmax, k))                  # A1_i L_g^{-T}: eta = base + C z
    total = 0.0
    for g in range(ng):
        lo = group_ptr[g]
        hi = group_ptr[g + 1]
        L = Dchol[g]
        logdet = 0.0
        for a in range(k):
            logdet += math.log(L[a, a])
        # Rt = L^{-T}: solve L' Rt = I by back substitution, column by column
        for c in range(k):
            for a in range(k - 1, -1, -1):
                s = 1.0 if a == c else 0.0
                for b in range(a + 1, k):
                    s -= L[b, a] * Rt[b, c]
                Rt[a, c] = s / L[a, a]
        const = 0.0
        for i in range(lo, hi):
            const += unit_loglik_const(y[i], pw[i], fd)
            j = i - lo
            s = eta_base[i]
            for a in range(k):
                s += A1[i, a] * u1[g, a]
            base[j] = s
            for c in range(k):
                t = 0.0
                for a in range(c + 1):          # Rt is upper triangular
                    t += A1[i, a] * Rt[a, c]
                C[j, c] = t
        for m in range(K):
            uu = 0.0
            zz = 0.0
            for a in range(k):
                t = u1[g, a]
                for c in range(a, k):
                    t += Rt[a, c] * Z[m, c]
                uu += t * t
                zz += Z[m, a] * Z[m, a]
            ll = const
            for i in range(lo, hi):
                j = i - lo
                eta = base[j]
                for c in range(k):
                    eta += C[j, c] * Z[m, c]
                ll += _row_loglik(fam, link, y[i], pw[i], eta, fd)
            terms[m] = logw[m] + ll - 0.5 * uu + 0.5 * zz
        mx = terms.max()
        s = 0.0
        for m in range(K):
            s += math.exp(terms[m] - mx)
        total += -2.0 * (mx + math.log(s)) + 2.0 * logdet
    return total
