"""The model object behind glmer and lmer (model.GeneralizedLinearMixedModel,
lmm.LinearMixedModel): its objectives as methods give the fit's numbers, refit(y)
is a fresh fit of the same design to a new response, and the negative binomial's
result is built once with theta's estimate in it."""
import math

import numpy as np
import pandas as pd
import pytest

import xlglmm
from refs import fit, load_frame, manifest
from xlglmm.engine.devfun import GlmmDeviance
from xlglmm.engine.negbin import ThetaEstimate

SPEC = manifest()["cbpp_laplace"]
LMM = manifest("models_negbin_lmm.json")


@pytest.fixture(scope="module")
def cbpp():
    return fit(SPEC)


def _cbpp_glmer(df, **kw):
    return xlglmm.glmer(SPEC["formula"], df, "binomial", weights=df["size"].to_numpy(float),
                        **kw)


def test_the_result_keeps_its_model(cbpp):
    res, _ = cbpp
    assert isinstance(res.model, xlglmm.GeneralizedLinearMixedModel)
    assert res.model.design is res.design and res.model.nAGQ == 1
    assert res.model.estimates.messages == res.messages
    assert res.model.devfun.budget is None


def test_deviance_method_is_minus_twice_the_loglik(cbpp):
    res, _ = cbpp
    beta = res.fe_params.to_numpy()
    assert res.model.deviance(res.theta, beta) == pytest.approx(-2 * res.llf, rel=1e-12)
    # away from the optimum it is larger
    assert res.model.deviance(res.theta * 1.2, beta) > -2 * res.llf + 1e-3


def test_profiled_deviance_is_stage_one_objective(cbpp):
    res, _ = cbpp
    s1 = res.model.stage1
    assert res.model.profiled_deviance(s1.theta) == pytest.approx(s1.deviance, rel=1e-8)
    # the profiled criterion (beta by PIRLS) is the nAGQ=0 fit's deviance
    res0, _ = fit(dict(SPEC, nAGQ=0))
    assert res0.model.profiled_deviance(res0.theta) == pytest.approx(-2 * res0.llf, rel=1e-8)


def test_agq_deviance_method():
    res, _ = fit(dict(SPEC, nAGQ=5))
    dev = res.model.deviance(res.theta, res.fe_params.to_numpy())
    assert dev == pytest.approx(-2 * res.llf, rel=1e-12)
    assert res.method == "AGQ(5)"


def test_conditional_modes_are_the_random_effects(cbpp):
    res, _ = cbpp
    b = res.model.conditional_modes(res.theta, res.fe_params.to_numpy())
    assert len(b) == 1 and b[0].shape == (15, 1)
    assert np.allclose(b[0][:, 0], res.random_effects["herd"].to_numpy(), rtol=1e-8,
                       atol=1e-12)


def _close_fits(a, b, llf_tol=1e-8, se_rtol=1e-5):
    assert a.llf == pytest.approx(b.llf, abs=llf_tol)
    assert np.allclose(a.theta, b.theta, atol=1e-5)
    assert np.allclose(a.fe_params, b.fe_params, atol=1e-5 * np.max(b.fe_bse))
    assert np.allclose(a.fe_bse, b.fe_bse, rtol=se_rtol)
    assert a.vcov_method == b.vcov_method and a.converged == b.converged


def test_refit_equals_a_fresh_fit_to_the_new_response(cbpp):
    res, df = cbpp
    rng = np.random.default_rng(7)
    size = df["size"].to_numpy()
    for _ in range(2):
        y = rng.binomial(size, res.fittedvalues.to_numpy()) / size
        again = res.model.refit(y)
        new = df.copy()
        new["prop"] = y
        fresh = _cbpp_glmer(new)
        _close_fits(again, fresh)
        assert again.model is not res.model and np.array_equal(again.design.y, y)
    assert np.array_equal(res.design.y, df["prop"].to_numpy())     # the fit is untouched


def test_refit_of_the_original_response_reproduces_the_fit(cbpp):
    res, _ = cbpp
    again = res.model.refit(res.design.y)
    _close_fits(again, res)
    # the warm start: stage 1 begins at the optimum
    assert np.array_equal(again.model.start_values.theta, res.model.optimum.theta)


def test_refit_settings_override_the_models(cbpp):
    """A bootstrap that needs no standard errors asks for the RX ones (no
    finite-difference Hessians): the same optimum, as a fresh fit with them."""
    res, df = cbpp
    rx = res.model.refit(res.design.y, se_method="rx")
    _close_fits(rx, _cbpp_glmer(df, se_method="rx"))
    assert rx.vcov_method == "RX" and res.model.se_method == "auto"
    assert rx.llf == pytest.approx(res.llf, abs=1e-8)
    with pytest.raises(xlglmm.ModelError):
        res.model.refit(res.design.y, se_method="bootstrap")


