"""Worksheet functions, called with exactly what xlwings hands them, against
xlglmm.glmer and lme4's references."""
import math

import numpy as np
import pandas as pd
import pytest

import xlglmm
from xlglmm.sheet import models, udfs
from refs import DATA, expected, glmmtmb, load_frame, manifest
from sheetdata import block_row, block_value, column, columns, table, workplace_ranges


# every test starts (and leaves) the cache empty (conftest's empty_cache)
pytestmark = pytest.mark.usefixtures("empty_cache")


@pytest.fixture(scope="module")
def safety(workplace):
    return workplace[0]


def safety_block(df, **kw):
    return udfs.GLMM_POISSON(*workplace_ranges(df), **kw)


def is_rectangular(b):
    return isinstance(b, list) and len({len(r) for r in b}) == 1


def test_seed_example_spills_case_study_numbers(safety):
    b = safety_block(safety)
    assert is_rectangular(b)
    assert round(block_value(b, "AIC"), 1) == 715.5
    assert round(block_value(b, "BIC"), 1) == 727.8
    row = block_row(b, "training")
    exp = expected("safety_crossed")
    assert row[1] == pytest.approx(-0.417, abs=0.005)
    assert row[1] == pytest.approx(exp["fixef"]["training"], abs=0.01 * exp["se"][1])
    assert row[2] == pytest.approx(exp["se"][1], rel=0.01)
    assert block_value(b, "groups: plant") == 20 and block_value(b, "groups: month") == 8
    assert block_value(b, "converged") is True
    assert block_value(b, "rows dropped") == 0


def test_block_equals_engine(safety):
    b = safety_block(safety, alpha=0.1)
    res = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", safety,
                       offset=np.log(safety.employees))
    head = b[0]
    assert head[:7] == ["Fixed effects", "Estimate", "Std. Error", "z value", "Pr(>|z|)",
                        "CI low 90%", "CI high 90%"]
    assert head[7:10] == ["IRR", "IRR low", "IRR high"]
    ci = res.conf_int(0.1)
    for name in res.fe_params.index:
        r = block_row(b, name)
        # the block shows 12 significant digits (block.significant)
        assert r[1] == pytest.approx(res.fe_params[name], rel=1e-11, abs=0)
        assert r[2] == pytest.approx(res.fe_bse[name], rel=1e-11, abs=0)
        assert r[4] == pytest.approx(res.fe_pvalues[name])
        assert r[5] == pytest.approx(ci.loc[name, "lower"])
        assert r[7] == pytest.approx(math.exp(r[1]))
        assert r[8] == pytest.approx(math.exp(r[5]))
    assert block_value(b, "logLik") == pytest.approx(res.llf)
    re_rows = [r for r in b if r[0] in ("plant", "month")]
    assert re_rows[0][1] == "(Intercept)"
    assert re_rows[0][3] == pytest.approx(np.sqrt(res.variance_components["plant"]))
    # numbers are numbers; blanks are None, never 0 or ""
    assert all(isinstance(v, float) for v in block_row(b, "training")[1:])
    assert block_row(b, "logLik")[2:] == [None] * (len(head) - 2)


@pytest.mark.parametrize("y,x,kw", [
    ([2, 3, 5, 1, 2, 4], [1, 2, 3, 1, 2, 3], {}),
    ([10, 12, 15, 8, 10, 13], [1, 1.5, 2, 1, 1.5, 2], {"alpha": 0.1}),
    ([3, 6, 9, 2, 4, 6], [1, 2, 3, 1, 2, 3], {"fit_intercept": False}),
    ([5, 7, 10, 3, 5, 8], [1, 2, 3, 1, 2, 3], {"x_random": [[1], [2], [3], [1], [2], [3]]}),
])
def test_previous_function_examples_give_blocks(y, x, kw):
    g = [1, 1, 1, 2, 2, 2]
    b = udfs.GLMM_POISSON(column(y), column(x), column(g), **kw)
    assert is_rectangular(b) and b[0][0] == "Fixed effects"
    assert block_value(b, "singular") is True        # as lme4: boundary fits
    assert isinstance(block_value(b, "logLik"), float)
    if kw.get("fit_intercept") is False:
        assert b[1][0] == "x1"
    if "alpha" in kw:
        assert b[0][5] == "CI low 90%"


