"""The raw (unshrunk) estimate per level and its shrinkage (engine.shrinkage), and
the residual table of GLMM_RESID (residuals.residual_frame)."""
import numpy as np
import pytest
from scipy import stats

import xlglmm
from xlglmm.engine import residuals
from xlglmm.engine.shrinkage import shrinkage
from xlglmm.workbook.templates import dataset


@pytest.fixture(scope="module")
def sleep_intercept():
    return xlglmm.lmer("Reaction ~ Days + (1 | Subject)", dataset("sleepstudy"))


@pytest.fixture(scope="module")
def workplace():
    df = dataset("workplace_safety")
    return xlglmm.glmer("incidents ~ training + (1 | plant) + (1 | month)", df,
                        family="poisson", offset=np.log(df.employees))


def test_lmm_shrinkage_is_the_textbook_factor(sleep_intercept):
    # one random intercept: BLUP = raw x sigma_b^2 / (sigma_b^2 + sigma^2 / n_l)
    r = sleep_intercept
    table = shrinkage(r)["Subject"]
    s2 = r.sigma ** 2
    sb2 = (r.theta[0] * r.sigma) ** 2
    n = table["rows"].to_numpy()
    np.testing.assert_allclose(table["shrinkage"], (s2 / n) / (sb2 + s2 / n), rtol=1e-10)
    # the raw estimate is the level's mean residual of the population-level fit
    d = r.design
    resid = d.y - d.X @ r.fe_params.to_numpy()
    codes = d.re_terms[0].codes
    np.testing.assert_allclose(table["raw"], np.bincount(codes, resid) / np.bincount(codes),
                               rtol=1e-12)
    np.testing.assert_array_equal(table["rows"], np.bincount(codes))


def test_poisson_raw_is_observed_over_expected_minus_one(workplace):
    # the Poisson-log working residuals: sum(y - mu0) / sum(mu0) per level, with mu0
    # the fit without plant's effects (month's BLUPs kept)
    r = workplace
    table = r.shrinkage()["plant"]
    plant = next(t for t in r.design.re_terms if t.group == "plant")
    eta = r.predict(type="link").to_numpy()
    mu0 = np.exp(eta - r.random_effects["plant"].to_numpy()[plant.codes])
    y = r.design.y
    expect = np.bincount(plant.codes, y) / np.bincount(plant.codes, mu0) - 1.0
    np.testing.assert_allclose(table["raw"], expect, rtol=1e-10)
    np.testing.assert_allclose(table["blup"], r.random_effects["plant"], rtol=0, atol=0)
    np.testing.assert_allclose(table["shrinkage"], 1 - table["blup"] / table["raw"], rtol=1e-14)


def test_normal_scores_are_qqnorm():
    # R: qqnorm(c(3, 1, 2))$x = qnorm(ppoints(3))[rank]; ppoints' a = 3/8 for n <= 10
    v = np.array([3.0, 1.0, 2.0])
    p = (np.array([3, 1, 2]) - 0.375) / (3 + 1 - 0.75)
    np.testing.assert_allclose(residuals.normal_scores(v), stats.norm.ppf(p), rtol=1e-14)
    w = np.random.default_rng(1).normal(size=25)
    ranks = stats.rankdata(w)
    np.testing.assert_allclose(residuals.normal_scores(w), stats.norm.ppf((ranks - 0.5) / 25),
                               rtol=1e-14)


def test_residual_frame_holds_every_residual(workplace):
    r = workplace
    table = r.residuals_table(qq_of="pearson", nsim=50, seed=3)
    assert list(table.columns) == ["fitted", "observed", "response", "pearson", "deviance",
                                   "quantile", "qq"]
    np.testing.assert_array_equal(table["fitted"], r.fittedvalues)
    for kind in ("response", "pearson", "deviance"):
        np.testing.assert_array_equal(table[kind], r.resid(kind))
    np.testing.assert_array_equal(table["quantile"], r.resid("quantile", nsim=50, seed=3))
    np.testing.assert_array_equal(table["qq"], residuals.normal_scores(table["pearson"]))
    assert np.all((table["quantile"] >= 0) & (table["quantile"] <= 1))
    with pytest.raises(residuals.SimulationError, match="residual type"):
        r.residuals_table(qq_of="working")


def test_a_random_slope_stays_in_the_raw_intercept():
    """With (Days | Subject) the raw intercept is the level's mean residual after the
    fixed effects and the subject's own slope BLUP times Days: the intercept is
    compared with the intercept, not with intercept plus slope times mean(Days)."""
    r = xlglmm.lmer("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"))
    table = shrinkage(r)["Subject"]
    d = r.design
    term = d.re_terms[0]
    slope = r.random_effects["Subject"]["Days"].to_numpy()[term.codes]
    resid = d.y - d.X @ r.fe_params.to_numpy() - d.X[:, 1] * slope
    np.testing.assert_allclose(table["raw"], np.bincount(term.codes, resid)
                               / np.bincount(term.codes), rtol=1e-10)
    # the intercepts are shrunk by about what one random intercept's formula says
    assert 0.05 < table["shrinkage"].median() < 0.15
