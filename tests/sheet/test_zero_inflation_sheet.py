"""Zero inflation through the worksheet functions (issue 17's ``ziformula``): the
family words "zipoisson", "zinb", "zinb1" with an optional zero-inflation formula, the
fit block's zero-inflation section, GLMM_COMPARE's test of zero inflation, the new
pred_types, and every companion on a zero-inflated fit -- called with the values
xlwings hands a function (lists of rows, headers as text), checked against glmmTMB's
fits (tests/data/glmmtmb) and the Python API's results."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import xlglmm
from refs import DATA, data_file, glmmtmb
from sheetdata import block_row, block_value, column, columns, table
from xlglmm.sheet import models, udfs

ZI_SIM = "y ~ x + (1|g)"
GROUSE = "TICKS ~ factor(YEAR) + cHEIGHT + (1|LOCATION)"


@pytest.fixture(scope="module")
def zsim():
    return pd.read_csv(DATA / "glmmtmb" / "zinb_sim.csv")


@pytest.fixture(scope="module")
def grouse():
    df = pd.read_csv(data_file("grouseticks.csv"))
    df["cHEIGHT"] = df.HEIGHT - df.HEIGHT.mean()
    return df[["TICKS", "YEAR", "cHEIGHT", "LOCATION"]]


@pytest.fixture(scope="module")
def zsim_fit(zsim):
    return xlglmm.glmer(ZI_SIM, zsim, "zinb ~ w")


def zi_rows(block):
    return {r[0]: r for r in block if isinstance(r[0], str) and r[0].startswith("zi ")}


# ---- the fit block ------------------------------------------------------------------------

def test_zinb_block_matches_glmmtmb_and_the_api(zsim, zsim_fit):
    """ZINB2 with a zero-inflation formula: glmmTMB's logLik, fixed effects, zero-inflation
    coefficients and their SEs; every number of the zi section is the API's."""
    b = udfs.GLMM(ZI_SIM, table(zsim), "zinb ~ w")
    ref = glmmtmb("zinb_sim_nb2")
    assert block_value(b, "logLik") == pytest.approx(ref["logLik"], abs=1e-4)
    assert block_value(b, "npar") == ref["df"] == zsim_fit.npar
    assert block_value(b, "AIC") == pytest.approx(ref["AIC"], abs=1e-3)
    rows = zi_rows(b)
    assert list(rows) == ["zi (Intercept)", "zi w"]
    head = block_row(b, "Zero inflation")
    assert head == ["Zero inflation", "Estimate", "Std. Error", "z value", "Pr(>|z|)",
                    "CI low 95%", "CI high 95%", "OR", "OR low", "OR high"]
    # the section sits between the fixed effects and the random effects
    labels = [r[0] for r in b]
    assert labels.index("x") < labels.index("Zero inflation") < labels.index("Random effects")
    ci = zsim_fit.zi_conf_int(0.05)
    for name, se in zip(ref["zi"]["names"], ref["zi"]["se"]):
        r = rows[f"zi {name}"]
        assert r[1] == pytest.approx(ref["zi"]["fixef"][name], abs=2e-3 * se)
        assert r[2] == pytest.approx(se, rel=2e-3)
        want = [zsim_fit.zi_params[name], zsim_fit.zi_bse[name], zsim_fit.zi_zvalues[name],
                zsim_fit.zi_pvalues[name], ci.loc[name, "lower"], ci.loc[name, "upper"]]
        assert r[1:7] == pytest.approx(want, rel=1e-9)
        assert r[7:10] == pytest.approx(np.exp([want[0], want[4], want[5]]), rel=1e-9)
        # the p-value is the two-sided normal test of estimate / SE
        assert r[4] == pytest.approx(2 * stats.norm.sf(abs(r[1] / r[2])), rel=1e-9)
    assert block_value(b, "zero inflation") == "~w"
    assert block_value(b, "family") == "negbin (log)"
    assert block_value(b, "likelihood") == ("exact Laplace (observed information; zero "
                                            "inflation by maximum likelihood)")
    assert block_value(b, "NB theta") == pytest.approx(ref["dispersion"]["sigma"], rel=1e-3)
    # the block stays one labelled block that GLMM_COMPARE reads
    assert udfs.read_fit_block(b, "model1")["zero inflation"] == "~w"