def test_binomial_with_trials_matches_lme4():
    df = load_frame(manifest()["cbpp_laplace"])
    dummies = pd.get_dummies(df.period, prefix="period", dtype=float).iloc[:, 1:]
    dummies.columns = ["period2", "period3", "period4"]
    b = udfs.GLMM_BINOMIAL(column(df.incidence, "incidence"), columns(dummies, dummies.columns),
                           column(df.herd.astype(str), "herd"), column(df["size"], "size"))
    exp = expected("cbpp_laplace")
    assert b[0][7] == "OR"
    for name, v in exp["fixef"].items():
        assert block_row(b, name)[1] == pytest.approx(v, abs=0.01 * exp["se"][0])
    assert block_value(b, "logLik") == pytest.approx(exp["logLik"], abs=1e-3)
    pb = udfs.GLMM_BINOMIAL(column(df.incidence, "incidence"), columns(dummies, dummies.columns),
                            column(df.herd.astype(str), "herd"), column(df["size"], "size"),
                            link="probit:lme4")
    assert block_value(pb, "logLik") == pytest.approx(expected("cbpp_probit", True)["logLik"], abs=1e-3)
    assert len(pb[0]) == 7 or pb[0][7] is None       # no ratio columns for probit
    assert block_value(pb, "likelihood") == "lme4's Laplace (Fisher weights)"
    # the default: the exact Laplace, glmmTMB's
    ex = udfs.GLMM_BINOMIAL(column(df.incidence, "incidence"), columns(dummies, dummies.columns),
                            column(df.herd.astype(str), "herd"), column(df["size"], "size"),
                            link="probit")
    assert block_value(ex, "logLik") == pytest.approx(glmmtmb("cbpp_probit")["logLik"], abs=1e-3)
    assert block_value(ex, "likelihood") == "exact Laplace (observed information)"


def test_formula_function_on_a_table_matches_lme4():
    df = load_frame(manifest()["grouse_slope"])
    b = udfs.GLMM("TICKS ~ YEAR + (YEAR|LOCATION)", table(df[["TICKS", "YEAR", "LOCATION"]]))
    exp = expected("grouse_slope")
    assert block_value(b, "logLik") >= exp["logLik"] - 1e-3
    for name, v in exp["fixef"].items():
        assert block_row(b, name)[1] == pytest.approx(v, abs=0.1 * exp["se"][0])
    loc = [r for r in b if r[0] == "LOCATION"]
    assert [r[1] for r in loc] == ["(Intercept)", "YEAR96", "YEAR97"]
    assert loc[1][4] is not None and -1 <= loc[1][4] <= 1     # correlation with intercept


def test_gamma_via_formula():
    df = pd.read_csv(DATA / "gamma_1e3.csv")
    b = udfs.GLMM("y ~ x + (1|g)", table(df), "gamma:lme4", "log")
    exp = expected("gamma_log")
    assert block_value(b, "logLik") == pytest.approx(exp["logLik"], abs=1e-3)
    assert [r for r in b if r[0] == "Residual"][0][3] == pytest.approx(0.5853, abs=1e-3)
    # the exact Laplace: glmmTMB's, the dispersion by maximum likelihood with its SE
    ex = udfs.GLMM("y ~ x + (1|g)", table(df), "gamma", "log")
    ref = glmmtmb("gamma_log")
    assert block_value(ex, "logLik") == pytest.approx(ref["logLik"], abs=1e-3)
    assert block_value(ex, "dispersion") == pytest.approx(ref["dispersion"]["phi"], rel=0.01)
    assert block_value(ex, "dispersion SE") > 0
    assert [r for r in ex if r[0] == "g"][0][3] == pytest.approx(
        ref["varcorr"][0]["sd"][0], rel=0.02)
    assert udfs.GLMM("y ~ x + (1|g)", table(df), "gamma:lme4", "log:exact").startswith(
        "#GLMM! the family and the link name different Laplace approximations")


