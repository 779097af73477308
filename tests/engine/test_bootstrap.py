"""The parametric bootstrap (issue 14, second part): reproducible by seed whatever
the number of replicates, bootstrap SEs that agree with the fit's, failed refits
counted, a budget, and the family's draws with the right moments."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xlglmm
from faults import fail_refit
from refs import PACKAGE_DATA, fit, manifest
from xlglmm.engine import bootstrap as B
from xlglmm.engine.model import ModelError

MODELS = manifest()


@pytest.fixture(scope="module")
def safety():
    return fit(MODELS["safety_plant_laplace"])[0]


def test_the_same_seed_gives_the_same_replicates_whatever_nsim(safety):
    a = safety.bootstrap(12, seed=7)
    b = safety.bootstrap(5, seed=7)
    c = safety.bootstrap(5, seed=8)
    assert a.replicates.shape == (12, 3) and a.failed == 0
    assert np.array_equal(a.replicates.to_numpy()[:5], b.replicates.to_numpy())
    assert not np.array_equal(c.replicates.to_numpy(), b.replicates.to_numpy())
    assert list(a.replicates.columns) == ["sd_(Intercept)|plant", "(Intercept)", "training"]
    assert a.estimates["training"] == safety.fe_params["training"]


def test_bootstrap_standard_errors_agree_with_the_fits(safety):
    """With 150 replicates an SE is known to ~6% (its Monte Carlo error): the
    fixed effects' bootstrap SEs within 20% of the fit's."""
    b = safety.bootstrap(150, seed=1)
    ratio = b.se[safety.fe_params.index] / safety.fe_bse
    assert np.all(np.abs(ratio - 1.0) < 0.2), ratio
    ci = b.conf_int(0.05)
    basic = b.conf_int(0.05, method="basic")
    est = b.estimates
    assert np.all(ci.lower < ci.upper) and np.all(basic.lower < basic.upper)
    assert np.allclose(basic.lower + ci.upper, 2 * est) and np.allclose(basic.upper + ci.lower, 2 * est)
    t = ci.loc["training"]
    assert t.lower < safety.fe_params["training"] < t.upper


def test_the_studentized_interval_is_the_bootstrap_t(safety):
    """Each replicate keeps its refit's RX standard errors; the studentized interval
    is estimate - q SE with q the quantiles of (replicate - estimate) / its SE,
    written out here with numpy, and it is for the fixed effects only."""
    b = safety.bootstrap(60, seed=3)
    names = list(safety.fe_params.index)
    assert list(b.fixed_se.columns) == names and b.fixed_se.index.equals(b.replicates.index)
    rx = np.sqrt(np.diag(safety.model.estimates.vcov_rx))
    assert np.array_equal(b.estimate_fixed_se.to_numpy(), rx)
    ci = b.conf_int(0.1, method="studentized")
    assert ci.loc["sd_(Intercept)|plant"].isna().all()
    for j, name in enumerate(names):
        t = (b.replicates[name].to_numpy() - b.estimates[name]) / b.fixed_se[name].to_numpy()
        lo, hi = np.quantile(t, [0.95, 0.05])       # numpy's default: linear, as pandas'
        assert ci.loc[name, "lower"] == pytest.approx(b.estimates[name] - lo * rx[j],
                                                      rel=1e-12)
        assert ci.loc[name, "upper"] == pytest.approx(b.estimates[name] - hi * rx[j],
                                                      rel=1e-12)
    # a refit's SE is the same statistic as the fit's: about as large on average
    assert np.all(np.abs(b.fixed_se.mean() / b.estimate_fixed_se - 1.0) < 0.2)
    with pytest.raises(B.BootstrapError, match="default statistics"):
        safety.bootstrap(3, seed=3, statistics=lambda r: r.fe_params).conf_int(
            method="studentized")


def test_the_recommended_intervals_are_bootstrap_t_and_basic_within_range():
    """recommended(): the studentized interval for the fixed effects, the basic one
    for the variance parameters, an SD's held at >= 0 and a correlation's in
    [-1, 1]."""
    res = xlglmm.glmer("TICKS ~ YEAR + (1 + YEAR|LOCATION)",
                       pd.read_csv(PACKAGE_DATA / "grouseticks.csv").assign(
                           YEAR=lambda d: (d.YEAR - 96.0), LOCATION=lambda d: d.LOCATION.astype(str)),
                       family="poisson")
    b = res.bootstrap(40, seed=2)
    rec = b.recommended(0.1)
    basic, stud = b.conf_int(0.1, "basic"), b.conf_int(0.1, "studentized")
    for name in rec.index:
        if name in res.fe_params.index:
            assert rec.loc[name, "kind"] == "bootstrap-t"
            assert list(rec.loc[name, ["lower", "upper"]]) == list(stud.loc[name])
        else:
            assert rec.loc[name, "kind"] == "bootstrap basic"
            lo, hi = (-1.0, 1.0) if name.startswith("cor_") else (0.0, np.inf)
            assert list(rec.loc[name, ["lower", "upper"]]) == \
                list(basic.loc[name].clip(lo, hi))
    assert (rec.loc[[n for n in rec.index if n.startswith("sd_")], "lower"] >= 0).all()


def test_failed_refits_are_counted_not_used(safety, monkeypatch):
    real = type(safety.model).refit_model
    calls = []

    def flaky(self, y=None, **kw):
        calls.append(1)
        if len(calls) % 3 == 0:
            raise ModelError("PIRLS failed (simulated)")
        return real(self, y, **kw)
    monkeypatch.setattr(type(safety.model), "refit_model", flaky)
    b = safety.bootstrap(9, seed=3, workers=1)
    assert b.failed == 3 and len(b.replicates) == 6
    assert all("simulated" in msg for _, msg in b.failures)


def test_the_budget_stops_the_bootstrap(safety):
    """Seeds are made as replicates run (nsim itself costs nothing), and the budget
    is shared with each refit: the run stops near it, with the replicates done."""
    import time
    t0 = time.perf_counter()
    b = safety.bootstrap(1_000_000, seed=0, time_budget=0.3)
    assert time.perf_counter() - t0 < 2.0
    assert b.stopped_by_budget and 1 <= len(b.replicates) < 1_000_000


def test_any_failure_of_a_replicate_is_counted(safety, monkeypatch):
    """A refit failing with something that is not a ValueError (a division by zero
    in the kernels, say) loses that replicate only; a statistic of the wrong length
    is the caller's error and stops the run."""
    real = type(safety.model).refit_model
    fail_refit(monkeypatch, safety.model, 2)
    b = safety.bootstrap(4, seed=1, workers=1)
    assert b.failed == 1 and len(b.replicates) == 3
    assert b.failures[0][0] == 1 and b.failures[0][1].startswith("ZeroDivisionError")
    monkeypatch.setattr(type(safety.model), "refit_model", real)
    ragged = iter([np.zeros(2), np.zeros(3)])
    with pytest.raises(B.BootstrapError, match="numbers"):
        safety.bootstrap(2, seed=1, statistics=lambda r: pd.Series(next(ragged)))


