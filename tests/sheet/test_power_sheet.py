"""GLMM_POWER (issue 19): power by simulation from a fit's leading arguments, called
with the values xlwings hands a worksheet function (tests/sheetdata.py), against
``xlglmm.power`` / ``xlglmm.power_curve`` with the same seed; the cache; every bad
input's message."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import xlglmm
from sheetdata import column, table
from xlglmm.sheet import cache, models, udfs

FORMULA = "incidents ~ training + (1|plant) + (1|month) + offset(log(employees))"
HEAD = ["rows", "effect", "IRR", "power", "CI low 95%", "CI high 95%", "simulations",
        "failed", "singular", "mean estimate", "SD of estimates", "mean SE"]
EFFECT = math.log(0.7)

# every test starts (and leaves) the cache empty: some count the fits
pytestmark = pytest.mark.usefixtures("empty_cache")


def quiet(*_):
    pass


def points_of(block) -> list:
    """The block's design-point rows (above its 'Notes' row)."""
    return block[1:[r[0] for r in block].index("Notes")]


def notes_of(block) -> list:
    return [r[0] for r in block[[r[0] for r in block].index("Notes") + 1:]]


def assert_row_is(r, want, first):
    """One design point's row against a PowerResult: the counts and the power
    exactly (the same seeded simulations), the estimates' summaries to 1e-6
    relative (refits from warm starts a hair apart: the range form's fit and the
    formula's find the same optimum to about 1e-9)."""
    row = want.row()
    lo, hi = want.conf_int()
    assert r[0] == (first if isinstance(first, str) else pytest.approx(first, rel=1e-11))
    assert r[1] == want.nobs
    assert r[2] == pytest.approx(want.effect[0], rel=1e-11)
    assert r[3] == pytest.approx(math.exp(want.effect[0]), rel=1e-11)
    assert r[4] == pytest.approx(want.power, abs=1e-12)
    assert r[5:7] == [pytest.approx(lo, rel=1e-10), pytest.approx(hi, rel=1e-10)]
    assert r[7:10] == [want.n_used, want.n_failed, want.n_singular]
    for got, x in zip(r[10:13], (row["mean estimate"], row["sd estimate"], row["mean se"])):
        assert got == pytest.approx(x, rel=1e-6)


def test_along_plants_is_power_curve_with_the_same_seed(workplace, workplace_fit):
    plants = [10, 20, 30, 40]
    block = udfs.GLMM_POWER(*workplace[1], term="training", effect=EFFECT, nsim=40, seed=7,
                            along="plant", values=column(plants))
    assert not isinstance(block, str), block
    assert block[0] == ["levels of plant"] + HEAD
    want = xlglmm.power_curve(workplace_fit, "training", "plant", plants, effect=EFFECT,
                              test="lrt", nsim=40, seed=7, progress=quiet)
    got = points_of(block)
    assert len(got) == 4
    for r, v, w in zip(got, plants, want.results):
        assert_row_is(r, w, v)
    # the designs: 8 months of each plant, the 20 observed ones half trained
    assert [r[1] for r in got] == [80, 160, 240, 320]
    notes = notes_of(block)
    assert notes[0].startswith("power: the share of data sets simulated from the fit, with "
                               "training at effect -0.356675 (IRR 0.7)")
    assert "likelihood-ratio test" in notes[0]
    assert notes[1].startswith("Monte Carlo error: with 40 simulations")
    assert notes[2].startswith("seed 7:")
    # each point's engine notes, under its number of plants
    for v, w in zip(plants, want.results):
        for n in w.notes:
            assert f"levels of plant {v}: {n}" in notes


def test_blank_along_is_the_fits_design_and_blank_effect_its_estimate(workplace,
                                                                      workplace_fit):
    block = udfs.GLMM_POWER(*workplace[1], nsim=30, test="wald")
    assert block[0] == ["design"] + HEAD
    (r,) = points_of(block)
    want = xlglmm.power(workplace_fit, "training", test="wald", nsim=30, seed=1,
                        progress=quiet)
    assert_row_is(r, want, "as fitted")
    assert r[2] == pytest.approx(workplace_fit.fe_params["training"], rel=1e-6)
    assert "training at the fit's estimate" in notes_of(block)[0]
    assert "Wald test" in notes_of(block)[0]


