"""Profiles of every parameter (issue 14): correlated terms, linear mixed models (REML
and ML), negative binomial fits with theta estimated, Gamma -- against lme4's
``confint(method = "profile")`` where lme4 gives one (tests/data/profile_ci.json, by
tests/data/scripts/profile_ci.R), against the profile's own sanity where lme4 stops
or refuses (recorded in the same file)."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

import xlglmm
from refs import DATA, fit, load_frame, manifest
from xlglmm.engine.profile import REML_NOTE, profile

REFERENCE = json.loads((DATA / "profile_ci.json").read_text())
MODELS = manifest()
OTHERS = manifest("models_negbin_lmm.json")
LIMIT_IN_WIDTH = 2e-3       # lme4 agrees within 0.01%..0.1% here; the bar is 1%


def fitted(name):
    if name == "pois_slope_cor":
        return xlglmm.glmer("y ~ x + (x|g)", pd.read_csv(DATA / "pois_slope_cor.csv"),
                            "poisson")
    if name in MODELS:
        return fit(MODELS[name])[0]
    spec = OTHERS[name]
    if spec.get("lmm"):
        return xlglmm.lmer(spec["formula"], load_frame(spec), REML=spec["REML"])
    return xlglmm.glmer(spec["formula"], load_frame(spec), spec["family"], laplace="lme4")


def ours(lme4_name: str) -> str:
    """lme4 names a correlation by its term's columns the other way round."""
    m = re.fullmatch(r"cor_(.+)\.(\(Intercept\)|[^.]+)\|(.+)", lme4_name)
    return f"cor_{m.group(2)}.{m.group(1)}|{m.group(3)}" if m else lme4_name


def assert_equal_to_lme4(ci, ref):
    assert list(ci.index) == [ours(n) for n in ref["names"]]
    for k, (label, row) in enumerate(ci.iterrows()):
        width = ref["upper"][k] - ref["lower"][k]
        assert abs(row.lower - ref["lower"][k]) <= LIMIT_IN_WIDTH * width, label
        assert abs(row.upper - ref["upper"][k]) <= LIMIT_IN_WIDTH * width, label


@pytest.mark.parametrize("name", ["sleep_reml", "sleep_ml", "penicillin_reml",
                                  "pois_slope_cor"])
def test_every_parameter_as_lme4_profiles_it(name):
    """SDs, correlations, sigma and fixed effects; REML fits profiled on the
    likelihood of their ML refit, as lme4 does, and say so."""
    res = fitted(name)
    ci = res.conf_int(method="profile")
    assert_equal_to_lme4(ci, REFERENCE[name])
    expected_note = REML_NOTE if REFERENCE[name]["REML"] else ""
    assert (ci.note == expected_note).all()


def test_a_reml_fit_is_profiled_at_its_ml_estimates():
    """The traces of the REML fit are those of the ML fit: same estimates (the ML
    ones: the REML SD of the intercept is larger), same intervals."""
    reml, ml = fitted("sleep_reml"), fitted("sleep_ml")
    p_reml, p_ml = reml.profile(), ml.profile()
    for name, tr in p_ml.traces.items():
        assert p_reml.traces[name].estimate == pytest.approx(tr.estimate, rel=1e-5)
    sd = p_ml.traces["sd_(Intercept)|Subject"]
    ml_sd = ml.varcorr.sdcor.iloc[0]
    assert sd.estimate == pytest.approx(ml_sd, rel=1e-5)
    assert reml.varcorr.sdcor.iloc[0] > ml_sd * 1.02
    assert p_ml.traces["sigma"].estimate == pytest.approx(ml.sigma, rel=1e-6)
    assert p_ml.traces["Days"].estimate == pytest.approx(ml.fe_params["Days"], rel=1e-6)


def test_negative_binomial_theta_and_the_others():
    """theta's own profile (each point a fit with theta held) equals R's, from glmer
    fits at held theta; with theta held at its estimate the others equal lme4's
    confint on the glmer.nb fit; with theta re-estimated at each point (the
    default: their profile likelihood) they are at least as wide."""
    ref = REFERENCE["grouse_nb"]
    res = fitted("grouse_nb")
    est = res.conf_int(method="profile")
    theta = ref["theta_profile"]
    width = theta["upper"] - theta["lower"]
    assert abs(est.loc["nb_theta", "lower"] - theta["lower"]) <= LIMIT_IN_WIDTH * width
    assert abs(est.loc["nb_theta", "upper"] - theta["upper"]) <= LIMIT_IN_WIDTH * width
    held = res.profile(nb_theta="fixed").conf_int()
    assert_equal_to_lme4(held.drop(index="nb_theta"), ref)
    assert held.drop(index="nb_theta").note.str.contains("held at its estimate").all()
    assert est.note.eq("").all()
    others = held.index.drop("nb_theta")
    slack = 1e-4 * (held.upper - held.lower)[others]
    assert (est.lower[others] <= held.lower[others] + slack).all()
    assert (est.upper[others] >= held.upper[others] - slack).all()
    # the year effects move with theta: their intervals are visibly wider
    assert (est.upper - est.lower)["YEAR96"] > 1.003 * (held.upper - held.lower)["YEAR96"]


def sane(prof):
    """Each limit finite, the estimate inside its interval, zeta increasing along
    the value (a profile that met a lower deviance would say so in a note)."""
    ci = prof.conf_int()
    for name, tr in prof.traces.items():
        lo, hi = ci.loc[name, "lower"], ci.loc[name, "upper"]
        assert np.isfinite(lo) and np.isfinite(hi) and lo < tr.estimate < hi, name
        assert np.all(np.diff(tr.zeta) > 0), name
        assert not np.isfinite(tr.lower_found), name
    return ci