def test_simulated_responses_are_the_fitted_model(safety):
    """The marginal mean of a simulated count is exp(eta_fixed + theta^2 / 2) (a
    log-normal random intercept on top of the offset and X beta): over 4,000 draws
    the row means agree with it within 4 standard errors, on average over rows."""
    rng = np.random.default_rng(9)
    ys = np.array([B.simulate_response(safety, rng) for _ in range(4000)])
    d = safety.design
    eta = d.offset + d.X @ safety.fe_params.to_numpy()
    expect = np.exp(eta + safety.theta[0] ** 2 / 2)
    ratio = ys.mean(axis=0).sum() / expect.sum()
    se = ys.sum(axis=1).std() / np.sqrt(len(ys)) / expect.sum()
    assert abs(ratio - 1) < 4 * se


def test_what_the_bootstrap_refuses(safety):
    for bad in (0, -1, 2.5, True, 10 ** 30):
        with pytest.raises(B.BootstrapError, match="nsim"):
            safety.bootstrap(bad, seed=1)
    with pytest.raises(B.BootstrapError, match="seed"):
        safety.bootstrap(3, seed=-1)
    for bad in ("1", -1.0, float("nan"), 0):
        with pytest.raises(B.BootstrapError, match="time_budget"):
            safety.bootstrap(3, seed=1, time_budget=bad)
    for bad in ("month", "Plant", 3, None):
        with pytest.raises(B.BootstrapError, match="resample must be .*'plant'"
                           if isinstance(bad, str) else "resample must be"):
            safety.bootstrap(3, seed=1, resample=bad)
    for bad in (0, 1.5, True):
        with pytest.raises(B.BootstrapError, match="workers"):
            safety.bootstrap(3, seed=1, workers=bad)


