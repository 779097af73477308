"""Numba kernels against plain numpy/scipy versions of the same formulas."""
import dataclasses

import numba
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special, stats

import xlglmm
from xlglmm.engine import agq, cost, jit, linalg, pirls
from xlglmm.engine.agq import gauss_hermite
from xlglmm.engine.design import build_design
from xlglmm.engine.devfun import GlmmDeviance
from xlglmm.engine.family import (DISPERSION, FAMILY_SPECS, NB_THETA, NEGBIN, SQRT, Family,
                                  conditional_aic, has_observed_weights, linkinv,
                                  logdensity_eta_derivs, mu_eta, observed_weight,
                                  unit_logdensity, unit_loglik, variance)
from xlglmm.engine.optimize import Budget

RNG = np.random.default_rng(20261124)


# ---- families --------------------------------------------------------------------------

def test_loglik_matches_scipy():
    y = np.array([0, 1, 3, 7, 12], float)
    mu = np.array([0.4, 1.3, 2.2, 6.5, 15.0])
    pois = [unit_loglik(a, b, 1.0, Family("poisson").kernel_data()) for a, b in zip(y, mu)]
    assert np.allclose(pois, stats.poisson.logpmf(y, mu))
    th = 2.5
    nb = [unit_loglik(a, b, 1.0, Family("negbin", "log", th).kernel_data())
          for a, b in zip(y, mu)]
    assert np.allclose(nb, stats.nbinom.logpmf(y, th, th / (th + mu)))
    m = np.array([5, 8, 10, 3, 20], float)
    k = np.array([0, 3, 10, 1, 7], float)
    p = np.array([0.1, 0.4, 0.8, 0.5, 0.3])
    fd = Family("binomial").kernel_data()
    binom = [unit_loglik(kk / mm, pp, mm, fd) for kk, mm, pp in zip(k, m, p)]
    assert np.allclose(binom, stats.binom.logpmf(k, m, p))


def test_gamma_aic_matches_r_formula():
    y = RNG.gamma(3.0, 1.0, 50)
    mu = np.exp(RNG.normal(1, 0.2, 50))
    wt = np.ones(50)
    fam = Family("gamma", "log")
    dev = fam.dev_resids(y, mu, wt).sum()
    disp = dev / 50
    want = -2 * stats.gamma.logpdf(y, a=1 / disp, scale=mu * disp).sum() + 2
    assert conditional_aic(y, mu, wt, fam.kernel_data()) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("link,ref", [
    (1, special.expit), (2, special.ndtr), (3, lambda e: -np.expm1(-np.exp(e))),
    (0, np.exp), (4, lambda e: 1 / e)])
def test_links_and_derivatives(link, ref):
    eta = np.linspace(0.3, 2.5, 9) if link == 4 else np.linspace(-4, 3, 15)
    got = np.array([linkinv(e, link) for e in eta])
    assert np.allclose(got, ref(eta), rtol=1e-12)
    h = 1e-6
    num = (ref(eta + h) - ref(eta - h)) / (2 * h)
    assert np.allclose([mu_eta(e, link) for e in eta], num, rtol=1e-6)


def test_dev_resids_formulas():
    y = np.array([0.0, 2.0, 5.0])
    mu = np.array([0.5, 2.5, 4.0])
    pois = Family("poisson").dev_resids(y, mu)
    want = 2 * (np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu), 0) - (y - mu))
    assert np.allclose(pois, want)
    yb = np.array([0.0, 0.25, 1.0])
    mb = np.array([0.2, 0.3, 0.9])
    b = Family("binomial").dev_resids(yb, mb, np.array([1, 4, 2.0]))
    ylogy = lambda a, m: np.where(a > 0, a * np.log(np.where(a > 0, a, 1) / m), 0)
    wantb = 2 * np.array([1, 4, 2.0]) * (ylogy(yb, mb) + ylogy(1 - yb, 1 - mb))
    assert np.allclose(b, wantb)


# ---- the blocked factor ----------------------------------------------------------------

def _crossed_problem(family="poisson", link=None, slope=True, n=60, laplace="exact"):
    df = pd.DataFrame({
        "y": RNG.poisson(3, n).astype(float),
        "x": RNG.normal(size=n), "z": RNG.normal(size=n),
        "a": RNG.integers(0, 6, n).astype(str), "b": RNG.integers(0, 4, n).astype(str)})
    if family == "binomial":
        df["y"] = (RNG.uniform(size=n) < 0.4).astype(float)
    f = "y ~ z + (x|a) + (1|b)" if slope else "y ~ z + (1|a) + (1|b)"
    fam = Family(family, link or "", laplace=laplace)
    design = build_design(f, df, fam)
    return GlmmDeviance(design, fam), design


def _dense(dev: GlmmDeviance, theta):
    """Dense U = Z Lambda (sorted rows) for the whole model."""
    lams = dev.lambdas(theta)
    blocks = []
    for t, L in zip(dev.terms, lams):
        codes = t.codes[dev.order]
        Z = t.Z[dev.order]
        Zd = np.zeros((dev.n, t.nlevels * t.k))
        for i in range(dev.n):
            Zd[i, codes[i] * t.k:(codes[i] + 1) * t.k] = Z[i]
        Lb = np.kron(np.eye(t.nlevels), L)
        blocks.append(Zd @ Lb)
    return np.hstack(blocks)