def test_the_formula_form_along_the_effect(workplace, workplace_fit):
    """GLMM's form (formula, data, family, ...) with the effect sizes as the design
    points: effect 0 is the test's type I error."""
    df = workplace[0]
    effects = [0.0, EFFECT]
    block = udfs.GLMM_POWER(FORMULA, table(df), None, None, None, None, None, "poisson",
                            nsim=30, along="Effect", values=[effects])
    assert block[0] == ["effect (link scale)"] + HEAD, block
    want = xlglmm.power_curve(workplace_fit, "training", "effect", effects, nsim=30,
                              progress=quiet)
    for r, v, w in zip(points_of(block), effects, want.results):
        assert_row_is(r, w, v)


def test_recalculation_with_unchanged_inputs_is_the_cache(workplace):
    args = workplace[1]
    first = udfs.GLMM_POWER(*args, nsim=20)
    assert len(cache.FITS) == 1 and len(cache.BLOCKS) == 1
    hits = cache.BLOCKS.hits
    again = udfs.GLMM_POWER(*args, nsim=20)
    assert again == first and cache.BLOCKS.hits == hits + 1
    again[1][4] = "edited"                          # a copy: the cache keeps its own
    assert udfs.GLMM_POWER(*args, nsim=20) == first
    # another seed is another block, from the same cached fit
    fit_hits = cache.FITS.hits
    other = udfs.GLMM_POWER(*args, nsim=20, seed=2)
    assert len(cache.BLOCKS) == 2 and len(cache.FITS) == 1 and cache.FITS.hits > fit_hits
    assert other[0] == first[0]
    # the fit's block and the power block share the fit
    udfs.GLMM_POISSON(*args)
    assert len(cache.FITS) == 1


def test_the_excel_door(workplace):
    """Excel's door: xlwings' own calling code (tests/xlwings_harness.py), ranges as
    COM hands them, omitted arguments as COM's 'missing'."""
    import xlwings_harness as h
    args = [h.com_rows(a) for a in workplace[1]]
    spilled = h.spill(h.excel_call("GLMM_POWER", *args, term="training", effect=EFFECT,
                                   nsim=20.0, along="plant",
                                   values=h.com_rows(column([10, 20]))))
    direct = udfs.GLMM_POWER(*workplace[1], term="training", effect=EFFECT, nsim=20.0,
                             along="plant", values=column([10, 20]))
    assert spilled == [["" if v is None else v for v in r] for r in direct]   # blank: ""


def test_a_run_the_budget_stops_says_how_many_ran(workplace, monkeypatch):
    monkeypatch.setattr(models, "DEFAULT_TIME_BUDGET", 1.0)
    block = udfs.GLMM_POWER(*workplace[1], nsim=100_000)
    (r,) = points_of(block)
    assert 0 < r[7] < 100_000 and r[4] is not None
    (note,) = [n for n in notes_of(block) if "stopped the run" in n]
    assert f"stopped the run after {r[7] + r[8]:,} of 100,000 simulations" in note
    assert "XLGLMM_TIME_BUDGET" in note and "fewer simulations (nsim)" in note


def test_a_budget_too_small_for_one_simulation_is_a_message(workplace, monkeypatch):
    monkeypatch.setattr(models, "DEFAULT_TIME_BUDGET", 0.001)
    out = udfs.GLMM_POWER(*workplace[1], nsim=10)
    assert isinstance(out, str) and out.startswith("#GLMM! the time budget"), out


_K = pd.DataFrame({"y": [2, 3, 5, 1, 2, 4, 6, 2, 3, 1, 0, 4, 3, 2, 5],
                   "k": list("abcabcabcabcabc"), "g": list("aaabbbcccdddeee")})