def test_refit_is_timed_like_a_fit(cbpp):
    res, _ = cbpp
    again = res.model.refit(res.design.y, se_method="rx")
    assert np.isfinite(again.seconds) and again.seconds > 0
    assert np.isfinite(again.compile_seconds)


def test_refit_refuses_to_fix_an_estimated_nb_theta():
    """An NB result's model is the GLMM at the estimated theta: refitting it would
    quietly fit another model (theta fixed, one parameter fewer), so it says so."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), 8)
    mu = np.exp(1.0 + rng.normal(0, 0.4, 12)[g])
    df = pd.DataFrame({"y": rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float),
                       "g": g.astype(str)})
    res = xlglmm.glmer("y ~ 1 + (1|g)", df, "negbin", se_method="rx")
    assert res.nb_theta is not None
    with pytest.raises(xlglmm.ModelError, match="theta"):
        res.model.refit(res.design.y)


def test_refit_refuses_a_response_that_does_not_fit_the_design(cbpp):
    res, _ = cbpp
    with pytest.raises(xlglmm.ModelError):
        res.model.refit(res.design.y[:-1])
    with pytest.raises(xlglmm.DesignError):
        res.model.refit(res.design.y + 2.0)        # not a proportion


def _all_numbers(res):
    return (res.llf, res.theta.tobytes(), res.fe_params.to_numpy().tobytes(),
            res.fe_bse.to_numpy().tobytes(), res.fittedvalues.to_numpy().tobytes(),
            res.model.devfun.evaluations)


@pytest.mark.parametrize("kind", ["glmm", "lmm"])
def test_refit_shares_the_design_structure_and_keeps_its_numbers(kind, cbpp, monkeypatch):
    """refit's deviance function is the fit's with the new response
    (GlmmDeviance.with_response): the sorted layout and the symbolic structure are
    the same objects, the numbers those of a deviance function built anew, and the
    original fit's own deviance function is left as it was."""
    if kind == "glmm":
        res, df = cbpp
        size = df["size"].to_numpy()
        y = np.random.default_rng(11).binomial(size, res.fittedvalues.to_numpy()) / size
    else:
        spec = LMM["sleep_reml"]
        res = xlglmm.lmer(spec["formula"], load_frame(spec))
        y = res.fittedvalues.to_numpy() + np.random.default_rng(5).normal(0, res.sigma, res.nobs)
    before = res.model.deviance(res.theta, res.fe_params.to_numpy()) if kind == "glmm" \
        else res.model.profiled_deviance(res.theta)
    again = res.model.refit(y)
    old, new = res.model.devfun, again.model.devfun
    assert new is not old
    for name in ("order", "inverse_order", "X", "offset", "pw", "group_ptr", "Z1",
                 "rest_cols", "_symbolic"):
        assert getattr(new, name) is getattr(old, name), name
    for with_beta in (True, False):
        assert new.symbolic(with_beta) is old.symbolic(with_beta)
        assert new.layout(with_beta).loc_ptr is old.layout(with_beta).loc_ptr
        assert new.layout(with_beta).A1 is new.A1 is not old.A1
        assert new.layout(with_beta).rest_vals is new.rest_vals is not old.rest_vals
    assert np.array_equal(new.unsorted(new.y), y) and new.design is again.model.design
    after = res.model.deviance(res.theta, res.fe_params.to_numpy()) if kind == "glmm" \
        else res.model.profiled_deviance(res.theta)
    assert after == before

    # the same refit with a deviance function built anew (the way refit used to)
    monkeypatch.setattr(GlmmDeviance, "with_response",
                        lambda dev, y, design: GlmmDeviance(design, dev.family))
    rebuilt = res.model.refit(y)
    assert rebuilt.model.devfun.order is not old.order
    assert _all_numbers(again) == _all_numbers(rebuilt)


@pytest.mark.parametrize("reml", [True, False])
def test_lmm_profiled_deviance_is_the_criterion(reml):
    spec = LMM["sleep_reml"]
    res = xlglmm.lmer(spec["formula"], load_frame(spec), REML=reml)
    assert isinstance(res.model, xlglmm.LinearMixedModel) and res.model.reml is reml
    crit = res.REMLcrit if reml else -2 * res.llf
    assert res.model.profiled_deviance(res.theta) == pytest.approx(crit, rel=1e-12)
    assert res.model.profiled_deviance(res.theta * 0.9) > crit


