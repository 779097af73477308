"""The profiled deviance of a linear mixed model from cross-products computed once
(MixedModels.jl's approach), without a pass over the rows per theta (Numba).

For a Gaussian response the penalized least-squares problem of ``lmm.py``

    min over u, beta   |W^(1/2)(y~ - X beta - Z Lambda u)|^2 + |u|^2     (y~ = y - offset)

depends on the data only through the weighted cross-products of the columns
[Z, X, y~].  In the blocked layout of ``linalg.py`` (rows sorted by the levels of
term 1, the "rest" = the other random-effects terms, then the fixed effects) they
are, once per model (:func:`moments`, one pass over the rows through
``linalg.row_sums``):

* ``D[g]``   = Z_g'W Z_g          term 1's k1 x k1 block of level g (unscaled Z);
* ``B``      = Z_g'W R_g          per level g over the rest columns its rows touch
                                  (``loc_ptr``/``loc_cols``, the symbolic structure
                                  of ``devfun.GlmmDeviance.symbolic(True)``);
* ``S``      = R'W R              the rest's r x r block (full, symmetric);
* ``zy[g]``  = Z_g'W y~, ``ry`` = R'W y~, ``yy`` = y~'W y~.

Per theta (:func:`evaluate`) they are scaled by Lambda -- block-diagonal: Lambda_1
on term 1's blocks, each rest term's Lambda_t on its levels' blocks, the identity on
the fixed effects -- I is added to the random effects' diagonal, and the same
blocked Cholesky factor as ``linalg.factorize`` is formed (into a ``linalg.Factor``:
``Dchol``, ``Cval``, ``LS`` hold the same numbers, so ``lmm.log_det_rx``,
``lmm.unscaled_cov`` and the result code read it unchanged).  One forward solve
gives c = L^{-1} [Lambda'Z'W y~; X'W y~], and

    pwrss = y~'W y~ - |c|^2,    log|L|^2 (random effects),    log|RX|^2,

the back solve the modes u and beta.  Cost per theta: the number of levels times
k1^2 (and the touched rest columns), the rest's scaling (r^2 k) and Cholesky factor
(at most r^3 / 3, as the rows' path) -- nothing of n.

Accuracy: pwrss = y'Wy - |c|^2 cancels when the model explains most of y'Wy (a
response with a large mean).  So the response's part is taken about a reference
point (beta0, b0) (:class:`Response`): y0 = y - offset - X beta0 - Z b0 replaces
y, and the problem is solved for (u - u0, beta - beta0), u0 = Lambda^{-1} b0 -- the
same pwrss and modes.  The first reference is (beta_ols, 0) (``ols_beta``): y0'Wy0
is at most the fixed-effects model's RSS, the cancellation only that of the part
the random effects explain (a relative error of ~1e-14 in pwrss on Penicillin,
against ~1e-15 from the rows: plenty for the optimizer).  After the fit the model
``recentre``s at its estimates: y0'W y0 is then (nearly) pwrss itself, and the
evaluations near the optimum that numerical derivatives take -- Satterthwaite's
df, profiles -- are as accurate as the rows' solve.
``tests/engine/test_lmm_moments.py`` checks every quantity against a dense numpy
formula and against the row-based PIRLS solve.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from . import jit, linalg
from .linalg import (BlockedLayout, Factor, back_solve_term1, chol_block, chol_lower,
                     row_sums)


class Moments(NamedTuple):
    """The weighted cross-products of [Z, X] in the blocked layout, unscaled (see
    the module docstring), and how Lambda acts on the rest columns."""

    D: np.ndarray           # ng x k1 x k1, full symmetric
    B: np.ndarray           # k1 x len(loc_cols)
    S: np.ndarray           # r x r, full symmetric
    loc_ptr: np.ndarray     # ng + 1
    loc_cols: np.ndarray
    npen: int               # the first npen rest columns are random effects
    col_term: np.ndarray    # r, int64: the rest column's term (index into lam; -1: a fixed effect)
    col_j: np.ndarray       # r, int64: its position in its level's block of k_t columns
    term_k: np.ndarray      # int64: k of each term (term 1 first)


#: pwrss comes out as a difference, (y0'W y0 + |u0|^2) - |c|^2: when the part cancelled
#: is more than this many times the result, fewer than ~10 of 16 digits are left and
#: the evaluation goes back to the rows (``LmmMoments.trusted``; data whose groups
#: explain all but 1e-6 of y's variation, as precise measurements of very different
#: units, get the exact row-based solve)
CANCELLATION_LIMIT = 1e3


class Response(NamedTuple):
    """The response's part of the problem, about a reference point (beta0, b0):
    the cross-products of y0 = y - offset - X beta0 - Z b0 (``zy``, ``ry``, ``yy``)
    and, at the theta evaluated, the reference's spherical modes u0 = Lambda^{-1} b0
    (``u01`` of term 1, ``u0v`` of the rest; zero for the fixed effects).  The
    problem in (u - u0, beta - beta0) has the right-hand side
    Lambda'[Z X]'W y0 - (u0, 0) and the constant y0'W y0 + |u0|^2."""

    zy: np.ndarray          # ng x k1
    ry: np.ndarray          # r
    yy: float
    u01: np.ndarray         # ng x k1
    u0v: np.ndarray         # r