@pytest.mark.parametrize("kwargs, message", [
    ({"term": "safety"}, "term 'safety' is not a fixed effect of the model (its terms: "
                         "'training')"),
    ({"along": "site", "values": column([10])},
     "along must be a grouping factor of the model ('plant', 'month'), \"rows\" or "
     "\"effect\", not 'site'"),
    ({"along": "plant", "values": column([10, 0])},
     "values are the number of levels of 'plant': each must be a whole number >= 1, not 0 "
     "(a design needs at least one level of every factor)"),
    ({"along": "plant", "values": column([-5])},
     "values are the number of levels of 'plant': each must be a whole number >= 1, not -5 "
     "(a design needs at least one level of every factor)"),
    ({"along": "plant", "values": column([10.5])},
     "values are the number of levels of 'plant': each must be a whole number >= 1, not "
     "10.5"),
    ({"along": "rows", "values": column([0])},
     "values are the number of copies of every row: each must be a whole number >= 1, not 0 "
     "(a design needs at least one level of every factor)"),
    ({"along": "plant", "values": column(["twenty"])},
     "values must be numbers; it holds the text 'twenty'"),
    ({"along": "plant", "values": column(["#N/A"])},
     "values holds an Excel error value (#N/A)"),
    ({"along": "plant", "values": column([1])},
     "1 level of 'plant' does not identify every fixed effect (a term that varies between "
     "its levels needs levels of each kind): use more levels"),
    ({"along": "plant"}, "along needs values: a range of the design points (e.g. the "
                         "numbers of plants 10, 20, 30, 40)"),
    ({"values": column([10])}, "values needs along: the grouping factor whose number of "
                               "levels they are (e.g. \"plant\"), \"rows\" or \"effect\""),
    ({"along": "plant", "values": column(list(range(1, 60)))},
     "values has 59 numbers; the most is 50 design points (each is a whole power analysis)"),
    ({"nsim": 2.5}, "nsim must be a whole number from 1 to 100,000 (each simulation is a "
                    "refit, two for the LRT, and a worksheet call has a time budget)"),
    ({"nsim": 0}, "nsim must be a whole number from 1 to 100,000 (each simulation is a "
                  "refit, two for the LRT, and a worksheet call has a time budget)"),
    ({"nsim": 1e6}, "nsim must be a whole number from 1 to 100,000 (each simulation is a "
                    "refit, two for the LRT, and a worksheet call has a time budget)"),
    ({"nsim": "many"}, "nsim must be a number"),
    ({"effect": "0.7"}, "effect must be a number on the link scale (e.g. =LN(0.7) for a rate "
                        "or odds ratio of 0.7), or blank for the fit's estimate"),
    ({"effect": True}, "effect must be a number on the link scale (e.g. =LN(0.7) for a rate "
                       "or odds ratio of 0.7), or blank for the fit's estimate"),
    ({"test": "t"}, "test must be one of: wald, lrt, profile"),
    ({"seed": -1}, "seed must be a whole number from 0 to 9,007,199,254,740,991 (the same "
                   "seed gives the same simulations)"),
    ({"alpha": 1.5}, "alpha must be between 0 and 1 (e.g. 0.05 for 95% intervals)"),
])
def test_bad_input_is_one_message(workplace, kwargs, message):
    out = udfs.GLMM_POWER(*workplace[1], **kwargs)
    assert out == "#GLMM! " + message


def test_bad_input_is_refused_before_any_fit(workplace):
    for kwargs in ({"nsim": 2.5}, {"test": "t"}, {"effect": "0.7"},
                   {"along": "plant", "values": column([0])}):
        assert udfs.GLMM_POWER(*workplace[1], **kwargs).startswith("#GLMM! ")
    assert len(cache.FITS) == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"term": "k", "effect": 0.5},
     "effect is one number, for a term of one column; 'k' has 2 (kb, kc): leave effect "
     "blank (the fit's estimates)"),
    ({"term": "k", "test": "profile"},
     "the profile test takes a term of one column; 'k' has 2: use test \"lrt\""),
])
def test_a_term_of_several_columns(kwargs, message):
    out = udfs.GLMM_POWER("y ~ k + (1|g)", table(_K), None, None, None, None, None,
                          "poisson", **kwargs)
    assert out == "#GLMM! " + message


def test_a_term_of_several_columns_is_tested_whole():
    """The LRT of a factor tests all its columns (2 df); the block shows its first
    column's effect and estimates, and says so."""
    block = udfs.GLMM_POWER("y ~ k + (1|g)", table(_K), None, None, None, None, None,
                            "poisson", term="k", nsim=10)
    assert block[0][:3] == ["design", "rows", "effect"], block
    assert "(its columns kb, kc; the effect and estimates shown are kb's)" in notes_of(block)[0]
    want = xlglmm.power(xlglmm.glmer("y ~ k + (1|g)", _K, family="poisson"), "k", nsim=10,
                        progress=quiet)
    assert_row_is(points_of(block)[0], want, "as fitted")
    assert np.all(np.isfinite(want.effect))
