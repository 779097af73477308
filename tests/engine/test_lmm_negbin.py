"""Linear mixed models (lmer, REML and ML) and negative binomial GLMMs (glmer.nb)
against lme4's references."""
import math

import numpy as np
import pytest

import xlglmm
from refs import expected, load_frame, manifest, sds_by_group

SPECS = manifest("models_negbin_lmm.json")


@pytest.mark.parametrize("name", ["sleep_reml", "sleep_ml", "penicillin_reml", "dyestuff_reml"])
def test_lmer_matches_lme4(name):
    spec = SPECS[name]
    res = xlglmm.lmer(spec["formula"], load_frame(spec), REML=spec["REML"])
    exp = expected(name)
    assert res.llf == pytest.approx(exp["logLik"], abs=1e-3)
    se = np.atleast_1d(exp["se"])
    assert np.allclose(res.fe_params, list(exp["fixef"].values()), atol=0.01 * se)
    assert np.allclose(res.fe_bse, se, rtol=0.01)
    assert res.sigma == pytest.approx(exp["sigma"], rel=0.01)
    mine, theirs = sds_by_group(res.varcorr.to_dict("records")), sds_by_group(exp["varcorr"])
    for g in theirs:
        assert np.allclose(mine[g], theirs[g], rtol=0.01)
    assert res.aic == pytest.approx(exp["AIC"], abs=2e-3)
    if spec["REML"]:
        assert res.REMLcrit == pytest.approx(exp["REMLcrit"], abs=2e-3)
        assert res.method == "REML"
    assert res.varcorr.grp.iloc[-1] == "Residual"


def test_lmm_icc_and_scale():
    spec = SPECS["dyestuff_reml"]
    res = xlglmm.lmer(spec["formula"], load_frame(spec))
    vb = res.variance_components["Batch"]
    assert res.scale == pytest.approx(res.sigma ** 2)
    assert res.icc_by_group["Batch"] == pytest.approx(vb / (vb + res.scale))
    assert 0.2 < res.icc_by_group["Batch"] < 0.8
    assert any("normal approximation" in m for m in res.messages)


def test_negbin_theta_estimated_as_glmer_nb():
    spec = SPECS["grouse_nb"]
    res = xlglmm.glmer(spec["formula"], load_frame(spec), "negbin")
    exp = expected("grouse_nb")
    assert res.llf >= exp["logLik"] - 1e-3
    assert res.nb_theta == pytest.approx(exp["nb_theta"], rel=0.01)
    lo, hi = res.nb_theta_ci
    assert lo < res.nb_theta < hi and res.nb_theta_se > 0
    assert np.allclose(res.fe_params, list(exp["fixef"].values()), atol=0.01 * np.array(exp["se"]))
    assert res.npar == 5 and res.aic == pytest.approx(exp["AIC"], abs=2e-3)


def test_negbin_poisson_limit_is_said():
    spec = SPECS["safety_crossed_nb"]
    df = load_frame(spec)
    res = xlglmm.glmer(spec["formula"], df, "negbin", offset=np.log(df.employees))
    exp = expected("safety_crossed_nb")
    assert res.llf >= exp["logLik"] - 1e-3
    assert res.nb_theta > 1e5
    assert any("reduces to the Poisson GLMM" in m for m in res.messages)


def test_fixed_theta_family():
    spec = SPECS["grouse_nb"]
    df = load_frame(spec)
    fixed = xlglmm.glmer(spec["formula"], df, xlglmm.NegativeBinomial2(2.04924248441122))
    est = xlglmm.glmer(spec["formula"], df, "negbin")
    assert fixed.llf == pytest.approx(est.llf, abs=1e-4)
    assert fixed.nb_theta == pytest.approx(2.04924248441122)
    with pytest.raises(xlglmm.ModelError):
        xlglmm.NegativeBinomial2(-1)