class Evaluation(NamedTuple):
    """What ``LmmMoments.evaluate`` answers (the factor and the modes are filled
    in place).  The kernel returns it as a plain tuple: a NamedTuple returned from
    compiled code is boxed by unpickling its class, ~20 us a call."""

    ok: bool                # False: a block was not positive definite
    logdet: float           # log|L|^2 of the random-effects part
    ldrx: float             # log|RX|^2 (the fixed effects' part of the factor)
    pwrss: float            # penalized weighted residual sum of squares


# ---- from the rows: the cross-products ----------------------------------------------

@njit(cache=True, error_model="numpy")
def _cross_products(layout, w, D, B, S):
    """D, B, S (lower triangles of D and S) by ``linalg.row_sums`` group by group:
    the weighted sums of the unscaled rows."""
    gptr, loc_ptr = layout.group_ptr, layout.loc_ptr
    ng = gptr.shape[0] - 1
    k1 = layout.A1.shape[1]
    for g in range(ng):
        base = loc_ptr[g]
        Bt = np.zeros((k1, loc_ptr[g + 1] - base))
        row_sums(layout, w, gptr[g], gptr[g + 1], D[g], Bt, S)
        for a in range(k1):
            for l in range(Bt.shape[1]):
                B[a, base + l] = Bt[a, l]


@njit(cache=True, error_model="numpy")
def _response_products(layout, w, y0, zy, ry):
    """zy = Z_g'W y0 per level, ry = R'W y0; returns y0'W y0."""
    gptr = layout.group_ptr
    A1, Rv, Rc = layout.A1, layout.rest_vals, layout.rest_cols
    k1 = A1.shape[1]
    yy = 0.0
    for g in range(gptr.shape[0] - 1):
        for i in range(gptr[g], gptr[g + 1]):
            wy = w[i] * y0[i]
            yy += wy * y0[i]
            for a in range(k1):
                zy[g, a] += wy * A1[i, a]
            for e in range(layout.m_use):
                ry[Rc[i, e]] += wy * Rv[i, e]
    return yy


@njit(cache=True, error_model="numpy")
def _ols_beta(X, w, yt):
    """The solution of the normal equations X'WX beta = X'Wy (by plain loops and
    ``linalg.chol_lower``: no BLAS or LAPACK threads, see ``linalg.offset_plus_xb``);
    zeros when X'WX is not numerically positive definite."""
    n, p = X.shape
    A = np.zeros((p, p))
    b = np.zeros(p)
    for i in range(n):
        for j in range(p):
            wx = w[i] * X[i, j]
            b[j] += wx * yt[i]
            for k in range(j + 1):
                A[j, k] += wx * X[i, k]
    _, ok = chol_lower(A, 0)
    if not ok:
        return np.zeros(p)
    for j in range(p):              # L y = b, then L' beta = y
        s = b[j]
        for k in range(j):
            s -= A[j, k] * b[k]
        b[j] = s / A[j, j]
    for j in range(p - 1, -1, -1):
        s = b[j]
        for k in range(j + 1, p):
            s -= A[k, j] * b[k]
        b[j] = s / A[j, j]
    return b


