"""Profile-likelihood confidence intervals (issue 14, first part): lme4's
``confint(method = "profile")`` on the reference GLMMs (tests/data/profile_ci.json,
made by tests/data/scripts/profile_ci.R), the boundary at an SD of 0, and the
profile's shape where the likelihood is quadratic."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import xlglmm
from refs import DATA, fit, manifest
from xlglmm.engine.profile import ProfileError

REFERENCE = json.loads((DATA / "profile_ci.json").read_text())
MODELS = manifest()


ORIGINAL = ("cbpp_laplace", "cbpp_agq25", "grouse_loc", "safety_plant_laplace",
            "safety_crossed")


@pytest.mark.parametrize("name", ORIGINAL)
def test_profile_intervals_equal_lme4s(name):
    """Each limit within 0.2% of the interval's width (the issue asks 1%)."""
    res, _ = fit(MODELS[name])
    ci = res.conf_int(method="profile")
    ref = REFERENCE[name]
    assert list(ci.index) == ref["names"]
    for k, (label, row) in enumerate(ci.iterrows()):
        lo, hi = ref["lower"][k], ref["upper"][k]
        width = hi - lo
        assert abs(row.lower - lo) <= 2e-3 * width, (label, row.lower, lo)
        assert abs(row.upper - hi) <= 2e-3 * width, (label, row.upper, hi)
        assert row.note == ""


def test_profile_is_the_wald_line_near_the_estimate():
    """zeta is (value - estimate) / SE to first order: near the estimate of a fixed
    effect the trace's slope is 1/SE, and the profile interval of a well-determined
    effect is within a fifth of an SE of Wald's (lme4: 0.08 and 0.12 SE here)."""
    res, _ = fit(MODELS["safety_plant_laplace"])
    tr = res.profile().traces["training"]
    se = res.fe_bse["training"]
    near = np.abs(tr.zeta) < 0.7
    slope = np.polyfit(tr.values[near], tr.zeta[near], 1)[0]
    assert slope * se == pytest.approx(1.0, rel=0.05)
    prof = res.conf_int(method="profile").loc["training"]
    wald = res.conf_int().loc["training"]
    assert abs(prof.lower - wald.lower) < 0.2 * se and abs(prof.upper - wald.upper) < 0.2 * se
    # a level beyond the walk (|zeta| <= 2.6, a 99% interval) has no limits, and says why
    beyond = res.profile().conf_int(1e-4).loc["training"]
    assert np.isnan(beyond.lower) and np.isnan(beyond.upper)
    assert beyond.note.startswith("the profile was walked to |zeta| = 2.6")


def test_an_sd_whose_profile_reaches_zero_gets_lower_limit_zero():
    """Groups that barely differ: the SD's profile is inside the 95% level down to 0,
    so the lower limit is 0 and the interval says why (lme4 warns or fails here)."""
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(6), 15)
    df = pd.DataFrame({"y": rng.poisson(np.exp(1.0 + 0.05 * rng.normal(size=6))[g]),
                       "g": g.astype(str)})
    res = xlglmm.glmer("y ~ 1 + (1|g)", df, "poisson")
    ci = res.conf_int(method="profile")
    sd = ci.loc["sd_(Intercept)|g"]
    assert sd.lower == 0.0 and "down to 0" in sd.note
    assert sd.upper > res.theta[0]
    tr = res.profile().traces["sd_(Intercept)|g"]
    assert tr.at_zero and tr.values[0] == 0.0


def test_profiles_refuse_what_they_cannot_do():
    res, _ = fit(MODELS["safety_crossed"])
    with pytest.raises(ProfileError, match="no parameter"):
        res.profile(["nope"])
    assert list(res.profile(["training"]).traces) == ["training"]
    assert list(res.profile("training").traces) == ["training"]
    with pytest.raises(ValueError, match="method"):
        res.conf_int(method="bootstrap")
    with pytest.raises(ProfileError, match="nb_theta"):
        res.profile(nb_theta="held")
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(10), 8)
    df = pd.DataFrame({"y": rng.poisson(3, 80).astype(float), "x": rng.normal(size=80),
                       "g": g.astype(str)})
    pirls_only = xlglmm.glmer("y ~ x + (1|g)", df, "poisson", nAGQ=0)
    with pytest.raises(ProfileError, match="nAGQ"):
        pirls_only.profile()


def test_a_profile_leaves_the_fit_as_it_was_and_repeats_itself():
    """The walk evaluates other parameters; afterwards the deviance function starts
    where it did, so a second profile gives the same numbers bit for bit, and one
    stopped by its budget says its intervals may be too narrow."""
    res, _ = fit(MODELS["safety_plant_laplace"])
    from xlglmm.engine.profile import profile
    p1 = profile(res.model)
    p2 = profile(res.model)
    for name in p1.traces:
        assert np.array_equal(p1.traces[name].zeta, p2.traces[name].zeta)
    short = profile(res.model, ["training"], budget_seconds=1e-9)
    assert short.traces["training"].timed_out
    assert "time budget" in short.conf_int().loc["training", "note"]
