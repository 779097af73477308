"""The model checks (engine.checks) against R's performance 0.10.2 (insight 0.19.0,
lme4 1.1-31): tests/data/checks.json from tests/data/scripts/checks.R.

Two comparisons per model.  At lme4's optimum (its estimates, variance components and
fitted values, from the JSON, put through this package's formulas) the dispersion
test, R² and ICC equal performance's to 1e-6 relative: this checks the formulas.
At this package's own optimum the numbers differ from lme4's as much as the
estimates do (up to 2e-3 relative on these models, where both optimisers stop on a
flat deviance), so the tolerance there is a small multiple of that difference."""
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

import xlglmm
from xlglmm.engine import checks
from xlglmm.engine.checks import CheckError, RandomTerm
from xlglmm.engine.family import Family
from xlglmm import NegativeBinomial2

from refs import DATA, fit, load_frame, manifest

# performance's NA (no random variance, conditional R² or ICC for a zero variance)
REFS = json.loads((DATA / "checks.json").read_text(),
                  object_hook=lambda d: {k: math.nan if v is None else v for k, v in d.items()})
SPECS = {**manifest(), **manifest("models_negbin_lmm.json")}
RATE_MODELS = ["safety_crossed"]        # an offset: performance's mean count is a rate


def _fit(name):
    spec = SPECS[name]
    if spec.get("lmm"):
        return xlglmm.lmer(spec["formula"], load_frame(spec), REML=spec["REML"])
    return fit(spec)[0]


@pytest.fixture(scope="module")
def fits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the small-mean warning, tested below
        out = {}
        for name in REFS:
            res = out[name] = _fit(name)
            checks.variances(res)
        return out


def _at_lme4(res, ref, mean_count=None):
    """performance's quantities by this package's formulas at lme4's optimum;
    ``mean_count`` the mean a log-link count family's variance is taken at
    (default: performance's, exp of lme4's null-model intercept)."""
    fam = res.family
    if fam.has_theta:
        fam = NegativeBinomial2(ref["nb_theta"], fam.link)
    design = res.design
    covs = checks.term_covariances(design.re_terms, pd.DataFrame(ref["varcorr"]))
    terms = [RandomTerm(t.colnames, covs[t.name], t.nlevels == design.nobs)
             for t in design.re_terms]
    if mean_count is None and "null_intercept" in ref:
        mean_count = math.exp(ref["null_intercept"])
    dist = checks.link_scale_variance(fam, ref["sigma"], mean_count or math.nan)
    v = checks.decompose(design.X, design.x_names, ref["fixef"], terms, dist,
                         fam.is_gaussian, checks.zero_variance(design.re_terms, ref["theta"]))
    od = checks.pearson_test(design.y, np.asarray(ref["fitted"]), design.weights, fam,
                             ref["df_residual"])
    return v, od


@pytest.mark.parametrize("name", list(REFS))
def test_formulas_equal_performance_at_lme4_optimum(fits, name):
    res, ref = fits[name], REFS[name]
    v, od = _at_lme4(res, ref)
    for part in ("fixed", "random", "distribution", "dispersion"):
        assert getattr(v, part) == pytest.approx(ref["variances"][part], rel=1e-6, abs=1e-12,
                                                 nan_ok=True)
    assert dict(v.r2()) == pytest.approx(ref["r2"], rel=1e-6, nan_ok=True)
    assert dict(v.icc()) == pytest.approx(ref["icc"], rel=1e-6, nan_ok=True)
    if "overdispersion" in ref:
        assert dict(od) == pytest.approx(ref["overdispersion"], rel=1e-6)
    assert res.df_resid == ref["df_residual"]


@pytest.mark.parametrize("name", RATE_MODELS)
def test_offset_model_takes_the_mean_count_at_mean_exposure(fits, name):
    """performance's μ = exp(null intercept) is a rate per employee (0.02 on the
    workplace data): R² 0.059.  At the mean exposure (4.35 incidents per plant-month)
    R² is 0.53, the value the R script computes the same way."""
    res, ref = fits[name], REFS[name]
    rate = ref["rate_scale"]
    exposure = float(np.mean(np.exp(res.design.offset)))
    assert math.exp(ref["null_intercept"]) * exposure == pytest.approx(rate["mu"], rel=1e-12)
    v, _ = _at_lme4(res, ref, mean_count=rate["mu"])
    assert v.distribution == pytest.approx(rate["distribution"], rel=1e-6)
    assert dict(v.r2()) == pytest.approx(rate["r2"], rel=1e-6)
    assert dict(v.icc()) == pytest.approx(rate["icc"], rel=1e-6)


