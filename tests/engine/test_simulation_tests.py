"""The simulation tests calibrated by refits (engine.simulation_tests) piece by
piece: the log densities they count zeros with and the conditional CDF bounds of the
quantile residuals against scipy's, the randomised quantile residuals and KS
distances against a written-out version, the rank p-value, what one data set
contributes against numpy's formulas, and the test table's rows for each kind of
model.  Their calibration (uniform p-values under the model, power against NB2 counts
and extra zeros) is tests/engine/test_check_calibration.py."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import xlglmm
from refs import fit, manifest
from xlglmm.engine import simulation_tests as S
from xlglmm.engine.family import Family
from xlglmm.workbook.templates import dataset

MODELS = manifest()
MU = np.array([0.3, 1.0, 2.5, 7.0, 20.0])


# ---- Family.log_density against scipy ---------------------------------------------------

def test_poisson_log_density_is_scipy_pmf():
    y = np.array([0.0, 1.0, 3.0, 7.0, 25.0])
    got = Family("poisson").log_density(y, MU)
    np.testing.assert_allclose(got, stats.poisson.logpmf(y, MU), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.exp(Family("poisson").log_density(0.0, MU)), np.exp(-MU),
                               rtol=1e-13)


@pytest.mark.parametrize("theta", [0.5, 2.0, 40.0])
def test_negbin_log_density_is_scipy_nbinom(theta):
    """NB2 with mean mu and variance mu + mu^2/theta is scipy's nbinom(n = theta,
    p = theta / (theta + mu))."""
    y = np.array([0.0, 2.0, 1.0, 11.0, 13.0])
    got = Family("negbin", nb_theta=theta).log_density(y, MU)
    want = stats.nbinom.logpmf(y, theta, theta / (theta + MU))
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


def test_binomial_log_density_is_scipy_pmf_of_the_successes():
    """A binomial response is the proportion of ``wt`` trials: its density is the
    binomial pmf of y * wt successes, with the binomial coefficient."""
    trials = np.array([1.0, 5.0, 12.0, 3.0, 30.0])
    successes = np.array([1.0, 0.0, 7.0, 3.0, 4.0])
    p = np.array([0.6, 0.2, 0.5, 0.9, 0.05])
    got = Family("binomial").log_density(successes / trials, p, trials)
    np.testing.assert_allclose(got, stats.binom.logpmf(successes, trials, p), rtol=1e-11)
    np.testing.assert_allclose(np.exp(Family("binomial").log_density(0.0, p, trials)),
                               (1 - p) ** trials, rtol=1e-12)


@pytest.mark.parametrize("phi", [0.1, 1.0, 3.0])
def test_gamma_log_density_is_scipy_gamma_with_shape_one_over_phi(phi):
    y = np.array([0.2, 1.1, 2.0, 9.0, 15.0])
    got = Family("Gamma", "log").log_density(y, MU, dispersion=phi)
    want = stats.gamma.logpdf(y, 1.0 / phi, scale=MU * phi)
    np.testing.assert_allclose(got, want, rtol=1e-11)


def test_gaussian_log_density_is_scipy_norm_with_variance_phi_over_wt():
    y = np.array([0.2, -1.1, 2.0, 9.0, 15.0])
    wt = np.array([1.0, 2.0, 0.5, 1.0, 4.0])
    got = Family("gaussian").log_density(y, MU, wt, dispersion=2.5)
    np.testing.assert_allclose(got, stats.norm.logpdf(y, MU, np.sqrt(2.5 / wt)), rtol=1e-12)


# ---- quantile residuals, KS distances, rank p-values ---------------------------------------

def test_cdf_bounds_are_scipys_for_every_family():
    y = np.array([0.0, 1.0, 3.0, 6.0, 18.0])
    lo, hi = Family("poisson").cdf_bounds(y, MU, 1.0)
    np.testing.assert_allclose(lo, stats.poisson.cdf(y - 1, MU), rtol=1e-13)
    np.testing.assert_allclose(hi, stats.poisson.cdf(y, MU), rtol=1e-13)
    th = 2.5
    lo, hi = Family("negbin", nb_theta=th).cdf_bounds(y, MU, 1.0)
    np.testing.assert_allclose(hi, stats.nbinom.cdf(y, th, th / (th + MU)), rtol=1e-13)
    np.testing.assert_allclose(lo, stats.nbinom.cdf(y - 1, th, th / (th + MU)), rtol=1e-13)
    trials = np.array([1.0, 4.0, 10.0, 10.0, 30.0])
    k = np.array([1.0, 0.0, 3.0, 10.0, 12.0])
    p = np.array([0.2, 0.4, 0.5, 0.7, 0.3])
    lo, hi = Family("binomial").cdf_bounds(k / trials, p, trials)
    np.testing.assert_allclose(lo, stats.binom.cdf(k - 1, trials, p), rtol=1e-13)
    np.testing.assert_allclose(hi, stats.binom.cdf(k, trials, p), rtol=1e-13)
    wt = np.array([1.0, 2.0, 0.5, 1.0, 4.0])
    lo, hi = Family("gamma", "log").cdf_bounds(y + 0.5, MU, wt, dispersion=0.4)
    shape = wt / 0.4
    np.testing.assert_allclose(hi, stats.gamma.cdf(y + 0.5, shape, scale=MU / shape), rtol=1e-12)
    np.testing.assert_array_equal(lo, hi)
    lo, hi = Family("gaussian").cdf_bounds(y, MU, wt, dispersion=2.5)
    np.testing.assert_allclose(hi, stats.norm.cdf(y, MU, np.sqrt(2.5 / wt)), rtol=1e-12)
    np.testing.assert_array_equal(lo, hi)


def test_quantile_residuals_draw_between_the_bounds():
    rng = np.random.default_rng(5)
    lower = rng.uniform(0, 0.5, (6, 9))
    upper = lower + rng.uniform(0, 0.5, (6, 9))
    upper[:, :3] = lower[:, :3]                      # continuous rows: the bound itself
    got = S.quantile_residuals(lower, upper, np.random.default_rng(11))
    draws = np.random.default_rng(11).uniform(lower, upper)
    want = np.where(lower < upper, draws, upper)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[:, :3], lower[:, :3])
    assert ((lower <= got) & (got <= upper)).all()


def test_ks_distances_are_scipys_statistic():
    u = np.random.default_rng(3).beta(1.3, 1.0, (7, 40))
    want = [stats.kstest(row, "uniform").statistic for row in u]
    np.testing.assert_allclose(S.ks_distances(u), want, rtol=1e-14)


def test_rank_p_one_and_two_sided():
    assert S.rank_p([3, 1, 2, 4, 5], two_sided=False) == pytest.approx(3 / 5)
    assert S.rank_p([3, 1, 2, 4, 5], two_sided=True) == 1.0           # 2 x 3/5, capped
    assert S.rank_p([10, 1, 2, 3], two_sided=False) == pytest.approx(1 / 4)
    assert S.rank_p([10, 1, 2, 3], two_sided=True) == pytest.approx(2 / 4)
    assert S.rank_p([0, 1, 2, 3], two_sided=False) == 1.0
    assert S.rank_p([0, 1, 2, 3], two_sided=True) == pytest.approx(2 / 4)
    assert S.rank_p([2, 2, 2, 1], two_sided=False) == pytest.approx(3 / 4)  # ties count


def test_rank_p_of_a_statistic_that_is_not_a_number():
    """No p-value when the observed statistic is NaN (the zeros of a model that
    expects none); NaN refits are left out of the ranks."""
    assert np.isnan(S.rank_p([np.nan, 1.0, 2.0], two_sided=True))
    assert S.rank_p([2.0, np.nan, 1.0, 3.0], two_sided=False) == pytest.approx(2 / 3)


@pytest.mark.parametrize("two_sided", [False, True])
def test_rank_p_is_never_zero_and_exactly_uniform_over_the_ranks(two_sided):
    """The observed value at each of the n ranks among n distinct values: the
    one-sided p-values are exactly 1/n, 2/n, ..., 1, so P(p <= k/n) = k/n; the smallest
    possible is 1/n (two-sided 2/n), never 0."""
    n = 20
    others = np.arange(1, n) + 0.5
    p = np.array([S.rank_p(np.concatenate([[r], others]), two_sided) for r in range(1, n + 1)])
    assert p.min() == pytest.approx((2 if two_sided else 1) / n)
    if not two_sided:
        np.testing.assert_allclose(np.sort(p), np.arange(1, n + 1) / n)
    else:   # twice the smaller tail: 2/n, 4/n, ... from each end
        assert np.count_nonzero(p <= 0.1 + 1e-12) == 2


# ---- what one data set contributes ------------------------------------------------------

@pytest.fixture(scope="module")
def safety():
    return fit(MODELS["safety_crossed"])[0]


@pytest.fixture(scope="module")
def cbpp():
    return fit(MODELS["cbpp_laplace"])[0]


def test_data_set_statistics_of_a_poisson_fit(safety):
    y = safety.design.y
    mu = safety.fittedvalues.to_numpy()
    got = S.data_set_statistics(safety).to_numpy()
    n = len(y)
    assert got.shape == (2 * n + 3,)
    np.testing.assert_allclose(got[:n], stats.poisson.cdf(y - 1, mu), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got[n:2 * n], stats.poisson.cdf(y, mu), rtol=1e-12)
    assert got[2 * n] == pytest.approx(np.sum((y - mu) ** 2 / mu), rel=1e-12)
    assert got[2 * n + 1] == pytest.approx(np.count_nonzero(y == 0) / np.sum(np.exp(-mu)),
                                           rel=1e-12)
    assert got[2 * n + 2] == pytest.approx(np.sum(np.exp(-mu)), rel=1e-12)


def test_data_set_statistics_of_binomial_proportions(cbpp):
    """Proportions of ``size`` trials: Pearson's chi-squared weighs each row by its
    trials, and a row is zero with probability (1 - p)^trials."""
    y, wt = cbpp.design.y, cbpp.design.weights
    p = cbpp.fittedvalues.to_numpy()
    got = S.data_set_statistics(cbpp).to_numpy()
    n = len(y)
    k = np.rint(y * wt)
    np.testing.assert_allclose(got[:n], stats.binom.cdf(k - 1, wt, p), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(got[n:2 * n], stats.binom.cdf(k, wt, p), rtol=1e-12)
    assert got[2 * n] == pytest.approx(np.sum(wt * (y - p) ** 2 / (p * (1 - p))), rel=1e-12)
    assert got[2 * n + 1] == pytest.approx(np.count_nonzero(y == 0) / np.sum((1 - p) ** wt),
                                           rel=1e-12)


def test_data_set_statistics_of_an_lmm_use_sigma(cbpp):
    res = xlglmm.lmer("Reaction ~ Days + (Days|Subject)", dataset("sleepstudy"))
    got = S.data_set_statistics(res).to_numpy()
    n = res.nobs
    want = stats.norm.cdf(res.design.y, res.fittedvalues.to_numpy(), res.sigma)
    np.testing.assert_allclose(got[:n], want, rtol=1e-12)
    np.testing.assert_array_equal(got[:n], got[n:2 * n])
    assert np.isnan(got[-3:]).all()


def test_dispersion_and_zeros_are_nan_where_they_say_nothing():
    g = dataset("grouseticks").assign(any=lambda d: (d.TICKS > 0).astype(float))
    res = xlglmm.glmer("any ~ YEAR + (1|LOCATION)", g, "binomial")
    got = S.data_set_statistics(res).to_numpy()
    assert np.isnan(got[-3:]).all() and np.isfinite(got[:-3]).all()
    assert not S.counts_like(res.family, res.design.weights)


# ---- the table of each kind of model -----------------------------------------------------

NSIM = 40


def _binary():
    # YEAR a factor, as lme4's example (numeric, some refits warn of convergence)
    g = dataset("grouseticks").assign(any=lambda d: (d.TICKS > 0).astype(float),
                                      YEAR=lambda d: d.YEAR.astype(str))
    return xlglmm.glmer("any ~ YEAR + (1|LOCATION)", g, "binomial")


KINDS = {
    "counts": lambda: fit(MODELS["safety_crossed"])[0],
    "binomial with trials": lambda: fit(MODELS["cbpp_laplace"])[0],
    "0/1 binomial": _binary,
    "Gaussian LMM": lambda: xlglmm.lmer("Reaction ~ Days + (Days|Subject)",
                                        dataset("sleepstudy")),
    "Gamma": lambda: fit(MODELS["gamma_log"])[0],
}
COUNTS_LIKE = {"counts", "binomial with trials"}


@pytest.mark.parametrize("kind", KINDS)
def test_the_table_of_each_kind_of_model(kind):
    res = KINDS[kind]()
    sim = S.simulation_tests(res, NSIM, seed=4, workers=1)
    want = ([S.UNIFORMITY, S.DISPERSION, S.ZEROS, S.OUTLIERS] if kind in COUNTS_LIKE
            else [S.UNIFORMITY, S.OUTLIERS])
    assert list(sim.table.index) == want
    assert list(sim.table.columns) == ["statistic", "expected", "p"]
    assert sim.refits + sim.failed == NSIM and sim.enough and sim.seed == 4
    t = sim.table
    # rank p-values on the grid of the refits used: k / (refits + 1), two-sided
    # 2k / (refits + 1) unless capped at 1
    two_sided = np.array([name in (S.DISPERSION, S.ZEROS) for name in t.index])
    steps = (sim.refits + 1) * t["p"].to_numpy() / np.where(two_sided, 2.0, 1.0)
    on_grid = np.isclose(steps, np.round(steps), rtol=0, atol=1e-9) | (t["p"].to_numpy() == 1)
    assert on_grid.all(), t
    assert ((t["p"] >= 1 / (sim.refits + 1)) & (t["p"] <= 1)).all()
    assert 0 < t.at[S.UNIFORMITY, "statistic"] < 1
    assert t.at[S.OUTLIERS, "statistic"] == int(t.at[S.OUTLIERS, "statistic"])
    y = res.design.y
    assert sim.observed_zeros == np.count_nonzero(y == 0)
    if kind in COUNTS_LIKE:
        assert (t.loc[[S.DISPERSION, S.ZEROS], "expected"] == 1.0).all()
        assert sim.expected_zeros == pytest.approx(np.sum(np.exp(res.family.log_density(
            0.0, res.fittedvalues.to_numpy(), res.design.weights))), rel=1e-12)
    else:
        assert np.isnan(sim.expected_zeros)


def test_the_request_is_checked_before_any_refit(safety):
    for nsim in (0, -1, 2.5, True, "250", S.MAX_NSIM + 1):
        with pytest.raises(S.SimulationTestError, match="nsim must be a whole number"):
            S.simulation_tests(safety, nsim)
    for seed in (-1, 1.5, None, False):
        with pytest.raises(S.SimulationTestError, match="seed must be a whole number"):
            S.simulation_tests(safety, 10, seed)
    # 100,000 rows: memory binds before MAX_NSIM (nsim + 1 data sets x rows residuals)
    rows = 100_000
    biggest = S.MAX_VALUES // rows - 1
    assert biggest == 499 < S.MAX_NSIM
    S.check_request(rows, biggest, 0)
    with pytest.raises(S.SimulationTestError, match="ask for at most 499"):
        S.check_request(rows, biggest + 1, 0)
