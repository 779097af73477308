"""Predictions with confidence and prediction intervals (engine/prediction.py, issue 14):
the link-scale variance against a dense inverse of the whole penalised system, its
parts against vcov and lme4's condVar, the mixture's CDF against scipy's adaptive
quadrature and Monte Carlo, the quantile rule, and the validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import xlglmm
from xlglmm.engine import prediction
from xlglmm.engine.family import Family
from refs import PACKAGE_DATA, expected, fit, manifest

SHARED = manifest()


@pytest.fixture(scope="module")
def safety():
    res, df = fit(SHARED["safety_crossed"])
    return res, df


def dense_variance(res, X, zs):
    """sigma^2 c'M^-1 c with M the penalised system [Lambda'Z'WZLambda + I, ...; X'W...]
    built densely in the data's row order, W the working weights of a canonical link
    (prior weight x mu_eta^2 / V(mu)) at the fit's conditional modes."""
    d, fam = res.design, res.family
    lams = res.model.devfun.lambdas(res.theta)
    eta = res.predict(type="link").to_numpy()
    mu = fam.linkinv(eta)
    W = d.weights * fam.mu_eta(eta) ** 2 / fam.variance(mu)
    blocks, rows = [], []
    for t, L in zip(d.re_terms, lams):
        ZL = np.zeros((d.nobs, t.nlevels * t.k))
        R = np.zeros((len(X), t.nlevels * t.k))
        ZL[np.arange(d.nobs)[:, None], (t.codes * t.k)[:, None] + np.arange(t.k)] = t.Z @ L
        codes, Z = zs[len(rows)]
        seen = np.flatnonzero(codes >= 0)
        R[seen[:, None], (codes[seen] * t.k)[:, None] + np.arange(t.k)] = Z[seen] @ L
        blocks.append(ZL)
        rows.append(R)
    ZL = np.hstack(blocks)
    q = ZL.shape[1]
    A = np.hstack([ZL, d.X])
    M = A.T @ (W[:, None] * A)
    M[np.arange(q), np.arange(q)] += 1.0
    C = np.hstack(rows + [X])
    return res.sigma ** 2 * np.einsum("ij,jk,ik->i", C, np.linalg.inv(M), C), \
        res.sigma ** 2 * np.linalg.inv(M)[q:, q:]


def parts(res, X, zs, vcov):
    return prediction.link_variance(res.model.devfun, res.theta, res.model.estimates.state,
                                    res.sigma, vcov, X, zs)


def mixed_rows(res, n_rows=12, seed=1):
    """Rows that see each term's levels, some of them, or none (-1)."""
    rng = np.random.default_rng(seed)
    d = res.design
    X = d.X[rng.integers(0, d.nobs, n_rows)] + rng.normal(0, 0.3, (n_rows, d.X.shape[1]))
    zs = []
    for t in d.re_terms:
        codes = rng.integers(-1, t.nlevels, n_rows)
        zs.append((codes, rng.normal(1.0, 0.5, (n_rows, t.k))))
    return X, zs


def fitted(name):
    """A reference fit, or lme4's sleepstudy LMM (random slope) for ``"sleepstudy"``."""
    if name == "sleepstudy":
        df = pd.read_csv(PACKAGE_DATA / "sleepstudy.csv")
        return xlglmm.lmer("Reaction ~ Days + (Days|Subject)", df)
    return fit(SHARED[name])[0]


@pytest.mark.parametrize("name", ["safety_crossed", "grouse_slope", "cbpp_laplace",
                                  "sleepstudy"])
def test_the_variance_is_the_inverse_of_the_whole_penalised_system(name):
    """With the RX covariance in beta's part (an LMM's vcov), the two parts add up to
    sigma^2 c'M^-1 c of a dense inverse (crossed terms, random slopes, binomial
    trials, an LMM's sigma^2), to rounding; M^-1's beta block is that covariance."""
    res = fitted(name)
    X, zs = mixed_rows(res)
    want, beta_block = dense_variance(res, X, zs)
    re_part, fixed_part = parts(res, X, zs, res.fe_cov_rx.to_numpy())
    assert np.allclose(re_part + fixed_part, want, rtol=1e-7, atol=0)
    assert np.allclose(beta_block, res.fe_cov_rx.to_numpy(), rtol=1e-7)


