"""xlglmm.power / power_curve / planned_model / design_table: the simulations are
the ones a user would run by hand (each test statistic recomputed from glmer/lmer
fits of the same simulated data), reproducible by seed wherever they run, the
designs are built as documented, and bad input gets one clear message.  (The
calibration against exact and huge-simulation power, and the agreement with an
lme4 loop, are tests/engine/test_power_calibration.py and test_power_lme4.py.)"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import xlglmm
from benchmarks.power_calibration import poisson_plan
from refs import PACKAGE_DATA
from xlglmm.engine.bootstrap import draw_response
from xlglmm.engine.design import term_columns
from xlglmm.engine.model import ModelError
from xlglmm.engine.power import PowerError

LOG07 = math.log(0.7)


def workplace_table():
    """The workplace-sized design's table (20 plants x 8 months, every other plant
    trained, exposure 150 + 10 i): benchmarks/power_calibration.py's plan."""
    return poisson_plan().data


@pytest.fixture(scope="module")
def planned():
    """incidents ~ training + (1|plant) + (1|month), offset; (Intercept) -3.5,
    training log 0.7, SDs 0.4 and 0.2."""
    return poisson_plan(LOG07)


@pytest.fixture(scope="module")
def lrt_run(planned):
    return xlglmm.power(planned, "training", test="lrt", nsim=40, seed=5, workers=1)