def test_zip_and_undetermined_coefficients(grouse):
    """ZIP on the grouse ticks is glmmTMB's grouse_zip; a coefficient at the boundary
    (zinb: NB2 needs no zero inflation there) shows its estimate only, the note says
    why, and the odds-ratio cells stay blank."""
    b = udfs.GLMM(GROUSE, table(grouse), "zipoisson")
    ref = glmmtmb("grouse_zip")
    assert block_value(b, "logLik") == pytest.approx(ref["logLik"], abs=1e-4)
    r = block_row(b, "zi (Intercept)")
    assert r[1] == pytest.approx(ref["zi"]["fixef"]["(Intercept)"], abs=1e-3)
    assert r[2] == pytest.approx(ref["zi"]["se"][0], rel=1e-3)
    assert block_value(b, "zero inflation") == "~1"
    zinb = udfs.GLMM(GROUSE, table(grouse), "zinb")
    assert block_value(zinb, "logLik") == pytest.approx(glmmtmb("grouse_zinb2")["logLik"],
                                                        abs=1e-4)
    r = block_row(zinb, "zi (Intercept)")
    assert r[1] < -15 and r[2:] == [None] * (len(r) - 2)
    assert any("not determined" in str(x[0]) for x in zinb[zinb.index(["Notes"] + [None] *
                                                                     (len(zinb[0]) - 1)):])


def test_family_words_and_their_spellings(zsim):
    """The words, any case and spacing; one model, one fit, whatever the spelling."""
    assert models.family_argument("ZINB") == "zinb"
    assert models.family_argument("zinb~w") == "zinb ~ w"
    assert models.family_argument([["zipoisson ~ w"]]) == "zipoisson ~ w"
    assert models.split_family("zinb1 ~  w + x") == ("nb1", "~w + x")
    assert models.split_family("zinb2") == ("negbin", "~1")
    a = models.model_from_formula(ZI_SIM, table(zsim), "zinb ~ w")
    b = models.model_from_formula(ZI_SIM, table(zsim), "zinb~ w")
    c = models.model_from_formula(ZI_SIM, table(zsim), "zinb")
    assert a.key == b.key != c.key
    assert (a.family, a.ziformula, c.ziformula) == ("negbin", "~w", "~1")
    plain = models.model_from_formula(ZI_SIM, table(zsim), "negbin")
    assert plain.ziformula is None and plain.key != c.key


@pytest.mark.parametrize("family,kw,msg", [
    ("zinb ~ nope", {}, "#GLMM! column 'nope' is not in the data (columns: y, x, w, g)"),
    ("zinb:lme4", {}, "#GLMM! lme4 has no zero-inflated models: they are fitted by the "
                      "exact Laplace approximation only (glmmTMB's); leave ':lme4' out"),
    ("zinb", {"link": "log:lme4"}, "#GLMM! lme4 has no zero-inflated models: they are "
     "fitted by the exact Laplace approximation only (glmmTMB's); leave ':lme4' out"),
    ("gamma ~ w", {}, "#GLMM! 'gamma' takes no formula: zero inflation (of counts only) is "
                      "written with a zero-inflated word (zipoisson, zinb, zinb1) and its "
                      "formula, e.g. \"zinb ~ YEAR\""),
    ("zigamma", {}, "#GLMM! the zero-inflated families are: zipoisson, zinb, zinb1 "
                    "(optionally with a formula, e.g. \"zinb ~ YEAR\"), not 'zigamma'"),
    ("zinb ~ (1|g)", {}, "#GLMM! the family's zero-inflation formula: the zero-inflation "
     "formula takes fixed effects only, with no response, random effects or offset (e.g. "
     "'~1' or '~ x')"),
    ("zinb ~ 0", {}, "#GLMM! the family's zero-inflation formula: the zero-inflation "
     "formula has no columns (use '~1' for one probability of a structural zero)"),
    ("zinb", {"nAGQ": 3}, "#GLMM! zero-inflated models are fitted by the Laplace "
                          "approximation: nAGQ must be 1"),
    ("zinb1", {"link": "sqrt"}, "#GLMM! link 'sqrt' is not available for the nb1 family "
                                "(use one of: log)"),
])
def test_bad_zero_inflation_gives_one_clear_cell(zsim, family, kw, msg):
    assert udfs.GLMM(ZI_SIM, table(zsim), family, **kw) == msg


def test_range_form_names_x_headers(zsim, zsim_fit):
    """The companions' range form: the zi formula names X's headers; the same model as
    the formula form (y ~ x + w + ...), so the zi coefficients are glmmTMB's model's
    with w also in the count model -- checked against the API's fit of that model."""
    y, X, g = column(zsim.y, "y"), columns(zsim, ["x", "w"]), columns(zsim, ["g"])
    res = xlglmm.glmer("y ~ x + w + (1|g)", zsim, "zinb ~ w")
    ci = udfs.GLMM_CONFINT(y, X, g, family="zinb ~ w")
    got = {r[0]: r for r in ci[1:]}
    for name in res.zi_params.index:
        assert got[f"zi_{name}"][1] == pytest.approx(res.zi_params[name], rel=1e-9)
    assert udfs.GLMM_RANEF(y, X, g, family="zinb ~ nope") == (
        "#GLMM! column 'nope' is not in the data (columns: x, w, g, y)")