def test_population_level_rows_have_the_variance_of_the_reported_ses(safety):
    """No level seen: x'vcov x, which for a unit row is the SE squared."""
    res, _ = safety
    new = pd.DataFrame({"training": [0, 1], "plant": [None, "unseen"], "month": [None, None]})
    out = res.predict(new, offset=np.log(100.0), interval="confidence", type="link")
    V = res.fe_cov.to_numpy()
    assert out["se_link"][0] == pytest.approx(res.fe_bse.iloc[0], rel=1e-12)
    assert out["se_link"][1] ** 2 == pytest.approx(V.sum(), rel=1e-12)
    also = res.predict(new.assign(plant=["P01", "P02"]), offset=np.log(100.0),
                       interval="confidence", include_re=False)
    assert np.allclose(also["se_link"], out["se_link"], rtol=1e-12)


@pytest.mark.parametrize("group", ["plant", "month"])
def test_the_random_effects_part_of_one_level_is_lme4s_condvar(safety, group):
    """A row with only one term's level and x = 0: the random-effects part is that
    level's conditional variance (lme4's ranef(condVar = TRUE)), for the first term
    and for the term in the rest of the factor."""
    res, _ = safety
    terms = res.design.re_terms
    n = terms[[t.group for t in terms].index(group)].nlevels
    X = np.zeros((n, res.design.X.shape[1]))
    zs = [((np.arange(n) if t.group == group else np.full(n, -1)), np.ones((n, 1)))
          for t in terms]
    re_part, fixed_part = parts(res, X, zs, res.fe_cov.to_numpy())
    ours = res.random_effects_sd[group].to_numpy()
    assert np.allclose(np.sqrt(re_part), ours, rtol=1e-9)
    block = next(b for b in expected("safety_crossed")["ranef"] if b["group"] == group)
    assert np.allclose(np.sqrt(re_part), np.ravel(block["cond_sd"]), rtol=0.02)
    assert np.all(fixed_part > 0)


def test_confidence_interval_is_eta_plus_minus_z_se_through_the_link(safety):
    res, df = safety
    out = res.predict(df.head(5), offset=np.log(df.employees[:5]), interval="confidence",
                      level=0.9)
    link = res.predict(df.head(5), offset=np.log(df.employees[:5]), type="link")
    z = stats.norm.ppf(0.95)
    assert np.allclose(out["lower"], np.exp(link - z * out["se_link"]), rtol=1e-12)
    assert np.allclose(out["upper"], np.exp(link + z * out["se_link"]), rtol=1e-12)
    assert np.allclose(out["fit"], res.fittedvalues[:5], rtol=1e-12)


def test_interval_none_keeps_the_series(safety):
    res, df = safety
    plain = res.predict(df.head(4), offset=np.log(df.employees[:4]))
    assert isinstance(plain, pd.Series) and plain.name == "predicted"
    both = res.predict(df.head(4), offset=np.log(df.employees[:4]), interval="prediction")
    assert list(both.columns) == ["fit", "se_link", "lower", "upper"]
    assert np.array_equal(both["fit"].to_numpy(), plain.to_numpy())


def test_a_new_level_widens_the_prediction_interval_by_its_variance(safety):
    res, _ = safety
    new = pd.DataFrame({"training": [1, 1], "plant": ["P01", "NEW"], "month": ["1", "1"]})
    ci = res.predict(new, offset=np.log(200.0), interval="confidence")
    pi = res.predict(new, offset=np.log(200.0), interval="prediction")
    assert pi["lower"][0] <= ci["lower"][0] and pi["upper"][0] >= ci["upper"][0]
    assert pi["upper"][1] - pi["lower"][1] > pi["upper"][0] - pi["lower"][0]
    assert np.all(pi[["lower", "upper"]].to_numpy() % 1 == 0)      # counts


def test_missing_values_give_a_nan_row(safety):
    res, _ = safety
    new = pd.DataFrame({"training": [1.0, np.nan], "plant": ["P01", "P01"],
                        "month": ["1", "1"]})
    for iv in ("confidence", "prediction"):
        out = res.predict(new, offset=np.log(200.0), interval=iv)
        assert out.iloc[1].isna().all() and out.iloc[0].notna().all()


