"""NB1, beta and beta-binomial GLMMs (issue 17): families whose log-likelihood is not
an exponential family's in mu, fitted by the exact Laplace approximation with phi by
maximum likelihood (``family.loglik_mu_derivs``, ``family_parameter.PHI_PARAMETERS``).

* the polygamma kernels (``engine/special.py``) against scipy;
* each family's log-likelihood derivatives in mu against central differences of
  scipy's log density, the Laplace deviance against a dense scipy formula and its
  gradient against finite differences;
* fits against glmmTMB 1.1.5 (tests/data/glmmtmb: grouse_nb1, cbpp_betabinomial,
  beta_sim): logLik within 1e-3, fixed effects within 1% of an SE, SEs and SDs within
  2%, phi within 1%;
* what the API refuses and the worksheet's block."""
import numpy as np
import pandas as pd
import pytest
from scipy import special as sp
from scipy import stats

import xlglmm
from xlglmm.engine import start
from xlglmm.engine.design import build_design
from xlglmm.engine.devfun import GlmmDeviance
from xlglmm.engine.family import Family, loglik_mu_derivs
from xlglmm.engine.special import digamma, tetragamma, trigamma

from dense_laplace import FORMULAS, central_fd, dense_exact_laplace
from refs import DATA, assert_matches_glmmtmb, glmmtmb, load_frame

N = 160
PHI = {"nb1": 1.5, "beta": 8.0, "betabinomial": 5.0}


def log_density(fam, y, mu, pw, phi):
    if fam == "nb1":
        return pw * stats.nbinom.logpmf(y, mu / phi, 1.0 / (1.0 + phi))
    if fam == "beta":
        return pw * stats.beta.logpdf(y, mu * phi, (1.0 - mu) * phi)
    return stats.betabinom.logpmf(np.round(y * pw), np.round(pw), mu * phi, (1.0 - mu) * phi)


def frame(fam, seed=3):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=N), "x2": rng.normal(size=N),
                       "g": rng.integers(0, 10, N).astype(str),
                       "h": rng.integers(0, 4, N).astype(str)})
    lin = 0.2 + 0.4 * df.x + 0.5 * rng.normal(size=10)[df.g.astype(int)]
    if fam == "nb1":
        df["y"] = rng.negative_binomial(np.exp(lin) / 1.5, 1 / 2.5)
    elif fam == "beta":
        m = 1 / (1 + np.exp(-lin))
        df["y"] = rng.beta(m * 8, (1 - m) * 8)
    else:
        m = 1 / (1 + np.exp(-lin))
        n = rng.integers(1, 8, N)
        df["y"] = rng.binomial(n, rng.beta(m * 5, (1 - m) * 5)) / n
        df["n"] = n.astype(float)
    return df


@pytest.mark.parametrize("m,f", [(0, digamma), (1, trigamma), (2, tetragamma)])
def test_polygamma_kernels_against_scipy(m, f):
    xs = np.concatenate([np.geomspace(1e-6, 1e6, 400), [0.5, 1.0, 9.99, 10.0, 10.01]])
    ours = np.array([f(x) for x in xs])
    want = sp.polygamma(m, xs)
    # relative, but absolute near digamma's root (x = 1.4616...)
    assert np.all(np.abs(ours - want) <= 5e-14 * np.maximum(np.abs(want), 1.0))


@pytest.mark.parametrize("fam", list(PHI))
def test_loglik_derivatives_in_mu(fam):
    phi = PHI[fam]
    fd = Family(fam, "", phi=phi).kernel_data()
    rng = np.random.default_rng(1)
    for _ in range(20):
        mu = rng.uniform(0.5, 6.0) if fam == "nb1" else rng.uniform(0.05, 0.95)
        pw = float(rng.integers(1, 9)) if fam == "betabinomial" else 1.0
        if fam == "nb1":
            y = float(rng.integers(0, 12))
        elif fam == "beta":
            y = rng.uniform(0.02, 0.98)
        else:
            y = rng.integers(0, pw + 1) / pw
        h = 1e-4

        def l(m):
            return float(log_density(fam, np.array([y]), np.array([m]), pw, phi)[0])
        l1, l2, l3 = loglik_mu_derivs(y, mu, pw, fd)
        assert l1 == pytest.approx((l(mu + h) - l(mu - h)) / (2 * h), rel=1e-6, abs=1e-8)
        assert l2 == pytest.approx((l(mu + h) - 2 * l(mu) + l(mu - h)) / h ** 2,
                                   rel=1e-4, abs=1e-5)
        d3 = (l(mu + 2 * h) - 2 * l(mu + h) + 2 * l(mu - h) - l(mu - 2 * h)) / (2 * h ** 3)
        assert l3 == pytest.approx(d3, rel=2e-2, abs=2e-2)