def test_lmm_refit_equals_a_fresh_fit():
    spec = LMM["sleep_reml"]
    df = load_frame(spec)
    res = xlglmm.lmer(spec["formula"], df)
    rng = np.random.default_rng(3)
    y = res.fittedvalues.to_numpy() + rng.normal(0.0, res.sigma, len(df))
    new = df.copy()
    new["Reaction"] = y
    fresh = xlglmm.lmer(spec["formula"], new)
    again = res.model.refit(y)
    _close_fits(again, fresh, llf_tol=1e-7)
    assert again.REMLcrit == pytest.approx(fresh.REMLcrit, abs=1e-7)
    same = res.model.refit(df["Reaction"].to_numpy())
    _close_fits(same, res, llf_tol=1e-7)


def test_negative_binomial_result_is_built_with_theta():
    spec = LMM["grouse_nb"]
    res = xlglmm.glmer(spec["formula"], load_frame(spec), "negbin")
    nb = res.model.estimates.nb
    assert isinstance(nb, ThetaEstimate)
    assert res.nb_theta == nb.theta == res.model.family.nb_theta
    assert math.isfinite(res.nb_theta_se) and res.nb_theta_se > 0
    lo, hi = res.nb_theta_ci
    assert lo < res.nb_theta < hi
    # 3 fixed effects (intercept and YEAR's two contrasts), 1 variance, theta: 5
    assert res.npar == 5 and res.df_resid == res.nobs - 5
    assert res.aic == pytest.approx(-2 * res.llf + 10, rel=1e-14)
    assert res.bic == pytest.approx(-2 * res.llf + math.log(res.nobs) * 5, rel=1e-14)
    assert res.method == "Laplace, NB theta by ML"
    assert res.poisson_fit.family.name == "poisson" and res.poisson_fit.poisson_fit is None
    assert res.messages == res.model.estimates.messages


def test_result_tables_computed_on_access_are_the_same_whenever_asked():
    """The result's tables a caller may never read (conditional SDs, VarCorr, ranef,
    intervals) are computed on first access: the same numbers after other
    evaluations of the model, which they leave where they were (the deviance
    function's theta, from which the next evaluation starts)."""
    df = load_frame(SPEC)
    first = _cbpp_glmer(df)
    eager = {a: getattr(first, a) for a in ("random_effects_sd", "random_effects", "varcorr",
                                            "fe_conf_int", "variance_components")}
    late = _cbpp_glmer(df)
    assert "random_effects_sd" not in vars(late)       # not computed yet
    dev, beta = late.model.devfun, late.fe_params.to_numpy()
    away = late.theta * 1.3
    late.model.deviance(away, beta)                     # the model is used meanwhile
    for a, v in eager.items():
        got = getattr(late, a)
        if isinstance(v, dict):
            assert v.keys() == got.keys()
            for k in v:
                np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(v[k]))
        else:
            pd.testing.assert_frame_equal(got, v, check_exact=True)
    np.testing.assert_array_equal(dev._theta_set, away)     # put back as it was
    assert late.random_effects_sd is late.random_effects_sd     # computed once
    assert float(late.random_effects_sd["herd"].min()) > 0.0


def test_an_lmm_restart_after_a_roundoff_stop_keeps_what_it_found():
    """lmm.restarted: two roundoff stops at one deviance are an optimum (converged,
    no message); a restart that went on keeps its own verdict (the evaluation
    limit is not erased) and the better point; two roundoff stops that disagree
    keep the roundoff message (not converged)."""
    from xlglmm.engine.lmm import restarted
    from xlglmm.engine.optimize import ROUNDOFF_LIMITED, OptResult
    rounding = "optimizer stopped at rounding limits"
    first = OptResult(np.array([1.0]), 100.0, 20, ROUNDOFF_LIMITED, rounding)
    same = OptResult(np.array([1.0 + 1e-9]), 100.0 - 1e-12, 5, ROUNDOFF_LIMITED, rounding)
    assert restarted(first, same).message == "" and restarted(first, same).fun == same.fun
    limit = OptResult(np.array([1.2]), 99.0, 500, 5, "iteration limit reached")
    assert restarted(first, limit) is limit
    normal = OptResult(np.array([1.1]), 99.5, 30, 4, "")
    assert restarted(first, normal) is normal
    lower = OptResult(np.array([1.3]), 98.0, 9, ROUNDOFF_LIMITED, rounding)
    out = restarted(first, lower)
    assert out.fun == 98.0 and out.message == rounding