@pytest.mark.parametrize("kw, words", [
    ({"interval": "credible"}, "interval must be"),
    ({"interval": "confidence", "level": 1.0}, "level must be"),
    ({"interval": "confidence", "level": 0}, "level must be"),
    ({"interval": "confidence", "level": True}, "level must be"),
    ({"interval": "confidence", "level": "95%"}, "level must be"),
    ({"interval": "prediction", "type": "link"}, "response scale"),
    ({"interval": "prediction", "trials": [3, 4]}, "binomial models only"),
    ({"interval": "prediction", "offset": [1.0, 2.0, 3.0]}, "3 values for 2 new rows"),
    ({"interval": "prediction", "offset": ["a", "b"]}, "offset must be numbers"),
])
def test_bad_requests_are_refused_with_one_message(safety, kw, words):
    res, _ = safety
    new = pd.DataFrame({"training": [1, 0], "plant": ["P01", "P02"], "month": ["1", "2"]})
    kw = {"offset": np.log([100.0, 200.0]), **kw}
    with pytest.raises(ValueError, match=words):
        res.predict(new, **kw)


def test_binomial_intervals_are_successes_out_of_the_trials_as_proportions():
    res, df = fit(SHARED["cbpp_laplace"])
    pi = res.predict(interval="prediction")
    k_lo, k_hi = pi["lower"] * df["size"], pi["upper"] * df["size"]
    assert np.allclose(k_lo, np.round(k_lo)) and np.allclose(k_hi, np.round(k_hi))
    one = res.predict(df.head(3), interval="prediction")        # new rows: one trial each
    assert set(one["lower"]) | set(one["upper"]) <= {0.0, 1.0}
    twenty = res.predict(df.head(3), interval="prediction", trials=20)
    assert np.allclose(twenty["upper"] * 20, np.round(twenty["upper"] * 20))
    with pytest.raises(ValueError, match="whole numbers of trials"):
        res.predict(df.head(3), interval="prediction", trials=2.5)


# ---- the mixture ---------------------------------------------------------------------

MIXTURES = [   # family, sigma, eta, sd of eta, weight, y values
    (Family("poisson"), 1.0, np.log(3.0), 0.4, 1.0, [0, 1, 3, 8]),
    (Family("poisson"), 1.0, np.log(1000.0), 0.4, 1.0, [500, 1000, 2000]),  # narrow
    (Family("negbin", "log", 2.5), 1.0, 2.0, 0.5, 1.0, [0, 3, 10, 40]),
    (Family("binomial"), 1.0, 0.3, 1.2, 20.0, [0, 3, 10, 19]),
    (Family("binomial"), 1.0, 0.3, 0.2, 1000.0, [300, 550, 600]),
    (Family("gamma", "log"), 0.8, 0.5, 0.3, 1.0, [0.3, 1.0, 5.0]),
    (Family("gaussian"), 0.01, 5.0, 1.0, 1.0, [3.0, 5.0, 6.5]),       # sigma << sd
]


def _one(v):
    return np.array([float(v)])


@pytest.mark.parametrize("case", MIXTURES, ids=lambda c: c[0].name)
def test_the_mixture_cdf_equals_adaptive_quadrature(case):
    fam, sigma, eta, sd, w, ys = case
    cond = prediction.Conditional(fam, _one(w), sigma)
    for y in ys:
        ours = prediction.mixture_cdf(cond, _one(y), _one(eta), _one(sd), _one(w))[0]

        def integrand(z):
            mu = fam.linkinv(_one(eta + sd * z))
            return cond.cdf(_one(y), mu, _one(w))[0] * stats.norm.pdf(z)
        want = integrate.quad(integrand, -12, 12, points=[0], limit=1000, epsabs=1e-13,
                              epsrel=1e-12)[0]
        assert ours == pytest.approx(want, abs=1e-8)


@pytest.mark.parametrize("case", MIXTURES[:1] + MIXTURES[3:4] + MIXTURES[5:6],
                         ids=lambda c: c[0].name)
def test_the_mixture_cdf_agrees_with_monte_carlo(case):
    fam, sigma, eta, sd, w, ys = case
    rng = np.random.default_rng(5)
    N = 400_000
    mu = fam.linkinv(eta + sd * rng.standard_normal(N))
    if fam.is_binomial:
        draws = rng.binomial(int(w), mu).astype(float)
    elif fam.counts_response:
        draws = rng.poisson(mu).astype(float)
    else:
        shape = w / sigma ** 2
        draws = rng.gamma(shape, mu / shape)
    cond = prediction.Conditional(fam, _one(w), sigma)
    for y in ys:
        ours = prediction.mixture_cdf(cond, _one(y), _one(eta), _one(sd), _one(w))[0]
        p = np.mean(draws <= y)
        assert abs(ours - p) <= 5 * np.sqrt(p * (1 - p) / N) + 1e-6