def test_stage1_warm_start_keeps_b_and_finds_the_same_mode():
    """After a theta change the joint (u, beta) PIRLS starts from the previous
    b = theta u (u rescaled); its answer is the cold start's."""
    dev, _ = _crossed_problem(slope=False)
    dev.pirls(np.array([0.5, 0.4]))
    warm = dev.pirls(np.array([0.9, 0.7]))
    dev._u1[True][:] = 0.0
    dev._v[True][:] = 0.0
    cold = dev.pirls(np.array([0.9, 0.7]))
    assert warm.ok and cold.ok
    assert np.allclose(warm.u1, cold.u1, atol=1e-9) and np.allclose(warm.v, cold.v, atol=1e-9)
    assert warm.aic + warm.ussq + warm.logdet == pytest.approx(
        cold.aic + cold.ussq + cold.logdet, rel=1e-12)


def test_blas_free_products_against_numpy():
    X = RNG.normal(size=(50, 4))
    off = RNG.normal(size=50)
    beta = RNG.normal(size=4)
    assert np.allclose(linalg.offset_plus_xb(off, X, beta), off + X @ beta, rtol=1e-14)
    assert np.allclose(linalg.offset_plus_xb(off, X[:, :0].copy(), beta[:0]), off)
    for k, m in [(1, 1), (3, 3), (2, 1)]:
        Z = RNG.normal(size=(30, k))
        L = RNG.normal(size=(k, m))
        out = np.zeros((30, m + 2))
        linalg.small_matmul(Z, L, out, 1)
        assert np.allclose(out[:, 1:m + 1], Z @ L, rtol=1e-14)
        assert not out[:, 0].any() and not out[:, m + 1].any()


@pytest.mark.parametrize("r,npen,nested", [(1, 1, False), (7, 5, False), (40, 37, False),
                                            (70, 70, False), (40, 37, True), (9, 9, True)])
def test_chol_lower_against_numpy(r, npen, nested):
    A = RNG.normal(size=(r, r + 3))
    M = A @ A.T + 0.1 * np.eye(r)
    if nested:      # a diagonal block and three dense rows/columns (the fixed effects)
        M = np.diag(RNG.uniform(1.0, 5.0, r))
        B = RNG.normal(size=(r, 3))
        M[:, -3:] = B
        M[-3:, :] = B.T
        M[-3:, -3:] = B[-3:].T @ B[-3:] + 30.0 * np.eye(3)
        M = 0.5 * (M + M.T) + 10.0 * np.eye(r)
    S = M.copy()
    S[np.triu_indices(r, 1)] = 99.0          # only the lower triangle is read
    logdet, ok = linalg.chol_lower(S, npen)
    L = np.linalg.cholesky(M)
    assert ok
    assert np.allclose(S, L, rtol=1e-12, atol=1e-12)
    assert logdet == pytest.approx(2.0 * np.sum(np.log(np.diag(L))[:npen]), rel=1e-12)
    S = M.copy()
    S[r - 1, r - 1] = -1.0                   # not positive definite
    assert not linalg.chol_lower(S, npen)[1]


