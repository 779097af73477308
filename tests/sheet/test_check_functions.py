"""GLMM_CHECK, GLMM_RESID and GLMM_RANEF's shrinkage columns (issue 15): the blocks
against the Python API (res.check, res.residuals_table, res.shrinkage) in both
calling forms, and their own arguments checked before any work."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xlglmm
from refs import PACKAGE_DATA
from sheetdata import block_row, column, columns, table
from xlglmm.engine.model_check import ROWS
from xlglmm.sheet import cache, udfs

FORMULA = "incidents ~ training + (1|plant) + (1|month) + offset(log(employees))"


@pytest.fixture(autouse=True)
def no_cached_blocks():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(scope="module")
def safety():
    df = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")
    args = (column(df.incidents, "incidents"), column(df.training, "training"),
            columns(df, ["plant", "month"]), column(np.log(df.employees)))
    return df, args


@pytest.fixture(scope="module")
def fitted(safety):
    return xlglmm.glmer(FORMULA, safety[0], family="poisson")


def test_check_block_is_the_engine_table(safety, fitted):
    block = udfs.GLMM_CHECK(*safety[1], nsim=60, seed=4)
    assert block[0] == ["Check", "Value", "Expected", "p", "Problem", "Verdict"]
    assert [r[0] for r in block[1:1 + len(ROWS)]] == list(ROWS)
    table_ = fitted.check(60, 4).table
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


def test_check_formula_form_equals_range_form(safety):
    by_ranges = udfs.GLMM_CHECK(*safety[1], nsim=30, seed=2)
    by_formula = udfs.GLMM_CHECK(FORMULA, table(safety[0]), nsim=30, seed=2)
    assert by_formula == by_ranges


def test_check_without_simulations_says_so(safety):
    block = udfs.GLMM_CHECK(*safety[1], nsim=0)
    assert block_row(block, "uniformity (KS)")[1:4] == [None, None, None]
    assert "not run" in block_row(block, "uniformity (KS)")[5]
    assert block_row(block, "dispersion ratio (Pearson)")[1] is not None
    assert not any(r[0] == "refitted simulations" for r in block)


@pytest.mark.parametrize("arg, value, message", [
    ("nsim", 10_001, "nsim must be a whole number from 0 to 10,000"),
    ("nsim", 2.5, "nsim must be a whole number from 0 to 10,000"),
    ("nsim", -1, "nsim must be a whole number from 0 to 10,000"),
    ("seed", -1, "seed must be a whole number from 0"),
    ("seed", "abc", "seed must be a number"),
])
def test_check_arguments_are_checked_before_the_fit(safety, arg, value, message):
    out = udfs.GLMM_CHECK(*safety[1], **{arg: value})
    assert isinstance(out, str) and out.startswith("#GLMM! ") and message in out
    assert len(cache.FITS) == 0


def test_resid_block_is_the_engine_table_with_dropped_rows_blank(safety):
    df = safety[0].copy()
    df.loc[5, "training"] = np.nan            # the fit drops row 6 of y
    y, X = column(df.incidents, "incidents"), column(df.training, "training")
    block = udfs.GLMM_RESID(y, X, safety[1][2], safety[1][3], resid_type="pearson",
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


def test_resid_arguments(safety):
    out = udfs.GLMM_RESID(*safety[1], resid_type="working")
    assert out == "#GLMM! resid_type must be one of: response, pearson, deviance, quantile"
    out = udfs.GLMM_RESID(*safety[1], nsim=0)
    assert out.startswith("#GLMM! nsim must be at least 1")


def test_ranef_block_has_rows_raw_and_shrinkage(safety, fitted):
    block = udfs.GLMM_RANEF(*safety[1])
    assert block[0] == ["group", "level", "(Intercept)", "(Intercept) cond.SD", "rows",
                        "raw (Intercept)", "shrinkage"]
    shrunk = fitted.shrinkage()
    for r in block[1:]:
        if r[0] == "group":
            continue
        levels = shrunk[r[0]].rename(index=str)        # month 1 is "1" in the sheet
        want = levels.loc[str(r[1])]
        assert r[4] == want["rows"]
        assert r[5:7] == [pytest.approx(want["raw"], rel=1e-10),
                          pytest.approx(want["shrinkage"], rel=1e-9)]