def test_the_gaussian_identity_mixture_is_the_normal_with_both_variances():
    """eta ~ N(m, s^2), y ~ N(eta, sigma^2): y ~ N(m, s^2 + sigma^2), quantiles exact."""
    fam = Family("gaussian")
    eta, sd, sigma = np.array([5.0, -2.0]), np.array([1.0, 0.1]), 0.7
    lo, hi = prediction.prediction_bounds(fam, eta, sd, np.ones(2), sigma, 0.9)
    s = np.sqrt(sd ** 2 + sigma ** 2)
    assert np.allclose(lo, eta - stats.norm.ppf(0.95) * s, rtol=1e-9, atol=1e-9)
    assert np.allclose(hi, eta + stats.norm.ppf(0.95) * s, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", MIXTURES[:5], ids=lambda c: c[0].name)
def test_a_count_limit_is_the_smallest_whole_y_reaching_its_probability(case):
    fam, sigma, eta, sd, w, _ = case
    cond = prediction.Conditional(fam, _one(w), sigma)
    for q in (0.025, 0.975):
        y = prediction.mixture_quantile(cond, q, _one(eta), _one(sd), _one(w))
        assert y[0] == np.round(y[0])
        F = [prediction.mixture_cdf(cond, y + d, _one(eta), _one(sd), _one(w))[0]
             for d in (-1.0, 0.0)]
        assert F[0] < q <= F[1]


def test_a_new_plants_prediction_interval_covers_a_fresh_count():
    """Seeded small simulation: a Poisson model with 12 groups of 8 rows; a new
    group's 95% prediction interval covers a fresh count drawn with a new random
    effect (counts: at least 95% by construction; the quadrature's intervals are
    conservative, not wild)."""
    rng = np.random.default_rng(2024)
    hits, reps = 0, 60
    x = np.tile(np.arange(8) % 2, 12).astype(float)
    g = np.repeat([f"g{i}" for i in range(12)], 8)
    for _ in range(reps):
        b = rng.normal(0, 0.5, 12)
        y = rng.poisson(np.exp(1.0 + 0.4 * x + np.repeat(b, 8)))
        res = xlglmm.glmer("y ~ x + (1|g)", pd.DataFrame({"y": y, "x": x, "g": g}),
                           family="poisson")
        pi = res.predict(pd.DataFrame({"x": [1.0], "g": ["new"]}), interval="prediction")
        fresh = rng.poisson(np.exp(1.4 + rng.normal(0, 0.5)))
        hits += int(pi["lower"][0] <= fresh <= pi["upper"][0])
    assert 0.85 <= hits / reps <= 1.0


def test_new_rows_of_a_model_fitted_with_offset_values_need_their_offset(safety):
    """Without offset= they would be predicted at offset 0 (exposure 1): refused."""
    res = safety[0]
    assert res.design.offset_arg == "values"
    new = pd.DataFrame({"training": [1.0], "plant": ["NEW"], "month": ["1"]})
    for interval in (None, "prediction"):
        with pytest.raises(prediction.PredictionError, match="give offset= for the new rows"):
            res.predict(new, interval=interval)
    assert np.isfinite(res.predict(new, offset=np.log(200.0)).iloc[0])


def test_an_offset_named_by_its_column_is_the_new_rows_column():
    """A fit whose offset= named a column predicts new rows with their own column of
    that name (it was left out: they were predicted at offset 0 -- the cold review of
    issue 17); new rows without the column are refused."""
    rng = np.random.default_rng(1)
    n = 300
    d = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 10, n).astype(str),
                      "lt": np.log(rng.uniform(1, 10, n))})
    d["y"] = rng.poisson(np.exp(0.2 + 0.3 * d["x"] + d["lt"]))
    r = xlglmm.glmer("y ~ x + (1|g)", d, "poisson", offset="lt")
    assert np.allclose(r.predict(d.head(5)).to_numpy(), r.fittedvalues.to_numpy()[:5],
                       rtol=1e-10)
    shifted = r.predict(d.head(5).assign(lt=d["lt"].head(5) + 1.0), type="link")
    assert np.allclose(shifted - r.predict(d.head(5), type="link"), 1.0)
    with pytest.raises(xlglmm.DesignError, match="offset is the column 'lt'"):
        r.predict(d.head(5).drop(columns="lt"))