@pytest.mark.parametrize("r,npen", [(40, 37), (700, 696)])
def test_chol_lower_lapack_path_equals_the_loop(r, npen):
    """Above its size threshold a dense block goes to LAPACK's dpotrf: the same
    factor and log-determinant as the hand-written loop to rounding, and a matrix
    that is not positive definite is answered (not ok), not raised."""
    A = RNG.normal(size=(r, r + 3))
    M = A @ A.T / r + 0.1 * np.eye(r)
    M[np.triu_indices(r, 1)] = 99.0          # only the lower triangle is read
    S_loop, S_lapack = M.copy(), M.copy()
    ld_loop, ok_loop = linalg.chol_lower(S_loop, npen, 10 ** 9)
    ld_lapack, ok_lapack = linalg.chol_lower(S_lapack, npen, 2)
    assert ok_loop and ok_lapack
    assert np.allclose(S_lapack, S_loop, rtol=1e-12, atol=1e-13)
    assert not np.triu(S_lapack, 1).any()
    assert ld_lapack == pytest.approx(ld_loop, rel=1e-12, abs=1e-10)
    S = M.copy()
    S[r // 2, r // 2] = -1.0                 # a failed pivot inside dpotrf
    assert not linalg.chol_lower(S, npen, 2)[1]
    S = M.copy()
    S[0, 0] = 0.0                            # and the first one
    assert not linalg.chol_lower(S, npen, 2)[1]


def test_rest_inverse_lapack_path_equals_numpy():
    r = linalg.LAPACK_MIN_R + 10
    A = RNG.normal(size=(r, r + 3))
    L = np.linalg.cholesky(A @ A.T / r + 0.1 * np.eye(r))
    Sinv = linalg.rest_inverse(L)
    Linv = np.linalg.inv(L)
    want = Linv.T @ Linv
    assert np.allclose(Sinv, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    assert np.array_equal(Sinv, Sinv.T)


@pytest.mark.parametrize("formula", ["y ~ z + (1|a) + (1|b)", "y ~ z + (z|a) + (1|b)"])
def test_factorize_with_lapack_equals_the_loop_on_crossed_factors(formula):
    """Two crossed factors whose Schur complement is dense: factorize (its Schur
    update by columns) and the Newton step with the rest block factored by LAPACK
    (threshold lowered to reach it on a small case) agree with the per-level scatter
    and the hand-written loop to rounding (k1 = 1 and a random slope, k1 = 2)."""
    rng = np.random.default_rng(16)
    n = 3000
    df = pd.DataFrame({"y": rng.poisson(2.0, n).astype(float), "z": rng.normal(size=n),
                       "a": rng.integers(0, 150, n).astype(str),
                       "b": rng.integers(0, 120, n).astype(str)})
    fam = Family("poisson")
    dev = GlmmDeviance(build_design(formula, df, fam), fam)
    dev.set_theta(np.array([0.7, 0.5]) if dev.k1 == 1 else np.array([0.7, 0.2, 0.4, 0.5]))
    w = rng.uniform(0.5, 3.0, n)
    wres = rng.normal(size=n)
    for with_beta in (False, True):
        base = dev.layout(with_beta)
        u1 = rng.normal(size=(dev.ng1, dev.k1))
        v = rng.normal(size=base.r)
        out = []
        for lapack_min in (10 ** 9, 2):
            layout = base._replace(lapack_min=lapack_min)
            factor = linalg.new_factor(layout)
            logdet, ok = linalg.factorize(layout, w, factor)
            assert ok
            du1, dv = np.empty_like(u1), np.empty(layout.r)
            dec = linalg.newton_step(layout, factor, wres, u1, v, du1, dv)
            out.append((logdet, factor.LS.copy(), du1, dv, dec))
        (ld0, L0, du0, dv0, dec0), (ld1, L1, du1_, dv1, dec1) = out
        assert ld1 == pytest.approx(ld0, rel=1e-13)
        assert np.allclose(L1, L0, rtol=1e-12, atol=1e-13)
        assert np.allclose(du1_, du0, rtol=1e-11, atol=1e-13)
        assert np.allclose(dv1, dv0, rtol=1e-11, atol=1e-13)
        assert dec1 == pytest.approx(dec0, rel=1e-12)


@pytest.mark.parametrize("with_beta,dense_rows,slope", [
    (False, 0, True), (True, 0, True), (False, 3, True), (True, 3, True),
    (False, 0, False), (True, 0, False)])      # slope=False: k1 = 1 (_newton_step_k1)
def test_factorize_and_newton_step_against_dense(with_beta, dense_rows, slope):
    dev, _ = _crossed_problem(slope=slope)
    theta = np.array([0.8, 0.3, 0.5, 0.6]) if slope else np.array([0.8, 0.6])
    dev.set_theta(theta)
    layout = dev.layout(with_beta)._replace(dense_rows=dense_rows)
    r, loc_ptr, loc_cols = layout.r, layout.loc_ptr, layout.loc_cols
    w = RNG.uniform(0.5, 3.0, dev.n)
    wres = RNG.normal(size=dev.n)
    u1 = RNG.normal(size=(dev.ng1, dev.k1))
    v = RNG.normal(size=r)
    factor = linalg.new_factor(layout)
    logdet, ok = linalg.factorize(layout, w, factor)
    assert ok
    Dchol, Cval, LS = factor
    U = _dense(dev, theta)
    q = U.shape[1]
    Hu = U.T @ (w[:, None] * U) + np.eye(q)
    assert logdet == pytest.approx(np.linalg.slogdet(Hu)[1], rel=1e-12)
    full = np.hstack([U, dev.X]) if with_beta else U
    pen = np.r_[np.ones(q), np.zeros(full.shape[1] - q)]
    H = full.T @ (w[:, None] * full) + np.diag(pen)
    coef = np.r_[u1.ravel(), v]
    g = full.T @ wres - pen * coef
    du1 = np.empty_like(u1)
    dv = np.empty(r)
    dec = linalg.newton_step(layout, factor, wres, u1, v, du1, dv)
    want = np.linalg.solve(H, g)
    assert np.allclose(np.r_[du1.ravel(), dv], want, rtol=1e-10, atol=1e-12)
    assert dec == pytest.approx(g @ want, rel=1e-10)
    if with_beta:   # RX: the fixed-effect Schur complement's factor
        p = dev.p
        S = H[-p:, -p:] - H[-p:, :-p] @ np.linalg.solve(H[:-p, :-p], H[:-p, -p:])
        RXt = LS[-p:, -p:]
        assert np.allclose(RXt @ RXt.T, S, rtol=1e-10)
    # conditional covariance of u: diagonal blocks of Hu^{-1}
    if not with_beta:
        Sinv = np.linalg.inv(LS @ LS.T)
        V1 = linalg.term1_conditional_cov(Dchol, Cval, loc_ptr, loc_cols, Sinv)
        Hinv = np.linalg.inv(Hu)
        for gi in range(dev.ng1):
            sl = slice(gi * dev.k1, (gi + 1) * dev.k1)
            assert np.allclose(V1[gi], Hinv[sl, sl], rtol=1e-10)


@pytest.mark.parametrize("family,link", [("poisson", None), ("binomial", "logit"),
                                         ("binomial", "probit"), ("binomial", "cloglog")])
def test_pirls_finds_the_penalized_mode(family, link):
    """(lme4's Laplace determinant, with Fisher's weights; the exact one's is
    test_gradient's dense formula)"""
    dev, design = _crossed_problem(family, link, slope=False, laplace="lme4")
    theta = np.array([0.7, 0.4])
    beta = np.array([0.2, -0.3]) if family == "poisson" else np.array([-0.4, 0.2])
    st = dev.pirls(theta, beta)
    assert st.ok
    U = _dense(dev, theta)
    fam = dev.family
    eta0 = dev.offset + dev.X @ beta

    def pdev(u):
        mu = fam.linkinv(eta0 + U @ u)
        return fam.dev_resids(dev.y, mu, dev.pw).sum() + u @ u
    ref = optimize.minimize(pdev, np.zeros(U.shape[1]), method="BFGS",
                            options={"gtol": 1e-10, "maxiter": 10000})
    ours = dev.u_vector(st)
    assert pdev(ours) <= ref.fun + 1e-8
    assert np.allclose(ours, ref.x, atol=1e-4)
    # Laplace deviance = aic + |u|^2 + log det(U'WU + I) at the mode
    mu = fam.linkinv(eta0 + U @ ours)
    wts = dev.pw * fam.mu_eta(eta0 + U @ ours) ** 2 / fam.variance(mu)
    want = fam.aic(dev.y, mu, dev.pw) + ours @ ours + np.linalg.slogdet(
        U.T @ (wts[:, None] * U) + np.eye(U.shape[1]))[1]
    assert dev.laplace(theta, beta) == pytest.approx(want, rel=1e-10)


def test_agq_kernel_against_quadrature():
    df = pd.DataFrame({"y": RNG.poisson(2, 40).astype(float), "x": RNG.normal(size=40),
                       "g": np.repeat(list("abcdefgh"), 5)})
    fam = Family("poisson")
    dev = GlmmDeviance(build_design("y ~ x + (1|g)", df, fam), fam)
    theta, beta = np.array([0.6]), np.array([0.5, 0.2])
    one = dev.agq(theta, beta, *gauss_hermite(1))
    assert one == pytest.approx(dev.laplace(theta, beta), rel=1e-12)
    val = dev.agq(theta, beta, *gauss_hermite(25))
    eta = dev.offset + dev.X @ beta
    total = 0.0
    for gi in range(dev.ng1):
        s = slice(dev.group_ptr[gi], dev.group_ptr[gi + 1])
        f = lambda b: np.exp(stats.poisson.logpmf(dev.y[s], np.exp(eta[s] + 0.6 * b)).sum()) \
            * stats.norm.pdf(b)
        total += np.log(integrate.quad(f, -10, 10, epsabs=0, epsrel=1e-12)[0])
    assert val == pytest.approx(-2 * total, abs=1e-6)


def _agq_numpy(fam, dev, beta, u1, Dchol, a1, K):
    """agq_deviance's sum, written with scipy's log-pmfs and numpy's logsumexp."""
    nodes, logw = gauss_hermite(K)
    eta_b = dev.offset + dev.X @ beta
    total = 0.0
    for g in range(dev.ng1):
        s = slice(dev.group_ptr[g], dev.group_ptr[g + 1])
        L = Dchol[g, 0, 0]
        terms = []
        for z, lw in zip(nodes, logw):
            u = u1[g, 0] + z / L
            mu = fam.linkinv(eta_b[s] + a1[s] * u)
            if fam.name == "poisson":
                ll = np.sum(dev.pw[s] * stats.poisson.logpmf(dev.y[s], mu))
            else:
                m = np.floor(dev.pw[s] + 0.5)
                ll = np.sum(stats.binom.logpmf(np.floor(dev.pw[s] * dev.y[s] + 0.5), m, mu))
            terms.append(lw + ll - 0.5 * u * u + 0.5 * z * z)
        total += -2.0 * special.logsumexp(terms) + 2.0 * np.log(L)
    return total


@pytest.mark.parametrize("family,link,slope", [("poisson", "log", False),
                                               ("poisson", "log", True),
                                               ("binomial", "logit", False),
                                               ("binomial", "probit", False)])
def test_agq_kernel_fast_and_generic_paths_against_numpy(family, link, slope):
    """Random intercepts with the canonical log/logit link take the factored
    exp(eta_base) exp(a u) path; a scalar slope term (a varies by row) and the
    probit link the per-row one: both equal the plain formula."""
    n = 60
    x = RNG.normal(size=n)
    df = pd.DataFrame({"x": x, "g": np.repeat(list("abcdef"), 10)})
    if family == "poisson":
        df["y"] = RNG.poisson(np.exp(0.5 + 0.3 * x)).astype(float)
        kw = {}
    else:
        trials = RNG.integers(1, 8, n).astype(float)
        df["y"] = RNG.binomial(trials.astype(int), 0.4) / trials
        kw = {"weights": trials}
    fam = Family(family, link)
    term = "(0 + x|g)" if slope else "(1|g)"
    dev = GlmmDeviance(build_design(f"y ~ x + {term}", df, fam, **kw), fam)
    theta, beta = np.array([0.7]), np.array([-0.2, 0.3])
    st = dev.pirls(theta, beta)
    eta_b = np.ascontiguousarray(dev.offset + dev.X @ beta)
    a1 = np.ascontiguousarray(dev.A1[:, 0])
    nodes, logw = gauss_hermite(15)
    got = agq.agq_deviance(fam.kernel_data(), dev.rows(eta_b), a1, dev.group_ptr, st.u1,
                           st.Dchol, nodes, logw)
    want = _agq_numpy(fam, dev, beta, st.u1, st.Dchol, a1, 15)
    assert got == pytest.approx(want, rel=1e-12)


def test_symbolic_blocks_lists_touched_columns():
    dev, _ = _crossed_problem()
    m_use, r, loc_ptr, loc_cols, rest_loc, _ = dev.symbolic(True)
    for g in range(dev.ng1):
        rows = range(dev.group_ptr[g], dev.group_ptr[g + 1])
        want = sorted({int(c) for i in rows for c in dev.rest_cols[i, :m_use]})
        got = list(loc_cols[loc_ptr[g]:loc_ptr[g + 1]])
        assert got == want
        for i in rows:
            assert all(got[rest_loc[i, e]] == dev.rest_cols[i, e] for e in range(m_use))


# ---- the row-sums seam -------------------------------------------------------------------

def _rest_dense(dev, layout):
    """The rest columns as a dense n x r matrix (random effects, then X if solved for)."""
    R = np.zeros((dev.n, layout.r))
    for i in range(dev.n):
        for e in range(layout.m_use):
            R[i, layout.rest_cols[i, e]] += layout.rest_vals[i, e]
    return R


def _row_sums(layout, w, g, lo, hi):
    """row_sums of rows [lo, hi) of group g into fresh zero accumulators."""
    k1 = layout.A1.shape[1]
    nloc = layout.loc_ptr[g + 1] - layout.loc_ptr[g]
    D, B, S = np.zeros((k1, k1)), np.zeros((k1, nloc)), np.zeros((layout.r, layout.r))
    linalg.row_sums(layout, w, lo, hi, D, B, S)
    return D, B, S


def _close(got, want):
    """Equal to rounding: 1e-12 relative to the magnitude of the summed terms."""
    scale = max(1.0, float(np.max(np.abs(want)))) if np.size(want) else 1.0
    return np.allclose(got, want, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("with_beta,slope", [(True, True), (False, True), (True, False)])
def test_row_sums_add_over_a_split_of_the_rows_and_equal_the_dense_products(with_beta, slope):
    dev, _ = _crossed_problem(slope=slope)
    dev.set_theta(np.array([0.8, 0.3, 0.5, 0.6]) if slope else np.array([0.8, 0.6]))
    layout = dev.layout(with_beta)
    w = RNG.uniform(0.5, 3.0, dev.n)
    R = _rest_dense(dev, layout)
    S_all = np.zeros((layout.r, layout.r))
    for g in range(dev.ng1):
        lo, hi = dev.group_ptr[g], dev.group_ptr[g + 1]
        whole = _row_sums(layout, w, g, lo, hi)
        mid = (lo + hi) // 2
        halves = [a + b for a, b in zip(_row_sums(layout, w, g, lo, mid),
                                        _row_sums(layout, w, g, mid, hi))]
        for got, want in zip(halves, whole):
            assert _close(got, want)
        D, B, S = whole
        A = dev.A1[lo:hi]
        Wg = w[lo:hi, None]
        loc = layout.loc_cols[layout.loc_ptr[g]:layout.loc_ptr[g + 1]]
        assert _close(D, np.tril(A.T @ (Wg * A)))
        assert _close(B, A.T @ (Wg * R[lo:hi, loc]))
        S_all += S
    assert _close(S_all, np.tril(R.T @ (w[:, None] * R)))


# ---- the lme4 variant of the loop -----------------------------------------------------

def _lme4_loop_dense(dev, theta, offset, eta0, with_beta, maxit, tol):
    """lme4's PIRLS (as pirls_lme4 documents it) with dense numpy matrices:
    (value, eta, iterations)."""
    fam = dev.family
    U = _dense(dev, theta)
    q = U.shape[1]
    full = np.hstack([U, dev.X]) if with_beta else U
    pen = np.r_[np.ones(q), np.zeros(full.shape[1] - q)]
    eta = eta0.copy()
    mu = fam.linkinv(eta)
    coef = np.zeros(full.shape[1])
    oldpdev = np.inf

    def at(c):
        e = offset + full @ c
        m = fam.linkinv(e)
        return e, m, fam.dev_resids(dev.y, m, dev.pw).sum() + c[:q] @ c[:q]
    for it in range(1, maxit + 1):
        me = fam.mu_eta(eta)
        w = dev.pw * me ** 2 / fam.variance(mu)
        z = (eta - offset) + (dev.y - mu) / me
        logdet = np.linalg.slogdet(U.T @ (w[:, None] * U) + np.eye(q))[1]
        old = coef
        coef = np.linalg.solve(full.T @ (w[:, None] * full) + np.diag(pen), full.T @ (w * z))
        eta, mu, pdev = at(coef)
        if it > 1 and pdev > oldpdev:
            for _ in range(10):
                coef = 0.5 * (coef + old)
                eta, mu, pdev = at(coef)
                if pdev <= oldpdev:
                    break
        if abs(oldpdev - pdev) < tol * abs(pdev) or pdev == oldpdev:
            break
        oldpdev = pdev
    return fam.aic(dev.y, mu, dev.pw) + coef[:q] @ coef[:q] + logdet, eta, it


@pytest.mark.parametrize("family,with_beta,maxit,tol", [
    ("poisson", True, 100, 1e-7), ("poisson", False, 3, 0.0), ("binomial", False, 100, 1e-7),
    ("binomial", True, 2, 0.0)])
def test_pirls_lme4_is_lmes_loop(family, with_beta, maxit, tol):
    dev, _ = _crossed_problem(family, slope=False)
    theta = np.array([0.7, 0.4])
    beta = np.array([0.2, -0.3])
    offset = dev.offset if with_beta else dev.offset + dev.X @ beta
    eta0 = dev.family.linkfun(dev.family.mustart(dev.y, dev.pw))
    dev.set_theta(theta)
    out = pirls.pirls_lme4(dev.family.kernel_data(), dev.rows(offset), dev.layout(with_beta),
                           eta0, pirls.PirlsControl(maxit, tol), dev.aic_const)
    value, eta, its = _lme4_loop_dense(dev, theta, offset, eta0, with_beta, maxit, tol)
    assert out.status == (pirls.PIRLS_OK if tol else pirls.PIRLS_MAXIT)
    assert out.iterations == its
    assert out.aic + out.ussq + out.logdet == pytest.approx(value, rel=1e-10)
    assert np.allclose(out.eta, eta, rtol=1e-9, atol=1e-10)


def test_lme4_devfun_follows_lmes_stages():
    """lp0 from the joint loop at theta = 1 then at the stage-1 theta, then the
    fixed-beta loop from lp0 for a given number of iterations."""
    dev, _ = _crossed_problem("poisson", slope=False)
    theta, beta = np.array([0.7, 0.4]), np.array([0.2, -0.3])
    mustart = dev.family.mustart(dev.y, dev.pw)          # sorted rows
    f = dev.lme4_devfun(theta, dev.unsorted(mustart))
    got, used = f(theta, beta, 2)
    eta = dev.family.linkfun(mustart)
    for th in (np.ones(2), theta):
        eta = _lme4_loop_dense(dev, th, dev.offset, eta, True, 100, 1e-7)[1]
    want = _lme4_loop_dense(dev, theta, dev.offset + dev.X @ beta, eta, False, 2, 0.0)[0]
    assert used == 2
    assert got == pytest.approx(want, rel=1e-9)


# ---- kernels called past the dispatcher (jit.FixedSignature) ---------------------------

def test_fixed_signature_gives_the_dispatchers_numbers():
    """The second call on goes to the entry point compiled for the first call's
    types, with the same arithmetic as the dispatcher's call."""
    dev, _ = _crossed_problem(slope=False)
    theta, beta = np.array([0.7, 0.4]), np.array([0.2, -0.3])
    dev.set_theta(theta)
    call = jit.FixedSignature(pirls.pirls)
    answers = []
    for kernel in (call, call, pirls.pirls):
        u1, v = np.zeros((dev.ng1, dev.k1)), np.zeros(dev.q2)
        out = kernel(dev._fd, dev.rows(dev._xb(beta)), dev.layout(False), u1, v,
                     pirls.PirlsControl(100, 1e-20), dev.aic_const)
        answers.append((out.pdev, out.logdet, out.aic, u1.tobytes(), v.tobytes()))
    assert call.signature is not None and len(call.signature) == 7
    assert answers[0] == answers[1] == answers[2]


def test_without_numbas_fingerprints_the_dispatcher_is_called(monkeypatch):
    """A Numba without the private ``compute_fingerprint``: every call goes through
    the dispatcher, with its numbers (and no entry point is ever recorded)."""
    monkeypatch.setattr(jit, "compute_fingerprint", None)
    X = RNG.normal(size=(20, 3))
    off, beta = RNG.normal(size=20), RNG.normal(size=3)
    call = jit.FixedSignature(linalg.offset_plus_xb)
    for _ in range(2):
        assert np.array_equal(call(off, X, beta), linalg.offset_plus_xb(off, X, beta))
    strided = RNG.normal(size=(20, 6))[:, ::2]       # the dispatcher handles any layout
    assert np.allclose(call(off, strided, beta), off + strided @ beta)
    assert call.signature is None


def test_the_signature_check_refuses_other_types(monkeypatch):
    """The entry point does not check its arguments' layout: a non-contiguous
    array is read as if it were contiguous (other numbers, no error); the check
    (tests, XLGLMM_CHECK_SIGNATURES=1) refuses it."""
    X = RNG.normal(size=(20, 6))
    off, beta = RNG.normal(size=20), RNG.normal(size=3)
    call = jit.FixedSignature(linalg.offset_plus_xb)
    assert np.allclose(call(off, np.ascontiguousarray(X[:, :3]), beta), off + X[:, :3] @ beta)
    strided = X[:, ::2]                 # not C-contiguous
    monkeypatch.setattr(jit.FixedSignature, "check", False)
    assert not np.allclose(call(off, strided, beta), off + strided @ beta)
    monkeypatch.setattr(jit.FixedSignature, "check", True)
    with pytest.raises(jit.SignatureMismatch, match="offset_plus_xb"):
        call(off, strided, beta)
    with pytest.raises(jit.SignatureMismatch):
        call(off, np.ascontiguousarray(X[:, :3], dtype=np.float32), beta)
    assert np.allclose(call(off, np.ascontiguousarray(X[:, 1:4]), beta), off + X[:, 1:4] @ beta)
    assert call.checked == 1


def test_a_first_call_the_dispatcher_converted_keeps_going_through_it(monkeypatch):
    """A kernel compiled for given types only converts a first call's ints to its
    float64 overload: there is no machine code for the call's own types, so no
    entry point is recorded (the float64 one would read the ints unconverted) and
    every call goes through the dispatcher, which converts them."""
    @numba.njit("float64(float64, float64)")
    def half_sum(a, b):
        return 0.5 * (a + b)
    call = jit.FixedSignature(half_sum)
    assert call(3, 4) == 3.5
    assert call.signature is None
    assert call(1, 2) == 1.5 and call(-7, 8) == 0.5
    assert jit.FixedSignature(half_sum)(5, 8) == 6.5      # a later wrapper, same types
    monkeypatch.setattr(jit.FixedSignature, "check", True)
    assert call(10, 20) == 15.0 and call.checked == 1
    with pytest.raises(jit.SignatureMismatch, match="converted by the dispatcher"):
        call(1.0, 2.0)


def test_the_deviance_hands_its_kernels_float64_rows_whatever_the_design_carries(
        monkeypatch):
    """y, weights and offset reach the kernels as float64 (an int offset would
    compile a kernel for int arrays on the first call, and a later call would read
    float64 through that entry point): the numbers are those of a float design."""
    monkeypatch.setattr(jit.FixedSignature, "check", True)
    _, design = _crossed_problem(slope=False)
    ints = dataclasses.replace(design, y=design.y.astype(np.int64),
                               weights=np.ones(design.nobs, np.int64),
                               offset=(np.arange(design.nobs) % 3).astype(np.int64))
    floats = dataclasses.replace(ints, y=ints.y.astype(float), weights=ints.weights.astype(float),
                                 offset=ints.offset.astype(np.float32))
    answers = []
    for d in (ints, floats):
        dev = GlmmDeviance(d, Family("poisson"))
        assert all(a.dtype == np.float64 and a.flags.c_contiguous
                   for a in (dev.y, dev.pw, dev.offset))
        answers.append([dev.laplace(np.array([0.6, 0.4]), np.array([0.1, -0.2])),
                        dev.laplace(np.array([0.5, 0.3])),
                        dev.laplace(np.array([0.6, 0.4]), np.array([0.2, 0.1]))])
        assert dev.pirls_kernel.checked == 2
    assert answers[0] == answers[1]


def test_fits_keep_their_kernels_signatures(monkeypatch):
    """With the check on, every call of a deviance's kernels past the dispatcher
    has the types of its first call: Laplace fits (both stages, lme4's standard
    errors), AGQ, nAGQ=0, a negative binomial whose theta is estimated (the family's
    parameters change between fits), a binomial with trials, PIRLS in pieces (a
    fit's time budget, and by hand) and a refit."""
    monkeypatch.setattr(jit.FixedSignature, "check", True)
    df = pd.DataFrame({"y": RNG.poisson(3, 80).astype(float), "x": RNG.normal(size=80),
                       "a": np.repeat(list("abcdefgh"), 10), "b": np.tile(list("pqrst"), 16),
                       "trials": RNG.integers(1, 8, 80)})
    df["prop"] = RNG.binomial(df["trials"], 0.4) / df["trials"]
    df["pos"] = df["y"] + 0.5
    crossed = xlglmm.glmer("y ~ x + (1|a) + (1|b)", df, "poisson", se_method="lme4")
    agq_fit = xlglmm.glmer("y ~ x + (1|a)", df, "poisson", nAGQ=7)
    again = crossed.model.refit(RNG.poisson(3, 80).astype(float), se_method="lme4")
    for res in (crossed, again):
        dev = res.model.devfun
        assert dev.pirls_kernel.checked > 10 and dev.pirls_lme4_kernel.checked > 10
    assert agq_fit.model.devfun.agq_kernel.checked > 10
    nb = xlglmm.glmer("y ~ x + (1|a)", df, "negbin")
    assert nb.family.nb_theta != 1.0 and nb.model.devfun.pirls_kernel.checked > 10
    stage1_only = xlglmm.glmer("y ~ x + (1|a) + (1|b)", df, "poisson", nAGQ=0)
    assert stage1_only.model.devfun.pirls_kernel.checked > 10
    trials = xlglmm.glmer("prop ~ x + (1|a)", df, "binomial", weights=df["trials"],
                          se_method="lme4")
    dev = trials.model.devfun
    assert not (dev.pw == 1.0).all()
    assert dev.pirls_kernel.checked > 10 and dev.pirls_lme4_kernel.checked > 10
    monkeypatch.setattr(cost, "PIECE_SHARE", 1e-12)     # every PIRLS one iteration a piece
    pieces = xlglmm.glmer("pos ~ x + (1|a) + (1|b)", df, "gamma", link="log",
                          time_budget=600.0)
    dev = pieces.model.devfun
    assert dev.piece_iterations == 1 and dev.pirls_kernel.checked > 50
    whole = xlglmm.glmer("pos ~ x + (1|a) + (1|b)", df, "gamma", link="log")
    assert np.array_equal(pieces.fe_params.to_numpy(), whole.fe_params.to_numpy())
    dev, _ = _crossed_problem(slope=False)
    dev.budget, dev.piece_iterations = Budget(None, 10 ** 6), 1
    for theta in (np.array([0.8, 0.5]), np.array([0.3, 0.6])):
        assert dev.pirls(theta).ok
    assert dev.pirls_kernel.checked >= 2


# ---- the family's log density and its derivatives in eta -----------------------------

INVERSE_LINKS = {"log": np.exp, "logit": special.expit, "probit": special.ndtr,
                 "cloglog": lambda e: -np.expm1(-np.exp(e)), "inverse": lambda e: 1 / e,
                 "identity": lambda e: e, "sqrt": lambda e: e * e}
ETA_RANGE = {"log": (-1.0, 2.0), "logit": (-2.0, 1.5), "probit": (-2.0, 1.5),
             "cloglog": (-2.0, 0.8), "inverse": (0.3, 2.0), "identity": (0.5, 4.0),
             "sqrt": (0.5, 2.0)}
PHI = 1.7               # the dispersion given to Gamma and Gaussian densities


NEW_PHI = 3.0           # NB1's dispersion, the beta's and beta-binomial's precision


def _scipy_logdensity(name, y, mu, wt, theta):
    if name == "nb1":
        return wt * stats.nbinom.logpmf(y, mu / NEW_PHI, 1.0 / (1.0 + NEW_PHI))
    if name == "beta":
        return wt * stats.beta.logpdf(y, mu * NEW_PHI, (1.0 - mu) * NEW_PHI)
    if name == "betabinomial":
        return stats.betabinom.logpmf(np.round(wt * y), wt, mu * NEW_PHI, (1.0 - mu) * NEW_PHI)
    if name == "poisson":
        return wt * stats.poisson.logpmf(y, mu)
    if name == "binomial":
        return stats.binom.logpmf(np.round(wt * y), wt, mu)
    if name == "negbin":
        return wt * stats.nbinom.logpmf(y, theta, theta / (theta + mu))
    if name == "gamma":
        return wt * stats.gamma.logpdf(y, a=1 / PHI, scale=mu * PHI)
    return stats.norm.logpdf(y, mu, np.sqrt(PHI / wt))


def _responses(name, n):
    if name == "beta":
        return RNG.uniform(0.05, 0.95, n), RNG.uniform(0.5, 2.0, n)
    if name == "betabinomial":
        wt = RNG.integers(1, 9, n).astype(float)
        return RNG.integers(0, 9, n) % (wt + 1) / wt, wt
    if name == "nb1":
        return RNG.poisson(3.0, n).astype(float), RNG.uniform(0.5, 2.0, n)
    if name == "binomial":
        wt = RNG.integers(1, 9, n).astype(float)
        return RNG.integers(0, 9, n) % (wt + 1) / wt, wt
    if name in ("poisson", "negbin"):
        return RNG.poisson(3.0, n).astype(float), RNG.uniform(0.5, 2.0, n)
    if name == "gamma":
        return RNG.gamma(2.0, 1.5, n), RNG.uniform(0.5, 2.0, n)
    return RNG.normal(1.0, 2.0, n), RNG.uniform(0.5, 2.0, n)


@pytest.mark.parametrize("name,link", [(s.name, link) for s in FAMILY_SPECS
                                       for link in s.links])
def test_logdensity_and_its_eta_derivatives_against_scipy(name, link):
    theta = 2.5
    fam = Family(name, link, theta, phi=NEW_PHI)
    fd = fam.kernel_data(dispersion=PHI)
    n = 12
    y, wt = _responses(name, n)
    eta = np.linspace(*((-3.0, -0.2) if fam.is_binomial and link == "log"     # mu < 1
                        else ETA_RANGE[link]), n)
    inv = INVERSE_LINKS[link]

    def ref(e):
        return _scipy_logdensity(name, y, inv(e), wt, theta)
    got = np.array([unit_logdensity(a, m, b, fd) for a, m, b in zip(y, inv(eta), wt)])
    assert np.allclose(got, ref(eta), rtol=1e-12, atol=1e-12)
    d = np.array([logdensity_eta_derivs(a, e, b, fd) for a, e, b in zip(y, eta, wt)])
    h1, h2 = 1e-5, 1e-4
    d1 = (ref(eta + h1) - ref(eta - h1)) / (2 * h1)
    d2 = (ref(eta + h2) - 2 * ref(eta) + ref(eta - h2)) / h2 ** 2
    scale = 1.0 + np.abs(ref(eta))
    assert np.allclose(d[:, 0], d1, rtol=1e-6, atol=1e-7 * scale.max())
    assert np.allclose(d[:, 1], d2, rtol=1e-5, atol=1e-5 * scale.max())


def test_kernel_data_carries_codes_and_parameters():
    fd = Family("negbin", "sqrt", 3.5).kernel_data(dispersion=2.0)
    assert (fd.family, fd.link) == (NEGBIN, SQRT)
    assert fd.params[NB_THETA] == 3.5 and fd.params[DISPERSION] == 2.0
    assert Family("poisson").kernel_data().params[DISPERSION] == 1.0
    # the variance reads theta from the parameters: mu + mu^2 / theta
    assert Family("negbin", "log", 4.0).variance(np.array([2.0]))[0] == 3.0


EVERY_FAMILY_AND_LINK = [(s.name, link) for s in FAMILY_SPECS for link in s.links]
#: the exponential families, whose variance is R's V(mu) (the families with a phi,
#: issue 17's, are tested in test_new_families.py)
EXPONENTIAL_FAMILIES = [(s.name, link) for s in FAMILY_SPECS for link in s.links
                        if not s.phi_name]


@pytest.mark.parametrize("name,link", EXPONENTIAL_FAMILIES)
def test_the_variance_receives_the_prior_weight_and_these_families_ignore_it(name, link):
    """variance(mu, pw, fd) is handed each row's prior weight (a beta-binomial's
    variance depends on its trials); the families here answer R's V(mu) whatever
    the weight, in the kernel, the vectorised Family.variance and PIRLS's weights."""
    theta = 2.5
    fam = Family(name, link, theta)
    fd = fam.kernel_data()
    mu = np.array([0.1, 0.35, 0.8, 0.95])
    want = {"poisson": mu, "binomial": mu * (1.0 - mu), "gamma": mu * mu,
            "negbin": mu + mu * mu / theta, "gaussian": np.ones_like(mu)}[name]
    for pw in (1.0, 3.0, 17.5):
        assert np.array_equal([variance(m, pw, fd) for m in mu], want)
    trials = np.array([1.0, 4.0, 9.0, 30.0])
    assert np.array_equal(fam.variance(mu, trials), want)
    assert np.array_equal(fam.variance(mu), want)
    # the working weights carry the prior weight once: w = pw mu_eta^2 / V(mu)
    eta = fam.linkfun(mu)
    rows = pirls.Rows(np.full(4, 0.5), trials, np.zeros(4))
    w, wres = np.empty(4), np.empty(4)
    pirls.working_weights(fd, rows, eta, mu, w, wres)
    assert np.allclose(w, trials * fam.mu_eta(eta) ** 2 / want, rtol=1e-14)
    assert np.allclose(wres, trials * fam.mu_eta(eta) * (0.5 - mu) / want, rtol=1e-14)


@pytest.mark.parametrize("name,link", EVERY_FAMILY_AND_LINK)
def test_observed_weights_are_minus_the_log_densitys_second_derivative(name, link):
    """The family says where PIRLS may take Newton steps on the observed information
    (log link, Gamma or NB2: positive and not Fisher's) and gives each row's weight,
    -d2 loglik / d eta2 (the Gamma's without its dispersion); elsewhere
    ``newton_weights`` leaves the weights alone and answers False."""
    fd = Family(name, link, 2.5).kernel_data(dispersion=PHI)
    n = 10
    y, wt = _responses(name, n)
    eta = np.linspace(-1.0, 2.0, n)
    mu = np.array([linkinv(e, fd.link) for e in eta])
    rows = pirls.Rows(y, wt, np.zeros(n))
    w = np.full(n, 7.0)
    known = has_observed_weights(fd)
    assert known == (link == "log" and name in ("gamma", "negbin"))
    assert pirls.newton_weights(fd, rows, mu, w) == known
    if not known:
        assert (w == 7.0).all()
        return
    scale = PHI if name == "gamma" else 1.0
    want = np.array([-scale * logdensity_eta_derivs(a, e, b, fd)[1]
                     for a, e, b in zip(y, eta, wt)])
    got = np.array([observed_weight(a, m, b, fd) for a, m, b in zip(y, mu, wt)])
    assert np.allclose(got, want, rtol=1e-12)
    assert np.array_equal(w, got)
