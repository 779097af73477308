"""The linear mixed model's solve from its moments (lmm_moments) against a dense
numpy version of the same formulas, and against the row-based PIRLS solve it
replaces: one term with a slope, two crossed terms, nested terms, prior weights and
an offset, REML and ML."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import linalg as sla

import xlglmm
from xlglmm.engine import jit
from xlglmm.engine.design import build_design
from xlglmm.engine.lmm import GAUSSIAN, LinearMixedModel, log_det_rx

RNG = np.random.default_rng(20261130)


def _frame(n=90):
    g = RNG.integers(0, 7, n)
    h = RNG.integers(0, 4, n)                   # crossed with g
    nest = g * 2 + RNG.integers(0, 2, n)        # nested in g
    x = RNG.normal(size=n)
    y = (50.0 + 2.0 * x + RNG.normal(size=7)[g] * 1.5 + RNG.normal(size=4)[h]
         + RNG.normal(size=14)[nest] * 0.7 + (0.8 * RNG.normal(size=7))[g] * x
         + RNG.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{v}" for v in g], "h": [f"h{v}" for v in h],
                         "n": [f"n{v}" for v in nest]})


FORMULAS = {"slope": "y ~ x + (x|g)", "crossed": "y ~ x + (1|g) + (1|h)",
            "nested": "y ~ x + (1|g) + (1|n)", "slope_crossed": "y ~ x + (1|h) + (x|g)"}


def _model(formula, reml=True, weighted=False):
    df = _frame()
    kw = {}
    if weighted:
        kw = dict(weights=RNG.uniform(0.3, 3.0, len(df)), offset=RNG.normal(size=len(df)))
    return LinearMixedModel(build_design(formula, df, GAUSSIAN, **kw), reml)


def _dense(model, theta):
    """The penalized least-squares problem in full: Z (lme4's column order, the
    sorted rows) and Lambda as dense matrices, solved by numpy."""
    dev = model.devfun
    n = dev.n
    blocks_Z, blocks_L = [], []
    lams = dev.lambdas(theta)
    for t, L in zip(dev.terms, lams):
        codes = t.codes[dev.order]
        Zt = np.zeros((n, t.nlevels * t.k))
        for j in range(t.k):
            Zt[np.arange(n), codes * t.k + j] = t.Z[dev.order][:, j]
        blocks_Z.append(Zt)
        blocks_L.append(np.kron(np.eye(t.nlevels), L))
    Z, Lam, X = np.hstack(blocks_Z), sla.block_diag(*blocks_L), dev.X
    w, y = dev.pw, dev.y - dev.offset
    ZL = Z @ Lam
    q = ZL.shape[1]
    M = np.hstack([ZL, X])
    A = M.T @ (w[:, None] * M)
    A[:q, :q] += np.eye(q)
    sol = np.linalg.solve(A, M.T @ (w * y))
    u, beta = sol[:q], sol[q:]
    res = y - M @ sol
    pwrss = float(np.sum(w * res * res) + u @ u)
    logdet = np.linalg.slogdet(A[:q, :q])[1]
    schur = A[q:, q:] - A[q:, :q] @ np.linalg.solve(A[:q, :q], A[:q, q:])
    ldrx = np.linalg.slogdet(schur)[1]
    return dict(pwrss=pwrss, logdet=logdet, ldrx=ldrx, u=u, beta=beta,
                cov=np.linalg.inv(schur), log_w=float(np.sum(np.log(w))))


def _dense_deviance(model, theta):
    d = _dense(model, theta)
    df = model._df
    out = d["logdet"] - d["log_w"] + df * (1 + math.log(2 * math.pi * d["pwrss"] / df))
    return out + (d["ldrx"] if model.reml else 0.0)


def _thetas(model):
    nt = model.devfun.ntheta
    rng = np.random.default_rng(nt)
    out = [np.where(model.lower == 0, 1.0, 0.0)]
    for _ in range(2):
        th = rng.uniform(0.2, 1.5, nt)
        th[model.lower != 0] = rng.uniform(-0.5, 0.5, int(np.sum(model.lower != 0)))
        out.append(th)
    return out


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_the_solve_equals_the_dense_formula_and_the_rows(name, weighted):
    model = _model(FORMULAS[name], weighted=weighted)
    dev = model.devfun
    for theta in _thetas(model):
        d = _dense(model, theta)
        st = model.solve(theta)
        assert st.ok
        assert st.pdev == pytest.approx(d["pwrss"], rel=1e-11)
        assert st.logdet == pytest.approx(d["logdet"], rel=1e-11, abs=1e-11)
        assert st.ldrx == pytest.approx(d["ldrx"], rel=1e-11, abs=1e-11)
        u = np.concatenate([st.u1.reshape(-1), st.v[:dev.q2]])
        assert np.allclose(u, d["u"], rtol=1e-9, atol=1e-11)
        assert np.allclose(st.v[dev.q2:], d["beta"], rtol=1e-10, atol=1e-12)
        inv = np.linalg.inv(st.LS[dev.q2:, dev.q2:])
        assert np.allclose(inv.T @ inv, d["cov"], rtol=1e-10)
        # the row-based PIRLS solve the fit used before: the same numbers
        rows = dev.pirls(theta)
        assert st.pdev == pytest.approx(rows.pdev, rel=1e-11)
        assert st.logdet == pytest.approx(rows.logdet, rel=1e-12, abs=1e-12)
        assert st.ldrx == pytest.approx(log_det_rx(rows, dev.q2), rel=1e-11, abs=1e-11)
        assert np.allclose(st.u1, rows.u1, rtol=1e-9, atol=1e-11)
        assert np.allclose(st.v, rows.v, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("name", ["slope", "crossed"])
def test_the_profiled_deviance_is_the_dense_one(name, reml):
    model = _model(FORMULAS[name], reml=reml, weighted=True)
    for theta in _thetas(model):
        assert model.profiled_deviance(theta) == pytest.approx(_dense_deviance(model, theta),
                                                               rel=1e-12)
        d = _dense(model, theta)
        s = 1.3
        want = d["logdet"] - d["log_w"] + d["pwrss"] / s ** 2 \
            + model.devfun.n * math.log(2 * math.pi * s ** 2)
        assert model.ml_deviance(theta, s) == pytest.approx(want, rel=1e-12)


def test_a_recentred_solve_is_the_same_solve():
    """Moving the reference point (to the fit's estimates) changes no number; where
    a Lambda has a zero diagonal (b0 not representable) the first reference
    serves."""
    res = xlglmm.lmer(FORMULAS["slope_crossed"], _frame())
    model = res.model
    theta = res.model.optimum.theta
    away = theta * 0.7 + 0.05
    after = [model.solve(t) for t in (theta, away)]
    base = model.moments._base
    model.moments._ref = base
    before = [model.solve(t) for t in (theta, away)]
    for a, b in zip(before, after):
        assert a.pdev == pytest.approx(b.pdev, rel=1e-12)
        assert np.allclose(a.v, b.v, rtol=1e-10, atol=1e-12)
        assert np.allclose(a.u1, b.u1, rtol=1e-10, atol=1e-12)
    model._recentre(theta, model.optimum.state)
    assert model.moments._ref is not base
    zero = theta.copy()
    zero[0] = 0.0                       # term (1|h) switched off: its b0 is not Lambda u0
    assert model.solve(zero).pdev == pytest.approx(_dense(model, zero)["pwrss"], rel=1e-11)


def test_the_fit_keeps_its_kernel_signature_and_the_state(monkeypatch):
    monkeypatch.setattr(jit.FixedSignature, "check", True)
    df = _frame()
    res = xlglmm.lmer(FORMULAS["crossed"], df, weights=np.linspace(0.5, 2, len(df)))
    res.t_tests()
    model = res.model
    assert model.moments._kernel.checked > 20
    st = model.optimum.state
    dev = model.devfun
    rows = dev.pirls(model.optimum.theta)
    assert st.pdev == pytest.approx(rows.pdev, rel=1e-12)
    assert np.allclose(st.eta, rows.eta, rtol=1e-12, atol=1e-12)
    assert np.allclose(st.LS, rows.LS, rtol=1e-12, atol=1e-12)
    assert st.aic == pytest.approx(rows.aic, rel=1e-12)


def _symbolic_by_unique(rest_cols, m_use, group_ptr, r):
    """devfun.symbolic_blocks as numpy's unique of the (level, column) pairs."""
    ng, n = group_ptr.shape[0] - 1, rest_cols.shape[0]
    level = np.repeat(np.arange(ng), np.diff(group_ptr))
    keys = level[:, None] * (r + 1) + rest_cols[:, :m_use]
    uniq, inverse = np.unique(keys.ravel(), return_inverse=True)
    loc_ptr = np.concatenate([[0], np.cumsum(np.bincount(uniq // (r + 1), minlength=ng))])
    return loc_ptr, uniq % (r + 1), inverse.reshape(n, m_use) - loc_ptr[level][:, None]


@pytest.mark.parametrize("n,m,m_use,r,ng", [(200, 3, 3, 40, 10), (200, 4, 2, 30, 7),
                                            (50, 1, 0, 0, 5), (300, 3, 3, 12, 1)])
def test_symbolic_blocks_are_numpys_unique_pairs(n, m, m_use, r, ng):
    from xlglmm.engine.devfun import symbolic_blocks
    rest_cols = np.sort(RNG.integers(0, max(r, 1), (n, m)), axis=1)
    group_ptr = np.concatenate([[0], np.sort(RNG.integers(0, n, ng - 1)), [n]])
    got = symbolic_blocks(rest_cols, m_use, group_ptr, r)
    for a, b in zip(got, _symbolic_by_unique(rest_cols, m_use, group_ptr, r)):
        assert a.dtype == np.int64 and np.array_equal(a, b)


def test_a_refit_shares_the_cross_products_and_fits_as_a_new_model():
    df = _frame()
    res = xlglmm.lmer(FORMULAS["slope_crossed"], df)
    y2 = df["y"].to_numpy() + RNG.normal(size=len(df))
    again = res.model.refit(y2)
    assert again.model.moments.mom is res.model.moments.mom
    fresh = xlglmm.lmer(FORMULAS["slope_crossed"], df.assign(y=y2))
    assert fresh.model.moments.mom is not res.model.moments.mom
    assert again.deviance == pytest.approx(fresh.deviance, rel=1e-9)
    assert np.allclose(again.fe_params, fresh.fe_params, rtol=1e-5)
    assert np.allclose(again.fe_bse, fresh.fe_bse, rtol=1e-4)


def _explained(B, W, seed=2):
    """Groups far apart, measured precisely: y's variation beyond the fixed effects is
    almost all between groups (B: their SD, W: the residual SD)."""
    r = np.random.default_rng(seed)
    n = 600
    g = r.integers(0, 30, n)
    x = r.normal(size=n)
    y = 5.0 + x + B * r.normal(size=30)[g] + W * r.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


@pytest.mark.parametrize("B,W", [(1e3, 1e-2), (1e4, 0.1), (1e4, 1e-3)])
def test_groups_that_explain_nearly_all_of_y_are_fitted_on_the_rows(B, W, monkeypatch):
    """pwrss from the cross-products is a difference that cancels here: such a model
    is solved on the rows throughout (a fit that mixed the two paths, or trusted the
    cancelled digits, ended at another optimum: log-likelihood 1276.7 instead of
    1507.4 on the first case)."""
    from xlglmm.engine import lmm_moments
    assert not xlglmm.lmer("y ~ x + (1|g)", _explained(1.0, 1.0)).model.on_rows
    df = _explained(B, W)
    fit = xlglmm.lmer("y ~ x + (1|g)", df)
    assert fit.model.on_rows
    monkeypatch.setattr(lmm_moments, "CANCELLATION_LIMIT", 0.0)    # rows only
    rows = xlglmm.lmer("y ~ x + (1|g)", df)
    assert fit.llf == pytest.approx(rows.llf, rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(fit.theta, rows.theta, rtol=1e-12)


@pytest.mark.parametrize("name", ["slope", "crossed"])
def test_after_the_fit_a_small_theta_is_as_accurate_as_before_it(name):
    """After the fit the moments are re-taken about the estimates (u0 = Lambda^-1 b0):
    at a small theta that reference cancels, and the first one answers instead (the
    recentred value was 358.06 for 351.77 at 1e-8 times the estimate)."""
    design = build_design(FORMULAS[name], _frame(), GAUSSIAN)
    model = LinearMixedModel(design)
    model.fit()
    model.profiled_deviance(model.optimum.theta)        # recentres (the first after the fit)
    assert not model.on_rows
    fresh = LinearMixedModel(design)
    for s in (1e-4, 1e-6, 1e-8, 1e-10):
        th = model.optimum.theta * s
        assert model.profiled_deviance(th) == pytest.approx(fresh.profiled_deviance(th),
                                                            rel=1e-10)