def simulated_table(pm, seed, i):
    """Simulation i's data as a table (the draw ``power`` makes)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
    y = draw_response(pm.model, pm.beta, pm.theta, pm.sigma, rng)
    out = pm.data.copy()
    out[pm.design.response_name] = y
    return out


# ---- the design --------------------------------------------------------------------------

def test_design_table_crosses_nests_repeats_and_splits():
    tab = xlglmm.design_table({"site": 4, "period": 3}, nested={"bed": ("site", 2)},
                              rows=2, split={"treated": ("site", 0.5)})
    assert len(tab) == 4 * 3 * 2 * 2
    assert tab.groupby("site").period.nunique().eq(3).all()
    # nested: every site has 2 beds of its own
    assert tab.groupby("site").bed.nunique().eq(2).all()
    assert tab.bed.nunique() == 8
    # half the sites treated, spread evenly: the 2nd and 4th
    assert tab.groupby("site").treated.first().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert tab.groupby("site").treated.nunique().eq(1).all()


def test_split_spreads_any_share_evenly():
    from xlglmm.engine.planning import spread
    for n, share in [(10, 0.3), (7, 0.5), (20, 0.25), (5, 0.0), (5, 1.0)]:
        s = spread(n, share)
        assert s.sum() == math.floor(n * share + 1e-9)
        # every prefix holds its share, to within one unit
        assert np.all(np.abs(np.cumsum(s) - share * np.arange(1, n + 1)) < 1.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(levels={"plant": 0}), "levels of 'plant' must be a whole number >= 1, not 0"),
    (dict(levels={"plant": 2.5}), "whole number"),
    (dict(levels={}), "at least one factor"),
    (dict(levels={"plant": 20}, split={"t": ("month", 0.5)}), "'month' is not a factor"),
    (dict(levels={"plant": 20}, split={"t": ("plant", 1.5)}), "share must be a number from 0 to 1"),
    (dict(levels={"a": 2000, "b": 2000}), "the most is 2,000,000"),
    (dict(levels={"a": 2}, nested={"b": ("c", 2)}), "'c' is not a factor"),
])
def test_design_table_refuses_bad_designs(kwargs, message):
    with pytest.raises(PowerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        xlglmm.design_table(**kwargs)


def test_term_columns_are_rs_assign():
    d = pd.read_csv(PACKAGE_DATA / "grouseticks.csv").assign(YEAR=lambda t: t.YEAR.astype(str))
    pm = xlglmm.planned_model("TICKS ~ YEAR * cHEIGHT + (1|LOCATION)", d, "poisson",
                              fixed={"(Intercept)": 1, "YEAR96": 0, "YEAR97": 0,
                                     "cHEIGHT": 0, "YEAR96:cHEIGHT": 0, "YEAR97:cHEIGHT": 0},
                              sd={"LOCATION": 1})
    assert term_columns(pm.design.spec) == {
        "YEAR": ["YEAR96", "YEAR97"], "cHEIGHT": ["cHEIGHT"],
        "YEAR:cHEIGHT": ["YEAR96:cHEIGHT", "YEAR97:cHEIGHT"]}


def test_planned_model_holds_the_values_given(planned):
    assert planned.design.x_names == ["(Intercept)", "training"]
    assert planned.beta.tolist() == [-3.5, LOG07]
    assert planned.theta.tolist() == [0.4, 0.2]     # Poisson: theta is the SD itself
    lmm = xlglmm.planned_model("y ~ x + (x|g)", pd.DataFrame(
        {"g": np.repeat(list("abcdefgh"), 4), "x": np.tile(np.arange(4.0), 8)}), "gaussian",
        fixed={"(Intercept)": 0, "x": 1}, sd={"g": [2.0, 0.5]}, cor={"g": -0.3}, sigma=2.0)
    # LMM: theta is the Cholesky factor of the covariance relative to sigma^2
    L = np.linalg.cholesky(np.array([[4.0, -0.3], [-0.3, 0.25]]) / 4.0)
    assert np.allclose(lmm.theta, [L[0, 0], L[1, 0], L[1, 1]])


@pytest.mark.parametrize("change, message", [
    (dict(sd={"plant": -0.4, "month": 0.2}), "an SD cannot be negative"),
    (dict(sd={"plant": float("nan"), "month": 0.2}), "must be a number >= 0"),
    (dict(sd={"plant": 0.4}), "missing: month"),
    (dict(sd={"plant": 0.4, "month": 0.2, "site": 1}), "unknown: site"),
    (dict(fixed={"(Intercept)": -3.5}), "missing: training"),
    (dict(fixed={"(Intercept)": -3.5, "training": 0, "trained": 1}),
     "not columns of the model: trained"),
    (dict(fixed={"(Intercept)": -3.5, "training": "big"}), "must be a finite number"),
    (dict(sigma=1.0), "this family has none"),
    (dict(cor={"plant": 0.5}), "a term of one effect has no correlation"),
    (dict(family="nonsense"), "family"),
])
def test_planned_model_refuses_impossible_values(change, message):
    args = dict(fixed={"(Intercept)": -3.5, "training": LOG07}, sd={"plant": 0.4, "month": 0.2},
                offset="lexp", family="poisson")
    args.update(change)
    family = args.pop("family")
    with pytest.raises(PowerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        xlglmm.planned_model("incidents ~ training + (1|plant) + (1|month)",
                             workplace_table(), family, **args)


def test_impossible_correlations_and_a_missing_sigma():
    tab = pd.DataFrame({"g": np.repeat(list("abcdef"), 5), "x": np.tile(np.arange(5.0), 6),
                        "z": np.tile([0.0, 1, 0, 1, 1], 6)})
    R = [[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]]
    with pytest.raises(PowerError, match="impossible together"):
        xlglmm.planned_model("y ~ x + (x + z|g)", tab, "poisson", fixed={
            "(Intercept)": 0, "x": 0}, sd={"g": [1, 1, 1]}, cor={"g": R})
    with pytest.raises(PowerError, match="correlation from -1 to 1"):
        xlglmm.planned_model("y ~ x + (x|g)", tab, "poisson", fixed={
            "(Intercept)": 0, "x": 0}, sd={"g": [1, 1]}, cor={"g": 1.5})
    with pytest.raises(PowerError, match=r"sigma \(the residual SD\) must be a positive"):
        xlglmm.planned_model("y ~ x + (1|g)", tab, "gaussian", fixed={
            "(Intercept)": 0, "x": 0}, sd={"g": 1})


def test_a_gamma_plan_draws_and_fits_with_the_dispersion_sigma_squared():
    # the exact Laplace's Gamma needs its dispersion in the likelihood: "gamma" with
    # sigma was a bare ValueError from the deviance function
    tab = xlglmm.design_table({"plant": 30}, rows=6, split={"tr": ("plant", 0.5)})
    args = dict(fixed={"(Intercept)": 1.0, "tr": 0.2}, sd={"plant": 0.5}, link="log")
    plan = xlglmm.planned_model("y ~ tr + (1|plant)", tab, "gamma", sigma=0.3, **args)
    assert plan.model.family.dispersion == pytest.approx(0.09, rel=1e-12)
    held = xlglmm.planned_model("y ~ tr + (1|plant)", tab,
                                xlglmm.Family("gamma", "log", dispersion=0.09), sigma=0.3,
                                **args)
    a = xlglmm.power(plan, "tr", test="wald", nsim=5, seed=2, workers=1)
    b = xlglmm.power(held, "tr", test="wald", nsim=5, seed=2, workers=1)
    assert a.n_used == 5 and np.array_equal(a.pvalues, b.pvalues)
    with pytest.raises(PowerError, match=r"dispersion \(0.09\) is not sigma\^2 \(1\)"):
        xlglmm.planned_model("y ~ tr + (1|plant)", tab,
                             xlglmm.Family("gamma", "log", dispersion=0.09), sigma=1.0,
                             **args)


# ---- the simulations ------------------------------------------------------------------

def test_lrt_is_the_likelihood_ratio_of_glmer_fits(planned, lrt_run):
    """Each simulation's p-value is the LRT of glmer fits, full and null, to its data."""
    assert lrt_run.n_used + lrt_run.n_failed == 40 and lrt_run.n_failed == 0
    for i in (0, 7, 23):
        tab = simulated_table(planned, 5, i)
        full = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", tab,
                            offset="lexp", se_method="rx")
        null = xlglmm.glmer("incidents ~ 1 + (1|plant) + (1|month)", tab, offset="lexp",
                            se_method="rx")
        p = stats.chi2.sf(max(0.0, 2 * (full.llf - null.llf)), 1)
        assert lrt_run.pvalues[i] == pytest.approx(p, rel=1e-4, abs=1e-8)
        assert lrt_run.estimates.training[i] == pytest.approx(full.fe_params["training"],
                                                              abs=1e-4 * full.fe_bse["training"])
    assert lrt_run.rejected.tolist() == (lrt_run.pvalues < 0.05).tolist()


