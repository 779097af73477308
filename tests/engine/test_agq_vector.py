"""Adaptive Gauss-Hermite quadrature for a vector random effect on one grouping factor
(``agq.agq_deviance_vector``, the product rule): one node is the Laplace deviance, and
as nAGQ grows the deviance converges to the marginal likelihood computed here
independently -- a dense grid over each level's random effects in the prior's own
coordinates (b = Lambda v, v ~ N(0, I)), with scipy's log-pmfs over the data frame's
columns, and ``scipy.integrate.nquad`` as a check of that grid."""
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import xlglmm
from xlglmm.engine import agq
from xlglmm.engine.agq import gauss_hermite
from xlglmm.engine.design import build_design
from xlglmm.engine.devfun import GlmmDeviance
from xlglmm.engine.family import Family
from xlglmm.engine.model import ModelError

# lme4's theta for a 2 x 2 and a 3 x 3 relative covariance factor (the lower
# triangle, column by column): an intercept SD 0.9, a slope SD ~0.67 correlated 0.45
THETA2 = np.array([0.9, 0.3, 0.6])
THETA3 = np.array([0.8, 0.25, -0.2, 0.5, 0.15, 0.4])


def lower_from_theta(theta, k):
    L = np.zeros((k, k))
    idx = 0
    for c in range(k):
        for r in range(c, k):
            L[r, c] = theta[idx]
            idx += 1
    return L


def data_set(kind, seed, groups, lo, hi, slopes=1):
    """Groups of lo..hi rows, covariates x (and z), a correlated random slope."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(lo, hi + 1, size=groups)
    g = np.repeat(np.arange(groups), sizes)
    n = g.size
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n),
                       "g": [f"L{j:02d}" for j in g]})
    b = rng.normal(size=(groups, 3)) * [0.8, 0.6, 0.4]
    eta = 0.2 + 0.4 * df.x + b[g, 0] + b[g, 1] * df.x + (b[g, 2] * df.z if slopes == 2 else 0)
    weights = None
    if kind == "poisson":
        df["y"] = rng.poisson(np.exp(eta)).astype(float)
    elif kind == "bernoulli":
        df["y"] = (rng.random(n) < special.expit(eta)).astype(float)
    else:                                        # proportions of 1..6 trials
        m = rng.integers(1, 7, size=n)
        df["y"] = rng.binomial(m, special.expit(eta)) / m
        weights = m.astype(float)
    return df, weights


def deviance_function(df, formula, family, link=None, weights=None, nb_theta=None):
    fam = Family(family, link, nb_theta) if nb_theta else Family(family, link)
    kw = {} if weights is None else {"weights": weights}
    return GlmmDeviance(build_design(formula, df, fam, **kw), fam), fam


def design_columns(df, k):
    X = np.c_[np.ones(len(df)), df.x]
    Z = np.c_[np.ones(len(df)), df.x, df.z][:, :k]
    return X, Z


def row_loglik(family, link, y, weights, eta, nb_theta=None):
    """log f(y | eta) per row (rows x nodes), by scipy's distributions."""
    if family == "poisson":
        return stats.poisson.logpmf(y[:, None], np.exp(eta))
    if family == "negbin":
        mu = np.exp(eta)
        return stats.nbinom.logpmf(y[:, None], nb_theta, nb_theta / (nb_theta + mu))
    p = {"logit": special.expit, "probit": special.ndtr,
         "cloglog": lambda e: -np.expm1(-np.exp(e))}[link](eta)
    m = np.ones_like(y) if weights is None else weights
    return stats.binom.logpmf(np.round(y * m)[:, None], m[:, None], p)


def brute_loglik(df, k, theta, beta, family, link=None, weights=None, nb_theta=None,
                 h=0.05, half_width=9.0):
    """The marginal log-likelihood: per level, the integral over b = Lambda v of
    prod_i f(y_i | x_i beta + z_i b) against the N(0, I) density of v, by a Riemann
    sum on a tensor grid of step h over [-half_width, half_width]^k (for a smooth
    integrand that decays like a Gaussian, the trapezoid rule's error is
    exponentially small in 1/h)."""
    X, Z = design_columns(df, k)
    L = lower_from_theta(theta, k)
    t = np.arange(-half_width, half_width + h / 2, h)
    V = np.stack([a.ravel() for a in np.meshgrid(*([t] * k), indexing="ij")], axis=1)
    log_prior = -0.5 * np.sum(V * V, axis=1) - 0.5 * k * np.log(2 * np.pi) + k * np.log(h)
    B = V @ L.T
    y = df.y.to_numpy(float)
    w = None if weights is None else np.asarray(weights, float)
    total = 0.0
    for lev, rows in df.groupby("g").indices.items():
        eta = (X[rows] @ beta)[:, None] + Z[rows] @ B.T
        ll = row_loglik(family, link, y[rows], None if w is None else w[rows], eta,
                        nb_theta).sum(axis=0)
        total += special.logsumexp(ll + log_prior)
    return total


