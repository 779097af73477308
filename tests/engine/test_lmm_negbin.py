"""Linear mixed models (lmer, REML and ML) and negative binomial GLMMs (glmer.nb)
against lme4's references."""
import math

import numpy as np
import pandas as pd
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
    res = xlglmm.glmer(spec["formula"], load_frame(spec), "negbin", laplace="lme4")
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
    res = xlglmm.glmer(spec["formula"], df, "negbin", offset=np.log(df.employees),
                       laplace="lme4")
    exp = expected("safety_crossed_nb")
    assert res.llf >= exp["logLik"] - 1e-3
    assert res.nb_theta > 1e5
    assert any("reduces to the Poisson GLMM" in m for m in res.messages)


def test_fixed_theta_family():
    spec = SPECS["grouse_nb"]
    df = load_frame(spec)
    fixed = xlglmm.glmer(spec["formula"], df,
                         xlglmm.NegativeBinomial2(2.04924248441122, laplace="lme4"))
    est = xlglmm.glmer(spec["formula"], df, "negbin", laplace="lme4")
    assert fixed.llf == pytest.approx(est.llf, abs=1e-4)
    assert fixed.nb_theta == pytest.approx(2.04924248441122)
    with pytest.raises(xlglmm.ModelError):
        xlglmm.NegativeBinomial2(-1)


def test_hessian_column_is_the_finite_difference_hessians():
    # one column of optimize.hessian_fd's Hessian (the same steps and pair formula),
    # and the analytic derivatives of a smooth function with cross terms
    from xlglmm.engine.negbin import hessian_column
    from xlglmm.engine.optimize import hessian_fd
    A = np.array([[4.0, 1.0, 0.5, 0.0], [1.0, 3.0, 0.2, 0.1],
                  [0.5, 0.2, 2.0, 0.3], [0.0, 0.1, 0.3, 1.0]])

    def f(x):
        return 0.5 * x @ A @ x + math.exp(0.3 * x[0] * x[2]) + math.sin(x[1]) * x[3]
    x = np.array([0.3, -0.7, 1.1, 0.4])
    g, col = hessian_column(f, x, 2, f(x))
    g_fd, H_fd = hessian_fd(f, x)
    np.testing.assert_allclose(col, H_fd[:, 2], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g, g_fd, rtol=1e-12)
    e = math.exp(0.3 * x[0] * x[2])
    grad = A @ x + np.array([0.3 * x[2] * e, math.cos(x[1]) * x[3], 0.3 * x[0] * e,
                             math.sin(x[1])])
    h2 = A[:, 2] + np.array([0.3 * e + 0.09 * x[0] * x[2] * e, 0.0, 0.09 * x[0] ** 2 * e, 0.0])
    np.testing.assert_allclose(g, grad, rtol=1e-6)
    np.testing.assert_allclose(col, h2, rtol=1e-5, atol=1e-6)


def test_schur_se_is_the_inverse_hessians():
    # the curvature of the profile (others minimised out) is 1 / (H^-1)_kk; a
    # parameter held at its bound is left out of H
    from xlglmm.engine.negbin import schur_se
    rng = np.random.default_rng(5)
    M = rng.normal(size=(5, 5))
    H = M @ M.T + 5 * np.eye(5)
    assert schur_se(H, 2, np.ones(5, bool)) == pytest.approx(
        math.sqrt(2 * np.linalg.inv(H)[2, 2]), rel=1e-12)
    keep = [0, 1, 2, 4]
    free = np.array([True, True, True, False, True])
    assert schur_se(H, 2, free) == pytest.approx(
        math.sqrt(2 * np.linalg.inv(H[np.ix_(keep, keep)])[2, 2]), rel=1e-12)
    assert math.isnan(schur_se(-H, 2, free))