@pytest.mark.parametrize("family, link, wt, mu, var", [
    ("poisson", "log", 1.0, 2.5, 2.5),
    ("binomial", "logit", 7.0, 0.3, 0.3 * 0.7 / 7.0),
    ("gamma", "log", 2.0, 2.5, 0.6 * 2.5 ** 2 / 2.0),     # dispersion 0.6: phi mu^2 / w
    ("gaussian", "identity", 4.0, -1.5, 0.6 / 4.0)])     # phi / w
def test_the_familys_draws_have_its_moments(family, link, wt, mu, var):
    """Means and variances of 200,000 draws within 5 standard errors of the exact
    ones (binomial: a proportion of 7 trials; Gamma and Gaussian with dispersion
    0.6 and prior weights)."""
    fam = xlglmm.Family(family, link)
    mu = np.full(200_000, mu)
    y = fam.simulate(mu, np.full(mu.shape, wt), np.random.default_rng(5), dispersion=0.6)
    assert abs(y.mean() - mu[0]) < 5 * np.sqrt(var / len(y))
    assert y.var() == pytest.approx(var, rel=0.02)
    if family == "binomial":
        assert np.allclose(y * wt, np.rint(y * wt))
    nb = xlglmm.NegativeBinomial2(3.0)
    z = nb.simulate(np.full(200_000, 2.0), 1.0, np.random.default_rng(6))
    assert z.var() == pytest.approx(2.0 + 4.0 / 3.0, rel=0.03)


# ---- every model ---------------------------------------------------------------------------

def sd_tolerance(nsim: int, k: float = 3.5) -> float:
    """k Monte Carlo standard errors of an SD estimated from ``nsim`` normal-ish draws
    (relative: 1 / sqrt(2 (nsim - 1)))."""
    return k / np.sqrt(2.0 * (nsim - 1))