def ols_beta(X, pw, yt):
    """The weighted least-squares fit of yt on X: the first reference point's
    beta0 (module docstring).  It need not be exact -- any beta0 leaves the
    problem unchanged, and y0 is formed from it exactly -- only close enough to
    remove the fixed effects' part of y'Wy: the normal equations (``_ols_beta``)."""
    return _ols_beta(X, pw, np.ascontiguousarray(yt, dtype=np.float64))


def unscaled_layout(dev) -> BlockedLayout:
    """The rows of a ``devfun.GlmmDeviance`` as ``linalg.BlockedLayout`` with
    Lambda = I: term 1's Z, the rest terms' Z and X in the rest columns."""
    m_use, r, loc_ptr, loc_cols, rest_loc, _ = dev.symbolic(True)
    rest_vals = dev.rest_vals.copy()
    col = 0
    for Zt in dev.rest_Z:
        rest_vals[:, col:col + Zt.shape[1]] = Zt
        col += Zt.shape[1]
    return BlockedLayout(dev.Z1, dev.group_ptr, rest_vals, dev.rest_cols, rest_loc,
                         m_use, loc_ptr, loc_cols, r, dev.q2, 0)


def moments(dev, layout: BlockedLayout) -> Moments:
    """The moments of a ``devfun.GlmmDeviance`` (its sorted rows, prior weights and
    fixed-effect columns on the fit's scale), ``layout`` its ``unscaled_layout``."""
    ng, k1, r = dev.ng1, dev.k1, layout.r
    D = np.zeros((ng, k1, k1))
    B = np.zeros((k1, layout.loc_cols.shape[0]))
    S = np.zeros((r, r))
    _cross_products(layout, dev.pw, D, B, S)
    # symmetric in full (row_sums forms lower triangles)
    il = np.tril_indices(k1, -1)
    D[:, il[1], il[0]] = D[:, il[0], il[1]]
    S = np.tril(S) + np.tril(S, -1).T
    col_term = np.full(r, -1, np.int64)
    col_j = np.zeros(r, np.int64)
    for ti, (t, b) in enumerate(zip(dev.rest_terms, dev.rest_base)):
        cols = np.arange(b, b + t.nlevels * t.k)
        col_term[cols] = ti + 1
        col_j[cols] = (cols - b) % t.k
    term_k = np.array([t.k for t in dev.terms], np.int64)
    return Moments(D, B, np.ascontiguousarray(S), layout.loc_ptr, layout.loc_cols,
                   int(dev.q2), col_term, col_j, term_k)


# ---- per theta ------------------------------------------------------------------------

@njit(cache=True, error_model="numpy", inline="always")
def _rest_scaled(x, p, c, col_term, col_j, term_k, lam):
    """The entry at position p (rest column c) of x Lambda_rest, x a row over a list
    of rest columns in which c's level block lies at positions p - j ... p - j + k - 1
    (j = c's place in the block): sum_a x[p - j + a] Lambda_t[a, j]; x[p] for a fixed
    effect.  (The arrays, not the ``Moments`` struct: passing a struct of arrays
    costs a reference count per member and call, which made ``evaluate`` 10x
    slower.)"""
    t = col_term[c]
    if t < 0:
        return x[p]
    j = col_j[c]
    s = 0.0
    for a in range(j, term_k[t]):
        s += x[p - j + a] * lam[t, a, j]
    return s


