"""Satterthwaite's degrees of freedom for linear mixed models (issue 14): lmerTest's
``summary(m, ddf = "Satterthwaite")`` on the reference LMMs
(tests/data/satterthwaite.json, made by tests/data/scripts/satterthwaite.R)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

import xlglmm
from refs import DATA, expected, load_frame, manifest
from xlglmm.engine.satterthwaite import satterthwaite_df

REFERENCE = json.loads((DATA / "satterthwaite.json").read_text())
SPECS = manifest("models_negbin_lmm.json")
SPECS["sleep_intercept"] = dict(SPECS["sleep_reml"], formula="Reaction ~ Days + (1|Subject)")


def fit(name):
    spec = SPECS[name]
    return xlglmm.lmer(spec["formula"], load_frame(spec), REML=spec.get("REML", True))


@pytest.mark.parametrize("name", ["sleep_reml", "sleep_ml", "penicillin_reml",
                                  "dyestuff_reml"])
def test_the_method_gives_lmertests_df_at_lmes_estimates(name):
    """At lme4's own (theta, sigma) -- apart from where two optimizers stop -- the
    df equal lmerTest's to 1e-4 relative (both differentiate numerically)."""
    e, ref = expected(name), REFERENCE[name]
    df = satterthwaite_df(fit(name), e["theta"], e["sigma"])
    assert np.allclose(df, ref["df"], rtol=1e-4, atol=0)
    p = 2 * stats.t.sf(np.abs(ref["t"]), df)        # lmerTest's t, these df
    assert np.allclose(p, ref["p"], rtol=1e-3, atol=0)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_t_tests_agree_with_lmertest(name):
    """At this fit's estimates: df within 5e-4 relative of lmerTest's (Penicillin's
    optimum is as good as lme4's -- REML criteria 8.5e-9 apart -- but 1e-4 away in
    theta along a flat ridge, and the df follow theta), p within 0.5% (a small tail
    probability moves by ~10x the df's relative change)."""
    ref = REFERENCE[name]
    tab = fit(name).t_tests()
    assert list(tab.index) == ref["terms"]
    assert np.allclose(tab["df"], ref["df"], rtol=5e-4, atol=0)
    assert np.allclose(tab["estimate"], ref["estimate"], rtol=1e-5)
    assert np.allclose(tab["p"], ref["p"], rtol=5e-3, atol=0)


def test_the_normal_approximation_is_kept_as_the_other_choice():
    res = fit("sleep_reml")
    normal = res.t_tests(ddf="z")
    assert np.all(np.isinf(normal["df"]))
    assert np.allclose(normal["p"], res.fe_pvalues)
    satt = res.t_tests()
    assert np.all(satt["p"] > normal["p"])          # t with 17 df has heavier tails
    assert satt.equals(res.t_tests())               # every point solved from the same start
    with pytest.raises(ValueError, match="ddf"):
        res.t_tests(ddf="Kenward-Roger")