def nquad_level(df, rows, theta, beta, family, link=None):
    """One level's log-likelihood by scipy.integrate.nquad (2-D)."""
    X, Z = design_columns(df, 2)
    L = lower_from_theta(theta, 2)
    y = df.y.to_numpy(float)[rows]

    def f(v1, v2):
        b = L @ np.array([v1, v2])
        eta = (X[rows] @ beta + Z[rows] @ b)[:, None]
        ll = row_loglik(family, link, y, None, eta).sum()
        return np.exp(ll - 0.5 * (v1 * v1 + v2 * v2)) / (2 * np.pi)

    val, _ = integrate.nquad(f, [[-9, 9], [-9, 9]], opts={"epsabs": 1e-13, "epsrel": 1e-10})
    return np.log(val)


def check_layout(dev, df, k, theta):
    """The deviance function reads (theta, beta) as lme4 does: X = [1, x] unscaled and
    row i of A1 = Lambda' z_i (so brute_loglik integrates the same model)."""
    X, Z = design_columns(df, k)
    dev.pirls(theta, np.zeros(2))
    assert np.allclose(dev.X, X[dev.order], rtol=0, atol=1e-15)
    assert np.allclose(dev.A1, (Z @ lower_from_theta(theta, k))[dev.order], rtol=1e-14)


# ---- one node is Laplace ------------------------------------------------------------------

@pytest.mark.parametrize("kind,family,link,k", [
    ("bernoulli", "binomial", "logit", 2), ("poisson", "poisson", "log", 2),
    ("trials", "binomial", "probit", 2), ("trials", "binomial", "cloglog", 2),
    ("poisson", "negbin", "log", 2), ("poisson", "poisson", "log", 3),
    ("bernoulli", "binomial", "logit", 3)])
def test_one_node_is_laplace(kind, family, link, k):
    df, w = data_set(kind, 11 + k, groups=15, lo=3, hi=8, slopes=k - 1)
    formula = "y ~ x + (x|g)" if k == 2 else "y ~ x + (x + z|g)"
    dev, _ = deviance_function(df, formula, family, link, w,
                               nb_theta=2.5 if family == "negbin" else None)
    theta = THETA2 if k == 2 else THETA3
    beta = np.array([0.1, 0.35])
    lap = dev.laplace(theta, beta)
    assert np.isfinite(lap)
    assert dev.agq(theta, beta, *gauss_hermite(1)) == pytest.approx(lap, rel=1e-10)
    # and more nodes change it (the rule is not the Laplace value by construction)
    assert abs(dev.agq(theta, beta, *gauss_hermite(3)) - lap) > 1e-4


def test_product_rule_integrates_gaussian_moments():
    """The tensor rule is exact for polynomials of degree < 2n in each coordinate."""
    Z, lw = agq.product_rule(*gauss_hermite(4), 3)
    w = np.exp(lw)
    assert Z.shape == (64, 3) and w.sum() == pytest.approx(1.0, rel=1e-14)
    assert np.sum(w * Z[:, 0] ** 2 * Z[:, 2] ** 4) == pytest.approx(3.0, rel=1e-13)
    assert np.sum(w * Z[:, 0] * Z[:, 1] ** 3) == pytest.approx(0.0, abs=1e-14)
    assert np.sum(w * Z[:, 1] ** 6) == pytest.approx(15.0, rel=1e-13)


# ---- convergence to the brute-force integral ----------------------------------------------

CASES = [("poisson", "poisson", "log", 101, 12), ("bernoulli", "binomial", "logit", 202, 20),
         ("trials", "binomial", "logit", 303, 15), ("trials", "binomial", "probit", 404, 10)]


@pytest.mark.parametrize("kind,family,link,seed,groups", CASES)
def test_converges_to_brute_force_integral(kind, family, link, seed, groups):
    df, w = data_set(kind, seed, groups=groups, lo=3, hi=8)
    dev, _ = deviance_function(df, "y ~ x + (x|g)", family, link, w)
    check_layout(dev, df, 2, THETA2)
    beta = np.array([0.15, 0.45])
    want = brute_loglik(df, 2, THETA2, beta, family, link, w)
    ll = {q: -0.5 * dev.agq(THETA2, beta, *gauss_hermite(q)) for q in (1, 3, 5, 7, 9, 11)}
    err = {q: abs(v - want) for q, v in ll.items()}
    assert err[1] > 2e-3                     # Laplace is visibly off here ...
    assert err[9] < 1e-4 and err[11] < 1e-4  # ... the rule is not, from nAGQ = 9 on
    assert err[11] < err[1] / 20 and err[5] < err[1]
    assert abs(ll[11] - ll[9]) < abs(ll[3] - ll[1])


