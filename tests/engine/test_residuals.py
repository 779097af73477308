"""Simulated responses (lme4's simulate) and DHARMa's scaled residuals with their
tests (issue 15): the residual written out by hand, reproducibility by seed, and
the tests' p-values: spread out under the true model, small for overdispersed
counts and for extra zeros."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import xlglmm
from refs import fit, manifest
from xlglmm.engine import bootstrap as B
from xlglmm.engine import residuals as R

MODELS = manifest()


@pytest.fixture(scope="module")
def safety():
    return fit(MODELS["safety_plant_laplace"])[0]


def counts_frame(seed: int, theta=None, extra_zeros: float = 0.0, groups: int = 30,
                 per_group: int = 10) -> pd.DataFrame:
    """Counts with a random intercept per group and a covariate: Poisson, NB2 with
    ``theta``, or Poisson with a share ``extra_zeros`` of rows set to 0."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.standard_normal(len(g))
    mu = np.exp(0.5 + 0.4 * x + 0.3 * rng.standard_normal(groups)[g])
    if theta is None:
        y = rng.poisson(mu)
    else:
        y = rng.negative_binomial(theta, theta / (theta + mu))
    y = np.where(rng.random(len(g)) < extra_zeros, 0, y)
    return pd.DataFrame({"y": y.astype(float), "x": x, "g": [f"g{i}" for i in g]})


def poisson_fit(df):
    return xlglmm.glmer("y ~ x + (1|g)", df, family="poisson")


def test_the_scaled_residual_written_out():
    """Row by row, as DHARMa's getQuantile (PIT) defines it: the share of
    simulations below y, or a uniform draw between the share below and the share
    at or below when y ties simulated values."""
    observed = np.array([2.0, 0.0, 5.0, 1.5])
    simulated = np.array([[1, 2, 2, 3, 0],
                          [0, 0, 1, 2, 0],
                          [1, 2, 3, 4, 4],
                          [1, 2, 1, 2, 1]], float)
    u = np.random.default_rng(3).uniform(size=4)
    expected = np.array([0.4 + u[0] * (0.8 - 0.4),     # below: 1, 0; equal: 2, 2
                         0.0 + u[1] * 0.6,              # three simulated zeros
                         1.0,                           # above every simulation
                         0.6])                          # no ties: the share below
    got = R.scaled_residuals(observed, simulated, np.random.default_rng(3))
    assert np.allclose(got, expected, rtol=0, atol=1e-15)


def test_simulate_is_the_bootstraps_draw_and_reproducible_per_column(safety):
    a = safety.simulate(4, seed=11)
    b = safety.simulate(2, seed=11)
    assert a.shape == (safety.nobs, 4) and list(a.columns) == ["sim_1", "sim_2", "sim_3",
                                                                "sim_4"]
    assert a.index.equals(safety.design.row_labels)
    assert np.array_equal(a.to_numpy()[:, :2], b.to_numpy())
    third = B.simulate_response(safety, np.random.default_rng(
        np.random.SeedSequence(11, spawn_key=(2,))))
    assert np.array_equal(a["sim_3"].to_numpy(), third)
    assert not np.array_equal(a["sim_1"].to_numpy(), safety.simulate(1, seed=12)["sim_1"])


def test_simulated_means_are_the_models_marginal_means(safety):
    """Over 2,000 simulations the mean count of the whole data set is the model's
    marginal mean E exp(eta + b) = exp(eta + sd^2 / 2) summed over rows, to its
    Monte Carlo error (a few percent: the plant effect is shared by many rows)."""
    sims = safety.simulate(2000, seed=5).to_numpy()
    sd = np.sqrt(next(iter(safety.variance_components.values())))
    eta = safety.predict(type="link", include_re=False).to_numpy()
    marginal = np.exp(eta + sd ** 2 / 2).sum()
    totals = sims.sum(axis=0)
    assert abs(totals.mean() / marginal - 1) < 4 * totals.std() / np.sqrt(2000) / marginal


def p_values_at_the_truth(sd: float, datasets: int = 200, nsim: int = 250) -> pd.DataFrame:
    """The four tests' p-values on ``datasets`` responses drawn from a known model
    (Poisson with a group intercept of SD ``sd``), each against ``nsim``
    simulations from the same model: no fitting, so the tests' own calibration."""
    rng = np.random.default_rng(17)
    g = np.repeat(np.arange(30), 10)
    eta = 0.5 + 0.4 * rng.standard_normal(len(g))

    def draw():
        return rng.poisson(np.exp(eta + sd * rng.standard_normal(30)[g])).astype(float)

    rows = []
    for _ in range(datasets):
        y = draw()
        sims = np.column_stack([draw() for _ in range(nsim)])
        r = R.scaled_residuals(y, sims, rng)
        sr = R.SimulatedResiduals(pd.Series(r), pd.DataFrame(sims), y, np.exp(eta), 0)
        rows.append(sr.tests()["p"])
    return pd.DataFrame(rows)


