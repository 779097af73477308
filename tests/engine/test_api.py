"""The Python API: predictions, intervals, diagnostics, budgets, determinism."""
import numpy as np
import pandas as pd
import pytest

import xlglmm
from refs import DATA, load_frame, manifest


@pytest.fixture(scope="module")
def grouse():
    spec = manifest()["grouse_loc"]
    df = load_frame(spec)
    return xlglmm.glmer("TICKS ~ YEAR + (1|LOCATION)", df, family="poisson"), df


def test_predict_in_sample_equals_fitted(grouse):
    res, df = grouse
    assert np.allclose(res.predict(df), res.fittedvalues.to_numpy(), rtol=1e-10)
    assert np.allclose(res.predict(), res.fittedvalues)
    assert np.allclose(res.predict(df, type="link"), np.log(res.fittedvalues))


def test_unseen_levels_get_population_prediction(grouse):
    res, df = grouse
    new = pd.DataFrame({"YEAR": ["96", "96"], "LOCATION": ["1", "no-such-place"]})
    pr = res.predict(new, type="link")
    pop = res.predict(new, type="link", include_re=False)
    b1 = res.random_effects["LOCATION"]["1"]
    assert pr[0] == pytest.approx(pop[0] + b1)
    assert pr[1] == pytest.approx(pop[1])
    assert pop[1] == pytest.approx(res.fe_params["(Intercept)"] + res.fe_params["YEAR96"])


def test_conf_int_and_pvalues(grouse):
    res, _ = grouse
    ci90 = res.conf_int(0.10)
    assert np.allclose(ci90["upper"] - res.fe_params, 1.6448536 * res.fe_bse, rtol=1e-6)
    assert np.allclose(res.fe_conf_int["lower"], res.fe_params - 1.959964 * res.fe_bse, rtol=1e-5)
    with pytest.raises(ValueError):
        res.conf_int(1.5)


def test_deviance_residuals_square_to_unit_deviances(grouse):
    res, df = grouse
    d = res.resid("deviance").to_numpy()
    unit = res.family.dev_resids(df.TICKS.to_numpy(float), res.fittedvalues.to_numpy())
    assert np.allclose(d ** 2, unit)


def test_nagq_rules(grouse):
    _, df = grouse
    with pytest.raises(xlglmm.ModelError, match="one random-effects term on one grouping"):
        xlglmm.glmer("TICKS ~ YEAR + (1|LOCATION) + (1|BROOD)", df, nAGQ=5)
    with pytest.raises(xlglmm.ModelError, match="quadrature points per group"):
        xlglmm.glmer("TICKS ~ YEAR + (YEAR|LOCATION)", df, nAGQ=100)     # 100^3 x 403 rows
    with pytest.raises(xlglmm.ModelError, match="whole number"):
        xlglmm.glmer("TICKS ~ YEAR + (1|LOCATION)", df, nAGQ=2.5)


@pytest.mark.parametrize("name", ["tiny_a", "tiny_b", "tiny_c", "tiny_d"])
def test_singular_tiny_examples(name):
    spec = manifest()[name]
    df = load_frame(spec)
    res = xlglmm.glmer(spec["formula"], df, family="poisson")
    assert res.singular
    assert any("singular" in m for m in res.messages)
    assert res.converged


def test_time_budget_returns_flagged_fit():
    spec = manifest()["pois_1e4"]
    df = load_frame(spec)
    res = xlglmm.glmer(spec["formula"], df, family="poisson",
                       offset=np.log(df.exposure.to_numpy(float)), time_budget=0.05)
    assert not res.converged
    assert any("NOT converged" in m for m in res.messages)
    assert np.all(np.isfinite(res.fe_params))


def test_bit_identical_refits(grouse):
    _, df = grouse
    a = xlglmm.glmer("TICKS ~ YEAR + cHEIGHT + (1|LOCATION) + (1|BROOD)", df)
    b = xlglmm.glmer("TICKS ~ YEAR + cHEIGHT + (1|LOCATION) + (1|BROOD)", df)
    assert a.llf == b.llf
    assert np.array_equal(a.fe_params.to_numpy(), b.fe_params.to_numpy())
    assert np.array_equal(a.fe_bse.to_numpy(), b.fe_bse.to_numpy())


def test_gamma_reports_residual_scale():
    df = pd.read_csv(DATA / "gamma_1e3.csv")
    res = xlglmm.glmer("y ~ x + (1|g)", df, family="gamma", link="log", laplace="lme4")
    vc = res.varcorr
    assert vc.grp.iloc[-1] == "Residual"
    assert vc.sdcor.iloc[-1] == pytest.approx(res.sigma)
    # lme4 reports the random-effect SD as sigma * theta for Gamma GLMMs
    assert vc.sdcor.iloc[0] == pytest.approx(res.sigma * res.theta[0])
    assert res.npar == 4
    # the exact Laplace: the dispersion a parameter, sigma = sqrt(phi), theta the SD itself
    ex = xlglmm.glmer("y ~ x + (1|g)", df, family="gamma", link="log")
    vc = ex.varcorr
    assert vc.sdcor.iloc[-1] == pytest.approx(ex.sigma) == pytest.approx(ex.dispersion ** 0.5)
    assert vc.sdcor.iloc[0] == pytest.approx(ex.theta[0])
    assert ex.npar == 4 and ex.llf < res.llf - 30


def test_one_group_is_refused():
    df = pd.DataFrame({"y": [1, 2, 3.0], "x": [1, 2, 3.0], "g": ["a", "a", "a"]})
    with pytest.raises(xlglmm.ModelError, match="at least 2 groups"):
        xlglmm.glmer("y ~ x + (1|g)", df)


def test_family_objects_and_links():
    f = xlglmm.Family("binomial", "probit")
    assert f.link == "probit"
    with pytest.raises(ValueError, match="not available"):
        xlglmm.Family("poisson", "logit")
    with pytest.raises(ValueError, match="unknown family"):
        xlglmm.Family("weibull")
