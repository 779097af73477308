"""The exact Laplace approximation (the default, ``laplace="exact"``) against glmmTMB
1.1.5 on every model of a family xlglmm fits (ten) (tests/data/glmmtmb, made by
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
MODELS = ["gamma_log", "gamma_log_600", "gamma_inverse", "gamma_slope", "grouse_nb",
          "safety_crossed_nb", "cbpp_probit", "cbpp_cloglog", "cbpp_laplace", "grouse_loc"]
#: references fitted to the first rows of their data set (gamma_log_600: where the first
#: dispersion search's quasi-Newton step proposed log phi = 7632, the cold review)
FIRST_ROWS = {"gamma_log_600": 600}


def spec_of(ref: dict) -> dict:
    formula = ref["formula"]
    spec = {"data": ref["data"], "family": FAMILY[ref["family"]], "link": ref["link"],
            "factors": FACTORS[ref["data"]], "laplace": "exact"}
    if ref["name"] in FIRST_ROWS:
        spec["first_rows"] = FIRST_ROWS[ref["name"]]
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


def test_conditional_sds_take_the_observed_information():
    """The random effects' conditional SDs of the exact Laplace's Gamma (log link)
    come from the observed information, as its determinant: per level
    1 / (sum_i y_i / (phi mu_i) + 1 / sd^2), not Fisher's n_l / phi (the cold review)."""
    ref = glmmtmb("gamma_log")
    res, df = fit(spec_of(ref))
    mu = res.fittedvalues.to_numpy()
    y = df.y.to_numpy()
    sd = float(res.varcorr.sdcor.iloc[0])
    info = np.bincount(df.g.cat.codes, weights=y / (res.dispersion * mu))
    want = 1.0 / np.sqrt(info + 1.0 / sd ** 2)
    got = res.random_effects_sd["g"].to_numpy().ravel()
    order = [list(df.g.cat.categories).index(k) for k in res.random_effects_sd["g"].index]
    np.testing.assert_allclose(got, want[order], rtol=1e-6)


def test_a_dispersion_given_is_held_and_not_counted():
    """Family('gamma', link, dispersion=phi): phi held (not estimated, not a parameter
    of the AIC), and the block says so."""
    import xlglmm
    from xlglmm.engine.family import Family
    ref = glmmtmb("gamma_log")
    spec = spec_of(ref)
    est, df = fit(spec)
    held = xlglmm.glmer(spec["formula"], df, Family("gamma", "log", dispersion=est.dispersion))
    assert held.dispersion is None and held.npar == est.npar - 1
    assert held.llf == pytest.approx(est.llf, abs=1e-6)
    assert held.likelihood == (f"exact Laplace (observed information; dispersion held at "
                               f"{est.dispersion:.6g})")
    other = xlglmm.glmer(spec["formula"], df, Family("gamma", "log", dispersion=0.5))
    assert other.llf < est.llf - 1 and other.sigma == pytest.approx(0.5 ** 0.5)
