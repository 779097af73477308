"""The blocked layout of the random-effects system and its Cholesky factor (Numba).

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

Two large crossed factors (customers x products, raters x items) make the rest's
Schur complement really dense (MixedModels.jl keeps that block dense too): from
``LAPACK_MIN_R`` columns on it is factored by LAPACK's dpotrf (``_chol_lapack``) and
inverted for the conditional covariance by dpotri (``rest_inverse``); below, by this
module's own loops, whose numbers the usual models have always had.  (A sparse
supernodal factor, CHOLMOD via scikit-sparse, would not help a random crossing --
the fill is dense -- and is not installable from wheels.)

The first ``npen`` rest columns are random effects (penalised by ``+ I``); the
remaining rest columns are fixed effects (no penalty, not part of ``log|L|^2``).

This module holds the layout (:class:`BlockedLayout`), the factor (:class:`Factor`)
and what works on them: the linear predictor, the factorization, the Newton solve
and term 1's conditional covariance.  Every pass over the rows that builds the
blocked system goes through ``row_sums`` (rows [lo, hi) of one level of term 1), the
seam at which the rows could be split across processes.  PIRLS, which drives these
pieces, is ``pirls.py``; adaptive quadrature is ``agq.py``.  All kernels are plain
loops over float64/int64 arrays; ``tests/engine/test_kernels.py`` checks them
against dense numpy formulas on small cases.

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
from numba.core import types
from numba.np.linalg import _LAPACK


# ---- the structs ----------------------------------------------------------------

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
    lapack_min: int = 0     # see chol_lower (0: LAPACK_MIN_R)


class Factor(NamedTuple):
    """The blocked Cholesky factor (filled by ``factorize``)."""

    Dchol: np.ndarray       # ng x k1 x k1
    Cval: np.ndarray        # k1 x len(loc_cols)
    LS: np.ndarray          # r x r


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


# ---- the blocked system -----------------------------------------------------------

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
    (``newton_step``) and the deviance (``pirls.py``), are passes of their
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


@njit(cache=True, error_model="numpy", inline="always")
def chol_block(D, logdet, prod):
    """In-place lower Cholesky factor of a level's small k1 x k1 block D (its lower
    triangle read, the upper zeroed) and log|L|^2's running sum: the pivots s = d^2
    gathered in a product, one log per ~1e200 of it rather than one per level (s >= 1:
    the block is I + a positive semi-definite matrix); the caller adds log(prod) at
    the end.  Returns (ok, logdet, prod); ok is False at a pivot that is not positive.
    (``factorize`` on the rows and ``lmm_moments.evaluate`` on cross-products.)"""
    k1 = D.shape[0]
    for j in range(k1):
        s = D[j, j]
        for l in range(j):
            s -= D[j, l] * D[j, l]
        if not (s > 0.0):
            return False, logdet, prod
        d = math.sqrt(s)
        D[j, j] = d
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
    return True, logdet, prod


@njit(cache=True, error_model="numpy", inline="always")
def lower_inverse(D, Linv):
    """Linv = D^{-1} for a small lower-triangular D (a level's block of the factor)."""
    k = D.shape[0]
    for j in range(k):
        for a in range(k):
            Linv[a, j] = 0.0
        Linv[j, j] = 1.0 / D[j, j]
        for a in range(j + 1, k):
            s = 0.0
            for b in range(j, a):
                s -= D[a, b] * Linv[b, j]
            Linv[a, j] = s / D[a, a]


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
    by_columns = dense_rows == 0 and r >= (layout.lapack_min if layout.lapack_min > 0
                                           else LAPACK_MIN_R)
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
        ok, logdet, prod = chol_block(D, logdet, prod)
        if not ok:
            return -np.inf, False
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
        if by_columns:              # (after the loop: _schur_by_columns)
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
    if by_columns:
        _schur_by_columns(layout, Cval, S)
    if r == 0:
        return logdet, True
    for j in range(layout.npen):
        S[j, j] += 1.0
    ld, ok = chol_lower(S, layout.npen, layout.lapack_min)
    if not ok:
        return -np.inf, False
    return logdet + ld, True


@njit(cache=True, error_model="numpy")
def _schur_by_columns(layout, Cval, S):
    """S -= sum_g C_g' C_g (lower triangle) one row of S at a time: for rest column c,
    every level g whose rows touch it adds Cval[:, (g, c)] times g's entries left of
    c.  The same products as the per-level scatter in ``factorize``, but each row of
    S stays in cache while it is updated instead of every level's update landing on
    ~nloc rows spread over the whole block: on 1e6 rows with 10,000 x 5,000 crossed
    levels (a 200 MB block) the scatter was 3/4 of factorize.  The levels of a
    column are taken in ascending order (a counting sort), so each entry's
    subtractions come in the scatter's order; only the row sums, which the scatter
    interleaved with them, are now all added first: rounding-level differences,
    hence only for rest blocks of LAPACK_MIN_R columns or more -- the dense ones go
    on to LAPACK, nested designs of that size (a near-diagonal block) to the
    envelope loop, with last-bit changes from before this path existed."""
    loc_ptr, loc_cols = layout.loc_ptr, layout.loc_cols
    ng = loc_ptr.shape[0] - 1
    k1 = Cval.shape[0]
    r = S.shape[0]
    nnz = loc_cols.shape[0]
    col_ptr = np.zeros(r + 1, np.int64)
    for t in range(nnz):
        col_ptr[loc_cols[t] + 1] += 1
    for c in range(r):
        col_ptr[c + 1] += col_ptr[c]
    fill = col_ptr[:r].copy()
    ent = np.empty(nnz, np.int64)       # per column: positions t in loc_cols, by level
    lev = np.empty(nnz, np.int64)       # ... and their level g
    for g in range(ng):
        for t in range(loc_ptr[g], loc_ptr[g + 1]):
            c = loc_cols[t]
            ent[fill[c]] = t
            lev[fill[c]] = g
            fill[c] += 1
    for c in range(r):
        Sc = S[c]
        for q in range(col_ptr[c], col_ptr[c + 1]):
            t = ent[q]
            base = loc_ptr[lev[q]]
            for a in range(k1):
                Ca = Cval[a]
                x = Ca[t]
                for t2 in range(base, t + 1):
                    Sc[loc_cols[t2]] -= x * Ca[t2]


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _dot_prefix(x, y, n):
    """sum(x[:n] * y[:n]), free to reassociate (so that it vectorizes)."""
    s = 0.0
    for l in range(n):
        s += x[l] * y[l]
    return s


#: the size of a dense rest block from which ``chol_lower`` hands it to LAPACK's
#: dpotrf (blocked, BLAS-3) rather than its own loop.  Measured on this project's
#: 2-core machine with one BLAS thread (test_kernels' LAPACK tests compare the
#: numbers): the two cost the same near r = 300, LAPACK is 3.5x faster at 1,000 and
#: 6-8x at 2,000-3,000 (the loop's left-looking dot products reread the whole factor
#: once it no longer fits in cache).  With OpenBLAS's threads on a machine whose
#: cores are busy with other processes, dpotrf lost to the loop up to ~1,500 (its
#: threads wait on each other), so the threshold sits above the crossover: the
#: usual models (a few hundred rest columns at most) keep their bit-identical
#: numbers and no BLAS threads.
LAPACK_MIN_R = 1000


@njit(cache=True, error_model="numpy", inline="always")
def envelope_starts(S):
    """Per row of the lower triangle of S, the column of its first nonzero (the
    row's own index when there is none left of the diagonal): the envelope."""
    r = S.shape[0]
    first = np.empty(r, np.int64)
    for a in range(r):
        f = a
        for b in range(a):
            if S[a, b] != 0.0:
                f = b
                break
        first[a] = f
    return first


@njit(cache=True, error_model="numpy")
def chol_lower(S, npen, lapack_min=0):
    """In-place lower Cholesky factor of the symmetric S (only its lower triangle is
    read; the upper is zeroed).  Returns (log of the squared diagonal of the first
    ``npen`` columns, ok).  Left-looking, so every inner product runs over two
    contiguous row pieces (vectorized by ``_dot_prefix``).  When the rows' envelopes
    (no factor entries left of a row's first nonzero) cover less than half the
    triangle -- nested designs, where each level of the first term sits inside one
    level of a rest term and the rest block is (nearly) diagonal -- the products
    run only over them: O(r^2) instead of O(r^3).  A dense block of ``lapack_min``
    rows or more (0: ``LAPACK_MIN_R``) goes to LAPACK (``_chol_lapack``): two large
    crossed factors, whose Schur complement really is dense."""
    r = S.shape[0]
    first = envelope_starts(S)
    profile = 0
    for a in range(r):
        profile += a - first[a]
    if 4 * profile < r * (r - 1):
        ok = _chol_envelope(S, first)
    elif r >= (lapack_min if lapack_min > 0 else LAPACK_MIN_R):
        ok = _chol_lapack(S)
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


# LAPACK's dpotrf as numba's own np.linalg.cholesky calls it (scipy's LAPACK, through
# numba's helper library: resolved by name, so the kernels stay cacheable), but in
# place and answering LAPACK's info instead of raising: no r x r copy (200 MB at
# r = 5,000) and a failed pivot is a plain return value
_xxpotrf = _LAPACK.numba_xxpotrf(types.float64)     # (the classmethod: no import of
# scipy's LAPACK here -- numba's helper imports it at the first call, not at the
# package's import, whose time counts for the first use)
_KIND_D = ord("d")
_UPLO_U = ord("U")


@njit(cache=True, error_model="numpy")
def _chol_lapack(S):
    """S's lower Cholesky factor in place by LAPACK's dpotrf; False if S is not
    positive definite.  The C-ordered lower triangle is the Fortran-ordered upper
    one, so dpotrf('U') reads and writes exactly the triangle ``_chol_dense`` does
    (the other is left alone).  The same factor as ``_chol_dense`` to rounding:
    blocked, it sums in another order (~1e-15 relative per entry)."""
    r = S.shape[0]
    info = _xxpotrf(_KIND_D, _UPLO_U, r, S.ctypes, r)
    return info == 0


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
    back_solve_term1(Dchol, Cval, loc_ptr, loc_cols, dv, du1)
    return dec


@njit(cache=True, error_model="numpy", inline="always")
def back_solve_term1(Dchol, Cval, loc_ptr, loc_cols, v, u1):
    """The last step of a solve with the blocked factor, in place: per level g of
    term 1, u1_g = L_g'^{-1} (u1_g - C_g v[loc_g]), once the rest's part v is known."""
    ng = Dchol.shape[0]
    k1 = Dchol.shape[1]
    for g in range(ng):
        D = Dchol[g]
        base = loc_ptr[g]
        for l in range(loc_ptr[g + 1] - base):
            c = loc_cols[base + l]
            for a in range(k1):
                u1[g, a] -= Cval[a, base + l] * v[c]
        for a in range(k1 - 1, -1, -1):
            s = u1[g, a]
            for b in range(a + 1, k1):
                s -= D[b, a] * u1[g, b]
            u1[g, a] = s / D[a, a]


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


def rest_inverse(LS) -> np.ndarray:
    """S^{-1} = LS'^{-1} LS^{-1}, the inverse of the rest's Schur complement from its
    lower factor ``LS`` (``factorize``), in full (symmetric).  Below
    ``LAPACK_MIN_R`` by inverting the triangle and multiplying (numpy: the numbers
    the package has always given); from there by LAPACK's dpotri, which does the
    same in about a sixth of the work (r^3/3 + r^3/3 rather than ~2r^3 + 2r^3 for a
    general inverse and a full product) and equals it to rounding."""
    r = LS.shape[0]
    if r < LAPACK_MIN_R:
        Linv = np.linalg.inv(LS)
        return Linv.T @ Linv
    from scipy.linalg import lapack
    # LS' (F-ordered) is the upper factor U, S = U'U: dpotri('U') answers the upper
    # triangle of S^{-1} in F order, i.e. its lower triangle in C order
    inv, info = lapack.dpotri(LS.T, lower=0)
    if info != 0:
        Linv = np.linalg.inv(LS)
        return Linv.T @ Linv
    out = np.ascontiguousarray(inv.T)
    _mirror_lower(out)
    return out


@njit(cache=True, error_model="numpy")
def _mirror_lower(S):
    """S's upper triangle = its lower one (in place)."""
    r = S.shape[0]
    for a in range(r):
        for b in range(a):
            S[b, a] = S[a, b]


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
        lower_inverse(Dchol[g], Linv)
        for a in range(k):
            for b in range(k):
                s = 0.0
                for c in range(k):
                    for d in range(k):
                        s += Linv[c, a] * M[c, d] * Linv[d, b]
                out[g, a, b] = s
    return out
