"""``res.check``: every model check in one table with verdicts (engine.model_check).
The Pearson row is performance's test, the simulation rows catch the grouse ticks'
overdispersion and extra zeros under a Poisson model and pass the negative binomial,
the same seed gives the same table in process, on local workers and on a Dask
cluster, and a request that cannot be met says so in the table instead of failing."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import xlglmm
from refs import fit, manifest
from xlglmm.engine import checks
from xlglmm.engine import model_check as M
from xlglmm.engine import simulation_tests as S
from xlglmm.workbook.templates import dataset

SIMULATION_ROWS = [S.UNIFORMITY, S.DISPERSION, S.ZEROS, S.OUTLIERS]
#: refits of the grouse models (the negative binomial's are slow): the smallest
#: two-sided p is 2 / 81, so a data set beyond every refit is flagged at 5%
GROUSE_NSIM = 80


@pytest.fixture(scope="module")
def safety():
    return fit(manifest()["safety_crossed"])[0]


@pytest.fixture(scope="module")
def grouse():
    g = dataset("grouseticks")
    g["YEAR"] = g.YEAR.astype(str)
    return g


@pytest.fixture(scope="module")
def safety_check(safety):
    return safety.check(60, seed=3, workers=1)


def test_the_table_has_every_row_and_column(safety_check):
    t = safety_check.table
    assert list(t.index) == list(M.ROWS) and list(t.columns) == list(M.COLUMNS)
    assert t["verdict"].map(lambda v: isinstance(v, str) and len(v) > 0).all()
    assert safety_check.simulation.refits == 60
    # the only note: performance's warning that the mean count is small
    assert [n[:12] for n in safety_check.notes] == ["R² and ICC: "]
    assert safety_check.problems == [n for n in t.index if t.at[n, "problem"]]


def test_the_pearson_row_is_performances_test(safety, safety_check):
    od = checks.overdispersion(safety)
    row = safety_check.table.loc[M.PEARSON]
    assert row["value"] == od["ratio"] and row["p"] == od["p"] and row["expected"] == 1.0
    assert f"{od['chisq']:.2f} on {od['df']:.0f} df" in row["verdict"]
    r2, icc = checks.r2(safety), checks.icc(safety)
    assert safety_check.table.at[M.R2_MARGINAL, "value"] == r2["marginal"]
    assert safety_check.table.at[M.ICC_ADJUSTED, "value"] == icc["adjusted"]


def test_the_simulation_rows_are_the_simulation_tests(safety, safety_check):
    sim = S.simulation_tests(safety, 60, seed=3, workers=1)
    pd.testing.assert_frame_equal(
        safety_check.table.loc[SIMULATION_ROWS, ["value", "expected", "p"]],
        sim.table.rename(columns={"statistic": "value"}), check_names=False)


@pytest.fixture(scope="module")
def grouse_checks(grouse):
    return {family: xlglmm.glmer("TICKS ~ YEAR + (1 | LOCATION)", grouse, family).check(
        GROUSE_NSIM, seed=1, workers=1) for family in ("poisson", "negbin")}


def test_a_poisson_model_of_the_grouse_ticks_is_flagged(grouse_checks, grouse):
    """The ticks vary more and are zero more often than a Poisson model with a
    location effect allows: 126 zeros of 403 where its fit expects ~105."""
    c = grouse_checks["poisson"]
    t = c.table
    assert {S.DISPERSION, S.ZEROS, M.PEARSON} <= set(c.problems)
    assert t.at[S.DISPERSION, "value"] > 1.5
    # the observed data set beyond every refit: the smallest two-sided p
    assert t.at[S.DISPERSION, "p"] == pytest.approx(2 / (c.simulation.refits + 1))
    assert c.simulation.observed_zeros == np.count_nonzero(grouse.TICKS == 0) == 126
    assert 100 < c.simulation.expected_zeros < 110
    assert t.at[S.ZEROS, "value"] > 1 and t.at[S.ZEROS, "p"] < 0.05
    assert "126 zeros observed" in t.at[S.ZEROS, "verdict"]
    assert "GLMM_NEGBIN" in t.at[S.DISPERSION, "verdict"]
    assert "overdispersion" in t.at[S.DISPERSION, "verdict"]


def test_the_negative_binomial_model_passes(grouse_checks):
    c = grouse_checks["negbin"]
    t = c.table
    for name in (S.DISPERSION, S.ZEROS):
        assert not t.at[name, "problem"] and t.at[name, "p"] > 0.05, name
    assert "no evidence of overdispersion" in t.at[S.DISPERSION, "verdict"]
    assert "zeros as the model expects" in t.at[S.ZEROS, "verdict"]


def test_same_seed_same_table_in_process_and_on_workers(safety, safety_check):
    again = safety.check(60, seed=3, workers=2)
    pd.testing.assert_frame_equal(again.table, safety_check.table)
    other = safety.check(60, seed=4, workers=1)
    assert not other.table["p"].equals(safety_check.table["p"])


def test_same_seed_same_table_on_a_dask_cluster(safety, safety_check, local_cluster):
    on_cluster = safety.check(60, seed=3, client=local_cluster)
    pd.testing.assert_frame_equal(on_cluster.table, safety_check.table)


@pytest.mark.parametrize("nsim, seed, message", [
    (-1, 0, "nsim must be a whole number"), (2.5, 0, "nsim must be a whole number"),
    ("250", 0, "nsim must be a whole number"), (S.MAX_NSIM + 1, 0, "nsim must be"),
    (10, -3, "seed must be a whole number"), (10, 0.5, "seed must be a whole number"),
    (0.0, 0, "nsim must be a whole number"), (False, 0, "nsim must be a whole number"),
    (None, 0, "nsim must be a whole number"), (0, -1, "seed must be a whole number"),
    (39, 0, "nsim must be at least 40: with fewer refits no p-value can fall below 5%")])
def test_bad_nsim_or_seed_is_one_clear_error(safety, nsim, seed, message):
    with pytest.raises(S.SimulationTestError, match=message):
        safety.check(nsim, seed)


def test_nsim_zero_leaves_the_simulation_tests_out(safety):
    c = safety.check(0)
    # (the R² note on the small mean count is kept with the fit's variances: every
    # check of the fit gives it, the first or not)
    assert c.simulation is None and len(c.notes) == 1
    assert c.notes[0].startswith("R² and ICC: the mean count is 4.35")
    assert safety.check(0).notes == c.notes
    for name in SIMULATION_ROWS:
        assert c.table.at[name, "verdict"] == "not run (nsim = 0)"
        assert math.isnan(c.table.at[name, "p"]) and not c.table.at[name, "problem"]
    assert not math.isnan(c.table.at[M.PEARSON, "p"])


def test_a_tiny_time_budget_says_so_without_failing(safety):
    c = safety.check(200, seed=1, time_budget=1e-3, workers=1)
    assert c.simulation.stopped_by_budget and c.simulation.refits < S.MIN_REFITS
    for name in SIMULATION_ROWS:
        verdict = c.table.at[name, "verdict"]
        assert verdict.startswith("not enough refits:") and "time budget" in verdict
        assert math.isnan(c.table.at[name, "p"]) and not c.table.at[name, "problem"]
    assert any(n.startswith("not enough refits") for n in c.notes)
    assert not math.isnan(c.table.at[M.PEARSON, "p"])      # the rest is still there


def test_rows_that_do_not_apply_say_why():
    res = xlglmm.lmer("Reaction ~ Days + (Days|Subject)", dataset("sleepstudy"))
    c = res.check(40, seed=2, workers=1)
    for name in (M.PEARSON, S.DISPERSION, S.ZEROS):
        assert c.table.at[name, "verdict"].startswith("not applicable: a normal model")
        assert math.isnan(c.table.at[name, "value"]) and not c.table.at[name, "problem"]
    assert not math.isnan(c.table.at[S.UNIFORMITY, "p"])
