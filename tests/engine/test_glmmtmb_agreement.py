"""The exact Laplace approximation (the default, ``laplace="exact"``) against glmmTMB
1.1.5 on every model of a family xlglmm fits (tests/data/glmmtmb, made by
tests/data/scripts/fit_glmmtmb.R): log-likelihood within 1e-3, fixed effects within 1%
of glmmTMB's SE, SEs, random-effect SDs and dispersion parameters within 2% (the
dispersion 1%), correlations within 0.02.

glmmTMB's fixed-effect covariance is the inverse Hessian over every parameter, the
dispersion's too; xlglmm's is conditional on the NB theta and Gamma dispersion (as
glmer.nb), which a GLM's orthogonality makes the same to well within 2% (0.4% at
most here).  Canonical links (cbpp_laplace, grouse_loc) are lme4's numbers too:
there the two approximations coincide."""
import numpy as np
import pytest

from refs import fit, glmmtmb

FACTORS = {"cbpp.csv": ["period", "herd"], "grouseticks.csv": ["YEAR", "LOCATION"],
           "workplace_safety.csv": ["plant", "month"], "gamma_1e3.csv": ["g"],
           "extra/gamma_inverse.csv": ["g"], "gamma_slope_sim.csv": ["f", "g"]}
FAMILY = {"Gamma": "gamma", "nbinom2": "negbin", "binomial": "binomial", "poisson": "poisson"}
MODELS = ["gamma_log", "gamma_inverse", "gamma_slope", "grouse_nb", "safety_crossed_nb",
          "cbpp_probit", "cbpp_cloglog", "cbpp_laplace", "grouse_loc"]


def spec_of(ref: dict) -> dict:
    formula = ref["formula"]
    spec = {"data": ref["data"], "family": FAMILY[ref["family"]], "link": ref["link"],
            "factors": FACTORS[ref["data"]], "laplace": "exact"}
    if "offset(log(employees))" in formula:
        formula = formula.replace(" + offset(log(employees))", "")
        spec["offset_log"] = "employees"
    spec["formula"] = formula
    return spec


def dispersion_of(res, ref):
    """(ours, glmmTMB's) value of the family parameter, on the scale each names it."""
    fam = ref["family"]
    if fam == "Gamma":
        return res.dispersion, ref["dispersion"]["phi"]
    if fam == "nbinom2":
        return res.nb_theta, ref["dispersion"]["sigma"]
    return None, None


@pytest.fixture(scope="module", params=MODELS)
def pair(request):
    ref = glmmtmb(request.param)
    res, _ = fit(spec_of(ref))
    return res, ref


def test_loglik(pair):
    res, ref = pair
    assert res.llf == pytest.approx(ref["logLik"], abs=1e-3)
    assert res.npar == ref["df"]


def test_fixed_effects_and_ses(pair):
    res, ref = pair
    assert list(res.fe_params.index) == ref["fixef_names"]
    se = np.array(ref["se"])
    b = np.array([ref["fixef"][k] for k in ref["fixef_names"]])
    assert np.all(np.abs(res.fe_params.to_numpy() - b) <= 0.01 * se)
    if ref["boundary"]:     # the NB theta at infinity: glmmTMB's SEs are BFGS's
        return
    assert np.all(np.abs(res.fe_bse.to_numpy() / se - 1) <= 0.02)


def test_random_effects_and_dispersion(pair):
    res, ref = pair
    vc = res.varcorr
    for block in ref["varcorr"]:
        rows = vc[(vc.grp == block["group"]) & vc.var2.isna()]
        assert list(rows.var1) == block["terms"]
        for ours, theirs in zip(rows.sdcor, block["sd"]):
            assert ours == pytest.approx(theirs, rel=0.02, abs=1e-3)
        k = len(block["terms"])
        for i in range(k):
            for j in range(i + 1, k):
                r = vc[(vc.grp == block["group"]) & (vc.var1 == block["terms"][i])
                       & (vc.var2 == block["terms"][j])]
                assert float(r.sdcor.iloc[0]) == pytest.approx(block["corr"][i][j], abs=0.02)
    ours, theirs = dispersion_of(res, ref)
    if ours is not None and not ref["boundary"]:
        assert ours == pytest.approx(theirs, rel=0.01)


def test_the_block_says_which_likelihood(pair):
    res, ref = pair
    if ref["family"] in ("Gamma", "nbinom2") or ref["link"] in ("probit", "cloglog"):
        assert res.likelihood.startswith("exact Laplace (observed information")
    else:
        assert "lme4's is the same" in res.likelihood