# ---- GLMM_COMPARE ---------------------------------------------------------------------------

def test_compare_tests_zero_inflation_on_the_boundary(grouse):
    """Poisson against ZIP by blocks: the likelihood-ratio statistic from the two fits,
    the boundary note and the halved p-value (Self & Liang: 0.5 chi2_0 + 0.5 chi2_1)."""
    t = table(grouse)
    pois, zip_ = (xlglmm.glmer(GROUSE, grouse, f) for f in ("poisson", "zipoisson"))
    out = udfs.GLMM_COMPARE(udfs.GLMM(GROUSE, t, "poisson"), udfs.GLMM(GROUSE, t, "zipoisson"))
    chisq = 2 * (zip_.llf - pois.llf)
    assert out[2][6] == pytest.approx(chisq, rel=1e-6) and out[2][7] == 1
    p = stats.chi2.sf(chisq, 1)
    assert out[2][8] == pytest.approx(p, rel=1e-5)
    notes = [r[0] for r in out[out.index(["Notes"] + [None] * 8) + 1:]]
    assert notes[0].startswith("Zero inflation is tested on the boundary")
    assert "Self & Liang 1987" in notes[0]
    assert p < 1e-4 and notes[1] == ("Here: chi-square p < 0.0001, the boundary-corrected "
                                     "p < 0.0001.")
    assert notes[2].startswith("AIC is valid across families")


def test_compare_by_formulas_with_two_families(grouse):
    """Two formulas and a two-cell family (each formula's): NB2 against ZINB2."""
    t = table(grouse)
    nb, zinb = (xlglmm.glmer(GROUSE, grouse, f) for f in ("negbin", "zinb"))
    for fam in ([["negbin"], ["zinb"]], ["negbin", "zinb"]):    # a column, or xlwings' list
        out = udfs.GLMM_COMPARE(GROUSE, GROUSE, t, fam)
        assert out[1][0] == f"{GROUSE} (negbin)" and out[2][0] == f"{GROUSE} (zinb)"
        assert out[1][4] == pytest.approx(nb.llf, rel=1e-9)
        assert out[2][4] == pytest.approx(zinb.llf, rel=1e-9)
        assert (out[1][1], out[2][1]) == (nb.npar, zinb.npar) == (6, 7)
        assert any(r[0].startswith("Zero inflation is tested") for r in out if r[0])
        # NB2 needs no zero inflation here: the same logLik, p 1 halved
        assert "Here: chi-square p = 1, the boundary-corrected p = 0.5." in [r[0] for r in out]
    assert udfs.GLMM_COMPARE(GROUSE, GROUSE, t, [["negbin"], ["zinb"], ["poisson"]]) == (
        "#GLMM! family must be one value, or two (a two-cell range: the first formula's "
        "family, then the second's)")


def test_compare_refuses_other_count_families(grouse):
    t = table(grouse)
    out = udfs.GLMM_COMPARE(udfs.GLMM(GROUSE, t, "poisson"), udfs.GLMM(GROUSE, t, "zinb"))
    assert out.startswith("#GLMM! the models have different count families")
    assert udfs.GLMM_COMPARE(udfs.GLMM(GROUSE, t, "poisson"),
                             udfs.GLMM(GROUSE, t, "negbin")) == (
        "#GLMM! the models have different families; compare them by AIC instead")


def test_compare_refuses_a_zero_inflated_model_smaller_than_the_other(grouse):
    """(review) A ZIP with fewer parameters than a Poisson with more count terms is not
    nested in it: the test read "Chisq 0, Df 1, p 1" for a ZIP far above the Poisson."""
    t = table(grouse)
    bigger = "TICKS ~ factor(YEAR) + cHEIGHT + I2 + I3 + (1|LOCATION)"     # npar 7 > 6
    t2 = [r + ["I2", "I3"] if k == 0 else r + [float(k % 7), float(k % 5)]
          for k, r in enumerate(t)]
    out = udfs.GLMM_COMPARE(GROUSE, bigger, t2, [["zipoisson", "poisson"]])
    assert out.startswith("#GLMM! the models are not nested: the zero-inflated one has "
                          "fewer parameters")