def test_wald_is_the_z_test_of_the_fit_and_lmm_uses_satterthwaite():
    tab = xlglmm.design_table({"g": 12}, rows=4, split={"trt": ("g", 0.5)})
    pm = xlglmm.planned_model("y ~ trt + (1|g)", tab, "gaussian",
                              fixed={"(Intercept)": 1, "trt": 0.7}, sd={"g": 1.0}, sigma=1.0)
    run = xlglmm.power(pm, "trt", test="wald", nsim=6, seed=3, workers=1)
    for i in range(3):
        fit = xlglmm.lmer("y ~ trt + (1|g)", simulated_table(pm, 3, i))
        row = fit.t_tests().loc["trt"]
        # (rel 1e-4: warm and cold starts stop the optimizer at slightly different
        # points; Satterthwaite's df is a finite-difference quantity)
        assert run.pvalues[i] == pytest.approx(row.iloc[-1], rel=1e-4)
    gl = xlglmm.planned_model("y ~ trt + (1|g)", tab, "binomial",
                              fixed={"(Intercept)": 0, "trt": 1.0}, sd={"g": 0.5})
    run = xlglmm.power(gl, "trt", test="wald", nsim=3, seed=4, workers=1)
    for i in range(3):
        fit = xlglmm.glmer("y ~ trt + (1|g)", simulated_table(gl, 4, i), "binomial",
                           se_method="hessian")
        assert run.pvalues[i] == pytest.approx(fit.fe_pvalues["trt"], rel=1e-4)


