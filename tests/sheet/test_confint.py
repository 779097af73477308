"""GLMM_CONFINT (issue 14): the Wald, profile and bootstrap intervals of a fit's
parameters as one block, from the fit's leading arguments (range or formula form),
against the Python API and lme4's confint(method = "profile")
(tests/data/profile_ci.json, made by tests/data/scripts/profile_ci.R)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import xlglmm
from refs import DATA, load_frame, manifest
from sheetdata import block_row, column, columns, table
from xlglmm.sheet import cache, models, udfs

FORMULA = "incidents ~ training + (1|plant) + (1|month) + offset(log(employees))"
HEAD = ["Parameter", "Estimate", "CI low 95%", "CI high 95%", "Method", "Replicates", "Note"]
PARAMETERS = ["sd_(Intercept)|plant", "sd_(Intercept)|month", "(Intercept)", "training"]


# every test starts (and leaves) the cache empty: some count the fits
pytestmark = pytest.mark.usefixtures("empty_cache")


def test_wald_gives_the_fixed_effects_and_says_why_the_sds_have_none(workplace, workplace_fit):
    block = udfs.GLMM_CONFINT(*workplace[1])
    assert block[0] == HEAD and [r[0] for r in block[1:]] == PARAMETERS
    ci = workplace_fit.conf_int()
    for name in ("(Intercept)", "training"):
        r = block_row(block, name)
        assert r[1] == pytest.approx(workplace_fit.fe_params[name], rel=1e-6)
        assert r[2:4] == [pytest.approx(ci.loc[name, "lower"], rel=1e-6),
                          pytest.approx(ci.loc[name, "upper"], rel=1e-6)]
        assert r[4:] == ["Wald", None, None]
    for name in PARAMETERS[:2]:
        r = block_row(block, name)
        assert r[1] == pytest.approx(workplace_fit.varcorr.set_index("grp").loc[name.split("|")[1],
                                                                        "sdcor"], rel=1e-6)
        assert r[2:4] == [None, None] and "no Wald interval" in r[6]


def test_profile_equals_lme4s_and_the_python_api(workplace, workplace_fit):
    """Each limit within 1% of the interval's width of lme4's (issue 14's criterion),
    and the Python API's numbers to the block's 12 digits."""
    ref = json.loads((DATA / "profile_ci.json").read_text())["safety_crossed"]
    block = udfs.GLMM_CONFINT(*workplace[1], method="PROFILE")
    api = workplace_fit.conf_int(method="profile")
    assert [r[0] for r in block[1:]] == PARAMETERS
    for k, name in enumerate(PARAMETERS):          # lme4's order: .sig01, .sig02, fixed
        r = block_row(block, name)
        width = ref["upper"][k] - ref["lower"][k]
        assert abs(r[2] - ref["lower"][k]) < 0.01 * width
        assert abs(r[3] - ref["upper"][k]) < 0.01 * width
        assert r[2:4] == [pytest.approx(api.loc[name, "lower"], rel=1e-9),
                          pytest.approx(api.loc[name, "upper"], rel=1e-9)]
        assert r[4:6] == ["profile", None]


def test_bootstrap_is_the_python_apis_and_reproducible(workplace, workplace_fit):
    block = udfs.GLMM_CONFINT(*workplace[1], method="bootstrap", nsim=40, seed=7, alpha=0.1)
    assert block[0][2:4] == ["CI low 90%", "CI high 90%"]
    boot = workplace_fit.bootstrap(40, seed=7)
    ci = boot.recommended(0.1)      # bootstrap-t for the effects, basic for the SDs
    assert [r[0] for r in block[1:]] == list(ci.index) == PARAMETERS
    for name in PARAMETERS:
        r = block_row(block, name)
        assert r[2:4] == [pytest.approx(ci.loc[name, "lower"], rel=1e-9, abs=1e-12),
                          pytest.approx(ci.loc[name, "upper"], rel=1e-9, abs=1e-12)]
        kind = "bootstrap basic" if name.startswith("sd_") else "bootstrap-t"
        assert r[4:6] == [kind, len(boot.replicates)]
        if boot.singular:
            assert f"{boot.singular} refit" in r[6] and "singular" in r[6]
    # the same seed: the same block, from the cache; another seed: other replicates
    hits = cache.BLOCKS.hits
    again = udfs.GLMM_CONFINT(*workplace[1], method="bootstrap", nsim=40, seed=7, alpha=0.1)
    assert again == block and cache.BLOCKS.hits == hits + 1
    other = udfs.GLMM_CONFINT(*workplace[1], method="bootstrap", nsim=40, seed=8, alpha=0.1)
    assert block_row(other, "training")[2] != block_row(block, "training")[2]


def test_the_formula_form_reaches_the_same_fit(workplace):
    df = workplace[0]
    ranges = udfs.GLMM_CONFINT(*workplace[1], method="profile")
    fits = len(cache.FITS)
    formula = udfs.GLMM_CONFINT(FORMULA, table(df), "poisson", None, None, None, 1,
                                method="profile")
    assert len(cache.FITS) == fits + 1           # the formula's own model: one more fit
    for a, b in zip(ranges[1:], formula[1:]):
        assert a[1:] == [pytest.approx(v, rel=1e-6) if isinstance(v, float) else v
                         for v in b[1:]]


def test_the_fit_blocks_fit_is_reused(workplace):
    udfs.GLMM_POISSON(*workplace[1])
    fits = len(cache.FITS)
    assert not isinstance(udfs.GLMM_CONFINT(*workplace[1]), str)
    assert len(cache.FITS) == fits


def test_a_budget_stop_keeps_the_replicates_it_has(workplace, monkeypatch):
    monkeypatch.setattr(models, "DEFAULT_TIME_BUDGET", 1.0)
    block = udfs.GLMM_CONFINT(*workplace[1], method="bootstrap", nsim=100_000)
    r = block_row(block, "training")
    assert 0 < r[5] < 100_000 and r[2] < r[1] < r[3]
    assert "left after the fit) stopped the bootstrap after" in r[6]
    assert "may differ elsewhere" in r[6]


def test_an_lmm_fit_has_wald_and_profile_intervals():
    spec = manifest("models_negbin_lmm.json")["sleep_reml"]
    df = load_frame(spec)
    args = (column(df.Reaction, "Reaction"), column(df.Days, "Days"),
            column(df.Subject.astype(str), "Subject"), None, column(df.Days, "Days"))
    wald = udfs.GLMM_CONFINT(*args, family="gaussian")
    res = xlglmm.lmer(spec["formula"], df)
    # the bootstrap's statistics, in lme4's confint order (sigma among them)
    assert [r[0] for r in wald[1:]] == ["sd_(Intercept)|Subject",
                                        "cor_(Intercept).Days|Subject", "sd_Days|Subject",
                                        "sigma", "(Intercept)", "Days"]
    assert block_row(wald, "Days")[2] == pytest.approx(res.conf_int().loc["Days", "lower"],
                                                       rel=1e-6)
    prof = udfs.GLMM_CONFINT(*args, family="gaussian", method="profile")
    expected = res.conf_int(method="profile")
    assert sorted(r[0] for r in prof[1:]) == sorted(expected.index)  # sigma among them
    assert "sigma" in expected.index
    for r in prof[1:]:
        assert r[2:4] == pytest.approx(list(expected.loc[r[0], ["lower", "upper"]]),
                                       rel=1e-9)
        assert "maximum-likelihood refit" in r[6]   # a REML fit is profiled on its ML refit, as lme4


@pytest.mark.parametrize("argument,bad,message", [
    ("method", "jackknife", "method must be one of: wald, profile, bootstrap"),
    ("method", 2.0, "method must be text"),
    ("nsim", 0.0, "nsim must be a whole number from 1 to 100,000 (each replicate is a "
                  "refit, and a worksheet call has a time budget)"),
    ("nsim", 2.5, "nsim must be a whole number from 1 to 100,000"),
    ("nsim", 100_001.0, "nsim must be a whole number from 1 to 100,000"),
    ("nsim", "many", "nsim must be a number"),
    ("seed", -1.0, "seed must be a whole number from 0 to 9,007,199,254,740,991"),
    ("seed", 0.5, "seed must be a whole number from 0"),
    ("seed", "#N/A", "seed is an Excel error value (#N/A)"),
    ("alpha", 1.0, "alpha must be between 0 and 1"),
    ("alpha", 0.0, "alpha must be between 0 and 1"),
])
def test_bad_options_are_one_message_before_any_fit(argument, bad, message):
    y = column([1.0] * 11 + [2.0], "y")
    out = udfs.GLMM_CONFINT(y, None, column(list("aaabbbcccddd"), "g"), **{argument: bad})
    assert isinstance(out, str) and out.startswith("#GLMM! " + message), out
    assert len(cache.FITS) == 0


def test_a_fit_that_fails_is_its_message():
    y = column([0.0] * 12, "y")
    out = udfs.GLMM_CONFINT(y, None, column(list("aaabbbcccddd"), "g"), method="profile")
    assert out.startswith("#GLMM! y is 0 in every row used")


def test_excel_calls_it_through_xlwings(workplace):
    """Excel's door: xlwings' own calling code (tests/xlwings_harness.py), ranges as
    COM hands them, omitted arguments as COM's 'missing'."""
    import xlwings_harness as h
    df = workplace[0]
    com = h.com_rows
    args = (com(column(df.incidents, "incidents")), com(column(df.training, "training")),
            com(columns(df, ["plant", "month"])), com(column(np.log(df.employees))))
    spilled = h.spill(h.excel_call("GLMM_CONFINT", *args, method="profile"))
    direct = udfs.GLMM_CONFINT(*workplace[1], method="profile")
    assert spilled == [["" if v is None else v for v in r] for r in direct]  # blank: ""


def test_too_few_replicates_and_a_level_beyond_the_profile_say_so(workplace):
    """nsim = 5 gives limits that are the extreme replicates: the note says so; a
    profile level beyond its walk (alpha < 0.01) is refused before any work."""
    block = udfs.GLMM_CONFINT(*workplace[1], method="bootstrap", nsim=5)
    assert "only 5 replicates: too few for a 95% interval" in block_row(block, "training")[6]
    assert udfs.GLMM_CONFINT(*workplace[1], method="profile", alpha=0.001) == (
        "#GLMM! alpha must be at least 0.01 for profile intervals: the profile is walked "
        "to a 99% interval")
