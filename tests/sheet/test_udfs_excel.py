"""Every worksheet function called as Excel calls it: COM-style values through
xlwings' own CallUDF / call_udf / conversion code (tests/xlwings_harness.py), with the
decorators' options applied as on Windows; numbers checked against xlglmm.glmer and
lme4's references."""
import math

import numpy as np
import pandas as pd
import pytest

import xlglmm
import xlwings_harness as h
from refs import expected, glmmtmb, load_frame, manifest
from sheetdata import block_row, block_value, column, columns, table
from xlglmm.sheet import cache


def com(rows):
    return h.com_rows(rows)


# every test starts (and leaves) the cache empty (conftest's empty_cache)
pytestmark = pytest.mark.usefixtures("empty_cache")


@pytest.fixture(scope="module")
def safety(workplace):
    return workplace[0]


def safety_args(df):
    return (com(column(df.incidents, "incidents")), com(column(df.training, "training")),
            com(columns(df, ["plant", "month"])), com(column(np.log(df.employees))))


def test_glmm_poisson_seed_example(safety):
    b = h.spill(h.excel_call("GLMM_POISSON", *safety_args(safety)))
    exp = expected("safety_crossed")
    assert round(block_value(b, "AIC"), 1) == 715.5
    assert round(block_value(b, "BIC"), 1) == 727.8
    tr = block_row(b, "training")
    assert tr[1] == pytest.approx(-0.417, abs=0.005)
    assert tr[1] == pytest.approx(exp["fixef"]["training"], abs=0.01 * exp["se"][1])
    assert tr[2] == pytest.approx(exp["se"][1], rel=0.01)
    res = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", safety,
                       offset=np.log(safety.employees))
    assert block_value(b, "logLik") == pytest.approx(res.llf, abs=1e-9)
    # what Excel receives for blank cells: empty (xlwings writes "" for None)
    assert block_row(b, "logLik")[2] in (None, "")


def test_glmm_binomial_with_trials(safety):
    df = load_frame(manifest()["cbpp_laplace"])
    d = pd.get_dummies(df.period, dtype=float).iloc[:, 1:]
    d.columns = ["period2", "period3", "period4"]
    b = h.spill(h.excel_call("GLMM_BINOMIAL", com(column(df.incidence, "incidence")),
                             com(columns(d, d.columns)), com(column(df.herd.astype(str), "herd")),
                             com(column(df["size"], "size"))))
    exp = expected("cbpp_laplace")
    for j, (name, v) in enumerate(exp["fixef"].items()):
        r = block_row(b, name)
        assert r[1] == pytest.approx(v, abs=0.01 * exp["se"][j])
        assert r[2] == pytest.approx(exp["se"][j], rel=0.01)
        assert r[7] == pytest.approx(math.exp(r[1]))      # odds ratio
    assert b[0][7] == "OR"


def test_glmm_formula_on_table():
    df = load_frame(manifest()["grouse_height_brood"])
    t = table(df[["TICKS", "YEAR", "cHEIGHT", "BROOD", "LOCATION"]].astype(
        {"YEAR": str, "BROOD": str, "LOCATION": str}))
    b = h.spill(h.excel_call("GLMM", "TICKS ~ YEAR + cHEIGHT + (1|BROOD) + (1|LOCATION)", com(t)))
    exp = expected("grouse_height_brood")
    assert block_value(b, "logLik") == pytest.approx(exp["logLik"], abs=1e-3)
    for j, (name, v) in enumerate(exp["fixef"].items()):
        assert block_row(b, name)[1] == pytest.approx(v, abs=0.01 * exp["se"][j])
    sds = {r[0]: r[3] for r in b if r[0] in ("BROOD", "LOCATION")}
    for row in exp["varcorr"]:
        assert sds[row["grp"]] == pytest.approx(row["sdcor"], rel=0.02)


def test_glmm_ranef_and_cache(safety):
    args = safety_args(safety)
    first = h.excel_call("GLMM_POISSON", *args)
    again = h.excel_call("GLMM_POISSON", *args)
    r = h.spill(h.excel_call("GLMM_RANEF", *args))
    # one fit in the cache, found again by the recalculation and by the companion
    assert len(cache.FITS) == 1 and cache.FITS.hits >= 1 and len(cache.BLOCKS) == 2
    assert h.spill(first) == h.spill(again)
    exp = {g["group"]: g for g in expected("safety_crossed")["ranef"]}
    month = [row for row in r if row[0] == "month"]
    assert [row[1] for row in month] == exp["month"]["levels"]
    assert np.allclose([row[2] for row in month], np.ravel(exp["month"]["values"]), atol=1e-3)


def test_glmm_predict_fitted_and_new(safety):
    y, x, g, off = safety_args(safety)
    res = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", safety,
                       offset=np.log(safety.employees))
    fitted = h.spill(h.excel_call("GLMM_PREDICT", y, x, g, offset=off))
    assert fitted[0][0] == "predicted (response)"
    assert np.allclose([r[0] for r in fitted[1:]], res.fittedvalues)
    new = h.spill(h.excel_call("GLMM_PREDICT", y, x, g, com([["training"], [0.0]]),
                               com([["plant", "month"], ["P19", "8"]]), off,
                               com([[math.log(250)]]), pred_type="link"))
    want = (res.fe_params["(Intercept)"] + math.log(250) + res.random_effects["plant"]["P19"]
            + res.random_effects["month"]["8"])
    assert new[1][0] == pytest.approx(want)