def test_the_same_seed_gives_the_same_numbers_on_one_or_two_processes(planned, lrt_run):
    two = xlglmm.power(planned, "training", test="lrt", nsim=40, seed=5, workers=2)
    assert np.array_equal(two.pvalues, lrt_run.pvalues)
    assert np.array_equal(two.estimates.to_numpy(), lrt_run.estimates.to_numpy())
    other = xlglmm.power(planned, "training", test="lrt", nsim=40, seed=6, workers=1)
    assert not np.array_equal(other.pvalues, lrt_run.pvalues)


def test_a_dask_cluster_gives_the_same_numbers(planned, lrt_run, local_cluster):
    on_cluster = xlglmm.power(planned, "training", test="lrt", nsim=40, seed=5,
                              client=local_cluster)
    assert "Dask cluster" in on_cluster.where
    assert np.array_equal(on_cluster.pvalues, lrt_run.pvalues)


def test_power_summaries(lrt_run):
    k, n = int(lrt_run.rejected.sum()), lrt_run.n_used
    assert lrt_run.power == k / n
    lo, hi = lrt_run.conf_int()
    # Clopper-Pearson: the binomial tail at each end is 2.5%
    assert stats.binom.sf(k - 1, n, lo) == pytest.approx(0.025, rel=1e-6)
    assert stats.binom.cdf(k, n, hi) == pytest.approx(0.025, rel=1e-6)
    assert lrt_run.bias["training"] == pytest.approx(lrt_run.estimates.training.mean() - LOG07)
    row = lrt_run.row()
    assert row["levels plant"] == 20 and row["nobs"] == 160 and row["power"] == k / n
    assert "Power for training" in lrt_run.summary()


def test_a_fit_as_the_source_with_a_changed_effect_and_more_plants():
    d = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv").assign(
        lexp=lambda t: np.log(t.employees))
    fit = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", d, offset="lexp")
    curve = fit.power_curve("training", "plant", [10, 30], effect=LOG07, test="wald",
                            nsim=10, seed=2, workers=1)
    t = curve.table
    assert t.plant.tolist() == [10, 30] and t.nobs.tolist() == [80, 240]
    assert t["levels month"].tolist() == [8, 8] and t.effect.tolist() == [LOG07, LOG07]
    # a curve's point is the run of that design alone
    alone = fit.power("training", LOG07, test="wald", nsim=10, seed=2, workers=1,
                      levels={"plant": 30})
    assert np.array_equal(alone.pvalues, curve.results[1].pvalues)
    # effect sizes: the truth differs, the design does not
    eff = fit.power_curve("training", "effect", [0.0, -1.5], test="wald", nsim=10, seed=2,
                          workers=1)
    assert eff.table.nobs.tolist() == [160, 160]
    assert eff.results[1].power == 1.0


def test_extending_copies_levels_and_nested_factors():
    from xlglmm.engine.power import extended_design
    tab = xlglmm.design_table({"site": 3, "period": 2}, nested={"bed": ("site", 2)},
                              split={"treated": ("site", 0.5)})
    pm = xlglmm.planned_model("y ~ treated + (1|site/bed) + (1|period)", tab, "poisson",
                              fixed={"(Intercept)": 0, "treated": 0},
                              sd={"bed:site": 0.3, "site": 0.5, "period": 0.1})
    d = extended_design(pm.design, "site", 7)
    levels = {t.group: t.nlevels for t in d.re_terms}
    assert levels == {"bed:site": 14, "site": 7, "period": 2}
    assert d.nobs == 7 * 4
    # copies keep their covariates: sites 1..3 then 1..3 then 1: treated 0,1,0,0,1,0,0
    site = next(t for t in d.re_terms if t.group == "site")
    first = [d.X[np.flatnonzero(site.codes == c)[0], 1] for c in range(7)]
    assert sorted(first) == sorted([0, 1, 0, 0, 1, 0, 0])
    fewer = extended_design(pm.design, "site", 2)
    assert {t.group: t.nlevels for t in fewer.re_terms} == {"bed:site": 4, "site": 2,
                                                            "period": 2}