def deviance(fam, shape):
    F = Family(fam, "", phi=PHI[fam])
    df = frame(fam)
    d = build_design(FORMULAS[shape], df, F,
                     weights=df["n"].to_numpy() if fam == "betabinomial" else None)
    dev = GlmmDeviance(d, F)
    beta = start.glm_beta(F, dev, start.mustart(F, d.y, d.weights))
    dev.set_beta_start(beta)
    theta = np.array([0.5 if lo == 0 else 0.15 for lo in dev.lower])
    return dev, theta, beta + 0.05 * np.cos(np.arange(len(beta)))


@pytest.mark.parametrize("fam", list(PHI))
@pytest.mark.parametrize("shape", ["intercept", "slope", "crossed"])
def test_laplace_value_and_gradient(fam, shape):
    dev, theta, beta = deviance(fam, shape)
    f = dev.laplace(theta, beta)
    want = dense_exact_laplace(dev, theta, beta,
                               lambda y, mu, pw: log_density(fam, y, mu, pw, PHI[fam]))
    assert f == pytest.approx(want, abs=1e-5 * max(1.0, abs(want)))
    _, g = dev.laplace_gradient(theta, beta)
    num = central_fd(dev, theta, beta, 1e-3)
    assert np.max(np.abs(g - num)) < 2e-4 * max(1.0, np.max(np.abs(num)))


REFS = {"grouse_nb1": ("grouseticks.csv", "TICKS ~ YEAR + cHEIGHT + (1|LOCATION)", "nb1",
                       ["YEAR", "LOCATION"]),
        "cbpp_betabinomial": ("cbpp.csv",
                              "cbind(incidence, size - incidence) ~ period + (1|herd)",
                              "betabinomial", ["period", "herd"]),
        "beta_sim": ("beta_sim.csv", "y ~ x + (1|g)", "beta", ["g"])}


@pytest.fixture(scope="module", params=list(REFS))
def pair(request):
    data, formula, fam, factors = REFS[request.param]
    df = load_frame({"data": data, "factors": factors})
    if "HEIGHT" in df:
        df["cHEIGHT"] = df.HEIGHT - df.HEIGHT.mean()
    return xlglmm.glmer(formula, df, family=fam), glmmtmb(request.param), df


def test_fit_matches_glmmtmb(pair):
    res, ref, _ = pair
    assert_matches_glmmtmb(res, ref, sd_abs=1e-3)
    assert res.phi == pytest.approx(ref["dispersion"]["sigma"], rel=0.01)
    lo, hi = res.phi_ci
    assert lo < res.phi < hi and res.phi_se > 0
    assert res.likelihood == "exact Laplace (observed information; phi by maximum likelihood)"


def test_refusals_and_a_phi_given(pair):
    res, ref, df = pair
    fam = res.family
    formula = res.formula
    weights = res.design.weights if fam.is_binomial and "cbind" not in formula else None
    with pytest.raises(xlglmm.ModelError, match="exact Laplace approximation only"):
        xlglmm.glmer(formula, df, family=fam.name, laplace="lme4")
    held = xlglmm.glmer(formula, df, family=Family(fam.name, fam.link, phi=res.phi),
                        weights=weights)
    assert held.npar == res.npar - 1 and held.phi_se is None
    assert held.llf == pytest.approx(res.llf, abs=1e-5)
    with pytest.raises(xlglmm.ModelError, match="estimated its phi"):
        res.model.refit(res.design.y)


def test_beta_response_must_lie_inside_the_unit_interval():
    df = pd.read_csv(DATA / "beta_sim.csv")
    df.loc[[3, 7], "y"] = [0.0, 1.0]
    with pytest.raises(xlglmm.DesignError, match=r"strictly between 0 and 1 \(rows 4, 8"):
        xlglmm.glmer("y ~ x + (1|g)", df, family="beta")


@pytest.mark.parametrize("fam", list(PHI))
def test_simulate_and_cdf_bounds(fam):
    F = Family(fam, "", phi=PHI[fam])
    rng = np.random.default_rng(2)
    mu = np.full(40000, 2.5 if fam == "nb1" else 0.3)
    wt = np.full(mu.shape, 6.0 if fam == "betabinomial" else 1.0)
    y = F.simulate(mu, wt, rng)
    assert np.mean(y) == pytest.approx(mu[0], rel=0.02)
    var = F.variance(mu[:1], wt[:1])[0] / (wt[0] if fam == "betabinomial" else 1.0)
    assert np.var(y) == pytest.approx(var, rel=0.05)
    lo, hi = F.cdf_bounds(y[:200], mu[:200], wt[:200])
    assert np.all(lo <= hi) and np.all((0 <= lo) & (hi <= 1))