def test_glmm_compare_from_spilled_blocks(safety):
    y, x, g, off = safety_args(safety)
    full = h.spill(h.excel_call("GLMM_POISSON", y, x, g, off))
    plant = h.spill(h.excel_call("GLMM_POISSON", y, x, com(column(safety.plant, "plant")), off))
    c = h.spill(h.excel_call("GLMM_COMPARE", com(full), com(plant)))
    chisq = 2 * (block_value(full, "logLik") - block_value(plant, "logLik"))
    assert c[2][6] == pytest.approx(chisq) and c[2][7] == 1
    assert c[1][2] == pytest.approx(block_value(plant, "AIC"))


def test_errors_reach_excel_as_one_text_cell(safety):
    y, x, g, off = safety_args(safety)
    bad_y = list(column(safety.incidents, "incidents"))
    bad_y[4] = [h.xl_error("#N/A")]
    out = h.excel_call("GLMM_POISSON", com(bad_y), x, g, off)
    assert isinstance(out, str) and out.startswith("#GLMM! y has Excel error values (#N/A) in row 5")
    out = h.excel_call("GLMM", "incidents ~ training + (1|plant", com(table(safety)))
    assert isinstance(out, str) and out.startswith("#GLMM! ")


def test_glmm_negbin_estimates_theta_as_glmmtmb():
    """GLMM_NEGBIN fits the exact Laplace (glmmTMB's nbinom2); GLMM with
    "negbin:lme4" reproduces lme4's glmer.nb."""
    spec = manifest("models_negbin_lmm.json")["grouse_nb"]
    df = load_frame(spec)
    d = pd.get_dummies(df.YEAR, dtype=float).iloc[:, 1:]
    d.columns = ["YEAR96", "YEAR97"]
    args = (com(column(df.TICKS, "TICKS")), com(columns(d, d.columns)),
            com(column(df.LOCATION.astype(str), "LOCATION")))
    b = h.spill(h.excel_call("GLMM_NEGBIN", *args))
    exp = glmmtmb("grouse_nb")
    assert block_value(b, "NB theta") == pytest.approx(exp["dispersion"]["sigma"], rel=0.01)
    assert block_value(b, "logLik") == pytest.approx(exp["logLik"], abs=1e-3)
    assert block_value(b, "AIC") == pytest.approx(exp["AIC"], abs=2e-3)
    lo, hi = block_value(b, "NB theta CI low"), block_value(b, "NB theta CI high")
    assert lo < block_value(b, "NB theta") < hi
    fixed = h.spill(h.excel_call("GLMM_NEGBIN", *args, theta=block_value(b, "NB theta")))
    assert block_value(fixed, "logLik") == pytest.approx(block_value(b, "logLik"), abs=1e-4)
    lme4 = expected("grouse_nb")
    tab = [["TICKS", "YEAR", "LOCATION"]] + [[t, str(y), str(g)] for t, y, g in
                                             zip(df.TICKS, df.YEAR, df.LOCATION)]
    nb = h.spill(h.excel_call("GLMM", "TICKS ~ YEAR + (1|LOCATION)", com(tab), "negbin:lme4"))
    assert block_value(nb, "NB theta") == pytest.approx(lme4["nb_theta"], rel=0.01)
    assert block_value(nb, "logLik") == pytest.approx(lme4["logLik"], abs=1e-3)
    bad = h.excel_call("GLMM_NEGBIN", *args, theta=-2.0)
    assert bad.startswith("#GLMM! theta must be a positive number")


@pytest.mark.parametrize("name,reml", [("sleep_reml", True), ("sleep_ml", False)])
def test_lmm_matches_lmer(name, reml):
    spec = manifest("models_negbin_lmm.json")[name]
    df = load_frame(spec)
    b = h.spill(h.excel_call("LMM", com(column(df.Reaction, "Reaction")),
                             com(column(df.Days, "Days")),
                             com(column(df.Subject.astype(str), "Subject")),
                             com(column(df.Days, "Days")), reml))
    exp = expected(name)
    assert block_value(b, "logLik") == pytest.approx(exp["logLik"], abs=1e-3)
    for j, (term, v) in enumerate(exp["fixef"].items()):
        r = block_row(b, term)
        assert r[1] == pytest.approx(v, abs=0.01 * exp["se"][j])
        assert r[2] == pytest.approx(exp["se"][j], rel=0.01)
    assert block_value(b, "sigma (residual SD)") == pytest.approx(exp["sigma"], rel=0.01)
    assert [r for r in b if r[0] == "Residual"][0][3] == pytest.approx(exp["sigma"], rel=0.01)
    if reml:
        assert block_value(b, "REML criterion") == pytest.approx(exp["REMLcrit"], abs=2e-3)


def test_lmm_icc_per_grouping_factor():
    spec = manifest("models_negbin_lmm.json")["penicillin_reml"]
    df = load_frame(spec)
    b = h.spill(h.excel_call("LMM", com(column(df.diameter, "diameter")), None,
                             com(columns(df.astype({"plate": str, "sample": str}),
                                         ["plate", "sample"]))))
    res = xlglmm.lmer(spec["formula"], df)
    for g in ("plate", "sample"):
        assert block_value(b, f"ICC: {g}") == pytest.approx(res.icc_by_group[g], rel=1e-6)
    assert block_value(b, "logLik") == pytest.approx(expected("penicillin_reml")["logLik"], abs=1e-3)