@pytest.mark.parametrize("sd, calibrated", [
    (0.0, ["uniformity (KS)", "dispersion", "zero-inflation"]),
    # rows of a group share its effect: the residuals are correlated, which the KS
    # test does not allow for (it rejects too often); the others compare whole data
    # sets with whole simulated data sets and stay calibrated
    (0.3, ["dispersion", "zero-inflation"])])
def test_the_tests_are_calibrated_at_the_true_model(sd, calibrated):
    """Over 200 data sets from the true model the p-values are uniform (a KS test
    on them: p > 0.01)."""
    p = p_values_at_the_truth(sd)
    for name in calibrated:
        assert stats.kstest(p[name], "uniform").pvalue > 0.01, (name, p[name].describe())


def test_the_tests_on_residuals_of_the_fitted_true_model_are_not_extreme():
    """Data drawn from the model it is fitted to: on five seeded data sets no test
    rejects at 1%, and the residuals cover (0, 1) evenly (each tenth holds 5-15%).
    (Fitted to the data they test, the p-values lean towards 1: over 40 such data
    sets the KS p-values' median was 0.76, not 0.5 -- the price of estimated
    parameters, as for the KS test with estimated parameters.)"""
    for seed in range(5):
        res = poisson_fit(counts_frame(seed))
        sr = res.simulated_residuals(250, seed=seed)
        assert (sr.residuals.between(0, 1)).all()
        shares = np.histogram(sr.residuals, bins=10, range=(0, 1))[0] / res.nobs
        assert shares.min() > 0.05 and shares.max() < 0.15, shares
        table = sr.tests()
        assert (table["p"] > 0.01).all(), table


def test_poisson_fitted_to_negative_binomial_counts_is_overdispersed():
    res = poisson_fit(counts_frame(1, theta=2.0))
    sr = res.simulated_residuals(250, seed=2)
    ratio, p = sr.dispersion()
    assert ratio > 1.3 and p < 0.05, (ratio, p)
    assert sr.uniformity()[1] < 0.05


def test_poisson_fitted_to_counts_with_extra_zeros_underpredicts_zeros():
    res = poisson_fit(counts_frame(2, extra_zeros=0.3))
    sr = res.simulated_residuals(250, seed=3)
    ratio, p = sr.zero_inflation()
    assert ratio > 1.2 and p < 0.05, (ratio, p)


def test_the_statistics_written_out(safety):
    """Dispersion and zero counts recomputed from the simulations by hand, the
    outlier count from the residuals."""
    sr = safety.simulated_residuals(40, seed=9)
    sims = sr.simulated.to_numpy()
    f = safety.predict(include_re=False).to_numpy()
    v = sims.var(ddof=1)
    spread = lambda x: np.var(x - f, ddof=1) / v
    t_sim = np.array([spread(c) for c in sims.T])
    t_obs = spread(safety.design.y)
    ratio, p = sr.dispersion()
    assert ratio == pytest.approx(t_obs / t_sim.mean(), rel=1e-12)
    assert p == min(1.0, 2 * min(np.mean(t_sim <= t_obs), np.mean(t_sim >= t_obs)))
    zeros = (sims == 0).sum(axis=0)
    assert sr.zero_inflation()[0] == pytest.approx((safety.design.y == 0).sum()
                                                   / zeros.mean(), rel=1e-12)
    r = sr.residuals.to_numpy()
    assert sr.outliers()[0] == ((r < 1 / 41) | (r > 40 / 41)).sum()


def test_an_outlier_is_a_response_beyond_every_simulation():
    df = counts_frame(4)
    df.loc[0, "y"] = 60.0
    sr = poisson_fit(df).simulated_residuals(100, seed=1)
    assert sr.residuals.iloc[0] == 1.0
    count, p = sr.outliers()
    assert count >= 1 and 0 <= p <= 1


@pytest.mark.parametrize("nsim, seed, message", [
    (0, 1, "nsim"), (2.5, 1, "nsim"), (True, 1, "nsim"), (R.MAX_NSIM + 1, 1, "nsim"),
    (5, -1, "seed"), (5, "1", "seed")])
def test_what_simulate_refuses(safety, nsim, seed, message):
    with pytest.raises(R.SimulationError, match=message):
        safety.simulate(nsim, seed)


def test_too_many_simulated_values_are_refused_before_drawing(safety, monkeypatch):
    monkeypatch.setattr(R, "MAX_VALUES", 1000)
    too_many = 1000 // safety.nobs + 1
    with pytest.raises(R.SimulationError, match="at most"):
        safety.simulated_residuals(too_many, seed=1)