def test_a_family_parameter_is_estimated_again():
    d = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv").assign(
        lexp=lambda t: np.log(t.employees))
    nb = xlglmm.glmer("incidents ~ training + (1|plant)", d, "negbin", offset="lexp")
    run = nb.power("training", LOG07, test="wald", nsim=3, seed=1, workers=1)
    assert run.n_used == 3
    assert any("re-estimates the family's parameter" in n for n in run.notes)


def test_a_budget_too_small_says_what_ran_and_how_to_ask_for_more(planned):
    run = xlglmm.power(planned, "training", test="lrt", nsim=100_000, seed=1,
                       time_budget=1.0, workers=1)
    assert run.stopped_by_budget and 0 < run.n_tried < 100_000
    assert any(f"ran out after {run.n_tried:,} of 100,000 simulations" in n
               and "larger time_budget" in n for n in run.notes)


def test_pilot_fits_the_budget_stops_are_the_budgets_message_not_the_designs(planned):
    # 20,000 plants: the pilot fits alone outlast a 1 s budget.  They used to be tried
    # 5 times, each with the whole budget, and then blamed the design ("did not
    # converge on any of 5 data sets ... use a larger design")
    with pytest.raises(PowerError) as err:
        xlglmm.power(planned, "training", test="lrt", nsim=50, seed=1, time_budget=1.0,
                     workers=1, levels={"plant": 20_000})
    assert "time budget" in str(err.value)
    assert "did not converge" not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(term="trained"), "term 'trained' is not a fixed effect of the model (its terms: "
                           "'training')"),
    (dict(term="(Intercept)"), "is not a fixed effect"),
    (dict(test="t"), "test must be one of: wald, lrt, profile"),
    (dict(nsim=0), "nsim must be a whole number from 1 to 1,000,000"),
    (dict(nsim=2.5), "nsim must be a whole number"),
    (dict(seed=-1), "seed must be a whole number >= 0"),
    (dict(alpha=5), "alpha must be a number between 0 and 1"),
    (dict(effect="big"), "must be a finite number"),
    (dict(effect={"trained": 1}), "not a column of the term"),
    (dict(levels={"plant": 0}), "levels of 'plant' must be a whole number >= 1"),
    (dict(levels={"site": 10}), "'site' is not a grouping factor of the model"),
    (dict(levels={"plant": 10 ** 7}), "the most is 2,000,000"),
    (dict(rows=0), "rows must be a whole number >= 1"),
    (dict(time_budget=-1), "time_budget must be a positive number"),
    # a rate ratio of e^60: Poisson means numpy cannot draw (was a bare ValueError)
    (dict(effect=60.0), "responses cannot be drawn at these values"),
])
def test_bad_arguments_get_one_clear_message(planned, kwargs, message):
    args = dict(term="training", nsim=5, seed=1, workers=1)
    args.update(kwargs)
    term = args.pop("term")
    with pytest.raises(PowerError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("'", "'")):
        xlglmm.power(planned, term, **args)


def test_a_curve_refuses_bad_values(planned):
    with pytest.raises(PowerError, match="levels of 'plant' must be a whole number >= 1"):
        xlglmm.power_curve(planned, "training", "plant", [10, 0], nsim=2, workers=1)
    with pytest.raises(PowerError, match="'shift' is not a grouping factor"):
        xlglmm.power_curve(planned, "training", "shift", [10], nsim=2, workers=1)
    with pytest.raises(PowerError, match="values must be one or more numbers"):
        xlglmm.power_curve(planned, "training", "plant", [], nsim=2, workers=1)