@njit(cache=True, error_model="numpy")
def _scale_rest_block(mom, lam, S):
    """S = Lambda_r' mom.S Lambda_r, its lower triangle, entry by entry (the
    blocks of Lambda_r are small: no r x r scratch, which a large rest would feel)."""
    r = S.shape[0]
    S0 = mom.S
    ct, cj, tk = mom.col_term, mom.col_j, mom.term_k
    for c1 in range(r):
        t1 = ct[c1]
        if t1 < 0:
            j1, e1 = 0, 1
        else:
            j1, e1 = cj[c1], tk[t1]
        b1 = c1 - j1
        for c2 in range(c1 + 1):
            t2 = ct[c2]
            if t1 < 0 and t2 < 0:
                S[c1, c2] = S0[c1, c2]
                continue
            if t2 < 0:
                j2, e2 = 0, 1
            else:
                j2, e2 = cj[c2], tk[t2]
            b2 = c2 - j2
            s = 0.0
            for a1 in range(j1, e1):
                w1 = 1.0 if t1 < 0 else lam[t1, a1, j1]
                x = 0.0
                for a2 in range(j2, e2):
                    w2 = 1.0 if t2 < 0 else lam[t2, a2, j2]
                    x += S0[b1 + a1, b2 + a2] * w2
                s += w1 * x
            S[c1, c2] = s


@njit(cache=True, error_model="numpy")
def evaluate(mom, resp, lam, factor, u1, v):
    """The blocked factor of  Lambda'[Z X]'W[Z X]Lambda + diag(I, 0)  at the
    Lambda of ``lam`` (terms x kmax x kmax, lower triangular, term 1 first) into
    ``factor``, the modes (u1: ng x k1, v: the rest's u, then beta - beta0 of the
    ``Response``'s reference point) into u1, v, and (ok, log|L|^2, log|RX|^2,
    pwrss) (an ``Evaluation``).

    The elimination is ``linalg.factorize``'s on the scaled moments instead of
    the rows: per level g, L_g = chol(Lambda_1' D_g Lambda_1 + I), C_g = L_g^{-1}
    Lambda_1' B_g Lambda_r, S -= C_g' C_g over the level's columns; then the
    rest's Cholesky factor (``linalg.chol_lower``)."""
    D0, B0, zy0, loc_ptr, loc_cols = mom.D, mom.B, resp.zy, mom.loc_ptr, mom.loc_cols
    u01, u0v = resp.u01, resp.u0v
    Dchol, Cval, LS = factor.Dchol, factor.Cval, factor.LS
    ng = D0.shape[0]
    k1 = D0.shape[1]
    r = LS.shape[0]
    for x in lam.ravel():
        if not np.isfinite(x):
            return False, -np.inf, -np.inf, np.inf
    ct, cj, tk = mom.col_term, mom.col_j, mom.term_k
    npen = mom.npen
    _scale_rest_block(mom, lam, LS)
    # c_v starts as Lambda_r' R'W y0 - u0v; the constant is y0'W y0 + |u0|^2
    const = resp.yy
    for c in range(r):
        v[c] = _rest_scaled(resp.ry, c, c, ct, cj, tk, lam) - u0v[c]
        const += u0v[c] * u0v[c]
    L1 = np.empty((k1, k1))         # Lambda_1, as a 2-d array
    for a in range(k1):
        for b in range(k1):
            L1[a, b] = lam[0, a, b]
    M = np.empty((k1, k1))
    logdet = 0.0
    prod = 1.0
    csq = 0.0
    for g in range(ng):
        base = loc_ptr[g]
        nloc = loc_ptr[g + 1] - base
        D = Dchol[g]
        Dg = D0[g]
        # M = Dg Lambda_1, then D = Lambda_1' M + I (lower triangle)
        for a in range(k1):
            for b in range(k1):
                s = 0.0
                for e in range(b, k1):
                    s += Dg[a, e] * L1[e, b]
                M[a, b] = s
        for a in range(k1):
            for b in range(a + 1):
                s = 1.0 if a == b else 0.0
                for e in range(a, k1):
                    s += L1[e, a] * M[e, b]
                D[a, b] = s
            for b in range(a + 1, k1):
                D[a, b] = 0.0
        ok, logdet, prod = chol_block(D, logdet, prod)
        if not ok:
            return False, -np.inf, -np.inf, np.inf
        # Cval = Lambda_1' B_g, its random-effect columns by Lambda_r (in place:
        # ascending within a level's block, column j reads columns >= j), then
        # C_g = L_g^{-1} Cval
        for a in range(k1):
            for l in range(nloc):
                s = 0.0
                for e in range(a, k1):
                    s += L1[e, a] * B0[e, base + l]
                Cval[a, base + l] = s
        if npen > 0:
            for l in range(nloc):
                c = loc_cols[base + l]
                t = ct[c]
                if t < 0:
                    continue
                j = cj[c]
                for a in range(k1):
                    s = 0.0
                    for e in range(j, tk[t]):
                        s += Cval[a, base + l - j + e] * lam[t, e, j]
                    Cval[a, base + l] = s
        for l in range(nloc):
            for a in range(k1):
                s = Cval[a, base + l]
                for b in range(a):
                    s -= D[a, b] * Cval[b, base + l]
                Cval[a, base + l] = s / D[a, a]
        # c1_g = L_g^{-1} (Lambda_1' zy_g - u01_g)
        for a in range(k1):
            const += u01[g, a] * u01[g, a]
            s = -u01[g, a]
            for e in range(a, k1):
                s += L1[e, a] * zy0[g, e]
            for b in range(a):
                s -= D[a, b] * u1[g, b]
            u1[g, a] = s / D[a, a]
            csq += u1[g, a] * u1[g, a]
        # the rest: S[loc, loc] -= C_g' C_g, c_v[loc] -= C_g' c1_g
        for a in range(k1):
            x1 = u1[g, a]
            for l1 in range(nloc):
                c = loc_cols[base + l1]
                x = Cval[a, base + l1]
                v[c] -= x * x1
                for l2 in range(l1 + 1):
                    LS[c, loc_cols[base + l2]] -= x * Cval[a, base + l2]
    logdet += math.log(prod)
    ldrx = 0.0
    if r > 0:
        for j in range(mom.npen):
            LS[j, j] += 1.0
        ld, ok = chol_lower(LS, mom.npen)
        if not ok:
            return False, -np.inf, -np.inf, np.inf
        logdet += ld
        # c_v = LS^{-1} c_v, then beta and the rest's u: LS' x = c_v
        for j in range(r):
            s = v[j]
            Lj = LS[j]
            for l in range(j):
                s -= Lj[l] * v[l]
            v[j] = s / LS[j, j]
            csq += v[j] * v[j]
        for j in range(mom.npen, r):
            ldrx += 2.0 * math.log(LS[j, j])
        for j in range(r - 1, -1, -1):
            x = v[j] / LS[j, j]
            v[j] = x
            Lj = LS[j]
            for l in range(j):
                v[l] -= Lj[l] * x
    # u1_g = L_g'^{-1} (c1_g - C_g v[loc])
    back_solve_term1(Dchol, Cval, loc_ptr, loc_cols, v, u1)
    # back from (u - u0, beta - beta0)
    for g in range(ng):
        for a in range(k1):
            u1[g, a] += u01[g, a]
    for c in range(r):
        v[c] += u0v[c]
    return True, logdet, ldrx, const - csq