@pytest.mark.parametrize("fam", list(PHI))
def test_the_score_alone_is_the_first_derivative(fam):
    from xlglmm.engine.family import loglik_mu_score
    fd = Family(fam, "", phi=PHI[fam]).kernel_data()
    for y, mu, pw in [(3.0, 2.2, 1.0), (0.0, 0.7, 2.0)] if fam == "nb1" else \
            [(0.3, 0.45, 1.0), (0.8, 0.2, 1.5)] if fam == "beta" else \
            [(0.5, 0.3, 4.0), (1.0, 0.6, 3.0)]:
        assert loglik_mu_score(y, mu, pw, fd) == pytest.approx(
            loglik_mu_derivs(y, mu, pw, fd)[0], rel=1e-14)


@pytest.mark.parametrize("fam", list(PHI))
def test_deviance_residuals_are_the_saturated_likelihoods(fam):
    """The unit deviance is 2 (max_m l(y|m) - l(y|mu)) at the family's phi: >= 0 and 0 at
    the maximiser (which is not mu = y for these families: the cold review found
    negative deviances), the maximum found by scipy over the mean."""
    from scipy import optimize
    F = Family(fam, "", phi=PHI[fam])
    rows = ([(0.0, 1.0), (1.0, 1.0), (4.0, 1.0)] if fam == "nb1" else
            [(0.9, 1.0), (0.2, 1.0)] if fam == "beta" else [(1 / 3, 3.0), (0.0, 4.0), (1.0, 2.0)])
    for y, pw in rows:
        def minus_l(m):
            return -float(log_density(fam, np.array([y]), np.array([m]), pw, PHI[fam])[0])
        hi = 2 * y + 10 if fam == "nb1" else 1 - 1e-12
        best = optimize.minimize_scalar(minus_l, bounds=(1e-12, hi), method="bounded",
                                        options={"xatol": 1e-12})
        for mu in (0.3, 0.6) if fam != "nb1" else (0.5, 2.0, 6.0):
            want = 2 * (minus_l(mu) - best.fun)
            got = F.dev_resids(np.array([y]), np.array([mu]), np.array([pw]))[0]
            assert got == pytest.approx(max(want, 0.0), rel=1e-6, abs=1e-8)
        # at scipy's maximiser (found to ~1e-4 in a flat maximum): ~0
        at = F.dev_resids(np.array([y]), np.array([best.x]), np.array([pw]))[0]
        assert 0.0 <= at < 1e-6


def test_beta_binomial_pearson_residuals_see_the_trials():
    data, formula, fam, factors = REFS["cbpp_betabinomial"]
    res = xlglmm.glmer(formula, load_frame({"data": data, "factors": factors}), family=fam)
    y, n, mu = res.design.y, res.design.weights, res.fittedvalues.to_numpy()
    phi = res.phi
    want = (y - mu) / np.sqrt(mu * (1 - mu) * (phi + n) / ((phi + 1) * n))
    np.testing.assert_allclose(res.resid("pearson").to_numpy(), want, rtol=1e-12)


def test_phi_at_the_end_of_its_range_says_what_the_model_reduces_to():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    b = 0.4 * rng.normal(size=20)[g]
    pois = pd.DataFrame({"y": rng.poisson(np.exp(0.5 + 0.3 * x + b)), "x": x,
                         "g": g.astype(str)})
    r = xlglmm.glmer("y ~ x + (1|g)", pois, family="nb1")
    assert r.phi < 1e-5 and np.isnan(r.phi_se)
    assert any("reduces to the Poisson GLMM" in m for m in r.messages)
    n = rng.integers(2, 10, 200)
    binom = pd.DataFrame({"k": rng.binomial(n, 1 / (1 + np.exp(-(0.3 * x + b)))), "n": n,
                          "x": x, "g": g.astype(str)})
    r = xlglmm.glmer("cbind(k, n - k) ~ x + (1|g)", binom, family="betabinomial")
    assert r.phi > 1e6 and any("reduces to the binomial GLMM" in m for m in r.messages)
    with pytest.raises(xlglmm.ModelError, match="more than one trial"):
        xlglmm.glmer("cbind(k, one - k) ~ x + (1|g)",
                     binom.assign(k=(binom.k > 2) * 1, one=1), family="betabinomial")


def test_bootstrap_and_influence_carry_phi():
    """phi is one of the bootstrap's statistics (re-estimated by every refit) and of the
    influence table's changes, like an NB theta (the families' cold review)."""
    data, formula, fam, factors = REFS["beta_sim"]
    df = load_frame({"data": data, "factors": factors})
    res = xlglmm.glmer(formula, df, family=fam)
    boot = res.bootstrap(nsim=20, seed=3, workers=1)
    assert "phi" in boot.replicates.columns and boot.failed == 0
    assert boot.estimates["phi"] == res.phi
    spread = boot.replicates["phi"].std()
    assert 0.3 * res.phi_se < spread < 3 * res.phi_se     # the Wald SE's scale
    ci = boot.recommended(0.05)
    assert ci.loc["phi", "lower"] < res.phi < ci.loc["phi", "upper"]
    inf = res.influence(workers=1)
    assert "change_phi" in inf.columns and inf["change_phi"].abs().max() > 0
