"""GLMM_CHECK, GLMM_RESID and GLMM_RANEF's shrinkage columns (issue 15): the blocks
against the Python API (res.check, res.residuals_table, res.shrinkage) in both
calling forms, and their own arguments checked before any work."""
from __future__ import annotations

import numpy as np
import pytest

import xlglmm
from sheetdata import block_row, column, table
from xlglmm.engine.model_check import ROWS
from xlglmm.sheet import cache, udfs

FORMULA = "incidents ~ training + (1|plant) + (1|month) + offset(log(employees))"


# every test starts (and leaves) the cache empty: some count the fits
pytestmark = pytest.mark.usefixtures("empty_cache")


def test_check_block_is_the_engine_table(workplace, workplace_fit):
    block = udfs.GLMM_CHECK(*workplace[1], nsim=60, seed=4)
    assert block[0] == ["Check", "Value", "Expected", "p", "Problem", "Verdict"]
    assert [r[0] for r in block[1:1 + len(ROWS)]] == list(ROWS)
    table_ = workplace_fit.check(60, 4).table
    for name in ROWS:
        r = block_row(block, name)
        want = table_.loc[name]
        for cell, key in zip(r[1:4], ("value", "expected", "p")):
            if np.isnan(want[key]):
                assert cell is None
            else:
                assert cell == pytest.approx(want[key], rel=1e-10)
        assert r[4] is bool(want["problem"]) and r[5] == want["verdict"]
    assert block_row(block, "refitted simulations")[1:3] == [60, 60]
    # the workplace model passes every check (the study's "Poisson is adequate")
    assert not any(r[4] for r in block[1:1 + len(ROWS)])
    assert block_row(block, "dispersion ratio (Pearson)")[1] == pytest.approx(0.7618, abs=5e-5)


def test_check_formula_form_equals_range_form(workplace):
    by_ranges = udfs.GLMM_CHECK(*workplace[1], nsim=40, seed=2)
    by_formula = udfs.GLMM_CHECK(FORMULA, table(workplace[0]), nsim=40, seed=2)
    assert by_formula == by_ranges


def test_check_without_simulations_says_so(workplace):
    block = udfs.GLMM_CHECK(*workplace[1], nsim=0)
    assert block_row(block, "uniformity (KS)")[1:4] == [None, None, None]
    assert "not run" in block_row(block, "uniformity (KS)")[5]
    assert block_row(block, "dispersion ratio (Pearson)")[1] is not None
    assert not any(r[0] == "refitted simulations" for r in block)


@pytest.mark.parametrize("arg, value, message", [
    ("nsim", 10_001, "nsim must be a whole number from 0 to 10,000"),
    ("nsim", 2.5, "nsim must be a whole number from 0 to 10,000"),
    ("nsim", -1, "nsim must be a whole number from 0 to 10,000"),
    ("nsim", 39, "nsim must be 0 or a whole number from 40 to 10,000 (each simulation is a "
                 "refit, and below 40 no p-value can fall below 5%"),
    ("seed", -1, "seed must be a whole number from 0"),
    ("seed", "abc", "seed must be a number"),
])
def test_check_arguments_are_checked_before_the_fit(workplace, arg, value, message):
    out = udfs.GLMM_CHECK(*workplace[1], **{arg: value})
    assert isinstance(out, str) and out.startswith("#GLMM! ") and message in out
    assert len(cache.FITS) == 0


