"""xlglmm against lme4 1.1-31 on every reference model (shared set and extras).

Tolerances (as ../shared/reference/README.md): log-likelihood not below lme4's by
more than 1e-3; fixed effects within 1% of lme4's SE; SEs within 1%; random-effect
SDs within 2% (or 0.01).  Where xlglmm's optimum beats lme4's by more than 1e-3
(lme4 stopped short), estimates are held to 10% of an SE, SEs 5%, SDs 10%.
For nAGQ > 1 lme4's log-likelihood is on another scale: only estimates compared.
"""
import numpy as np
import pandas as pd
import pytest

from refs import expected, fit, manifest, sds_by_group

SHARED = manifest("models.json")
EXTRA = manifest("extra/models.json")
CASES = [(n, s, False) for n, s in SHARED.items()] + [(n, s, True) for n, s in EXTRA.items()]



@pytest.mark.parametrize("name,spec,extra", CASES, ids=[c[0] for c in CASES])
def test_matches_lme4(name, spec, extra):
    res, _ = fit(spec)
    exp = expected(name, extra)
    agq = spec.get("nAGQ", 1) > 1
    dll = res.llf - exp["logLik"]
    if not agq:
        assert dll >= -1e-3, f"logLik {res.llf} below lme4's {exp['logLik']}"
    better = (not agq) and dll > 1e-3
    tb, tse, tsd = (0.10, 0.05, 0.10) if better else (0.01, 0.01, 0.02)
    assert list(res.fe_params.index) == list(exp["fixef"].keys())
    if spec.get("loglik_only"):
        return
    rb = np.array(list(exp["fixef"].values()))
    rse = np.array(exp["se"])
    assert np.all(np.abs(res.fe_params.to_numpy() - rb) <= tb * rse)
    assert np.all(np.abs(res.fe_bse.to_numpy() - rse) <= tse * rse)
    mine = sds_by_group(res.varcorr.to_dict("records"))
    theirs = sds_by_group(exp["varcorr"])
    assert set(mine) == set(theirs)
    for g in theirs:
        for a, b in zip(mine[g], theirs[g]):
            assert abs(a - b) <= max(tsd * b, 0.01), (g, a, b)
    assert res.nobs == exp["nobs"]
    assert res.singular == exp["singular"]
    for g, k in exp["ngrps"].items():
        assert res.ngroups[g] == k


@pytest.mark.parametrize("name", ["safety_crossed", "grouse_slope", "cbpp_laplace",
                                  "gamma_log", "grouse_loc_index"])
def test_random_effects_match_lme4(name):
    """Conditional modes (BLUPs) and their conditional SDs, level by level."""
    res, _ = fit(SHARED[name])
    exp = expected(name)
    for block in exp["ranef"]:
        g = block["group"]
        ours = res.random_effects[g]
        ours_sd = res.random_effects_sd[g]
        if isinstance(ours, pd.Series):
            ours, ours_sd = ours.to_frame(), ours_sd.to_frame()
        vals = np.array(block["values"], float).reshape(len(block["levels"]), -1)
        csd = np.array(block["cond_sd"], float).reshape(len(block["levels"]), -1)
        assert list(ours.index) == block["levels"]
        tol = 0.10 if name == "grouse_slope" else 0.01   # lme4 stops short there (better optimum)
        assert np.all(np.abs(ours.to_numpy() - vals) <= tol * csd + 1e-6)
        assert np.allclose(ours_sd.to_numpy(), csd, rtol=0.02, atol=1e-6)


@pytest.mark.parametrize("name", ["safety_crossed", "cbpp_laplace", "gamma_log"])
def test_fitted_values_match_lme4(name):
    res, _ = fit(SHARED[name])
    exp = expected(name)
    head = res.fittedvalues.to_numpy()[:10]
    assert np.allclose(head, exp["fitted_head"], rtol=2e-3)


def test_aic_bic_deviance_consistent():
    res, _ = fit(SHARED["safety_crossed"])
    exp = expected("safety_crossed")
    assert res.aic == pytest.approx(exp["AIC"], abs=2e-3)
    assert res.bic == pytest.approx(exp["BIC"], abs=2e-3)
    assert res.deviance == pytest.approx(exp["deviance_summary"], abs=2e-3)
    assert res.df_resid == exp["df_resid"]