def test_ranef_rows_match_engine_and_lme4(safety):
    args = (column(safety.incidents, "incidents"), column(safety.training, "training"),
            columns(safety, ["plant", "month"]), column(np.log(safety.employees)))
    r = udfs.GLMM_RANEF(*args)
    assert r[0] == ["group", "level", "(Intercept)", "(Intercept) cond.SD", "rows",
                    "raw (Intercept)", "shrinkage"]
    exp = {b["group"]: b for b in expected("safety_crossed")["ranef"]}
    plant = [row for row in r[1:] if row[0] == "plant"]
    assert [row[1] for row in plant] == exp["plant"]["levels"]
    assert np.allclose([row[2] for row in plant], np.ravel(exp["plant"]["values"]), atol=1e-3)
    assert np.allclose([row[3] for row in plant], np.ravel(exp["plant"]["cond_sd"]), rtol=0.02)


def test_predict_new_rows_and_fitted(safety):
    args = (column(safety.incidents, "incidents"), column(safety.training, "training"),
            columns(safety, ["plant", "month"]))
    off = column(np.log(safety.employees))
    fitted = udfs.GLMM_PREDICT(*args, offset=off)
    res = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", safety,
                       offset=np.log(safety.employees))
    assert fitted[0] == ["predicted (response)"]
    assert np.allclose([r[0] for r in fitted[1:]], res.fittedvalues)
    new = udfs.GLMM_PREDICT(*args, new_X=[["training"], [1.0], [0.0]],
                            new_groups=[["plant", "month"], ["P01", "3"], ["P99", None]],
                            offset=off, new_offset=[[math.log(100)], [math.log(100)]],
                            pred_type="link")
    b = res.random_effects
    pop = res.fe_params["(Intercept)"] + math.log(100)
    assert new[1][0] == pytest.approx(pop + res.fe_params["training"] + b["plant"]["P01"] + b["month"]["3"])
    assert new[2][0] == pytest.approx(pop)             # unseen plant, blank month: 0