def test_compare_two_zero_inflated_models(zsim):
    """ZINB ~1 against ZINB ~ w: an ordinary test of the w coefficient (not on the
    boundary: no boundary note), with the AIC note."""
    t = table(zsim)
    one, w = (xlglmm.glmer(ZI_SIM, zsim, f) for f in ("zinb", "zinb ~ w"))
    out = udfs.GLMM_COMPARE(udfs.GLMM(ZI_SIM, t, "zinb"), udfs.GLMM(ZI_SIM, t, "zinb ~ w"))
    assert out[2][6] == pytest.approx(2 * (w.llf - one.llf), rel=1e-6)
    assert out[2][8] == pytest.approx(stats.chi2.sf(2 * (w.llf - one.llf), 1), rel=1e-5)
    notes = [r[0] for r in out if r[0]]
    assert not any(n.startswith("Zero inflation is tested") for n in notes)
    assert any(n.startswith("AIC is valid across families") for n in notes)


# ---- GLMM_PREDICT ---------------------------------------------------------------------------

@pytest.mark.parametrize("ptype", ["response", "link", "conditional", "zprob", "zero"])
def test_predict_types_on_the_fitted_rows(zsim, zsim_fit, ptype):
    b = udfs.GLMM_PREDICT(ZI_SIM, table(zsim), None, "zinb ~ w", pred_type=ptype)
    assert b[0] == [f"predicted ({ptype})"]
    got = np.array([r[0] for r in b[1:]], float)
    np.testing.assert_allclose(got, zsim_fit.predict(type=ptype), rtol=1e-9)
    if ptype == "response":          # (1 - p0) mu
        np.testing.assert_allclose(got, zsim_fit.fittedvalues, rtol=1e-9)
    if ptype == "zero":              # p0 + (1 - p0) P_NB(0 | mu), summed: expected zeros
        p0, mu = zsim_fit.zero_prob, zsim_fit.conditional_mean
        th = zsim_fit.nb_theta
        np.testing.assert_allclose(got, p0 + (1 - p0) * (th / (th + mu)) ** th, rtol=1e-7)


def test_predict_new_rows_and_intervals(zsim, zsim_fit):
    new = zsim[["x", "w", "g"]].head(4)
    b = udfs.GLMM_PREDICT(ZI_SIM, table(zsim), table(new), "zinb ~ w", pred_type="zprob")
    np.testing.assert_allclose([r[0] for r in b[1:]],
                               zsim_fit.predict(new, type="zprob"), rtol=1e-9)
    ci = udfs.GLMM_PREDICT(ZI_SIM, table(zsim), table(new), "zinb ~ w",
                           pred_type="conditional", interval="confidence")
    want = zsim_fit.predict(new, type="conditional", interval="confidence")
    assert ci[0][0] == "predicted (conditional)"
    np.testing.assert_allclose(np.array([r[:4] for r in ci[1:]], float),
                               want[["fit", "se_link", "lower", "upper"]].to_numpy(),
                               rtol=1e-9)
    assert udfs.GLMM_PREDICT(ZI_SIM, table(zsim), table(new[["x", "g"]]), "zinb ~ w",
                             pred_type="zprob").startswith("#GLMM! ")
    assert udfs.GLMM_PREDICT(ZI_SIM, table(zsim), None, "zinb ~ w",
                             interval="confidence").startswith(
        "#GLMM! intervals of a zero-inflated model's predictions are for the count model")
    assert udfs.GLMM_PREDICT(ZI_SIM, table(zsim), None, "zinb ~ w", pred_type="zprob",
                             interval="prediction").startswith(
        "#GLMM! a prediction interval is for a new observation")


def test_predict_types_refused_where_they_mean_nothing(zsim):
    t = table(zsim)
    assert udfs.GLMM_PREDICT(ZI_SIM, t, None, "negbin", pred_type="zprob") == (
        "#GLMM! pred_type \"zprob\" is for zero-inflated models (family \"zipoisson\", "
        "\"zinb\" or \"zinb1\"); this fit has no zero inflation: use \"response\"")
    b = udfs.GLMM_PREDICT(ZI_SIM, t, None, "negbin", pred_type="zero")
    assert b[0] == ["predicted (zero)"]          # any count family has P(Y = 0)
    bern = zsim.assign(y=(zsim.y > 0).astype(float))
    assert udfs.GLMM_PREDICT(ZI_SIM, table(bern), None, "binomial",
                             pred_type="zero").startswith(
        "#GLMM! pred_type \"zero\" (each row's probability of a zero count) is for count")
    assert udfs.GLMM_PREDICT(ZI_SIM, t, None, "zinb", pred_type="odds") == (
        "#GLMM! pred_type must be one of: response, link, conditional, zprob, zero")