def test_joint_search_finds_the_profiles_maximum(monkeypatch):
    # theta inside the optimisation (the default) against the profile over log theta
    # by Brent, each point a full fit (the fallback): the same maximum, theta and
    # fixed effects; theta's SE from the joint Hessian against the profile's
    # second difference with steps of 0.05 in log theta (its truncation ~1e-4)
    from xlglmm.engine import negbin
    spec = SPECS["grouse_nb"]
    df = load_frame(spec)
    joint_found = []
    search = negbin.NegativeBinomialModel._search_joint

    def recorded(self, start):
        joint_found.append(search(self, start))
        return joint_found[-1]
    monkeypatch.setattr(negbin.NegativeBinomialModel, "_search_joint", recorded)
    joint = xlglmm.glmer(spec["formula"], df, "negbin")
    assert joint_found[0] is not None           # the joint search, not the fallback
    monkeypatch.setattr(negbin.NegativeBinomialModel, "_search_joint", lambda self, s: None)
    profile = xlglmm.glmer(spec["formula"], df, "negbin")
    assert joint.llf >= profile.llf - 1e-9
    assert joint.nb_theta == pytest.approx(profile.nb_theta, rel=1e-4)
    assert joint.nb_theta_se == pytest.approx(profile.nb_theta_se, rel=1e-3)
    se = profile.fe_bse.to_numpy()
    assert np.all(np.abs(joint.fe_params.to_numpy() - profile.fe_params.to_numpy()) / se < 1e-4)
    # the exact Laplace's covariance is marginal over theta where the joint Hessian is
    # known (the joint search), conditional on it after the profile's search (as
    # glmer.nb): glmmTMB's SEs are the former, within 0.4% of the latter here
    assert joint.vcov_method == "Hessian, joint with nb_theta"
    assert profile.vcov_method == "Hessian"
    np.testing.assert_allclose(joint.fe_bse, se, rtol=5e-3)
    assert not np.allclose(joint.fe_bse, se, rtol=1e-4)
    assert joint.messages == profile.messages and joint.npar == profile.npar


def test_glmer_refuses_a_normal_response_it_cannot_fit():
    """glmer's deviance has no Gaussian log-likelihood (it returned logLik 0 and a
    zero variance whatever the data): a normal response is lmer's, with one message."""
    from xlglmm.engine.fit import GAUSSIAN_GLMER_MESSAGE, ModelError
    r = np.random.default_rng(1)
    df = pd.DataFrame({"y": r.normal(size=60), "x": r.normal(size=60),
                       "g": r.integers(0, 6, 60).astype(str)})
    for link in (None, "log"):
        with pytest.raises(ModelError, match="fit it with lmer") as e:
            xlglmm.glmer("y ~ x + (1|g)", df, family="gaussian", link=link)
        assert str(e.value) == GAUSSIAN_GLMER_MESSAGE
    assert xlglmm.lmer("y ~ x + (1|g)", df).llf < 0.0


def test_a_start_fit_out_of_time_stops_the_theta_search_as_the_budget_does(monkeypatch):
    """The joint search's first fit (theta fixed at its start) may begin with too
    little of the budget left (BudgetExhausted): the search stops as at the budget,
    flagged NOT converged, instead of failing the whole fit (the cold review)."""
    from xlglmm.engine import negbin
    from xlglmm.engine.optimize import BudgetExhausted
    real = negbin.NegativeBinomialModel._fit_at
    calls = []

    def fit_at(self, theta, se_method, seconds, warm=None):
        calls.append(se_method)
        if len(calls) == 1:
            raise BudgetExhausted(0.01, 2.0)
        return real(self, theta, se_method, seconds, warm)

    monkeypatch.setattr(negbin.NegativeBinomialModel, "_fit_at", fit_at)
    r = np.random.default_rng(5)
    g = r.integers(0, 12, 300)
    mu = np.exp(1.0 + 0.5 * r.normal(size=12)[g])
    df = pd.DataFrame({"y": r.negative_binomial(2.0, 2.0 / (2.0 + mu)),
                       "g": [f"g{i}" for i in g]})
    res = xlglmm.glmer("y ~ 1 + (1|g)", df, family="negbin")
    assert len(calls) >= 2 and not res.converged
    assert any("time budget while estimating the negative binomial theta" in m
               for m in res.messages)
