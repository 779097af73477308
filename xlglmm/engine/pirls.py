"""Penalized iteratively reweighted least squares (PIRLS) for the conditional modes,
on the blocked factor of ``linalg.py`` (Numba).

The kernels take a few typed structs (NamedTuples, which Numba passes to compiled
code and caches) rather than long lists of arrays: the family as
``family.FamilyData``, the response as :class:`Rows`, the design in blocked form as
``linalg.BlockedLayout``, the loop's settings as :class:`PirlsControl`; ``pirls``
answers a :class:`PirlsResult` (its factor a ``linalg.Factor``), ``pirls_lme4`` a
:class:`Lme4PirlsResult`.  The names are those of the glossary at the top of
``linalg.py``.

There are two drivers: ``pirls`` (this package's mode search: Newton steps with a
line search, stopped by the Newton decrement) and ``pirls_lme4`` (lme4's own loop,
which lme4's standard errors depend on: its finite-difference Hessian is taken of
that loop's answers).  Both are short, over the same pieces -- the working weights
(``working_weights``, ``newton_weights``), the factor (``linalg.factorize``), the
Newton solve (``linalg.newton_step``), the penalized deviance -- because one loop
with a flag would have to order the floating-point operations of one of them
differently, and either this package's numbers or lme4's would move.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .family import (LOG, conditional_aic_fast, general_fisher_weight, general_likelihood,
                     general_score_and_weight, has_observed_weights, is_canonical, linkinv,
                     mu_eta, observed_information, observed_weight, unit_deviance, variance)
from .linalg import Factor, factorize, linear_predictor, new_factor, newton_step

# status codes of PirlsResult.status
PIRLS_OK, PIRLS_MAXIT, PIRLS_NOT_PD, PIRLS_NONFINITE = 0, 1, 2, 3


# ---- the structs PIRLS takes and returns ------------------------------------------

class Rows(NamedTuple):
    """The response, row by row (sorted by term 1's levels)."""

    y: np.ndarray
    pw: np.ndarray          # prior weights (binomial: trials)
    eta_base: np.ndarray    # offset, plus X beta when beta is fixed


class PirlsControl(NamedTuple):
    """Iterations ``it_first`` to ``maxit`` of the loop, the convergence tolerance,
    and ``finish`` (a piece's hand-over flag, see ``pirls``)."""

    maxit: int
    tol: float
    it_first: int = 1
    finish: bool = False


class PirlsResult(NamedTuple):
    """What ``pirls`` answers (u1, v are updated in place)."""

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


class Lme4PirlsResult(NamedTuple):
    """What ``pirls_lme4`` answers: what lme4's deviance and the next call's start
    need, no factor or fitted values (it runs inside finite-difference stencils,
    where returning those arrays to Python cost a third of a small model's call)."""

    status: int             # PIRLS_OK, PIRLS_MAXIT, PIRLS_NOT_PD
    iterations: int
    logdet: float           # log|L|^2 from the weights before the last update (lme4's)
    aic: float              # -2 conditional log-likelihood (family aic term)
    ussq: float             # |u|^2
    eta: np.ndarray         # the linear predictor it ends at


# ---- the modes ----------------------------------------------------------------------

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
def penalty(u1, v, npen):
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
def penalized_deviance(fd, rows, layout, u1, v, eta, mu):
    """eta, mu and the penalized deviance sum(dev_i) + |u|^2 at the modes u1, v."""
    linear_predictor(layout, rows.eta_base, u1, v, eta)
    return _mu_and_deviance(fd, rows, eta, mu) + penalty(u1, v, layout.npen)


@njit(cache=True, error_model="numpy")
def working_weights(fd, rows, eta, mu, w, wres):
    """Fisher weights w = pw mu_eta^2 / V and the score term
    wres = pw mu_eta (y - mu) / V, V the family's variance at (mu, pw) (so the
    gradient is Z'wres - u).  Returns True when some row's weight is not its observed
    information (a general-likelihood row whose is not positive: PIRLS then tries a
    Newton step with the observed weights themselves, ``pirls``)."""
    y, pw = rows.y, rows.pw
    link = fd.link
    fallback = False
    if general_likelihood(fd):
        # NB1, beta, beta-binomial: the score d loglik / d eta itself, and a positive
        # weight: the row's observed information where it is positive (Newton's, most
        # rows near the modes: 40% less time on NB1 than scoring alone), else
        # ``family.general_fisher_weight``
        for i in range(y.shape[0]):
            wres[i], wo = general_score_and_weight(y[i], mu[i], eta[i], pw[i], fd)
            if wo > 0.0:
                w[i] = wo
            else:
                me = mu[i] if link == LOG else mu_eta(eta[i], link)
                w[i] = general_fisher_weight(mu[i], me, pw[i], fd)
                fallback = True
        return fallback
    for i in range(y.shape[0]):
        # log link: mu_eta(eta) is mu itself (the same max(exp(eta), eps)); no exp
        me = mu[i] if link == LOG else mu_eta(eta[i], link)
        vr = variance(mu[i], pw[i], fd)
        w[i] = pw[i] * me * me / vr
        wres[i] = pw[i] * me * (y[i] - mu[i]) / vr
    return fallback


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
    """Observed-information weights -d2 loglik / d eta2 where the family knows them
    to be positive and different from Fisher's (``family.has_observed_weights``),
    for quadratic convergence of the mode search.  Returns False (w untouched)
    elsewhere."""
    if not has_observed_weights(fd):
        return False
    y, pw = rows.y, rows.pw
    for i in range(y.shape[0]):
        w[i] = observed_weight(y[i], mu[i], pw[i], fd)
    return True


@njit(cache=True, error_model="numpy")
def observed_determinant(fd):
    """The Laplace determinant takes the observed information, not Fisher's weights:
    the exact Laplace approximation (``fd.exact``) with a non-canonical link."""
    return fd.exact and not is_canonical(fd)


@njit(cache=True, error_model="numpy")
def observed_weights(fd, rows, eta, mu, w):
    """w = the observed information -d2 loglik / d eta2 of every row
    (``family.observed_information``): the exact Laplace determinant's weights.
    Some may be negative where the log-likelihood is not concave in eta (a Gamma
    row with the identity link and y < mu/2; NB with the sqrt or identity link);
    their sum with the penalty is positive definite at a mode."""
    y, pw = rows.y, rows.pw
    if general_likelihood(fd):      # (two derivatives in mu are enough)
        for i in range(y.shape[0]):
            w[i] = general_score_and_weight(y[i], mu[i], eta[i], pw[i], fd)[1]
        return
    for i in range(y.shape[0]):
        w[i] = observed_information(y[i], mu[i], eta[i], pw[i], fd)[0]


@njit(cache=True, error_model="numpy")
def _same_weights(w, w_factor):
    """w equals, bit for bit, the weights the factor was formed with: its factor is
    then the one factorize would form again (a linear mixed model's weights never
    change, so its second PIRLS iteration, which only confirms the exact first step,
    reuses the factor: one factorization per evaluation instead of two -- seconds
    for a rest block of thousands of columns).  Stops at the first difference,
    so a GLMM, whose weights move with every step, pays one comparison."""
    for i in range(w.shape[0]):
        if w[i] != w_factor[i]:
            return False
    return True


@njit(cache=True, error_model="numpy")
def _copy_weights(w, to):
    for i in range(w.shape[0]):
        to[i] = w[i]


# ---- PIRLS ---------------------------------------------------------------------------

@njit(cache=True, error_model="numpy")
def pirls(fd, rows, layout, u1, v, control, aic_const):
    """Penalized iteratively reweighted least squares for the conditional modes.

    Minimises  sum(dev_i) + |u|^2  over u1, v (v holds the other random effects and,
    when ``r > npen``, the fixed effects) by Fisher-scoring steps with step halving,
    starting from the given u1, v (updated in place).  Stops when the Newton
    decrement falls below ``tol * (1 + pdev)``, or stalls at rounding level.
    Returns a ``PirlsResult``; its factor is the one at the returned modes, with
    Fisher's weights (lme4's Laplace determinant) or, for the exact Laplace with a
    non-canonical link (``observed_determinant``), the observed information.

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

    pdev = penalized_deviance(fd, rows, layout, u1, v, eta, mu)
    if not np.isfinite(pdev):
        return PirlsResult(PIRLS_NONFINITE, 0, np.inf, pdev, np.inf, factor, mu, eta, np.inf,
                           False, finish)
    status = PIRLS_MAXIT
    logdet = np.inf
    it = 0
    more = True
    w_factor = np.empty(n)      # the weights ``factor`` holds (valid when have_factor)
    have_factor = False
    ok = True
    observed = observed_determinant(fd)
    for it in range(control.it_first, control.maxit + 1):
        fallback = working_weights(fd, rows, eta, mu, w, wres)
        newton = newton_weights(fd, rows, mu, wn)
        factored = False
        if fallback:
            # rows whose observed information is not positive (zero-inflated zeros,
            # NB1 or beta-binomial rows far from their mean): Newton's step with the
            # observed weights themselves when their system is positive definite (a
            # positive stand-in for those rows makes the steps converge only linearly:
            # 14 iterations instead of 3 on a zero-inflated Poisson), else the
            # positive weights
            observed_weights(fd, rows, eta, mu, wn)
            logdet, ok = factorize(layout, wn, factor)
            have_factor = False         # (the factor holds wn, or a failed attempt)
            newton = factored = ok
        if not factored and (newton or not (have_factor and _same_weights(w, w_factor))):
            logdet, ok = factorize(layout, wn if newton else w, factor)
            have_factor = ok and not newton
            if have_factor:
                _copy_weights(w, w_factor)
        if not ok:
            status = PIRLS_NOT_PD
            more = False
            break
        dec = newton_step(layout, factor, wres, u1, v, du1, dv)
        if dec < tol * (1.0 + abs(pdev)) or finish:
            status = PIRLS_OK
            if observed:    # the exact Laplace determinant: the observed information
                observed_weights(fd, rows, eta, mu, wn)
                logdet, ok = factorize(layout, wn, factor)
            elif newton:    # lme4's Laplace determinant uses Fisher's weights
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
            new = penalized_deviance(fd, rows, layout, u1, v, eta, mu)
            if new <= pdev + 1e-13 * abs(pdev):
                accepted = True
                break
            step *= 0.5
        if not accepted:
            # no descent at all along a Newton direction: we are at rounding level
            _copy_modes(u1_old, v_old, u1, v)
            pdev = penalized_deviance(fd, rows, layout, u1, v, eta, mu)
            working_weights(fd, rows, eta, mu, w, wres)
            if observed:
                observed_weights(fd, rows, eta, mu, wn)
                logdet, ok = factorize(layout, wn, factor)
            elif not (have_factor and _same_weights(w, w_factor)):
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
                       penalty(u1, v, layout.npen), more, finish)


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
        pdev = penalized_deviance(fd, rows, layout, u1, v, eta, mu)
        if it > 1 and pdev > oldpdev:
            for _ in range(10):          # lme4's step halving towards the last iterate
                _halve_towards(u1_old, v_old, u1, v)
                pdev = penalized_deviance(fd, rows, layout, u1, v, eta, mu)
                if pdev <= oldpdev:
                    break
        if abs(oldpdev - pdev) < control.tol * abs(pdev) or pdev == oldpdev:
            status = PIRLS_OK
            break
        oldpdev = pdev
    aic = conditional_aic_fast(rows.y, mu, rows.pw, fd, aic_const)
    return Lme4PirlsResult(status, it, logdet, aic, penalty(u1, v, layout.npen), eta)