def test_where_lme4_stops_the_profile_is_still_sane():
    """bin_slope_1e4: lme4 stops ("profiling detected new, lower deviance"); ours
    walks the correlation and a fixed effect to the end."""
    assert "lower deviance" in REFERENCE["bin_slope_1e4"]["error"]
    res = fitted("bin_slope_1e4")
    ci = sane(res.profile(["cor_(Intercept).x|g", "x"]))
    assert ci.loc["x"].lower < res.fe_params["x"] < ci.loc["x"].upper
    assert (ci.note == "").all()


def test_gamma_is_profiled_with_the_dispersion_plugged_in():
    """lme4 refuses Gamma GLMMs; ours profiles theta and beta over lme4's own
    deviance (the dispersion plugged in at each point), and says so."""
    assert "scale parameters" in REFERENCE["gamma_log"]["error"]
    res = fitted("gamma_log")
    prof = res.profile()
    ci = sane(prof)
    # the SD as the block and varcorr show it, sigma * theta, sigma held
    sd = res.varcorr.set_index("grp").loc["g", "sdcor"]
    assert prof.traces["sd_(Intercept)|g"].estimate == pytest.approx(sd, rel=1e-12)
    assert sd == pytest.approx(res.sigma * res.theta[0], rel=1e-12)
    assert ci.note.str.contains("dispersion is plugged in").all()
    assert "sigma held" in ci.loc["sd_(Intercept)|g", "note"]
    # a fixed effect's interval is close to Wald's for a well-determined effect
    wald = res.conf_int().loc["x"]
    se = res.fe_bse["x"]
    assert abs(ci.loc["x", "lower"] - wald.lower) < 0.2 * se
    assert abs(ci.loc["x", "upper"] - wald.upper) < 0.2 * se


def test_a_correlation_that_reaches_one_gets_limit_one():
    """Eight groups whose slopes follow their intercepts: the correlation's profile
    is inside the 95% level up to +1, so the upper limit is +1, with the note."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(8), 12)
    x = rng.normal(size=96)
    b0 = 0.6 * rng.normal(size=8)
    b1 = 0.5 * b0 + 0.02 * rng.normal(size=8)
    df = pd.DataFrame({"y": rng.poisson(np.exp(1.0 + 0.3 * x + b0[g] + b1[g] * x)),
                       "x": x, "g": g.astype(str)})
    res = xlglmm.glmer("y ~ x + (x|g)", df, "poisson")
    prof = res.profile(["cor_(Intercept).x|g"])
    tr = prof.traces["cor_(Intercept).x|g"]
    row = prof.conf_int().iloc[0]
    assert tr.at_upper and tr.values[-1] == 1.0 and row.upper == 1.0
    assert "up to +1" in row.note
    assert -1.0 < row.lower < tr.estimate


def test_each_walk_is_a_task_of_its_own():
    """A parameter's trace is the same alone as among all the others (each walk
    starts from the fit's warm starts): the walks can run anywhere, in any order."""
    res = fitted("pois_slope_cor")
    alone = profile(res.model, ["x"]).traces["x"]
    among = profile(res.model).traces["x"]
    assert np.array_equal(alone.values, among.values)
    assert np.array_equal(alone.zeta, among.zeta)


def test_an_nb_theta_at_the_end_of_its_search_gets_that_end():
    """The workplace data have no overdispersion beyond the random effects: theta
    runs to 1e6, its profile stays inside the level up there (upper limit 1e6, with
    the note), and the other parameters' intervals are the Poisson GLMM's (lme4's,
    safety_crossed)."""
    spec = OTHERS["safety_crossed_nb"]
    df = load_frame(spec)
    res = xlglmm.glmer(spec["formula"], df, "negbin", offset=np.log(df.employees))
    ci = res.conf_int(method="profile")
    theta = ci.loc["nb_theta"]
    assert theta.upper == pytest.approx(1e6, rel=1e-12) and "end of theta's search" in theta.note
    assert 1.0 < theta.lower < 1e3
    assert_equal_to_lme4(ci.drop(index="nb_theta"), REFERENCE["safety_crossed"])


def test_the_budget_reaches_an_lmms_ml_refit_and_its_reduced_fits(monkeypatch):
    """A REML fit's profile refits it by ML, and each fixed effect's walk fits a
    reduced model: both under what is left of the profile's time budget."""
    from xlglmm.engine.lmm import LinearMixedModel
    spec = manifest("models_negbin_lmm.json")["sleep_reml"]
    res = xlglmm.lmer(spec["formula"], load_frame(spec))
    budgets = []
    real_refit, real_init = LinearMixedModel.refit, LinearMixedModel.__init__

    def refit(self, *a, **kw):
        budgets.append(kw.get("time_budget"))
        return real_refit(self, *a, **kw)

    def init(self, *a, **kw):
        budgets.append(kw.get("time_budget"))
        real_init(self, *a, **kw)
    monkeypatch.setattr(LinearMixedModel, "refit", refit)
    monkeypatch.setattr(LinearMixedModel, "__init__", init)
    profile(res.model, ["Days"], budget_seconds=100.0)
    assert len(budgets) > 3 and all(b is not None and 0 < b <= 100.0 for b in budgets)