def test_compare_two_blocks_as_anova(safety):
    full = safety_block(safety)
    plant_only = udfs.GLMM_POISSON(column(safety.incidents, "incidents"),
                                   column(safety.training, "training"),
                                   column(safety.plant, "plant"), column(np.log(safety.employees)))
    c = udfs.GLMM_COMPARE(full, plant_only)
    assert c[0] == ["Model", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    small, big = c[1], c[2]
    assert small[1] == 3 and big[1] == 4
    chisq = 2 * (block_value(full, "logLik") - block_value(plant_only, "logLik"))
    assert big[6] == pytest.approx(chisq) and big[7] == 1
    from scipy import stats
    assert big[8] == pytest.approx(stats.chi2.sf(chisq, 1))
    # formula form gives the same test
    f = udfs.GLMM_COMPARE("incidents ~ training + (1|plant) + (1|month) + offset(log(employees))",
                          "incidents ~ training + (1|plant) + offset(log(employees))",
                          table(safety))
    assert f[2][6] == pytest.approx(chisq, abs=1e-6)


def test_recalculation_uses_the_cache(safety, monkeypatch):
    calls = []
    real = models.glmer

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(models, "glmer", counting)
    a = safety_block(safety)
    b = safety_block(safety)
    assert a == b and len(calls) == 1
    safety_block(safety, alpha=0.1)                  # another CI level: same fit
    udfs.GLMM_RANEF(column(safety.incidents, "incidents"), column(safety.training, "training"),
                    columns(safety, ["plant", "month"]), column(np.log(safety.employees)))
    assert len(calls) == 1
    changed = safety.copy()
    changed.loc[0, "incidents"] += 1
    safety_block(changed)
    assert len(calls) == 2


def test_binomial_companions_share_the_fit(monkeypatch):
    """GLMM_BINOMIAL passes its default link "logit"; GLMM_RANEF and GLMM_PREDICT over
    the same ranges leave the link blank (the family's default): one model, one fit."""
    df = load_frame(manifest()["cbpp_laplace"])
    dummies = pd.get_dummies(df.period, prefix="period", dtype=float).iloc[:, 1:]
    args = (column(df.incidence, "incidence"), columns(dummies, dummies.columns),
            column(df.herd.astype(str), "herd"))
    calls = []
    real = models.glmer
    monkeypatch.setattr(models, "glmer", lambda *a, **k: calls.append(1) or real(*a, **k))
    udfs.GLMM_BINOMIAL(*args, column(df["size"], "size"))
    udfs.GLMM_RANEF(*args, None, None, True, 1, "binomial", column(df["size"], "size"))
    udfs.GLMM_PREDICT(*args, None, None, None, None, None, None, "response", True, True, 1,
                      "binomial", column(df["size"], "size"))
    assert len(calls) == 1


@pytest.mark.parametrize("y,msg", [
    ([["incidents"], [2.0], ["x"], [5.0], [1.0], ["n/a"], [3.0]], "y has non-numeric values in rows 3, 6"),
    ([[2.0], ["#DIV/0!"], [5.0], [1.0], [2.0], [3.0]], "y has Excel error values (#DIV/0!) in row 2"),
    ([[2.0], [True], [5.0], [1.0], [2.0], [3.0]], "y has TRUE/FALSE values in row 2"),
    ([[2.0], [-1.0], [5.0], [1.0], [2.0], [3.0]], "y has negative counts in row 2"),
    ([[2.0], [1.5], [5.0], [1.0], [2.0], [3.0]], "whole-number counts; row 2"),
])
def test_bad_y_gives_one_clear_cell(y, msg):
    n = len(y) - (1 if isinstance(y[0][0], str) and y[0][0] == "incidents" else 0)
    g = column([1, 1, 1, 2, 2, 2, 2][:n], "g" if n < len(y) else None)
    x = column([1, 2, 3, 1, 2, 3, 4][:n], "x" if n < len(y) else None)
    out = udfs.GLMM_POISSON(y, x, g)
    assert isinstance(out, str) and out.startswith("#GLMM! ") and msg in out


def test_blank_rows_are_dropped_and_counted(safety):
    y = column(safety.incidents, "incidents")
    y[5][0] = None
    y[17][0] = None
    b = udfs.GLMM_POISSON(y, column(safety.training, "training"), columns(safety, ["plant", "month"]),
                          column(np.log(safety.employees)))
    assert block_value(b, "rows dropped") == 2 and block_value(b, "nobs") == 158
    assert any(r[0] and "2 rows with missing values removed" in str(r[0]) for r in b)


@pytest.mark.parametrize("kw,msg", [
    ({"alpha": 1.5}, "alpha must be between 0 and 1"),
    ({"nAGQ": 25}, "nAGQ > 1 is only available"),
    ({"nAGQ": 2.5}, "nAGQ must be a whole number"),
    ({"fit_intercept": "maybe"}, "fit_intercept must be TRUE or FALSE"),
])
def test_bad_options(safety, kw, msg):
    out = safety_block(safety, **kw)
    assert isinstance(out, str) and out.startswith("#GLMM!") and msg in out


def test_length_mismatch_and_orientation(safety):
    out = udfs.GLMM_POISSON(column(safety.incidents[:10]), column(safety.training[:9]),
                            column(safety.plant[:10]))
    assert out.startswith("#GLMM! X has 9 rows but y has 10 data rows")
    out = udfs.GLMM_POISSON(column(safety.incidents[:10]), [list(safety.training[:10].astype(float))],
                            column(safety.plant[:10]))
    assert "single row of 10 values but y is a column" in out
    out = udfs.GLMM_POISSON(None, None, None)
    assert out == "#GLMM! y is empty"


def test_formula_errors_in_the_cell(safety):
    out = udfs.GLMM("incidents ~ training + (1|plant", table(safety))
    assert out.startswith("#GLMM! ") and "expected ')'" in out
    out = udfs.GLMM("incidents ~ __import__('os') + (1|plant)", table(safety))
    assert out.startswith("#GLMM! ")
    out = udfs.GLMM("incidents ~ nope + (1|plant)", table(safety))
    assert "column 'nope' is not in the data" in out


def test_companion_formula_form_with_two_arguments():
    """=GLMM_RANEF("y ~ ...", data): the range form's later defaults must not leak
    into the formula form's optional slots."""
    df = load_frame(manifest()["grouse_loc"])
    t = table(df[["TICKS", "YEAR", "LOCATION"]])
    r = udfs.GLMM_RANEF("TICKS ~ YEAR + (1|LOCATION)", t)
    res = xlglmm.glmer("TICKS ~ YEAR + (1|LOCATION)", df)
    assert r[0][:3] == ["group", "level", "(Intercept)"]
    got = {row[1]: row[2] for row in r[1:]}          # text levels sort as text in the sheet
    want = res.random_effects["LOCATION"]
    assert set(got) == set(want.index)
    assert np.allclose([got[k] for k in want.index], want.to_numpy(), atol=1e-6)
    p = udfs.GLMM_PREDICT("TICKS ~ YEAR + (1|LOCATION)", t)
    assert np.allclose([row[0] for row in p[1:]], res.fittedvalues)


def test_compare_refuses_two_laplace_approximations():
    """A likelihood-ratio test between a fit by the exact Laplace and one by lme4's
    compares two different functions: refused, from blocks and from formulas (the
    cold review found Chisq 1048.6 on such a pair)."""
    df = pd.read_csv(DATA / "gamma_1e3.csv")
    exact = udfs.GLMM("y ~ x + (1|g)", table(df), "gamma", "log")
    lme4 = udfs.GLMM("y ~ 1 + (1|g)", table(df), "gamma:lme4", "log")
    msg = udfs.GLMM_COMPARE(lme4, exact)
    assert msg.startswith("#GLMM! the models were fitted by different Laplace approximations")
    same = udfs.GLMM_COMPARE(udfs.GLMM("y ~ 1 + (1|g)", table(df), "gamma", "log"), exact)
    assert not isinstance(same, str)
    assert udfs.GLMM_COMPARE("y ~ 1 + (1|g)", "y ~ x + (1|g)", table(df), "gamma",
                             "log")[1][0] is not None


@pytest.mark.parametrize("name,family,formula,data", [
    ("beta_sim", "beta", "y ~ x + (1|g)", "beta_sim.csv"),
    ("cbpp_betabinomial", "betabinomial",
     "cbind(incidence, size - incidence) ~ factor(period) + (1|herd)", "cbpp.csv"),
    ("grouse_nb1", "nb1", "TICKS ~ factor(YEAR) + cHEIGHT + (1|LOCATION)", "grouseticks.csv")])
def test_issue17_families_on_a_sheet(name, family, formula, data):
    """GLMM with the families of issue 17: glmmTMB's numbers, phi with its SE and CI in
    the block, and the likelihood row."""
    from refs import data_file
    df = pd.read_csv(data_file(data))
    if "HEIGHT" in df:
        df["cHEIGHT"] = df.HEIGHT - df.HEIGHT.mean()
    b = udfs.GLMM(formula, table(df), family)
    ref = glmmtmb(name)
    assert block_value(b, "logLik") == pytest.approx(ref["logLik"], abs=1e-3)
    assert block_value(b, "phi") == pytest.approx(ref["dispersion"]["sigma"], rel=0.01)
    assert block_value(b, "phi CI low") < block_value(b, "phi") < block_value(b, "phi CI high")
    assert block_value(b, "likelihood") == ("exact Laplace (observed information; phi by "
                                            "maximum likelihood)")
    assert udfs.GLMM(formula, table(df), f"{family}:lme4").startswith(
        "#GLMM! lme4 has no")