def test_lmm_bootstrap_standard_errors_are_the_lmms():
    """sleepstudy's LMM: responses simulated as X beta + Z b + sigma e with b from
    sigma^2 Lambda Lambda'; the fixed effects' bootstrap SEs agree with the LMM's
    own within the Monte Carlo error of 200 replicates; the statistics include sigma,
    which the refits re-estimate around the fit's."""
    ss = pd.read_csv(PACKAGE_DATA / "sleepstudy.csv")
    lm = xlglmm.lmer("Reaction ~ Days + (Days|Subject)", ss)
    b = lm.bootstrap(200, seed=4, workers=1)
    assert b.failed == 0 and len(b.replicates) == 200
    assert list(b.estimates.index) == ["sd_(Intercept)|Subject",
                                       "cor_(Intercept).Days|Subject", "sd_Days|Subject",
                                       "sigma", "(Intercept)", "Days"]
    vc = lm.varcorr.sdcor        # (Intercept), Days, their correlation
    assert b.estimates["sd_Days|Subject"] == pytest.approx(vc.iloc[1], rel=1e-12)
    assert b.estimates["cor_(Intercept).Days|Subject"] == pytest.approx(vc.iloc[2], rel=1e-12)
    assert b.estimates["sigma"] == lm.sigma
    ratio = b.se[lm.fe_params.index] / lm.fe_bse
    assert np.all(np.abs(ratio - 1.0) < sd_tolerance(200)), ratio
    # sigma: ~1.45 around 25.6 (its SE with 180 residual df is sigma / sqrt(2 * 180))
    assert abs(b.se["sigma"] / (lm.sigma / np.sqrt(2 * 180)) - 1) < sd_tolerance(200)
    assert abs(b.replicates["sigma"].mean() - lm.sigma) < 4 * b.se["sigma"] / np.sqrt(200)


def test_gamma_bootstrap_draws_with_the_fitted_dispersion():
    """A Gamma GLMM with a known dispersion (shape 4: phi = 0.25, sigma = 0.5): the
    bootstrap's sigma replicates centre on the fit's sigma, and the intercept's
    bootstrap SE agrees with the fit's (150 replicates)."""
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(12), 15)
    mu = np.exp(1.0 + rng.normal(0, 0.3, 12)[g])
    df = pd.DataFrame({"y": rng.gamma(4.0, mu / 4.0), "g": g.astype(str)})
    gam = xlglmm.glmer("y ~ 1 + (1|g)", df, "gamma", link="log")
    b = gam.bootstrap(150, seed=2, workers=1)
    assert b.failed == 0
    assert list(b.estimates.index) == ["sd_(Intercept)|g", "sigma", "(Intercept)"]
    assert abs(gam.sigma - 0.5) < 0.05
    assert abs(b.replicates["sigma"].mean() / gam.sigma - 1) < 0.05
    assert abs(b.se["(Intercept)"] / gam.fe_bse["(Intercept)"] - 1) < sd_tolerance(150)


def test_negative_binomial_bootstrap_estimates_theta_again(safety):
    """An NB fit whose theta was estimated: every replicate is drawn with theta-hat
    and refitted with theta estimated again (so the replicates of theta vary), and
    theta is one of the statistics."""
    spec = MODELS["safety_plant_laplace"]
    nb = fit(spec, family="nb")[0]
    b = nb.bootstrap(6, seed=5, workers=1)
    assert list(b.estimates.index) == ["sd_(Intercept)|plant", "nb_theta", "(Intercept)",
                                       "training"]
    assert b.estimates["nb_theta"] == nb.nb_theta and b.failed == 0
    theta = b.replicates["nb_theta"]
    assert theta.nunique() == 6 and np.all(theta > 0)


# ---- the case (cluster) bootstrap ----------------------------------------------------------

@pytest.fixture(scope="module")
def crossed():
    return fit(MODELS["safety_crossed"])[0]


def test_a_drawn_level_is_a_group_of_its_own_and_crossed_factors_keep_theirs(crossed):
    d = crossed.design
    plan = B.case_plan(d, "plant")
    rng = np.random.default_rng(3)
    new = B.resampled_design(d, plan, rng)
    draw = np.random.default_rng(3).integers(0, 20, 20)
    assert len(set(draw)) < 20                       # some plant drawn twice ...
    plant, month = new.re_terms
    assert plant.nlevels == 20 and month.nlevels == 8   # ... yet 20 plants
    assert new.nobs == sum(np.sum(d.re_terms[0].codes == k) for k in draw)
    assert plant.levels[0] == f"{d.re_terms[0].levels[draw[0]]}#1"
    assert month.levels == d.re_terms[1].levels
    # every row of a drawn plant comes with its response, offset and X
    first = np.flatnonzero(d.re_terms[0].codes == draw[0])
    assert np.array_equal(new.y[:len(first)], d.y[first])
    assert np.array_equal(new.offset[:len(first)], d.offset[first])
    rows = B.resampled_design(d, B.case_plan(d, "observation"), np.random.default_rng(1))
    assert rows.nobs == d.nobs and rows.re_terms[0].levels == d.re_terms[0].levels