def test_a_model_that_cannot_be_fitted_on_the_design_says_so(planned):
    tab = xlglmm.design_table({"g": 1}, rows=6).assign(trt=np.tile([0.0, 1.0], 3))
    with pytest.raises(PowerError, match="'g' has 1 level: a random effect needs at least 2"):
        xlglmm.planned_model("y ~ trt + (1|g)", tab, "poisson",
                             fixed={"(Intercept)": 0, "trt": 0.5}, sd={"g": 0.5})
    with pytest.raises(PowerError, match="cannot be fitted on this design: grouping factor "
                                         "'month' has 1 level"):
        xlglmm.power(planned, "training", nsim=2, workers=1, levels={"month": 1})


def test_refits_do_not_inherit_an_unlucky_pilot():
    """The pilot is one random draw: here a separated one (no vaccinated herd has a
    case: its effect estimated below -10).  Refits used to start at its estimates,
    and 16 of 60 refits that converge from scratch stopped at a spurious optimum
    (the effect near -1e6, the full model's likelihood below the null's: p = 1) and
    24 failed; they start at the truth now, and every p-value is a fit from
    scratch's."""
    from xlglmm.engine.power import PILOT_KEY
    tab = xlglmm.design_table({"herd": 8}, rows=4, split={"vacc": ("herd", 0.5)})
    tab["n"] = 5
    plan = xlglmm.planned_model("p ~ vacc + (1|herd)", tab, "binomial", weights="n",
                                fixed={"(Intercept)": -2.5, "vacc": -2.5}, sd={"herd": 1.0})

    def fits(rng):
        d = plan.data.assign(p=draw_response(plan.model, plan.beta, plan.theta, plan.sigma,
                                             rng))
        return [xlglmm.glmer(f, d, family="binomial", weights="n")
                for f in ("p ~ vacc + (1|herd)", "p ~ 1 + (1|herd)")]
    pilot, _ = fits(np.random.default_rng(np.random.SeedSequence(4, spawn_key=(PILOT_KEY,))))
    assert pilot.converged and pilot.fe_params["vacc"] < -10
    run = xlglmm.power(plan, "vacc", test="lrt", nsim=60, seed=4, workers=1)
    failed = {i for i, _ in run.failures}
    p = dict(zip([i for i in range(60) if i not in failed], run.pvalues))
    compared = 0
    for i in range(60):
        full, null = fits(np.random.default_rng(np.random.SeedSequence(4, spawn_key=(i,))))
        if full.converged and null.converged:
            assert i in p
            want = stats.chi2.sf(max(0.0, 2.0 * (full.llf - null.llf)), 1)
            assert p[i] == pytest.approx(want, abs=1e-6)
            compared += 1
    assert compared >= 50 and run.n_failed <= 60 - compared


def test_a_curve_keeps_the_points_that_ran_when_the_budget_runs_out(planned, monkeypatch):
    """A budget spent before a later point's first simulation (here: its pilot fits
    say so, as they do when the budget stops them): the points that ran are kept,
    that one is reported as not run (no simulations, the budget's note); only a run
    in which no point ran is an error."""
    import xlglmm.engine.power as P
    real = P._pilot_fits

    def pilots(truth, design, cols, *args):
        if design.nobs > 160:
            raise P.OutOfTime(P.budget_message(0, 20, 9.0))
        return real(truth, design, cols, *args)
    monkeypatch.setattr(P, "_pilot_fits", pilots)
    curve = xlglmm.power_curve(planned, "training", "plant", [20, 40], nsim=20,
                               test="wald", time_budget=60, workers=1)
    first, last = curve.results
    assert first.n_used == 20 and last.n_tried == 0 and last.stopped_by_budget
    assert "ran out after 0 of 20 simulations" in last.notes[0]
    assert math.isnan(curve.table.power.iloc[1]) and curve.table.nobs.tolist() == [160, 320]
    with pytest.raises(PowerError, match="ran out after 0 of 20"):
        xlglmm.power(planned, "training", levels={"plant": 40}, nsim=20, workers=1)