# ---- the other companions on a zero-inflated fit -------------------------------------------

def test_confint_on_a_zero_inflated_fit(zsim, zsim_fit):
    t = table(zsim)
    wald = udfs.GLMM_CONFINT(ZI_SIM, t, "zinb ~ w")
    rows = {r[0]: r for r in wald[1:]}
    zci, fci = zsim_fit.zi_conf_int(), zsim_fit.conf_int()
    for name in zsim_fit.zi_params.index:
        r = rows[f"zi_{name}"]
        assert r[1:4] == pytest.approx([zsim_fit.zi_params[name], zci.loc[name, "lower"],
                                        zci.loc[name, "upper"]], rel=1e-9)
        assert r[4] == "Wald" and r[6] is None
    for name in zsim_fit.fe_params.index:
        assert rows[name][2:4] == pytest.approx(list(fci.loc[name]), rel=1e-9)
    assert udfs.GLMM_CONFINT(ZI_SIM, t, "zinb ~ w", method="profile") == (
        "#GLMM! no profile intervals for a zero-inflated model yet: the profile would hold "
        "the zero-inflation coefficients at their estimates; use method \"Wald\" or "
        "\"bootstrap\"")
    boot = udfs.GLMM_CONFINT(ZI_SIM, t, "zinb ~ w", method="bootstrap", nsim=20, seed=3)
    want = zsim_fit.bootstrap(20, 3).recommended()
    rows = {r[0]: r for r in boot[1:]}
    for name in ("zi_(Intercept)", "zi_w", "x"):
        assert rows[name][2:4] == pytest.approx([want.loc[name, "lower"],
                                                 want.loc[name, "upper"]], rel=1e-6)
        assert rows[name][5] == 20


def test_undetermined_zi_coefficients_in_confint(grouse):
    b = udfs.GLMM_CONFINT(GROUSE, table(grouse), "zinb")
    r = next(r for r in b if r[0] == "zi_(Intercept)")
    assert r[2] is None and r[3] is None and r[6].startswith("not determined")


def test_ranef_resid_check_influence(grouse):
    """The companions on ZIP: each block's numbers are the API's."""
    t = table(grouse)
    res = xlglmm.glmer(GROUSE, grouse, "zipoisson")
    ranef = udfs.GLMM_RANEF(GROUSE, t, "zipoisson")
    assert ranef[0] == ["group", "level", "(Intercept)", "(Intercept) cond.SD", "rows",
                        "raw (Intercept)", "shrinkage"]
    blups = res.random_effects["LOCATION"]
    sds = res.random_effects_sd["LOCATION"]
    shrunk = res.shrinkage()["LOCATION"]
    for r in ranef[1:]:
        assert r[2] == pytest.approx(blups.loc[r[1]], rel=1e-9, abs=1e-12)
        assert r[3] == pytest.approx(sds.loc[r[1]], rel=1e-9)
        assert r[5] == pytest.approx(shrunk.loc[r[1], "raw"], rel=1e-9, abs=1e-12)
    assert np.all(np.isfinite(shrunk["raw"]))
    assert sum(r[4] for r in ranef[1:]) == len(grouse)
    resid = udfs.GLMM_RESID(GROUSE, t, "zipoisson", resid_type="pearson", nsim=50, seed=2)
    np.testing.assert_allclose(np.array(resid[1:], float),
                               res.residuals_table("pearson", 50, 2).to_numpy(float),
                               rtol=1e-9)
    assert resid[1][0] == pytest.approx(res.fittedvalues[0], rel=1e-9)
    check = udfs.GLMM_CHECK(GROUSE, t, "zipoisson", nsim=0)
    want = res.check(0, 1)
    for name, w in want.table.iterrows():
        r = next(r for r in check if r[0] == name)
        assert r[5] == w["verdict"]
    assert any("zero-inflated" in str(r[5]) for r in check if r[0] == "R² marginal")
    infl = udfs.GLMM_INFLUENCE(GROUSE, t, "zipoisson")
    wanted = res.influence("LOCATION", workers=1)
    assert "change in zi_(Intercept)" in infl[0]
    j = infl[0].index("change in zi_(Intercept)")
    for r in infl[1:]:
        if r[0] in wanted.index:
            assert r[j] == pytest.approx(wanted.loc[r[0], "change_zi_(Intercept)"],
                                         rel=1e-9, abs=1e-12)