def test_a_factor_nested_in_the_drawn_one_is_copied_with_it():
    outer = np.repeat([0, 1, 2], 4)
    inner = np.repeat([0, 1, 2, 3, 4, 5], 2)          # two inner levels per outer level
    crossed_with = np.tile([0, 1], 6)
    assert B.nested_in(inner, outer) and not B.nested_in(crossed_with, outer)


def test_cluster_bootstrap_by_plant(crossed):
    """Resampling plants (month kept): the training effect, a plant-level covariate,
    has a cluster-bootstrap SE near the model's (100 replicates: within the Monte
    Carlo error, and the cluster bootstrap's own downward bias with 20 clusters,
    sqrt(19/20)); resampling rows gives intervals too; each replicate is reproducible."""
    b = crossed.bootstrap(100, seed=8, resample="plant", workers=1)
    assert b.resample == "plant" and b.failed == 0
    assert abs(b.se["training"] / crossed.fe_bse["training"] - 1) < sd_tolerance(100) + 0.05
    again = crossed.bootstrap(3, seed=8, resample="plant", workers=1)
    assert np.array_equal(again.replicates.to_numpy(), b.replicates.to_numpy()[:3])
    rows = crossed.bootstrap(20, seed=8, resample="observation", workers=1)
    ci = rows.conf_int()
    assert rows.failed == 0 and np.all(ci.lower < ci.upper)


def test_a_resample_that_loses_a_fixed_effect_is_a_failed_replicate():
    """Rows drawn so that X loses its rank (every row of one level of a factor
    missing) are counted as a failure, not an error of the run."""
    df = pd.DataFrame({"y": [1, 2, 0, 3, 1, 4, 2, 0] * 3, "x": ["a"] * 23 + ["b"],
                       "g": np.repeat(list("abcdef"), 4)})
    res = xlglmm.glmer("y ~ x + (1|g)", df, "poisson")
    b = res.bootstrap(10, seed=0, resample="observation", workers=1)
    assert b.failed >= 1 and b.failed + len(b.replicates) == 10
    assert any("identify every fixed effect" in msg for _, msg in b.failures)


@pytest.mark.parametrize("laplace", ["lme4", "exact"])
def test_the_drawn_random_effects_have_the_fits_sds(laplace, monkeypatch):
    """draw_response's random effects are the fit's: b = re_sigma Lambda z, with
    re_sigma = sigma for lme4's Gamma (its Lambda is relative to sigma) and 1 for the
    exact Laplace's.  (lme4's Gamma drew at Lambda z, the SD 0.51 for a fit that
    reports 0.30.)  The family's draw is replaced by mu, so log mu - X beta is Z b."""
    d = pd.read_csv("tests/data/gamma_1e3.csv")
    res = xlglmm.glmer("y ~ x + (1|g)", d, "gamma", link="log", laplace=laplace)
    model = res.model
    monkeypatch.setattr(type(model.family), "simulate",
                        lambda self, mu, wt, rng, dispersion=1.0: mu)
    beta = res.fe_params.to_numpy()
    y = B.draw_response(model, beta, res.theta, res.sigma, np.random.default_rng(3))
    b_rows = np.log(y) - model.design.offset - model.design.X @ beta
    t = model.design.re_terms[0]
    z = np.random.default_rng(3).standard_normal((t.nlevels, 1))[:, 0]
    sd = float(res.varcorr.loc[0, "sdcor"])
    assert np.allclose(b_rows, sd * z[t.codes], rtol=1e-10, atol=1e-12)