def test_levels_are_balanced_on_the_tested_term_whatever_else_differs():
    """Plants listed trained first, each with its own size: 10 of them, or 30, keep
    half trained (the kinds are the tested column's values, not whole rows of X)."""
    from xlglmm.engine.power import extended_design
    tab = xlglmm.design_table({"plant": 20, "month": 4})
    k = tab.plant.str[-2:].astype(int).to_numpy() - 1
    tab["training"] = (k < 10).astype(float)
    tab["size"] = np.log(100.0 + 7 * k)
    pm = xlglmm.planned_model("y ~ training + size + (1|plant)", tab, "poisson",
                              fixed={"(Intercept)": -1, "training": -0.4, "size": 0.5},
                              sd={"plant": 0.3})
    for n in (10, 30):
        d = extended_design(pm.design, "plant", n, ["training"])
        t = d.re_terms[0]
        trained = [d.X[np.flatnonzero(t.codes == c)[0], 1] for c in range(n)]
        assert sum(trained) == n / 2


def test_a_design_too_wide_for_memory_is_refused_before_it_is_made():
    from xlglmm.engine.power import MAX_CELLS
    tab = xlglmm.design_table({"g": 10}, rows=20)
    for j in range(30):
        tab[f"x{j}"] = np.random.default_rng(j).normal(size=len(tab))
    xs = " + ".join(f"x{j}" for j in range(30))
    pm = xlglmm.planned_model(f"y ~ {xs} + (1|g)", tab, "poisson",
                              fixed={"(Intercept)": 0, **{f"x{j}": 0 for j in range(30)}},
                              sd={"g": 0.5})
    rows = MAX_CELLS // 30          # under the row limit, over the numbers' limit
    with pytest.raises(PowerError, match="would hold about .* numbers"):
        xlglmm.power(pm, "x0", nsim=2, workers=1, levels={"g": rows // 20})


def test_notes_say_what_the_power_leaves_out(planned, monkeypatch):
    """Failed simulations: the note gives the power counting them as not detected;
    a term inside an interaction: the note says its test depends on the coding."""
    import xlglmm.engine.power as P
    real = P._fitted

    def failing(base, y, job, left, se_method):
        if y.sum() % 3 == 0:
            raise ModelError("injected failure")
        return real(base, y, job, left, se_method)
    monkeypatch.setattr(P, "_fitted", failing)
    run = xlglmm.power(planned, "training", test="wald", nsim=30, seed=2, workers=1)
    assert 0 < run.n_failed < 30
    note = next(n for n in run.notes if "could not be fitted" in n)
    assert f"the power would be {run.rejected.sum() / run.n_tried:.3f}" in note
    monkeypatch.undo()
    d = pd.read_csv(PACKAGE_DATA / "grouseticks.csv").assign(YEAR=lambda t: t.YEAR.astype(str))
    fit = xlglmm.glmer("TICKS ~ YEAR * cHEIGHT + (1|LOCATION)", d)
    run = fit.power("cHEIGHT", -0.02, test="wald", nsim=2, workers=1)
    assert any("keeps YEAR:cHEIGHT, which contains cHEIGHT" in n for n in run.notes)


def test_a_between_group_effect_with_few_groups_gets_the_calibration_note(planned):
    """training is constant within plants (20 of them): the GLMM's tests are liberal
    there (docs/power.md), and the note says so; with 40 plants, or for an LMM's
    t-test, or a covariate that varies within every group, no note."""
    from xlglmm.engine.power import few_levels_between
    assert few_levels_between(planned.design, [1]) == ("plant", 20)
    run = xlglmm.power(planned, "training", nsim=2, workers=1)
    assert any("varies between only 20 levels of plant" in n for n in run.notes)
    more = xlglmm.power(planned, "training", nsim=2, workers=1, levels={"plant": 40})
    assert not any("varies between only" in n for n in more.notes)
    tab = xlglmm.design_table({"g": 10}, rows=6).assign(x=np.tile(np.arange(6.0), 10))
    within = xlglmm.planned_model("y ~ x + (1|g)", tab, "poisson",
                                  fixed={"(Intercept)": 0, "x": 0.1}, sd={"g": 0.5})
    assert few_levels_between(within.design, [1]) is None