def test_resid_block_is_the_engine_table_with_dropped_rows_blank(workplace):
    df = workplace[0].copy()
    df.loc[5, "training"] = np.nan            # the fit drops row 6 of y
    y, X = column(df.incidents, "incidents"), column(df.training, "training")
    block = udfs.GLMM_RESID(y, X, workplace[1][2], workplace[1][3], resid_type="pearson",
                            nsim=40, seed=7)
    assert block[0] == ["fitted", "observed", "response resid", "Pearson resid",
                        "deviance resid", "quantile resid (simulated)",
                        "normal quantile (pearson)"]
    assert len(block) == 1 + len(df)
    assert block[6] == [None] * 7
    res = xlglmm.glmer(FORMULA, df.dropna(), family="poisson")
    want = res.residuals_table("pearson", 40, 7).to_numpy()
    got = np.array([r for k, r in enumerate(block[1:]) if k != 5], float)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_resid_arguments(workplace):
    out = udfs.GLMM_RESID(*workplace[1], nsim=100_000)
    assert out.startswith("#GLMM! nsim must be a whole number from 0 to 10,000")
    # 2,000 rows x 10,000 simulations: refused before the fit
    rng = np.random.default_rng(1)
    y = column(rng.poisson(2.0, 2000), "y")
    X = column(rng.normal(size=2000), "x")
    g = column([f"g{k % 50}" for k in range(2000)], "g")
    out = udfs.GLMM_RESID(y, X, g, nsim=10_000)
    assert out == ("#GLMM! nsim = 10,000 simulations of 2,000 rows are too many for a "
                   "worksheet: ask for at most 5,000")
    assert len(cache.FITS) == 0
    out = udfs.GLMM_RESID(*workplace[1], resid_type="working")
    assert out == "#GLMM! resid_type must be one of: response, pearson, deviance, quantile"
    out = udfs.GLMM_RESID(*workplace[1], nsim=0)
    assert out.startswith("#GLMM! nsim must be at least 1")


def test_ranef_block_has_rows_raw_and_shrinkage(workplace, workplace_fit):
    block = udfs.GLMM_RANEF(*workplace[1])
    assert block[0] == ["group", "level", "(Intercept)", "(Intercept) cond.SD", "rows",
                        "raw (Intercept)", "shrinkage"]
    shrunk = workplace_fit.shrinkage()
    for r in block[1:]:
        if r[0] == "group":
            continue
        levels = shrunk[r[0]].rename(index=str)        # month 1 is "1" in the sheet
        want = levels.loc[str(r[1])]
        assert r[4] == want["rows"]
        assert r[5:7] == [pytest.approx(want["raw"], rel=1e-10),
                          pytest.approx(want["shrinkage"], rel=1e-9)]


def test_influence_block_is_the_engine_table(workplace, workplace_fit):
    block = udfs.GLMM_INFLUENCE(*workplace[1])
    assert block[0] == ["plant", "rows", "DFBETAS (Intercept)", "DFBETAS training",
                        "Cook's distance", "change in SD (Intercept) | plant",
                        "change in SD (Intercept) | month", "influential", "note"]
    table_ = workplace_fit.influence("plant", workers=1)
    assert [r[0] for r in block[1:21]] == list(table_.index)
    for r in block[1:21]:
        want = table_.loc[r[0]]
        assert r[1] == want["rows"]
        got = np.array(r[2:7], float)
        np.testing.assert_allclose(got, want[["dfbetas_(Intercept)", "dfbetas_training",
                                              "cooks_distance",
                                              "change_sd_(Intercept)|plant",
                                              "change_sd_(Intercept)|month"]].to_numpy(float),
                                   rtol=1e-10)
        assert r[7] is bool(want["influential_cooks"] or want["influential_dfbetas"])
    assert [r[0] for r in block[1:21] if r[7]] == list(
        table_.index[table_.influential_cooks | table_.influential_dfbetas])
    cut = block_row(block, "cut-offs")
    assert cut[2:5] == [pytest.approx(2 / np.sqrt(20)), pytest.approx(2 / np.sqrt(20)), 0.2]


def test_influence_by_another_factor_and_a_factor_the_model_lacks(workplace):
    by_month = udfs.GLMM_INFLUENCE(*workplace[1], group="month")
    assert by_month[0][0] == "month" and len(by_month) == 1 + 8 + 1
    out = udfs.GLMM_INFLUENCE(*workplace[1], group="site")
    assert out == ("#GLMM! group must be a grouping factor of the model ('plant', 'month'), "
                   "not 'site'")
    assert udfs.GLMM_INFLUENCE(*workplace[1], group=3.0) == "#GLMM! group must be text"