def _estimates_difference(res, ref) -> float:
    """The largest relative difference from lme4's of the fixed effects, theta and
    (log-link counts) the mean count from the null model's fit."""
    ours = np.r_[res.fe_params.to_numpy(), res.theta]
    theirs = np.r_[ref["fixef"], ref["theta"]]
    if "null_intercept" in ref:
        exposure = float(np.mean(np.exp(res.design.offset)))
        ours = np.r_[ours, checks.variances(res).mu]
        theirs = np.r_[theirs, math.exp(ref["null_intercept"]) * exposure]
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-3)))


@pytest.mark.parametrize("name", list(REFS))
def test_fit_checks_match_performance_within_the_estimates_precision(fits, name):
    res, ref = fits[name], REFS[name]
    rel = max(1e-6, 5 * _estimates_difference(res, ref))
    want = ref.get("rate_scale", ref)
    assert dict(res.r2()) == pytest.approx(want["r2"], rel=rel, nan_ok=True)
    assert dict(checks.icc(res)) == pytest.approx(want["icc"], rel=rel, nan_ok=True)
    if "overdispersion" in ref:
        od, want_od = res.check_overdispersion(), ref["overdispersion"]
        assert od["df"] == want_od["df"]
        assert od["chisq"] == pytest.approx(want_od["chisq"], rel=rel)
        assert od["ratio"] == pytest.approx(want_od["ratio"], rel=rel)
        # p from chi-squared: on the log scale its error is the chi-squared's, scaled
        assert math.log(od["p"]) == pytest.approx(math.log(want_od["p"]), rel=rel, abs=rel)


def test_issue_numbers(fits):
    """The numbers the issue quotes, as performance prints them (at lme4's optimum;
    this package's grouseticks optimum gives chi-squared 1072.02)."""
    _, od = _at_lme4(fits["safety_crossed"], REFS["safety_crossed"])
    assert (round(od["ratio"], 3), round(od["chisq"], 3), round(od["p"], 3)) == \
        (0.762, 118.839, 0.988)
    _, od = _at_lme4(fits["grouse_loc"], REFS["grouse_loc"])
    assert (round(od["ratio"], 3), round(od["chisq"], 2)) == (2.687, 1071.98)
    od = fits["safety_crossed"].check_overdispersion()
    assert (round(od["ratio"], 3), round(od["chisq"], 3), round(od["p"], 3)) == \
        (0.762, 118.839, 0.988)


def test_small_mean_count_warns():
    """Below a mean count of 6 the log-normal approximation is rough: said once."""
    res = _fit("grouse_loc")
    with pytest.warns(UserWarning, match="mean count is 2.03"):
        res.r2()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res.icc()                           # the decomposition is computed once


def test_zero_variance_leaves_no_conditional_r2(fits):
    """tiny_a's random intercept is estimated as zero (theta 0): performance then
    gives no conditional R² and no ICC, and a marginal R² without the random part."""
    res = fits["tiny_a"]
    assert checks.zero_variance(res.design.re_terms, res.theta)
    r2 = res.r2()
    assert math.isnan(r2["conditional"]) and r2["marginal"] > 0.4
    assert np.isnan(res.icc().to_numpy()).all()
    assert not checks.zero_variance(fits["sleep_reml"].design.re_terms,
                                    fits["sleep_reml"].theta)


def test_checks_refuse_models_they_do_not_apply_to(fits):
    with pytest.raises(CheckError, match="count .* and binomial"):
        fits["gamma_log"].check_overdispersion()
    with pytest.raises(CheckError, match="count .* and binomial"):
        checks.overdispersion(fits["sleep_reml"])
    df = pd.DataFrame({"y": [0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0],
                       "x": np.linspace(-1, 1, 12), "g": list("aabbccddeeff")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bern = xlglmm.glmer("y ~ x + (1|g)", df, "binomial")
    with pytest.raises(CheckError, match="more than one trial"):
        bern.check_overdispersion()
    with pytest.raises(CheckError, match="identity link"):
        checks.link_scale_variance(Family("poisson", "identity"), 1.0, 3.0)
    with pytest.raises(CheckError, match="binomial log link"):
        checks.link_scale_variance(Family("binomial", "log"), 1.0)
    assert issubclass(CheckError, ValueError)