def test_brute_force_grid_against_nquad():
    """The grid's level integrals against scipy's adaptive cubature (a check of the
    reference itself), on the Bernoulli case's first levels."""
    df, _ = data_set("bernoulli", 202, groups=20, lo=3, hi=8)
    beta = np.array([0.15, 0.45])
    for lev, rows in list(df.groupby("g").indices.items())[:2]:
        sub = df.iloc[rows]
        grid = brute_loglik(sub, 2, THETA2, beta, "binomial", "logit")
        assert grid == pytest.approx(nquad_level(df, rows, THETA2, beta, "binomial", "logit"),
                                     abs=1e-9)


def test_three_effects_against_brute_force():
    """k = 3 (intercept and two slopes): 9^3 nodes per level against a 3-D grid."""
    df, w = data_set("trials", 505, groups=10, lo=3, hi=6, slopes=2)
    dev, _ = deviance_function(df, "y ~ x + (x + z|g)", "binomial", "logit", w)
    check_layout(dev, df, 3, THETA3)
    beta = np.array([-0.1, 0.3])
    want = brute_loglik(df, 3, THETA3, beta, "binomial", "logit", w, h=0.2, half_width=7.0)
    err = {q: abs(-0.5 * dev.agq(THETA3, beta, *gauss_hermite(q)) - want) for q in (1, 9)}
    assert err[1] > 1e-3
    assert err[9] < 1e-4


# ---- a fit --------------------------------------------------------------------------------

def sparse_binary(seed, groups=60):
    """Bernoulli rows, 3-5 per group, a random intercept (SD 1) and slope (SD 0.8)
    correlated 0.3: where Laplace's SDs are biased low."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 6, size=groups)
    g = np.repeat(np.arange(groups), sizes)
    x = rng.normal(size=g.size)
    b = rng.normal(size=(groups, 2)) @ np.linalg.cholesky([[1.0, 0.24], [0.24, 0.64]]).T
    eta = -0.5 + 0.5 * x + b[g, 0] + b[g, 1] * x
    return pd.DataFrame({"y": (rng.random(g.size) < special.expit(eta)).astype(float),
                         "x": x, "g": [f"L{j:02d}" for j in g]})


def test_fit_maximises_the_agq_likelihood():
    df = sparse_binary(605)
    lap = xlglmm.glmer("y ~ x + (x|g)", df, family="binomial")
    res = xlglmm.glmer("y ~ x + (x|g)", df, family="binomial", nAGQ=5)
    assert res.nAGQ == 5 and res.method == "AGQ(5)"
    assert res.converged and not res.singular and not lap.singular
    # its log-likelihood at its estimates is at least the same function's value at the
    # Laplace estimates: it was maximised
    at_laplace = -0.5 * res.model.deviance(lap.theta, lap.fe_params.to_numpy())
    assert res.llf >= at_laplace + 1e-3
    # and it is the AGQ likelihood, not Laplace's, that was maximised
    assert np.max(np.abs(res.theta - lap.theta)) > 0.05
    assert res.llf == pytest.approx(
        -0.5 * res.model.deviance(res.theta, res.fe_params.to_numpy()), rel=1e-12)
    # a gradient of the AGQ deviance near zero at the estimates (central differences)
    x0 = np.concatenate([res.theta, res.fe_params.to_numpy()])
    nt = len(res.theta)
    f = lambda x: res.model.deviance(x[:nt], x[nt:])
    for j in range(len(x0)):
        e = np.zeros_like(x0)
        e[j] = 1e-4
        assert abs(f(x0 + e) - f(x0 - e)) / 2e-4 < 1e-3      # (measured ~6e-5 at most)


# ---- refusals -----------------------------------------------------------------------------

def test_refuses_two_grouping_factors():
    df, _ = data_set("bernoulli", 707, groups=12, lo=3, hi=5)
    df["h"] = np.arange(len(df)) % 4
    with pytest.raises(ModelError, match="one random-effects term on one grouping factor"):
        xlglmm.glmer("y ~ x + (x|g) + (1|h)", df, family="binomial", nAGQ=3)
    with pytest.raises(ModelError, match="one grouping factor"):
        xlglmm.glmer("y ~ x + (x||g)", df, family="binomial", nAGQ=3)


def test_refuses_too_many_nodes():
    df, _ = data_set("bernoulli", 808, groups=40, lo=3, hi=5, slopes=2)
    n = len(df)
    assert 80 ** 3 * n > agq.MAX_ROW_NODES > 3 ** 3 * n
    with pytest.raises(ModelError, match=r"80\^3 = 5.12e\+05 quadrature points per group"):
        xlglmm.glmer("y ~ x + (x + z|g)", df, family="binomial", nAGQ=80)
    res = xlglmm.glmer("y ~ x + (x + z|g)", df, family="binomial", nAGQ=3)   # within the cap
    assert np.isfinite(res.llf)
