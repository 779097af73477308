"""Deviance functions of a GLMM (lme4's ``mkGlmerDevfun`` stage).

:class:`GlmmDeviance` holds a model design in the blocked layout the kernels use
(rows sorted by the first random-effects term's levels, the rest columns and their
symbolic structure computed once) and evaluates

* ``laplace(theta)``: the nAGQ=0 criterion, PIRLS over the random effects *and*
  the fixed effects (lme4's first stage);
* ``laplace(theta, beta)``: the Laplace deviance  A(y, mu) + |u|^2 + log|L|^2  with
  PIRLS over u only (lme4's second stage, nAGQ=1);
* ``agq(theta, beta, nodes, logw)``: the adaptive Gauss-Hermite deviance for one
  term on one grouping factor, scalar or vector (the product rule: ``agq.py``), on
  the log-likelihood scale, so AGQ with one node equals Laplace.

Every evaluation leaves its conditional modes, fitted values and factor in
``self.state`` so the result stage can read them after the final evaluation.

``pirls``, ``pirls_lme4`` and ``agq_deviance`` are called past Numba's dispatcher
(``jit.FixedSignature``, ~3 us a call saved): every argument of those calls is
built here with fixed types -- arrays allocated or converted here as C-contiguous
float64 or int64 (the response, weights and offset too, whatever dtype the design
carries: an int offset would otherwise compile a kernel for int arrays on the first
call and have later calls read float64 arrays through that entry point; the AGQ
nodes and weights the caller hands over are converted at each call), the structs of
``layout`` and ``rows``, scalars converted by ``float`` and ``int`` -- and must stay
so (``tests/engine/test_kernels.py`` runs fits with the signature check on).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
from numba import njit

from . import agq, jit, linalg, pirls
from .gradient import LaplaceGradient
from .design import ModelDesign, column_exponents, scale_by_exponents
from .family import Family, loglik_constant, zero_probability

PIRLS_TOL = 1e-20       # Newton decrement relative to the penalized deviance
PIRLS_MAXIT = 200
#: the exact Laplace is not evaluated where a random effect's pivot of M falls below
#: this (``GlmmDeviance.flat_mode``): a Laplace term of +1.5 against a normal one of
#: about 0 -- the approximation has broken down
LAPLACE_MIN_PIVOT = 0.05
LME4_TOL_PWRSS = 1e-7   # glmerControl(tolPwrss)
LME4_MAXIT = 100


@dataclass
class PirlsState:
    status: int
    iterations: int
    logdet: float           # log|L|^2 of the random-effects part
    pdev: float             # sum of deviance residuals + |u|^2
    aic: float              # -2 conditional log-likelihood (family aic term)
    u1: np.ndarray          # (nlevels1, k1) spherical random effects of term 1
    v: np.ndarray           # rest: other terms' u, then beta when solved for
    Dchol: np.ndarray
    Cval: np.ndarray
    LS: np.ndarray
    mu: np.ndarray          # in sorted row order
    eta: np.ndarray
    beta_in_system: bool
    ussq: float = float("nan")   # |u|^2 of the random effects

    @property
    def ok(self) -> bool:
        return self.status == pirls.PIRLS_OK


def theta_layout(terms) -> tuple[np.ndarray, list]:
    """Lower bounds of theta (0 on diagonals of each term's lower-triangular factor,
    -inf elsewhere) and, per term, the (row, col) of each theta entry, column-major
    as lme4 stores them."""
    lower, pos = [], []
    for t in terms:
        k = t.k
        idx = [(i, j) for j in range(k) for i in range(j, k)]
        pos.append(idx)
        lower += [0.0 if i == j else -np.inf for i, j in idx]
    return np.array(lower), pos


def symbolic_blocks(rest_cols, m_use: int, group_ptr, r: int):
    """For each level g of the first term: the sorted distinct rest columns its rows
    touch (``loc_cols[loc_ptr[g]:loc_ptr[g+1]]``), and for each row entry its
    position in that list (``rest_loc``).  Once per model, by ``_symbolic_kernel``
    (a marker array over the rest columns; a numpy ``unique`` of the (level,
    column) pairs cost ~1 ms on 7,000 rows, a tenth of a linear mixed model's fit)."""
    return _symbolic_kernel(np.ascontiguousarray(rest_cols, dtype=np.int64), int(m_use),
                            np.ascontiguousarray(group_ptr, dtype=np.int64), int(r))


@njit(cache=True, error_model="numpy")
def _symbolic_kernel(rest_cols, m_use, group_ptr, r):
    ng = group_ptr.shape[0] - 1
    n = rest_cols.shape[0]
    mark = np.full(max(r, 1), -1, np.int64)     # the last level that touched a column
    pos = np.zeros(max(r, 1), np.int64)         # its place in that level's list
    loc_cols = np.empty(max(n * m_use, 1), np.int64)
    loc_ptr = np.zeros(ng + 1, np.int64)
    rest_loc = np.empty((n, m_use), np.int64)
    k = 0
    for g in range(ng):
        start = k
        for i in range(group_ptr[g], group_ptr[g + 1]):
            for e in range(m_use):
                c = rest_cols[i, e]
                if mark[c] != g:
                    mark[c] = g
                    loc_cols[k] = c
                    k += 1
        loc_cols[start:k] = np.sort(loc_cols[start:k])
        for l in range(start, k):
            pos[loc_cols[l]] = l - start
        for i in range(group_ptr[g], group_ptr[g + 1]):
            for e in range(m_use):
                rest_loc[i, e] = pos[rest_cols[i, e]]
        loc_ptr[g + 1] = k
    return loc_ptr, loc_cols[:k].copy(), rest_loc


X_SCALE_LIMIT = 2.0 ** 64     # columns with larger (or smaller) values are rescaled


def x_exponents(X):
    """Powers of two that bring fixed-effect columns of extreme scale (largest
    value beyond 2^64 ~ 1.8e19, or below 2^-64) to a largest value in [0.5, 1), as
    integer exponents e (the fit works with X * 2^-e, ``design.scale_by_exponents``,
    and its coefficients are beta * 2^e); None when no column needs it (then nothing
    changes).  Powers of two are exact: the columns keep every digit.  Exponents,
    not factors: a subnormal column (values below 2^-1022) needs a factor beyond
    double precision.  (A predictor in units of 1e155 used to be dropped, and one of
    1e30 would make the deviance overflow or its finite differences meaningless.)"""
    if X.shape[1] == 0 or X.shape[0] == 0:
        return None
    big = np.max(np.abs(X), axis=0)
    extreme = np.isfinite(big) & (big > 0) & ((big > X_SCALE_LIMIT) | (big < 1 / X_SCALE_LIMIT))
    if not extreme.any():
        return None
    return np.where(extreme, column_exponents(big), 0)


def theta_start(terms) -> np.ndarray:
    out = []
    for t in terms:
        out += [1.0 if i == j else 0.0 for j in range(t.k) for i in range(j, t.k)]
    return np.array(out)


class GlmmDeviance:
    """The deviance functions of one model: the design in the kernels' blocked
    layout (``__init__``, once per design) and one response with its warm starts
    and counters (``_start_response``; ``with_response`` shares the first part)."""

    def __init__(self, design: ModelDesign, family: Family):
        self.family = family
        self._fd = family.kernel_data()         # the family as the kernels take it
        self.terms = design.re_terms
        self.n = design.nobs
        self.p = design.X.shape[1]
        t1 = self.terms[0]
        self.order = np.argsort(t1.codes, kind="stable")
        self.inverse_order = np.empty_like(self.order)
        self.inverse_order[self.order] = np.arange(self.n)
        o = self.order
        self.pw = np.ascontiguousarray(design.weights[o], dtype=np.float64)
        self.offset = np.ascontiguousarray(design.offset[o], dtype=np.float64)
        self.X = np.ascontiguousarray(design.X[o], dtype=np.float64)
        self.zi_X = None if design.zi_X is None else \
            np.ascontiguousarray(design.zi_X[o], dtype=np.float64)
        self.x_exp = x_exponents(self.X)
        if self.x_exp is not None:
            self.X = np.ascontiguousarray(scale_by_exponents(self.X, self.x_exp))
        self.ng1 = t1.nlevels
        self.k1 = t1.k
        counts = np.bincount(t1.codes, minlength=self.ng1)
        self.group_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.Z1 = np.ascontiguousarray(t1.Z[o], dtype=float)
        # the rest: other terms (k_t entries per row), then X (p entries per row)
        self.rest_terms = self.terms[1:]
        self.rest_base = []
        base = 0
        for t in self.rest_terms:
            self.rest_base.append(base)
            base += t.nlevels * t.k
        self.q2 = base
        self.m_re = sum(t.k for t in self.rest_terms)
        m = self.m_re + self.p
        self.rest_cols = np.zeros((self.n, max(m, 1)), np.int64)
        rest_vals = np.zeros((self.n, max(m, 1)))
        col = 0
        for t, b in zip(self.rest_terms, self.rest_base):
            codes = t.codes[o]
            for j in range(t.k):
                self.rest_cols[:, col + j] = b + codes * t.k + j
            col += t.k
        for j in range(self.p):
            self.rest_cols[:, self.m_re + j] = self.q2 + j
            rest_vals[:, self.m_re + j] = self.X[:, j]
        self.rest_Z = [np.ascontiguousarray(t.Z[o], dtype=float) for t in self.rest_terms]
        self.lower, self.theta_pos = theta_layout(self.terms)
        self.ntheta = len(self.lower)
        self._lam_index, k0 = [], 0         # (k, rows, cols, first, end) per term
        for t, pos in zip(self.terms, self.theta_pos):
            ii = np.array([i for i, _ in pos], np.int64)
            jj = np.array([j for _, j in pos], np.int64)
            self._lam_index.append((t.k, ii, jj, k0, k0 + len(pos)))
            k0 += len(pos)
        self._symbolic = {}     # with_beta -> ``symbolic``'s answer, computed once
        self._start_response(design, np.ascontiguousarray(design.y[o], dtype=np.float64),
                             rest_vals)

    def _start_response(self, design: ModelDesign, y, rest_vals):
        """Everything that belongs to one response, or changes as its deviance is
        evaluated (whatever is not set here, ``with_response`` shares): y in sorted
        order, its aic constant, the numbers theta sets (A1, the random-effects
        columns of rest_vals), the layouts made of them, warm starts, state,
        counters, the fit's settings, and the kernels' call wrappers."""
        self.design = design
        self.y = y
        self._family_numbers()
        self.A1 = np.zeros((self.n, self.k1))
        self.rest_vals = rest_vals
        self._layout = {}
        self._controls = {}         # tol -> PirlsControl (each call would build its own)
        self._theta_set = None
        self._theta_key = None
        # warm starts, one per mode (beta solved for or fixed)
        self._u1 = {True: np.zeros((self.ng1, self.k1)), False: np.zeros((self.ng1, self.k1))}
        self._v = {True: np.zeros(self.q2 + self.p), False: np.zeros(self.q2)}
        self.beta_start = None
        self.tol = PIRLS_TOL
        self.budget = None          # optimize.Budget of the fit, checked between iterations ...
        self.piece_iterations = 0   # ... every so many iterations; 0: never (see cost.py)
        self.state: PirlsState | None = None
        self._gradient = None       # gradient.LaplaceGradient of this response, when used
        self.evaluations = 0
        self.pirls_iterations = 0       # work counter (benchmarks, tuning)
        # the kernels whose every argument this object builds itself, with fixed
        # types (C-contiguous float64/int64 arrays it allocated, the structs of
        # ``layout`` and ``rows``, scalars converted): called past the dispatcher
        self.pirls_kernel = jit.FixedSignature(pirls.pirls)
        self.pirls_lme4_kernel = jit.FixedSignature(pirls.pirls_lme4)
        self.agq_kernel = jit.FixedSignature(agq.agq_deviance)

    def set_family(self, family: Family):
        """Evaluate with another family of the same kind from now on (a profile's
        negative binomial shape, the Gamma's dispersion): the kernels' family data,
        weights and the response's log-likelihood constant change, the warm starts
        stay."""
        self.family = family
        self._fd = family.kernel_data()
        self._family_numbers()

    def _family_numbers(self):
        """What the family's parameters set: the rows' weights as the kernels take
        them (``kernel_pw``: the prior weights, divided by the dispersion phi for the
        exact Laplace's Gamma, whose log-likelihood's mu part is pw/phi times the
        deviance's, so that PIRLS finds the modes of the log-likelihood itself and
        the Fisher and observed weights carry the shape; zero-inflated: each row's
        structural-zero probability p0, ``zero_inflation.zero_probability``), the
        log-likelihood's mu-free part and stage 1's rows."""
        fam = self.family
        if fam.likelihood_dispersion and fam.dispersion is None:
            raise ValueError("the exact Laplace's Gamma deviance needs a dispersion "
                             "(glmer estimates it: family_parameter.GAMMA_DISPERSION)")
        if fam.zero_inflated:
            if fam.zi_coef is None or self.zi_X is None:
                raise ValueError("a zero-inflated deviance needs the zero-inflation "
                                 "model's columns and coefficients (glmer estimates them)")
            self.kernel_pw = zero_probability(self.zi_X, fam.zi_coef)
        else:
            self.kernel_pw = (np.ascontiguousarray(self.pw / float(fam.dispersion))
                              if fam.likelihood_dispersion else self.pw)
        self.aic_const = float(loglik_constant(self.y, self.pw, self._fd))
        self._observed_determinant = bool(pirls.observed_determinant(self._fd))
        self._offset_rows = pirls.Rows(self.y, self.kernel_pw, self.offset)   # stage 1's

    def with_response(self, y, design: ModelDesign | None = None) -> GlmmDeviance:
        """The deviance functions of the same design with another response ``y``
        (in the design's row order; a refit's, a bootstrap's): the sorted layout
        (row order, X and its scaling, the rest columns), the symbolic structure and
        the dense-update choice are this object's, shared, not rebuilt; y (sorted),
        its aic constant, the theta-dependent numbers, warm starts, state, counters
        and settings are new.  ``design`` is the design record to keep (default:
        this one's with y replaced)."""
        y = np.asarray(y, dtype=np.float64)
        if design is None:
            design = dataclasses.replace(self.design, y=y)
        rest_vals = self.rest_vals.copy()
        rest_vals[:, :self.m_re] = 0.0      # set_theta fills them
        new = copy.copy(self)
        new._start_response(design, np.ascontiguousarray(y[self.order], dtype=np.float64),
                            rest_vals)
        return new

    # -- structure
    def symbolic(self, with_beta: bool):
        """(m_use, r, loc_ptr, loc_cols, rest_loc, dense_rows) of the system with
        or without the fixed effects (``symbolic_blocks``, and
        ``linalg.dense_update_rows``' choice), computed once per design."""
        if with_beta not in self._symbolic:
            m_use = self.m_re + (self.p if with_beta else 0)
            r = self.q2 + (self.p if with_beta else 0)
            loc_ptr, loc_cols, rest_loc = symbolic_blocks(self.rest_cols, m_use,
                                                          self.group_ptr, r)
            self._symbolic[with_beta] = (m_use, r, loc_ptr, loc_cols, rest_loc,
                                         linalg.dense_update_rows(loc_ptr, self.k1, r))
        return self._symbolic[with_beta]

    def layout(self, with_beta: bool) -> linalg.BlockedLayout:
        """The kernels' view of the system with or without the fixed effects (its
        A1 and rest_vals are this object's, refreshed in place by ``set_theta``)."""
        if with_beta not in self._layout:
            m_use, r, loc_ptr, loc_cols, rest_loc, dense_rows = self.symbolic(with_beta)
            self._layout[with_beta] = linalg.BlockedLayout(
                self.A1, self.group_ptr, self.rest_vals, self.rest_cols, rest_loc,
                m_use, loc_ptr, loc_cols, r, self.q2, dense_rows)
        return self._layout[with_beta]

    def rows(self, eta_base) -> pirls.Rows:
        """The response as the kernels take it, on top of ``eta_base``."""
        return pirls.Rows(self.y, self.kernel_pw, eta_base)

    def lambdas(self, theta) -> list:
        theta = np.asarray(theta, float)
        out = []
        for k, ii, jj, k0, k1 in self._lam_index:
            L = np.zeros((k, k))
            L[ii, jj] = theta[k0:k1]
            out.append(L)
        return out

    def set_theta(self, theta):
        theta = np.asarray(theta, float)
        key = theta.tobytes()
        if key == self._theta_key:
            return
        lams = self.lambdas(theta)
        linalg.small_matmul(self.Z1, lams[0], self.A1, 0)
        col = 0
        for Zt, L in zip(self.rest_Z, lams[1:]):
            linalg.small_matmul(Zt, L, self.rest_vals, col)
            col += L.shape[0]
        self._theta_set = theta.copy()
        self._theta_key = key

    def _keep_b_of_start(self, theta):
        """Stage 1's warm start (u, beta) for a new theta: each scalar term's u is
        rescaled by theta_old / theta_new so that its b = theta u, hence the linear
        predictor PIRLS starts from, stays the previous evaluation's (the modes in b
        move much less with theta than those in u: fewer PIRLS iterations)."""
        old = self._theta_set
        if old is None:
            return
        k0 = 0
        for ti, t in enumerate(self.terms):
            if t.k == 1 and old[k0] > 0.0 and theta[k0] > 0.0 and old[k0] != theta[k0]:
                f = old[k0] / theta[k0]
                if ti == 0:
                    self._u1[True] *= f
                else:
                    b = self.rest_base[ti - 1]
                    self._v[True][b:b + t.nlevels] *= f
            k0 += t.ntheta

    def _xb(self, beta):
        """offset + X beta (sorted rows), without BLAS threads."""
        return linalg.offset_plus_xb(self.offset, self.X, np.asarray(beta, dtype=float))

    # -- evaluations
    def pirls(self, theta, beta=None, tol=None) -> PirlsState:
        with_beta = beta is None
        tol = float(self.tol if tol is None else tol)
        if with_beta:
            self._keep_b_of_start(np.asarray(theta, float))
        self.set_theta(theta)
        layout = self.layout(with_beta)
        rows = self._offset_rows if with_beta else self.rows(self._xb(beta))
        control = self._controls.get(tol)
        if control is None:
            control = self._controls[tol] = pirls.PirlsControl(PIRLS_MAXIT, tol)
        for attempt in range(2):
            u1, v = self._u1[with_beta], self._v[with_beta]
            if self.budget is None or not self.piece_iterations:
                out = self.pirls_kernel(self._fd, rows, layout, u1, v, control, self.aic_const)
            else:
                out = self._pirls_in_pieces(rows, layout, u1, v, tol)
            if out.status == pirls.PIRLS_OK or attempt == 1:
                break
            # a bad warm start (e.g. after an extreme trial theta): restart from zero
            u1[:] = 0.0
            v[:] = 0.0
            if with_beta and self.p and self.beta_start is not None:
                v[self.q2:] = self.beta_start
        self.evaluations += 1
        self.pirls_iterations += int(out.iterations)
        f = out.factor
        st = PirlsState(out.status, out.iterations, out.logdet, out.pdev, out.aic, u1.copy(),
                        v.copy(), f.Dchol, f.Cval, f.LS, out.mu, out.eta, with_beta, out.ussq)
        if out.status != pirls.PIRLS_OK:
            # keep the warm start usable
            self._u1[with_beta][:] = 0.0
            self._v[with_beta][:] = 0.0
            if with_beta and self.p and self.beta_start is not None:
                self._v[with_beta][self.q2:] = self.beta_start
        self.state = st
        return st

    def _pirls_in_pieces(self, rows, layout, u1, v, tol):
        """``pirls.pirls`` ``piece_iterations`` iterations at a time, the time
        budget checked before each piece (``Budget.check_inside``): the same
        arithmetic as one call (see the kernel), for models whose iterations are
        slow against the budget (``cost.piece_iterations``)."""
        it, finish = 1, False
        while True:
            self.budget.check_inside()
            last = min(it + self.piece_iterations - 1, PIRLS_MAXIT)
            out = self.pirls_kernel(self._fd, rows, layout, u1, v,
                                    pirls.PirlsControl(int(last), tol, int(it), bool(finish)),
                                    self.aic_const)
            if not out.more or last >= PIRLS_MAXIT:
                return out
            it, finish = last + 1, out.finish

    def warm_starts(self):
        """The mode searches' starting points (for ``restore_warm_starts``): what
        profiles and derivatives that evaluate other parameters put back, so that
        the next evaluation -- and a second profile -- starts where it would have."""
        return ({k: a.copy() for k, a in self._u1.items()},
                {k: a.copy() for k, a in self._v.items()}, self.state)

    def restore_warm_starts(self, saved):
        u1, v, state = saved
        for k in self._u1:
            self._u1[k][:] = u1[k]
            self._v[k][:] = v[k]
        self.state = state

    def warm_start_fixed_beta(self, st: PirlsState):
        """Start the fixed-beta PIRLS (stage 2) from the stage-1 modes."""
        self._u1[False][:] = st.u1
        self._v[False][:] = st.v[:self.q2]

    def modes_token(self):
        """The conditional modes of the last fixed-beta evaluation (immutable
        copies), for ``start_from``; None when there is no usable one."""
        st = self.state
        if st is None or st.beta_in_system or not st.ok:
            return None
        return st.u1, st.v

    def start_from(self, pairs):
        """Start the next fixed-beta PIRLS at sum(c * modes) over (c, token) pairs
        (a first-order prediction of its answer); no change if a token is None."""
        if not pairs or any(tok is None for _, tok in pairs):
            return
        u1, v = self._u1[False], self._v[False]
        c, (a, b) = pairs[0]
        np.multiply(a, c, out=u1)
        np.multiply(b, c, out=v)
        for c, (a, b) in pairs[1:]:
            u1 += c * a
            v += c * b

    def set_beta_start(self, beta):
        self.beta_start = np.asarray(beta, float).copy()
        if self.p:
            self._v[True][self.q2:] = self.beta_start

    def laplace(self, theta, beta=None, tol=None) -> float:
        st = self.pirls(theta, beta, tol)
        if st.status not in (pirls.PIRLS_OK, pirls.PIRLS_MAXIT) or not np.isfinite(st.logdet):
            return np.inf
        return float(st.aic + st.ussq + st.logdet)

    def flat_mode(self, st) -> int:
        """How many random effects the exact Laplace's mode is nearly flat along: pivots
        of M (the penalty's 1 plus the data's curvature, observed information, which
        may be negative) below ``LAPLACE_MIN_PIVOT``.  There the Laplace approximation
        breaks down (a group whose counts are all zero under zero inflation: its
        likelihood is flat where its effect is low, the posterior far from normal,
        its Laplace term +2.9 where quadrature gives -0.95), and its log determinant
        sends the deviance towards -infinity: a spike, not a maximum (the fit says
        so: ``model``).  Only the random effects' pivots (the fixed effects', when
        solved for, have another scale); 0 for Fisher weights (pivots >= 1)."""
        if not self._observed_determinant:
            return 0
        pivots = np.einsum("gaa->ga", st.Dchol).ravel() ** 2
        if self.q2:
            pivots = np.concatenate([pivots, np.diag(st.LS)[:self.q2] ** 2])
        return int(np.count_nonzero(pivots < LAPLACE_MIN_PIVOT))

    def laplace_gradient(self, theta, beta):
        """(Laplace deviance, its exact gradient in (theta, beta)) at a point: one
        PIRLS, as ``laplace(theta, beta)``, then ``gradient.laplace_gradient``."""
        if self._gradient is None:
            self._gradient = LaplaceGradient(self)
        return self._gradient(theta, beta)

    def agq(self, theta, beta, nodes, logw) -> float:
        st = self.pirls(theta, beta)
        if st.status not in (pirls.PIRLS_OK, pirls.PIRLS_MAXIT) or not np.isfinite(st.logdet):
            return np.inf
        if self.k1 > 1:     # a vector term (one grouping factor): the product rule
            Z, lw = agq.product_rule(nodes, logw, self.k1)
            return float(agq.agq_deviance_vector(self._fd, self.rows(self._xb(beta)),
                                                 self.A1, self.group_ptr, st.u1, st.Dchol,
                                                 Z, lw))
        # A1[:, 0] is C-contiguous: a single scalar term (k1 = 1)
        return float(self.agq_kernel(self._fd, self.rows(self._xb(beta)),
                                     self.A1[:, 0], self.group_ptr, st.u1, st.Dchol,
                                     np.ascontiguousarray(nodes, dtype=np.float64),
                                     np.ascontiguousarray(logw, dtype=np.float64)))

    def lme4_devfun(self, theta_stage1, mustart):
        """lme4's stage-2 deviance function as lme4 evaluates it (few PIRLS
        iterations from the stage-1 linear predictor, log|L|^2 one iterate late),
        for reproducing lme4's finite-difference Hessian.  Returns
        f(theta, beta, iterations=None) -> (value, iterations used).

        lme4 stops its PIRLS when the penalized deviance changes by less than
        1e-7 relative, so the number of iterations -- and the value, by up to
        ~1e-3 -- jumps between nearby points.  With ``iterations`` given, exactly
        that many are done: a smooth function, equal to lme4's wherever lme4
        would do that many (as at the points of lme4's own 1e-4 stencil)."""
        fam = self.family
        eta_start = np.ascontiguousarray(fam.linkfun(np.asarray(mustart)[self.order]), dtype=float)

        def loop(theta, offset, eta0, with_beta, iterations=None):
            self.set_theta(theta)
            control = pirls.PirlsControl(LME4_MAXIT, LME4_TOL_PWRSS) if iterations is None \
                else pirls.PirlsControl(int(iterations), 0.0)
            return self.pirls_lme4_kernel(self._fd, self.rows(offset), self.layout(with_beta),
                                          eta0, control, self.aic_const)
        # lp0 as lme4 builds it: the joint (u, beta) loop at theta = 1 from mustart,
        # then at the stage-1 optimum from there
        eta_init = loop(theta_start(self.terms), self.offset, eta_start, True).eta
        eta_lp0 = loop(np.asarray(theta_stage1, float), self.offset, eta_init, True).eta

        def f(theta, beta, iterations=None):
            out = loop(np.asarray(theta, float), self._xb(beta), eta_lp0, False, iterations)
            value = np.inf if out.status == pirls.PIRLS_NOT_PD \
                else out.aic + out.ussq + out.logdet
            return float(value), int(out.iterations)
        return f

    def factor_at(self, theta, st: PirlsState, with_beta: bool):
        """The blocked factor at the state's weights -- Fisher's, or the observed
        information where the Laplace determinant takes it (the exact Laplace with a
        non-canonical link: the random effects' conditional covariance, the RX
        covariance and the predictions' variances are then the exact Laplace's) --,
        with or without the fixed effects in the system:
        (Dchol, Cval, LS, loc_ptr, loc_cols, ok)."""
        self.set_theta(theta)
        layout = self.layout(with_beta)
        w = np.empty(self.n)
        wres = np.empty(self.n)
        rows = self.rows(self.offset)
        if pirls.observed_determinant(self._fd):
            pirls.observed_weights(self._fd, rows, st.eta, st.mu, w)
        else:
            pirls.working_weights(self._fd, rows, st.eta, st.mu, w, wres)
        factor = linalg.new_factor(layout)
        _, ok = linalg.factorize(layout, w, factor)
        return factor.Dchol, factor.Cval, factor.LS, layout.loc_ptr, layout.loc_cols, ok

    # -- quantities at a state
    def beta_of(self, st: PirlsState, beta=None):
        return st.v[self.q2:].copy() if st.beta_in_system else np.asarray(beta, float)

    def u_vector(self, st: PirlsState) -> np.ndarray:
        """Spherical random effects in lme4's order (term by term, level-major)."""
        return np.concatenate([st.u1.reshape(-1), st.v[:self.q2]])

    def b_by_term(self, theta, st: PirlsState) -> list:
        """Random effects on the linear-predictor scale, per term (nlevels x k)."""
        lams = self.lambdas(theta)
        out = [st.u1 @ lams[0].T]
        for t, b, L in zip(self.rest_terms, self.rest_base, lams[1:]):
            u = st.v[b:b + t.nlevels * t.k].reshape(t.nlevels, t.k)
            out.append(u @ L.T)
        return out

    def unsorted(self, a):
        """Back to the data's row order."""
        return np.asarray(a)[self.inverse_order]


class ModeWarmStarts:
    """The warm-start protocol of optimize's finite differences (``save`` the last
    evaluation's modes, ``start`` the next one from a combination of saved ones)
    for the fixed-beta deviances of a GlmmDeviance."""

    def __init__(self, dev: GlmmDeviance):
        self.save = dev.modes_token
        self.start = dev.start_from
