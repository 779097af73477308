"""Adaptive Gauss-Hermite quadrature for a single scalar random-effects term: the
rule for a standard normal (``gauss_hermite``) and the deviance it gives
(``agq_deviance``, Numba) at the conditional modes and factor PIRLS found.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from .family import (BINOMIAL, EPS, LOG, LOGIT, POISSON, linkinv, unit_loglik_const,
                     unit_loglik_var)

_LOG_EPS = math.log(EPS)              # log of the links' clamp


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