class LmmMoments:
    """The moments of one linear mixed model and its evaluations at theta: the
    objects ``lmm.LinearMixedModel`` evaluates its profiled deviance with.

    The response's part is taken about a reference point (``Response``): first
    (beta_ols, b = 0); ``recentre`` moves it to a fit's estimates, where pwrss
    then comes without cancellation (y0'W y0 is the fit's own pwrss less |u|^2):
    the evaluations near them -- Satterthwaite's derivatives, profiles -- are as
    accurate as the row-based solve's."""

    def __init__(self, dev, like: LmmMoments | None = None):
        """The moments of ``dev``; ``like``: those of a deviance function on the
        same design with another response (``GlmmDeviance.with_response``: a
        refit's), whose cross-products of [Z, X] are shared, not summed again."""
        self.dev = dev
        if like is None:
            self.layout = unscaled_layout(dev)
            self.mom = moments(dev, self.layout)
        else:
            self.layout, self.mom = like.layout, like.mom
        self.npen = dev.q2
        self.ng, self.k1 = dev.ng1, dev.k1
        self.r = self.layout.r
        self.terms = dev.terms
        kmax = int(max(self.mom.term_k))
        self._lam = np.zeros((len(dev.terms), kmax, kmax))
        # theta's entries go to these flat positions of lam (lme4's column-major order)
        flat = []
        for ti, pos in enumerate(dev.theta_pos):
            flat += [(ti * kmax + i) * kmax + j for i, j in pos]
        self._flat = np.array(flat, np.int64)
        self._kernel = jit.FixedSignature(evaluate)
        self._zero1 = np.zeros((self.ng, self.k1))
        self._zerov = np.zeros(self.r)
        beta0 = ols_beta(dev.X, dev.pw, dev.y - dev.offset)
        self._base = self._reference(self._zero1, np.concatenate([self._zerov[:self.npen],
                                                                  beta0]))
        self._ref = self._base
        b1, bv, zy, ry, yy = self._base
        self._base_response = Response(zy, ry, yy, self._zero1, self._zerov)

    def _reference(self, b1, bv) -> tuple:
        """(b1, bv, the Response's cross-products) of the reference point with term
        1's b1 (ng x k1) and bv = (the rest's b, beta0)."""
        b1 = np.ascontiguousarray(b1, dtype=np.float64)
        bv = np.ascontiguousarray(bv, dtype=np.float64)
        dev = self.dev
        eta = np.empty(dev.n)
        linalg.linear_predictor(self.layout, dev.offset, b1, bv, eta)   # offset + Z b + X beta
        y0 = dev.y - eta
        zy = np.zeros((self.ng, self.k1))
        ry = np.zeros(self.r)
        yy = float(_response_products(self.layout, dev.pw, y0, zy, ry))
        return b1, bv, zy, ry, yy

    def recentre(self, b1, bv):
        """Take the response's part about (b1, bv): term 1's random effects on the
        linear predictor's scale (ng x k1), the rest's then beta (rest order)."""
        self._ref = ref = self._reference(b1, bv)
        # u0 is filled in place at each theta (``_spherical_modes``)
        self._ref_response = Response(ref[2], ref[3], ref[4], np.zeros((self.ng, self.k1)),
                                      np.zeros(self.r))

    def new_factor(self) -> Factor:
        return Factor(np.empty((self.ng, self.k1, self.k1)),
                      np.empty((self.k1, self.mom.loc_cols.shape[0])),
                      np.empty((self.r, self.r)))

    def lam(self, theta) -> np.ndarray:
        """The per-term Lambda (terms x kmax x kmax) of theta."""
        lam = self._lam       # (the kernel keeps nothing of it: refilled in place)
        lam.flat[self._flat] = np.asarray(theta, dtype=np.float64)
        return lam

    def _response(self, lam) -> tuple:
        """(Response, beta0) at Lambda: the recentred reference's when its b0 is
        Lambda u0 for some u0 (always unless a Lambda has a zero on its diagonal
        where b0 is not zero), else the first one's."""
        if self._ref is self._base:
            return self._base_response, self._base[1][self.npen:]
        b1, bv = self._ref[0], self._ref[1]
        resp = self._ref_response
        if not _spherical_modes(lam, b1, bv, self.mom.col_term, self.mom.col_j,
                                self.mom.term_k, resp.u01, resp.u0v):
            return self._base_response, self._base[1][self.npen:]
        return resp, bv[self.npen:]

    def trusted(self, resp: Response, pwrss: float) -> bool:
        """Whether pwrss = (y0'W y0 + |u0|^2) - |c|^2 kept enough digits: the part
        cancelled is at most ``CANCELLATION_LIMIT`` times the result (groups that
        explain nearly all of y, or a recentred reference's u0 = Lambda^{-1} b0 at a
        small theta, lose more)."""
        const = resp.yy + float(np.dot(resp.u01.ravel(), resp.u01.ravel())) \
            + float(np.dot(resp.u0v, resp.u0v))
        return pwrss > 0.0 and const <= CANCELLATION_LIMIT * pwrss

    def conditioned(self, theta0, factor, u1, v) -> bool:
        """Whether the cross-products keep enough digits from theta0 up to 10^6
        times it (each entry scaled; the variances of a fit rarely go further).
        Along that ray pwrss only falls (the penalty shrinks) while the part it is
        the difference of, y0'W y0, stays: the cancellation is worst at the far end,
        so one evaluation there answers for the ray.  A model that fails takes the
        rows for its whole fit -- one evaluation path, so the optimizer never sees
        the two paths' last digits disagree (other points that fail switch a
        model to the rows from then on: ``LinearMixedModel._terms``).  The factor
        and modes go to the arrays given (the model's work arrays: no r x r more)."""
        theta = np.asarray(theta0, dtype=np.float64) * 1e6
        return self.deviance_terms(theta, factor, u1, v) is not None

    def _solve(self, lam, factor, u1, v):
        """(kernel's tuple, beta0 of the reference used) at Lambda: the recentred
        reference's, else (or when it cancelled too much) the first one's; None when
        neither keeps enough digits (the caller goes back to the rows)."""
        if self._ref is not self._base:
            resp, beta0 = self._response(lam)
            out = self._kernel(self.mom, resp, lam, factor, u1, v)
            if not out[0] or self.trusted(resp, out[3]):
                return out, beta0
            if resp is self._base_response:     # (_response fell back to it already)
                return None
        out = self._kernel(self.mom, self._base_response, lam, factor, u1, v)
        if not out[0] or self.trusted(self._base_response, out[3]):
            return out, self._base[1][self.npen:]
        return None

    def deviance_terms(self, theta, factor, u1, v):
        """``evaluate``'s (ok, log|L|^2, log|RX|^2, pwrss) as a plain tuple, into the
        arrays given (v's fixed effects left relative to the reference point's);
        None when the cross-products cannot give pwrss accurately here (see
        ``trusted``)."""
        got = self._solve(self.lam(theta), factor, u1, v)
        return None if got is None else got[0]

    def evaluate(self, theta, factor=None, u1=None, v=None):
        """(Evaluation, factor, u1, v) at theta; the factor and the modes in the
        arrays given (new ones when None): u1 term 1's spherical modes, v the
        rest's, then beta (on the fit's column scale).  None when the cross-products
        cannot give pwrss accurately here (see ``trusted``)."""
        if factor is None:
            factor = self.new_factor()
        if u1 is None:
            u1 = np.zeros((self.ng, self.k1))
        if v is None:
            v = np.zeros(self.r)
        got = self._solve(self.lam(theta), factor, u1, v)
        if got is None:
            return None
        out, beta0 = got
        v[self.npen:] += beta0
        return Evaluation(*out), factor, u1, v


