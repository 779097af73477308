"""Numba kernels of the numerical core: penalized IRLS on a blocked Cholesky factor,
and adaptive Gauss-Hermite quadrature for a single scalar random-effects term.

The linear predictor is written in lme4's spherical form

    eta = eta_base + Z Lambda u (+ X beta when beta is solved for in PIRLS)

with rows sorted by the levels of the first random-effects term (the one with the
most levels).  Its contribution ``A1`` (n x k1: each row is ``Lambda1' z_i``) makes
the first block of ``Lambda'Z'WZLambda + I`` block-diagonal (k1 x k1 per level), as
in MixedModels.jl's blocked factor.  Everything else -- the other random-effects
terms and, when solved for, the fixed effects -- is the "rest": each row touches
``m_use`` of its ``r`` columns (``rest_cols`` their indices, ``rest_vals`` the
values).  The rest block is dense (r x r, small for the usual designs: a crossed
factor with fewer levels, a handful of fixed effects); the off-diagonal block is
never stored in full, only per level of the first term over the columns its rows
touch (``loc_*``), a structure computed once per model
(``devfun.symbolic_blocks``), while each theta only refreshes the numbers
(``factorize``).

The first ``npen`` rest columns are random effects (penalised by ``+ I``); the
remaining rest columns are fixed effects (no penalty, not part of ``log|L|^2``).

The kernels take a few typed structs (NamedTuples, which Numba passes to compiled
code and caches) rather than long lists of arrays: the family as
``family.FamilyData``, the response as :class:`Rows`, the design in blocked form as
:class:`BlockedLayout`, the factor as :class:`Factor`, the loop's settings as
:class:`PirlsControl`; PIRLS answers a :class:`PirlsResult`.  Every pass over the
rows that builds the blocked system goes through ``row_sums`` (rows [lo, hi) of one
level of term 1), the seam at which the rows could be split across processes.
``pirls`` (this package's mode search) and ``pirls_lme4`` (lme4's loop, which
lme4's standard errors depend on) are two short drivers over the same pieces
(weights, factor, Newton solve, deviance): one loop with a flag would have to
order the floating-point operations of one of them differently.
All kernels are plain loops over float64/int64 arrays; ``tests/test_kernels.py``
checks them against dense numpy formulas on small cases.

Glossary (the kernels' names, what they hold, and lme4's notation where it has one;
the first random-effects term is "term 1", its levels "groups"):

===================  ==========================================================  =========
name                 what it holds                                               lme4
===================  ==========================================================  =========
fd                   the family: codes and parameters (``FamilyData``)           family
y, pw, eta_base      response, prior weights, offset (+ X beta when beta is      y, weights
(``Rows``)           fixed)
A1                   n x k1: row i is Lambda_1' z_i, term 1's part of Z Lambda    Z Lambda
group_ptr            row ranges per group of term 1 (rows are sorted by it)      (flist)
rest_cols,           per row, the rest columns it touches and their values       Z Lambda, X
rest_vals, m_use     (m_use of them)
r, npen (q2)         rest columns; the first npen are random effects (penalised)
loc_ptr, loc_cols    per group, the range and the (global) rest columns its      (sparsity
                     rows touch: where the off-diagonal block is stored          of L)
rest_loc             per row, each touched rest column's index in its group's
                     loc_cols list
u1, v                spherical modes of term 1 (groups x k1), the rest's         u (and beta)
                     (random effects, then fixed effects when solved for)
Dchol                per group, the lower Cholesky factor of term 1's k1 x k1    L (diagonal
                     block                                                       blocks)
Cval                 per group, L_g^{-1} B_g: the off-diagonal block of the      L (RZX-like
                     factor over the group's rest columns                        block)
LS                   the lower Cholesky factor of the rest's Schur complement    L (rest);
                                                                                 RX for X
w, wres              working weights and weighted working residuals (IRLS)       sqrtWrkWt^2
du1, dv              the Newton step of u1 and v
logdet               log|L|^2 of the random-effects part                         ldL2
pdev                 penalized deviance: sum of unit deviances + |u|^2           sum(devResid)
                                                                                 + sqrL
===================  ==========================================================  =========
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .family import (EPS, BINOMIAL, GAMMA, LOG, LOGIT, NB_THETA, NEGBIN, POISSON, linkinv,
                     mu_eta, variance, unit_deviance, unit_loglik_const, unit_loglik_var,
                     conditional_aic_fast)

_LOG_EPS = math.log(EPS)              # log of the links' clamp

# status codes of PirlsResult.status
PIRLS_OK, PIRLS_MAXIT, PIRLS_NOT_PD, PIRLS_NONFINITE = 0, 1, 2, 3


# ---- the structs the kernels take and return ---------------------------------------

class Rows(NamedTuple):
    """The response, row by row (sorted by term 1's levels)."""

    y: np.ndarray
    pw: np.ndarray          # prior weights (binomial: trials)
    eta_base: np.ndarray    # offset, plus X beta when beta is fixed


class BlockedLayout(NamedTuple):
    """The design in the blocked form of the factor (see the glossary): the
    numbers of A1 and rest_vals change with theta, the rest once per model."""

    A1: np.ndarray          # n x k1
    group_ptr: np.ndarray   # ng + 1
    rest_vals: np.ndarray   # n x m (m >= m_use)
    rest_cols: np.ndarray   # n x m, int64, ascending within a row
    rest_loc: np.ndarray    # n x m_use, int64
    m_use: int
    loc_ptr: np.ndarray     # ng + 1
    loc_cols: np.ndarray
    r: int
    npen: int
    dense_rows: int         # see dense_update_rows


class Factor(NamedTuple):
    """The blocked Cholesky factor (filled by ``factorize``)."""

    Dchol: np.ndarray       # ng x k1 x k1
    Cval: np.ndarray        # k1 x len(loc_cols)
    LS: np.ndarray          # r x r


class PirlsControl(NamedTuple):
    """Iterations ``it_first`` to ``maxit`` of the loop, the convergence tolerance,
    and ``finish`` (a piece's hand-over flag, see ``pirls``)."""

    maxit: int
    tol: float
    it_first: int = 1
    finish: bool = False


class PirlsResult(NamedTuple):
    """What ``pirls`` and ``pirls_lme4`` answer (u1, v are updated in place)."""

    status: int             # PIRLS_OK, PIRLS_MAXIT, ...
    iterations: int
    logdet: float           # log|L|^2 of the random-effects part
    pdev: float             # sum of deviance residuals + |u|^2
    aic: float              # -2 conditional log-likelihood (family aic term)
    factor: Factor          # at the returned modes
    mu: np.ndarray
    eta: np.ndarray
    ussq: float             # |u|^2
    more: bool              # a piece ran out of iterations without deciding
    finish: bool            # the flag to pass on to the next piece


@njit(cache=True, error_model="numpy")
def new_factor(layout):
    """Storage for the factor of a layout (``factorize`` fills it)."""
    ng = layout.group_ptr.shape[0] - 1
    k1 = layout.A1.shape[1]
    return Factor(np.empty((ng, k1, k1)), np.empty((k1, layout.loc_cols.shape[0])),
                  np.empty((layout.r, layout.r)))


# ---- products and the linear predictor ----------------------------------------------

@njit(cache=True, error_model="numpy")
def linear_predictor(layout, eta_base, u1, v, eta):
    """eta = eta_base + A1 u1 (per group) + rest_vals v (over each row's columns)."""
    A1, gptr = layout.A1, layout.group_ptr
    Rv, Rc = layout.rest_vals, layout.rest_cols
    ng = gptr.shape[0] - 1
    k1 = A1.shape[1]
    for g in range(ng):
        for i in range(gptr[g], gptr[g + 1]):
            s = eta_base[i]
            for a in range(k1):
                s += A1[i, a] * u1[g, a]
            for e in range(layout.m_use):
                s += Rv[i, e] * v[Rc[i, e]]
            eta[i] = s


@njit(cache=True, error_model="numpy")
def offset_plus_xb(offset, X, beta):
    """offset + X @ beta by plain loops: no BLAS call, whose worker threads cost
    far more than this product when another process holds a core."""
    n, p = X.shape
    out = np.empty(n)
    for i in range(n):
        s = offset[i]
        for j in range(p):
            s += X[i, j] * beta[j]
        out[i] = s
    return out


@njit(cache=True, error_model="numpy")
def small_matmul(Z, L, out, col0):
    """out[:, col0:col0 + m] = Z @ L for a tall Z (n x k) and a small L (k x m), by
    plain loops (no BLAS threads, as ``offset_plus_xb``)."""
    n, k = Z.shape
    m = L.shape[1]
    for i in range(n):
        for b in range(m):
            s = 0.0
            for a in range(k):
                s += Z[i, a] * L[a, b]
            out[i, col0 + b] = s

@njit(cache=True, error_model="numpy")
def _copy_modes(u1, v, u1_to, v_to):
    """u1_to, v_to = u1, v by loops (a slice assignment would compile numba's
    shape-mismatch error path, with its string formatting: seconds of compilation)."""
    for g in range(u1.shape[0]):
        for a in range(u1.shape[1]):
            u1_to[g, a] = u1[g, a]
    for j in range(v.shape[0]):
        v_to[j] = v[j]


@njit(cache=True, error_model="numpy")
def _penalty(u1, v, npen):
    s = 0.0
    for g in range(u1.shape[0]):
        for a in range(u1.shape[1]):
            s += u1[g, a] * u1[g, a]
    for j in range(npen):
        s += v[j] * v[j]
    return s


@njit(cache=True, error_model="numpy")
def _step_modes(u1_old, v_old, du1, dv, step, u1, v):
    """u1, v = u1_old + step du1, v_old + step dv (``pirls``'s line search)."""
    for g in range(u1.shape[0]):
        for a in range(u1.shape[1]):
            u1[g, a] = u1_old[g, a] + step * du1[g, a]
    for j in range(v.shape[0]):
        v[j] = v_old[j] + step * dv[j]


@njit(cache=True, error_model="numpy")
def _halve_towards(u1_old, v_old, u1, v):
    """u1, v = (u1 + u1_old) / 2, (v + v_old) / 2 (lme4's step halving)."""
    for g in range(u1.shape[0]):
        for a in range(u1.shape[1]):
            u1[g, a] = 0.5 * (u1[g, a] + u1_old[g, a])
    for j in range(v.shape[0]):
        v[j] = 0.5 * (v[j] + v_old[j])


# ---- the family's part: deviance and weights ----------------------------------------

@njit(cache=True, error_model="numpy")
def _mu_and_deviance(fd, rows, eta, mu):
    """mu = g^{-1}(eta) in place; returns the summed deviance residuals."""
    y, pw = rows.y, rows.pw
    dev = 0.0
    for i in range(y.shape[0]):
        m = linkinv(eta[i], fd.link)
        mu[i] = m
        dev += unit_deviance(y[i], m, pw[i], fd)
    return dev


@njit(cache=True, error_model="numpy")
def _penalized_deviance(fd, rows, layout, u1, v, eta, mu):
    """eta, mu and the penalized deviance sum(dev_i) + |u|^2 at the modes u1, v."""
    linear_predictor(layout, rows.eta_base, u1, v, eta)
    return _mu_and_deviance(fd, rows, eta, mu) + _penalty(u1, v, layout.npen)


@njit(cache=True, error_model="numpy")
def working_weights(fd, rows, eta, mu, w, wres):
    """Fisher weights w = pw mu_eta^2 / V(mu) and the score term
    wres = pw mu_eta (y - mu) / V(mu) (so the gradient is Z'wres - u)."""
    y, pw = rows.y, rows.pw
    link = fd.link
    for i in range(y.shape[0]):
        # log link: mu_eta(eta) is mu itself (the same max(exp(eta), eps)); no exp
        me = mu[i] if link == LOG else mu_eta(eta[i], link)
        vr = variance(mu[i], fd)
        w[i] = pw[i] * me * me / vr
        wres[i] = pw[i] * me * (y[i] - mu[i]) / vr


@njit(cache=True, error_model="numpy")
def _lme4_working_response(fd, rows, eta, mu, w, wz):
    """wz = w z with lme4's working response z = (eta - eta_base) + (y - mu)/mu_eta
    (``pirls_lme4``; w from ``working_weights``)."""
    y, eta_base = rows.y, rows.eta_base
    link = fd.link
    for i in range(y.shape[0]):
        me = mu[i] if link == LOG else mu_eta(eta[i], link)    # (as working_weights)
        wz[i] = w[i] * ((eta[i] - eta_base[i]) + (y[i] - mu[i]) / me)


@njit(cache=True, error_model="numpy")
def newton_weights(fd, rows, mu, w):
    """Observed-information weights -d2 loglik / d eta2 where they are known to be
    positive and differ from Fisher's (log link with Gamma or NB2), for quadratic
    convergence of the mode search.  Returns False (w untouched) elsewhere: canonical
    links already have Newton = Fisher."""
    fam = fd.family
    if fd.link != LOG or (fam != GAMMA and fam != NEGBIN):
        return False
    y, pw = rows.y, rows.pw
    for i in range(y.shape[0]):
        if fam == GAMMA:
            w[i] = pw[i] * y[i] / mu[i]
        else:
            t = fd.params[NB_THETA]
            w[i] = pw[i] * t * mu[i] * (t + y[i]) / ((t + mu[i]) * (t + mu[i]))
    return True
DENSE_CHUNK_ROWS = 1024


def dense_update_rows(loc_ptr, k1: int, r: int) -> int:
    """How ``factorize`` forms the Schur complement's C'C: 0 = level by level over
    the touched columns (sparse), else the row count of a dense buffer of C whose
    C'C is formed by contiguous row updates per chunk (``_flush``) -- chosen only
    when the rest columns are touched almost densely: measured on the crossed
    Poisson series, the two cost the same at half-dense touches."""
    if r == 0:
        return 0
    nloc = np.diff(loc_ptr).astype(np.float64)
    sparse_cost = float(np.sum(nloc * nloc)) * k1
    dense_cost = len(nloc) * k1 * float(r) * r / 2.0   # a triangle of each row pair
    return DENSE_CHUNK_ROWS if dense_cost < sparse_cost else 0


@njit(cache=True, error_model="numpy")
def _flush(Cd, rows, S):
    """S -= Cd[:rows]' Cd[:rows] on the lower triangle (all factorize reads), then
    zero those rows: a rank-one update per row over its nonzero entries, each a
    contiguous (vectorized) loop.  Plain loops rather than BLAS, whose worker
    threads slow everything down when another process holds a core."""
    r = S.shape[0]
    for i in range(rows):
        c = Cd[i]
        for a in range(r):
            x = c[a]
            if x != 0.0:
                Sa = S[a]
                for b in range(a + 1):
                    Sa[b] -= x * c[b]
        for a in range(r):
            c[a] = 0.0


# ---- the blocked system -----------------------------------------------------------

@njit(cache=True, error_model="numpy", inline="always")
def row_sums(layout, w, lo, hi, D, B, S):
    """Add rows [lo, hi) of one group of term 1 to the cross-products of the blocked
    system: D += A1'W A1 (its lower triangle; k1 x k1), B += A1'W R (k1 x the
    group's touched rest columns, at ``rest_loc``), S += R'W R (the lower triangle
    of the rest block).

    Each is a plain sum over rows: sums over a split of the rows (processes,
    partitions) add up to the sums over all of them.  ``factorize`` calls it once
    per group, inlined (as a call it made ``factorize`` 10% slower on pois_1e4).
    The other row sums of a PIRLS step, the score A1'wres, R'wres
    (``newton_step``) and the deviance (``_mu_and_deviance``), are passes of their
    own: folded into this one they made a PIRLS evaluation 7-10% slower."""
    A1 = layout.A1
    Rv, Rc, Rloc = layout.rest_vals, layout.rest_cols, layout.rest_loc
    m_use = layout.m_use
    k1 = A1.shape[1]
    for i in range(lo, hi):
        wi = w[i]
        for a in range(k1):
            wa = wi * A1[i, a]
            for b in range(a + 1):
                D[a, b] += wa * A1[i, b]
            for e in range(m_use):
                B[a, Rloc[i, e]] += wa * Rv[i, e]
        for e in range(m_use):      # lower triangle only (row columns ascend)
            c = Rc[i, e]
            we = wi * Rv[i, e]
            for e2 in range(e + 1):
                S[c, Rc[i, e2]] += we * Rv[i, e2]


@njit(cache=True, error_model="numpy")
def factorize(layout, w, factor):
    """Blocked Cholesky factor of  [A1'WA1 + I, A1'WR; R'WA1, R'WR + P]  into
    ``factor``, the rows summed group by group by ``row_sums``.

    Only the lower triangle of the rest block is formed and factored.

    On return ``Dchol[g]`` holds the lower factor L_g of the first term's block for
    level g, ``Cval[:, loc]`` holds L_g^{-1} B_g, and ``LS`` the lower Cholesky
    factor of the Schur complement of the rest.  Returns (log|L|^2 of the
    random-effects part, ok).  ``layout.dense_rows`` > 0 forms C'C by dense products
    over chunks of that many rows (see ``dense_update_rows``)."""
    gptr, loc_ptr, loc_cols = layout.group_ptr, layout.loc_ptr, layout.loc_cols
    dense_rows = layout.dense_rows
    Dchol, Cval, S = factor.Dchol, factor.Cval, factor.LS
    ng = gptr.shape[0] - 1
    k1 = layout.A1.shape[1]
    r = S.shape[0]
    Cd = np.zeros((min(dense_rows, ng * k1) if r > 0 else 0, r))
    filled = 0
    maxloc = 0
    for g in range(ng):
        maxloc = max(maxloc, loc_ptr[g + 1] - loc_ptr[g])
    B = np.zeros((k1, max(maxloc, 1)))
    for a in range(r):
        for b in range(r):
            S[a, b] = 0.0
    logdet = 0.0
    prod = 1.0
    for g in range(ng):
        base = loc_ptr[g]
        nloc = loc_ptr[g + 1] - base
        D = Dchol[g]
        for a in range(k1):
            for b in range(k1):
                D[a, b] = 0.0
            D[a, a] = 1.0
            for l in range(nloc):
                B[a, l] = 0.0
        row_sums(layout, w, gptr[g], gptr[g + 1], D, B, S)
        # dense Cholesky of the small k1 x k1 block
        for j in range(k1):
            s = D[j, j]
            for l in range(j):
                s -= D[j, l] * D[j, l]
            if not (s > 0.0):
                return -np.inf, False
            d = math.sqrt(s)
            D[j, j] = d
            # log|L|^2 gathers the pivots s = d^2 in a product, one log per ~1e100
            # of it rather than one per level (s >= 1 here: the block is I + A'WA)
            if s > 1e100:
                logdet += math.log(s)
            else:
                prod *= s
                if prod > 1e200:
                    logdet += math.log(prod)
                    prod = 1.0
            for a in range(j + 1, k1):
                s = D[a, j]
                for l in range(j):
                    s -= D[a, l] * D[j, l]
                D[a, j] = s / d
            for a in range(j):
                D[a, j] = 0.0
        # C_g = L_g^{-1} B_g, then S[loc, loc] -= C_g' C_g
        for l in range(nloc):
            for a in range(k1):
                s = B[a, l]
                for b in range(a):
                    s -= D[a, b] * Cval[b, base + l]
                Cval[a, base + l] = s / D[a, a]
        if dense_rows > 0 and r > 0:
            if filled + k1 > Cd.shape[0]:
                _flush(Cd, filled, S)
                filled = 0
            for a in range(k1):
                for l in range(nloc):
                    Cd[filled + a, loc_cols[base + l]] = Cval[a, base + l]
            filled += k1
            continue
        # (loc_cols ascend within a level, so l2 <= l1 is the lower triangle)
        for a in range(k1):
            Ca = Cval[a]
            for l1 in range(nloc):
                Sc = S[loc_cols[base + l1]]
                x = Ca[base + l1]
                for l2 in range(l1 + 1):
                    Sc[loc_cols[base + l2]] -= x * Ca[base + l2]
    logdet += math.log(prod)
    if dense_rows > 0 and r > 0:
        _flush(Cd, filled, S)
    if r == 0:
        return logdet, True
    for j in range(layout.npen):
        S[j, j] += 1.0
    ld, ok = chol_lower(S, layout.npen)
    if not ok:
        return -np.inf, False
    return logdet + ld, True


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _dot_prefix(x, y, n):
    """sum(x[:n] * y[:n]), free to reassociate (so that it vectorizes)."""
    s = 0.0
    for l in range(n):
        s += x[l] * y[l]
    return s


@njit(cache=True, error_model="numpy")
def chol_lower(S, npen):
    """In-place lower Cholesky factor of the symmetric S (only its lower triangle is
    read; the upper is zeroed).  Returns (log of the squared diagonal of the first
    ``npen`` columns, ok).  Left-looking, so every inner product runs over two
    contiguous row pieces (vectorized by ``_dot_prefix``).  When the rows' envelopes
    (no factor entries left of a row's first nonzero) cover less than half the
    triangle -- nested designs, where each level of the first term sits inside one
    level of a rest term and the rest block is (nearly) diagonal -- the products
    run only over them: O(r^2) instead of O(r^3)."""
    r = S.shape[0]
    first = np.empty(r, np.int64)
    profile = 0
    for a in range(r):
        f = a
        for b in range(a):
            if S[a, b] != 0.0:
                f = b
                break
        first[a] = f
        profile += a - f
    if 4 * profile < r * (r - 1):
        ok = _chol_envelope(S, first)
    else:
        ok = _chol_dense(S)
    if not ok:
        return -np.inf, False
    logdet = 0.0
    for j in range(npen):
        logdet += 2.0 * math.log(S[j, j])
    for a in range(r):
        for b in range(a + 1, r):
            S[a, b] = 0.0
    return logdet, True


@njit(cache=True, error_model="numpy")
def _chol_dense(S):
    r = S.shape[0]
    for j in range(r):
        Sj = S[j]
        s = S[j, j] - _dot_prefix(Sj, Sj, j)
        if not (s > 0.0):
            return False
        d = math.sqrt(s)
        S[j, j] = d
        for a in range(j + 1, r):
            S[a, j] = (S[a, j] - _dot_prefix(S[a], Sj, j)) / d
    return True


@njit(cache=True, error_model="numpy")
def _chol_envelope(S, first):
    r = S.shape[0]
    for j in range(r):
        Sj = S[j]
        fj = first[j]
        s = S[j, j] - _dot_prefix(Sj[fj:], Sj[fj:], j - fj)
        if not (s > 0.0):
            return False
        d = math.sqrt(s)
        S[j, j] = d
        for a in range(j + 1, r):
            fa = first[a]
            if fa > j:              # left of row a's envelope: stays zero
                continue
            lo = max(fa, fj)
            S[a, j] = (S[a, j] - _dot_prefix(S[a, lo:], Sj[lo:], j - lo)) / d
    return True


@njit(cache=True, error_model="numpy")
def newton_step(layout, factor, wres, u1, v, du1, dv):
    """Solve H delta = gradient with the factor from ``factorize``, the gradient
    being the score A1'wres - u1, R'wres - (v, 0) (its row sums formed here, one
    pass over the rows); the step goes to du1, dv.  Returns the Newton decrement
    g'H^{-1}g (in deviance units)."""
    A1, gptr = layout.A1, layout.group_ptr
    Rv, Rc, m_use = layout.rest_vals, layout.rest_cols, layout.m_use
    loc_ptr, loc_cols = layout.loc_ptr, layout.loc_cols
    Dchol, Cval, LS = factor.Dchol, factor.Cval, factor.LS
    ng = gptr.shape[0] - 1
    k1 = A1.shape[1]
    if k1 == 1:
        return _newton_step_k1(layout, factor, wres, u1, v, du1, dv)
    r = LS.shape[0]
    for j in range(r):
        dv[j] = 0.0
    for g in range(ng):
        for a in range(k1):
            du1[g, a] = -u1[g, a]
        for i in range(gptr[g], gptr[g + 1]):
            wi = wres[i]
            for a in range(k1):
                du1[g, a] += wi * A1[i, a]
            for e in range(m_use):
                dv[Rc[i, e]] += wi * Rv[i, e]
    for j in range(layout.npen):
        dv[j] -= v[j]
    dec = 0.0
    for g in range(ng):
        D = Dchol[g]
        for a in range(k1):
            s = du1[g, a]
            for b in range(a):
                s -= D[a, b] * du1[g, b]
            du1[g, a] = s / D[a, a]
            dec += du1[g, a] * du1[g, a]
        base = loc_ptr[g]
        for l in range(loc_ptr[g + 1] - base):
            s = 0.0
            for a in range(k1):
                s += Cval[a, base + l] * du1[g, a]
            dv[loc_cols[base + l]] -= s
    dec += _rest_solve(LS, dv)
    for g in range(ng):
        D = Dchol[g]
        base = loc_ptr[g]
        for l in range(loc_ptr[g + 1] - base):
            c = loc_cols[base + l]
            for a in range(k1):
                du1[g, a] -= Cval[a, base + l] * dv[c]
        for a in range(k1 - 1, -1, -1):
            s = du1[g, a]
            for b in range(a + 1, k1):
                s -= D[b, a] * du1[g, b]
            du1[g, a] = s / D[a, a]
    return dec


@njit(cache=True, error_model="numpy")
def _newton_step_k1(layout, factor, wres, u1, v, du1, dv):
    """``newton_step`` for a scalar first term (k1 = 1, the usual random intercept):
    the same arithmetic without the loops over the term's dimension (about 2x
    faster at 400 levels)."""
    gptr = layout.group_ptr
    Rv, Rc, m_use = layout.rest_vals, layout.rest_cols, layout.m_use
    loc_ptr, loc_cols = layout.loc_ptr, layout.loc_cols
    Dchol, LS = factor.Dchol, factor.LS
    ng = gptr.shape[0] - 1
    r = LS.shape[0]
    for j in range(r):
        dv[j] = 0.0
    a1 = layout.A1[:, 0]
    C = factor.Cval[0]
    dec = 0.0
    for g in range(ng):
        s = -u1[g, 0]
        for i in range(gptr[g], gptr[g + 1]):
            wi = wres[i]
            s += wi * a1[i]
            for e in range(m_use):
                dv[Rc[i, e]] += wi * Rv[i, e]
        s /= Dchol[g, 0, 0]
        du1[g, 0] = s
        dec += s * s
    for j in range(layout.npen):
        dv[j] -= v[j]
    for g in range(ng):
        s = du1[g, 0]
        for l in range(loc_ptr[g], loc_ptr[g + 1]):
            dv[loc_cols[l]] -= C[l] * s
    dec += _rest_solve(LS, dv)
    for g in range(ng):
        s = du1[g, 0]
        for l in range(loc_ptr[g], loc_ptr[g + 1]):
            s -= C[l] * dv[loc_cols[l]]
        du1[g, 0] = s / Dchol[g, 0, 0]
    return dec


@njit(cache=True, error_model="numpy")
def _rest_solve(LS, dv):
    """dv <- LS'^{-1} LS^{-1} dv, returning |LS^{-1} dv|^2: L y = dv by row dot
    products, then L' x = y by column updates with rows of L (both run along
    contiguous rows of LS)."""
    r = LS.shape[0]
    dec = 0.0
    for j in range(r):
        dv[j] = (dv[j] - _dot_prefix(LS[j], dv, j)) / LS[j, j]
        dec += dv[j] * dv[j]
    for j in range(r - 1, -1, -1):
        x = dv[j] / LS[j, j]
        dv[j] = x
        Lj = LS[j]
        for l in range(j):
            dv[l] -= Lj[l] * x
    return dec


# ---- PIRLS ---------------------------------------------------------------------------

@njit(cache=True, error_model="numpy")
def pirls(fd, rows, layout, u1, v, control, aic_const):
    """Penalized iteratively reweighted least squares for the conditional modes.

    Minimises  sum(dev_i) + |u|^2  over u1, v (v holds the other random effects and,
    when ``r > npen``, the fixed effects) by Fisher-scoring steps with step halving,
    starting from the given u1, v (updated in place).  Stops when the Newton
    decrement falls below ``tol * (1 + pdev)``, or stalls at rounding level.
    Returns a ``PirlsResult``; its factor is the one at the returned modes.

    Iterations ``control.it_first`` to ``control.maxit`` are done: a caller can run
    the loop in pieces (checking a time budget in between,
    ``devfun.GlmmDeviance.pirls``), each piece starting where the last stopped --
    the same arithmetic as one call, as each piece recomputes the deviance at the
    modes it is given exactly as the loop does after a step.  ``more`` is True when
    the piece ran out of iterations without deciding (then ``finish`` is the flag to
    pass on), False when done.
    """
    n = rows.y.shape[0]
    ng = layout.group_ptr.shape[0] - 1
    k1 = layout.A1.shape[1]
    r = layout.r
    tol = control.tol
    finish = control.finish
    eta = np.empty(n)
    mu = np.empty(n)
    w = np.empty(n)
    wn = np.empty(n)
    wres = np.empty(n)
    factor = new_factor(layout)
    du1 = np.empty((ng, k1))
    dv = np.empty(r)
    u1_old = np.empty((ng, k1))
    v_old = np.empty(r)

    pdev = _penalized_deviance(fd, rows, layout, u1, v, eta, mu)
    if not np.isfinite(pdev):
        return PirlsResult(PIRLS_NONFINITE, 0, np.inf, pdev, np.inf, factor, mu, eta, np.inf,
                           False, finish)
    status = PIRLS_MAXIT
    logdet = np.inf
    it = 0
    more = True
    for it in range(control.it_first, control.maxit + 1):
        working_weights(fd, rows, eta, mu, w, wres)
        newton = newton_weights(fd, rows, mu, wn)
        logdet, ok = factorize(layout, wn if newton else w, factor)
        if not ok:
            status = PIRLS_NOT_PD
            more = False
            break
        dec = newton_step(layout, factor, wres, u1, v, du1, dv)
        if dec < tol * (1.0 + abs(pdev)) or finish:
            status = PIRLS_OK
            if newton:      # the Laplace determinant uses Fisher's weights (lme4)
                logdet, ok = factorize(layout, w, factor)
                if not ok:
                    status = PIRLS_NOT_PD
            more = False
            break
        _copy_modes(u1, v, u1_old, v_old)
        step = 1.0
        accepted = False
        new = pdev
        for _ in range(40):
            _step_modes(u1_old, v_old, du1, dv, step, u1, v)
            new = _penalized_deviance(fd, rows, layout, u1, v, eta, mu)
            if new <= pdev + 1e-13 * abs(pdev):
                accepted = True
                break
            step *= 0.5
        if not accepted:
            # no descent at all along a Newton direction: we are at rounding level
            _copy_modes(u1_old, v_old, u1, v)
            pdev = _penalized_deviance(fd, rows, layout, u1, v, eta, mu)
            working_weights(fd, rows, eta, mu, w, wres)
            logdet, ok = factorize(layout, w, factor)
            status = PIRLS_OK if (ok and dec < 1e-10 * (1.0 + abs(pdev))) else PIRLS_MAXIT
            more = False
            break
        # rounding-level progress with a tiny decrement: the mode is found (Fisher
        # scoring for non-canonical links can hover there); refactor once and stop
        if pdev - new <= 1e-15 * abs(pdev) and dec < 1e-12 * (1.0 + abs(pdev)):
            finish = True
        pdev = new
    if it < control.it_first:   # no iteration to do
        more = False
    aic = conditional_aic_fast(rows.y, mu, rows.pw, fd, aic_const)
    return PirlsResult(status, it, logdet, pdev, aic, factor, mu, eta,
                       _penalty(u1, v, layout.npen), more, finish)


@njit(cache=True, error_model="numpy")
def pirls_lme4(fd, rows, layout, eta0, control, aic_const):
    """lme4's own PIRLS loop, reproduced to reproduce lme4's numbers where they depend
    on it (its finite-difference Hessian, hence its printed standard errors): the
    same pieces as ``pirls`` (weights, factor, solve, deviance) in lme4's order.

    Each call starts from the fixed linear predictor ``eta0`` with u = 0, v = 0
    (``rows.eta_base`` is the offset, plus X beta when beta is fixed); each iteration
    solves for the whole coefficient vector with the working response
    z = (eta - eta_base) + (y - mu)/mu_eta, halves the step towards the last
    iterate (at most 10 times) while the penalized deviance increases, and stops
    when it changes by less than ``control.tol`` relative (never after the first
    iteration).  ``logdet`` is log|L|^2 from the weights *before* the last update,
    as lme4 returns it, so aic + ussq + logdet is lme4's deviance; status is
    PIRLS_NOT_PD if a factor failed (the deviance is then infinite)."""
    n = rows.y.shape[0]
    ng = layout.group_ptr.shape[0] - 1
    k1 = layout.A1.shape[1]
    r = layout.r
    eta = eta0.copy()
    mu = np.empty(n)
    w = np.empty(n)
    wz = np.empty(n)
    factor = new_factor(layout)
    zero1 = np.zeros((ng, k1))
    zerov = np.zeros(r)
    u1 = np.zeros((ng, k1))
    v = np.zeros(r)
    u1_old = np.zeros((ng, k1))
    v_old = np.zeros(r)
    for i in range(n):
        mu[i] = linkinv(eta[i], fd.link)
    status = PIRLS_MAXIT
    oldpdev = np.inf
    pdev = np.inf
    logdet = np.inf
    it = 0
    for it in range(1, control.maxit + 1):
        working_weights(fd, rows, eta, mu, w, wz)
        _lme4_working_response(fd, rows, eta, mu, w, wz)
        logdet, ok = factorize(layout, w, factor)
        if not ok:
            status = PIRLS_NOT_PD
            logdet = np.inf
            break
        _copy_modes(u1, v, u1_old, v_old)
        # the whole coefficient vector: a Newton step from u = 0 with lme4's response
        newton_step(layout, factor, wz, zero1, zerov, u1, v)
        pdev = _penalized_deviance(fd, rows, layout, u1, v, eta, mu)
        if it > 1 and pdev > oldpdev:
            for _ in range(10):          # lme4's step halving towards the last iterate
                _halve_towards(u1_old, v_old, u1, v)
                pdev = _penalized_deviance(fd, rows, layout, u1, v, eta, mu)
                if pdev <= oldpdev:
                    break
        if abs(oldpdev - pdev) < control.tol * abs(pdev) or pdev == oldpdev:
            status = PIRLS_OK
            break
        oldpdev = pdev
    aic = conditional_aic_fast(rows.y, mu, rows.pw, fd, aic_const)
    return PirlsResult(status, it, logdet, pdev, aic, factor, mu, eta,
                       _penalty(u1, v, layout.npen), False, False)


# ---- adaptive Gauss-Hermite quadrature -----------------------------------------------

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
def term1_conditional_cov(Dchol, Cval, loc_ptr, loc_cols, Sinv):
    """Diagonal blocks, for the first term's levels, of the inverse of the
    random-effects system  [D, B; B', E]:  L_g^{-T} (I + C_g S^{-1} C_g') L_g^{-1}
    (S the Schur complement of the rest, ``Sinv`` its inverse)."""
    ng = Dchol.shape[0]
    k = Dchol.shape[1]
    out = np.empty((ng, k, k))
    M = np.empty((k, k))
    Linv = np.empty((k, k))
    for g in range(ng):
        base = loc_ptr[g]
        nloc = loc_ptr[g + 1] - base
        for a in range(k):
            for b in range(k):
                s = 1.0 if a == b else 0.0
                for l1 in range(nloc):
                    ca = Cval[a, base + l1]
                    if ca == 0.0:
                        continue
                    c1 = loc_cols[base + l1]
                    for l2 in range(nloc):
                        s += ca * Sinv[c1, loc_cols[base + l2]] * Cval[b, base + l2]
                M[a, b] = s
        D = Dchol[g]
        for j in range(k):          # inverse of the lower-triangular factor
            for a in range(k):
                Linv[a, j] = 0.0
            Linv[j, j] = 1.0 / D[j, j]
            for a in range(j + 1, k):
                s = 0.0
                for b in range(j, a):
                    s -= D[a, b] * Linv[b, j]
                Linv[a, j] = s / D[a, a]
        for a in range(k):
            for b in range(k):
                s = 0.0
                for c in range(k):
                    for d in range(k):
                        s += Linv[c, a] * M[c, d] * Linv[d, b]
                out[g, a, b] = s
    return out