@njit(cache=True, error_model="numpy")
def _spherical_modes(lam, b1, bv, col_term, col_j, term_k, u01, u0v):
    """u0 = Lambda^{-1} b0 into u01 (term 1's, ng x k1) and u0v (the rest's; zero
    for the fixed effects) by forward substitution level by level; False when a
    Lambda has a zero diagonal where the right-hand side is not zero (b0 is no
    Lambda u0).  (Components under a zero diagonal are otherwise taken as zero.)"""
    ng, k1 = b1.shape
    for g in range(ng):
        for a in range(k1):
            s = b1[g, a]
            for e in range(a):
                s -= lam[0, a, e] * u01[g, e]
            d = lam[0, a, a]
            if d == 0.0:
                if s != 0.0:
                    return False
                u01[g, a] = 0.0
            else:
                u01[g, a] = s / d
    for c in range(bv.shape[0]):
        t = col_term[c]
        if t < 0:
            u0v[c] = 0.0
            continue
        j = col_j[c]
        c0 = c - j
        s = bv[c]
        for e in range(j):
            s -= lam[t, j, e] * u0v[c0 + e]
        d = lam[t, j, j]
        if d == 0.0:
            if s != 0.0:
                return False
            u0v[c] = 0.0
        else:
            u0v[c] = s / d
    return True
