"""Issue 18, items 6, 14 (part) and 15: cost guards before the fit allocates, the
time budget inside long evaluations, budget-stopped fits, numerical extremes.

No timing assertions: cost is bounded by sizes (traced memory), operation counts
(budget checks, PIRLS iterations) and a deterministic clock where the budget's
behaviour is tested."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import xlglmm
from xlglmm.engine import cost, family_parameter, fit, model, pirls
from xlglmm.engine.design import DesignError, _rank_by_qr, _rank_sequential, build_design, \
    full_rank_columns
from xlglmm.engine.devfun import GlmmDeviance
from xlglmm.engine.family import make_family
from xlglmm.engine.optimize import Budget, FitTimeout

POISSON = make_family("poisson")


def crossed(n, levels):
    """Two crossed grouping factors of ``levels`` levels each on n rows."""
    i = np.arange(n)
    return pd.DataFrame({"y": (i % 3).astype(float), "g1": pd.Categorical(i % levels),
                         "g2": pd.Categorical((i * 7 + i // levels) % levels)})


def interaction(levels, reps=2):
    """y ~ a*b of two text factors of ``levels`` levels, every cell ``reps`` times."""
    n = reps * levels * levels
    i = np.arange(n)
    return pd.DataFrame({"y": (i % 5).astype(float),
                         "a": pd.Categorical([f"a{k}" for k in i % levels]),
                         "b": pd.Categorical([f"b{k}" for k in (i // levels) % levels]),
                         "g": pd.Categorical(i % 10)})


def small(seed=2, n=200):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 10, n)
    x = rng.standard_normal(n)
    re = rng.standard_normal(10)[g] * 0.4
    y = rng.poisson(np.exp(0.3 + 0.5 * x + re)).astype(float)
    yl = 0.3 + 0.5 * x + re + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "yl": yl, "x": x, "g": g.astype(str)})


# ---- item 6: cost guards before anything big is allocated ----------------------------

def refused_with_peak(fit):
    """The DesignError ``fit()`` raises, and the peak of memory traced meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(DesignError) as e:
            fit()
        return e.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_crossed_factors_beyond_the_memory_cap_are_refused_before_allocating():
    df = crossed(30_000, 9_000)
    err, peak = refused_with_peak(
        lambda: xlglmm.glmer("y ~ 1 + (1|g1) + (1|g2)", df, "poisson"))
    assert str(err) == (
        "the model would need about 2.7 GB of memory (the limit is 2.0 GB): crossed random "
        "effects g1 (9,000 levels) x g2 (9,000 levels) make a dense block of 9,001 x 9,001 "
        "numbers; use fewer levels or predictors")
    assert peak < 100e6          # the 9,001 x 9,001 block (650 MB a copy) never made


def test_fixed_effect_columns_beyond_the_cap_are_refused_before_the_model_matrix():
    err, peak = refused_with_peak(
        lambda: xlglmm.glmer("y ~ a*b + (1|g)", interaction(60), "poisson"))
    assert str(err) == (
        "the fixed effects would have 3,600 columns for 7,200 rows (about 2.5 GB of memory, "
        "the limit is 2.0 GB): factors with many levels, or their interactions; simplify "
        "the formula")
    assert peak < 50e6           # X alone would be 207 MB


def test_fixed_columns_counts_what_the_model_matrix_makes():
    df = interaction(6).assign(x=lambda d: np.arange(len(d), dtype=float))
    for f in ("y ~ a*b + (1|g)", "y ~ a + b + (1|g)", "y ~ 0 + a + (1|g)",
              "y ~ a:b + (1|g)", "y ~ x*a + (1|g)", "y ~ 0 + a:x + b + (1|g)"):
        d = build_design(f, df, POISSON)
        spec = d.spec
        assert cost.fixed_columns(spec.x_terms, spec.x_intercept, spec.vars) == \
            len(spec.x_names_full), f


def test_a_fit_too_slow_for_its_budget_is_refused_up_front():
    d = build_design("y ~ a*b + (1|g)", interaction(20), POISSON)
    c = cost.fit_cost(d)
    assert (c.n, c.p, c.r) == (800, 400, 400)
    assert cost.check(d, None) is not None          # no budget: no time refusal
    assert cost.check(d, 60.0) is not None
    with pytest.raises(DesignError) as e:
        xlglmm.glmer("y ~ a*b + (1|g)", interaction(20), "poisson", time_budget=0.5)
    assert str(e.value) == (
        "the model cannot be fitted within the time budget of 0.5 s: 400 fixed-effect "
        "columns make each of the hundreds of steps of the fit take about 0.039 s even on "
        "a fast computer; use fewer levels or predictors, or a larger budget")


def test_nested_designs_are_costed_by_their_envelope_not_as_dense():
    # 5,000 classes in 1,000 schools: the rest block (schools) is diagonal
    i = np.arange(50_000)
    cls = i % 5000
    df = pd.DataFrame({"y": (i % 4).astype(float), "c": pd.Categorical(cls),
                       "s": pd.Categorical(cls % 1000)})
    d = build_design("y ~ 1 + (1|c) + (1|s)", df, POISSON)
    c = cost.fit_cost(d, exact=True)
    assert c.r == 1001
    assert c.work < 1e8          # dense would be r^3 / 6 = 1.7e8 for the Cholesky alone
    assert cost.fit_cost(d).work > 1.7e8       # the bounds from level counts: dense


# ---- item 6: the budget inside long evaluations --------------------------------------

class CountingBudget(Budget):
    """A budget whose inside checks are counted and which runs out at the k-th."""

    def __init__(self, k):
        super().__init__(1.0)
        self.k, self.calls = k, 0

    def check_inside(self):
        self.calls += 1
        if self.calls >= self.k:
            raise FitTimeout()


def _dev(df, formula="y ~ x + (1|g)"):
    d = build_design(formula, df, POISSON)
    dev = GlmmDeviance(d, POISSON)
    dev.set_beta_start(np.zeros(dev.p))
    return dev


@pytest.mark.parametrize("size", [1, 2])
def test_pirls_in_pieces_is_bit_identical_to_one_call(size):
    df = small()
    one, pieces = _dev(df), _dev(df)
    pieces.budget, pieces.piece_iterations = CountingBudget(10 ** 9), size
    for theta, beta in ((np.array([0.8]), None), (np.array([0.3]), None),
                        (np.array([0.5]), np.array([0.2, 0.4]))):
        a, b = one.pirls(theta, beta), pieces.pirls(theta, beta)
        assert a.status == b.status == pirls.PIRLS_OK
        assert a.iterations == b.iterations > 1
        for f in ("logdet", "pdev", "aic", "ussq"):
            assert getattr(a, f) == getattr(b, f), f
        for f in ("u1", "v", "mu", "eta", "LS"):
            assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert pieces.pirls_iterations == one.pirls_iterations
    if size == 1:
        assert pieces.budget.calls == one.pirls_iterations


def test_pieces_are_sized_by_the_budget():
    """A piece of PIRLS is predicted to take at most 2% of the budget; a PIRLS that
    fits in that whole is not cut (each piece repeats a pass over the rows)."""
    c = cost.Cost(1000, 2, 2, 0.0, 0.0, 0.5 * cost.RATE, "x")      # 0.5 s an iteration
    assert cost.piece_iterations(c, 10.0, 200) == 1
    assert cost.piece_iterations(c, 100.0, 200) == 4
    assert cost.piece_iterations(c, 5000.0, 200) == 0
    assert cost.piece_iterations(c, None, 200) == 0
    fast = cost.Cost(1000, 2, 2, 0.0, 0.0, 1e-4 * cost.RATE, "x")
    assert cost.piece_iterations(fast, 60.0, 200) == 0


def test_the_budget_is_checked_between_pirls_iterations():
    dev = _dev(small())
    dev.budget, dev.piece_iterations = CountingBudget(3), 1
    with pytest.raises(FitTimeout):
        dev.pirls(np.array([0.8]))
    assert dev.budget.calls == 3     # stopped before the third iteration
    assert dev.pirls_iterations == 0


class StepClock:
    """A deterministic clock shared by every budget of a fit: each reading advances
    it by one 'second' (``t``); ``jump`` 'seconds' are added after ``jump_after``
    readings."""

    def __init__(self, jump_after=None, jump=1e6):
        self.t = 0.0
        self.jump_after, self.jump = jump_after, jump

    def stopwatch(self):
        start = self.t
        clock = self

        class Watch:
            def elapsed(self):
                clock.t += 1.0
                if clock.jump_after is not None and clock.t == clock.jump_after:
                    clock.t += clock.jump
                return clock.t - start

            def compiled(self):
                return 0.0
        return Watch()


def _stepping_budget(monkeypatch, jump_after=None):
    """The fits' budgets (each model's and the negative binomial's) read one
    StepClock, and every model checks it between PIRLS iterations."""
    clock = StepClock(jump_after)

    def make(seconds, max_evals):
        return Budget(seconds, max_evals, clock.stopwatch())
    monkeypatch.setattr(model, "Budget", make)
    monkeypatch.setattr(family_parameter, "Budget", make)
    monkeypatch.setattr(cost, "piece_iterations", lambda c, budget, maxit: 1)
    return clock


def test_a_budget_stopped_fit_stops_inside_evaluations_and_says_so(monkeypatch):
    clock = _stepping_budget(monkeypatch)
    res = xlglmm.glmer("y ~ x + (1|g)", small(), "poisson", time_budget=40)
    assert not res.converged
    assert model.timeout_message(40) in res.messages
    assert model.timeout_message(40) == (
        "Stopped at the time budget of 40 s before the optimizer converged: the estimates "
        "are the best found so far, NOT converged, and their digits depend on where the "
        "clock stopped the fit (another run can give others).")
    # the finishing evaluations are bounded by the grace period (20 readings)
    assert 40 < clock.t <= 40 + 20 + 1
    assert np.all(np.isfinite(res.fe_params))
    assert res.model.devfun.budget is None          # later evaluations are not the fit's


def test_a_fit_that_cannot_finish_within_the_grace_period_is_refused(monkeypatch):
    _stepping_budget(monkeypatch, jump_after=30)
    with pytest.raises(fit.ModelError) as e:
        xlglmm.glmer("y ~ x + (1|g)", small(), "poisson", time_budget=40)
    assert str(e.value) == (
        "the time budget of 40 s ran out, and the fit could not finish even its final "
        "evaluations in 20 s more: each evaluation of this model is slow; use fewer rows, "
        "levels or predictors, or a larger budget")


def test_lmm_budget_note(monkeypatch):
    _stepping_budget(monkeypatch)
    res = xlglmm.lmer("yl ~ x + (1|g)", small(), time_budget=15)
    assert not res.converged
    assert model.timeout_message(15) in res.messages


def test_negative_binomial_nested_fits_share_one_budget(monkeypatch):
    clock = _stepping_budget(monkeypatch)
    res = xlglmm.glmer("y ~ x + (1|g)", small(), "negbin", time_budget=200)
    assert not res.converged
    assert "Stopped at the time budget while estimating the negative binomial theta: NOT converged." in res.messages
    # the profile's fits get the time left, not 200 s each; the reported fit at least
    # a quarter of the budget; each may take its grace (half its budget) to finish
    assert clock.t <= 1.5 * 200 + 1.5 * 50 + 4


def test_without_a_budget_nothing_is_checked_inside():
    d = build_design("y ~ x + (1|g)", small(), POISSON)
    dev, budget = model.prepare(d, POISSON, None, 100)
    assert dev.budget is None and budget.seconds is None


# ---- item 14: numerical extremes -----------------------------------------------------

@pytest.mark.parametrize("s", [1e155, 1e-200, 1e300, 1e-300])
def test_rank_check_is_scale_invariant(s):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(50)
    X = np.column_stack([np.ones(50), x * s, 3.0 * x * s, rng.standard_normal(50)])
    assert full_rank_columns(X).tolist() == [0, 1, 3]


def test_rank_check_by_qr_agrees_with_column_by_column():
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(12):
        n, p = int(rng.integers(250, 500)), int(rng.integers(201, 300))
        X = rng.standard_normal((n, p))
        for _ in range(int(rng.integers(1, 10))):
            j = int(rng.integers(1, p))
            i = int(rng.integers(0, j))
            X[:, j] = X[:, i] * rng.choice([1.0, 2.5, -3.0]) + X[:, int(rng.integers(0, j))]
        X[:, int(rng.integers(0, p))] = 0.0
        q = _rank_by_qr(X, 1e-7)
        if q is not None:
            checked += 1
            assert q.tolist() == _rank_sequential(X, 1e-7).tolist()
    assert checked >= 10


@pytest.mark.parametrize("s", [1e155, 1e-200, 1e30])
def test_a_predictor_of_extreme_scale_keeps_its_coefficient(s):
    df = small()
    ref = xlglmm.glmer("y ~ x + (1|g)", df, "poisson")
    res = xlglmm.glmer("y ~ x + (1|g)", df.assign(x=df.x * s), "poisson")
    assert res.design.x_names == ["(Intercept)", "x"]
    assert res.converged
    assert res.fe_params["x"] * s == pytest.approx(ref.fe_params["x"], rel=1e-6)
    assert res.fe_params["(Intercept)"] == pytest.approx(ref.fe_params["(Intercept)"],
                                                         rel=1e-6)
    assert res.llf == pytest.approx(ref.llf, abs=1e-8)
    # the SE on the data's scale, z and p as in units of 1 (scale-free)
    assert res.fe_bse["x"] * s == pytest.approx(ref.fe_bse["x"], rel=1e-6)
    assert res.fe_zvalues["x"] == pytest.approx(ref.fe_zvalues["x"], rel=1e-6)
    assert res.fe_pvalues["x"] == pytest.approx(ref.fe_pvalues["x"], rel=1e-6)
    if s != 1e30:                  # its variance is beyond double precision's range
        assert ("The variances of x are beyond double precision's range (a predictor with "
                "values beyond about 1e150 or below 1e-150), so the covariance matrix cannot "
                "hold them: their standard errors are shown, and the z and p values are "
                "exact; rescaling the predictor avoids this.") in res.messages


def test_ordinary_predictors_are_not_rescaled():
    d = build_design("y ~ x + (1|g)", small().assign(x=lambda d: d.x * 1e15), POISSON)
    assert GlmmDeviance(d, POISSON).x_exp is None


def test_lmm_predictor_of_extreme_scale():
    df = small()
    for reml in (True, False):
        ref = xlglmm.lmer("yl ~ x + (1|g)", df, REML=reml)
        res = xlglmm.lmer("yl ~ x + (1|g)", df.assign(x=df.x * 1e30), REML=reml)
        assert res.fe_params["x"] * 1e30 == pytest.approx(ref.fe_params["x"], rel=1e-7)
        assert res.fe_bse["x"] * 1e30 == pytest.approx(ref.fe_bse["x"], rel=1e-7)
        # REML's criterion has log|X'X|: x * c adds 2 log c, as in R; ML's does not
        shift = 2.0 * math.log(1e30) if reml else 0.0
        assert res.deviance - ref.deviance == pytest.approx(shift, abs=1e-6)


def test_counts_beyond_2_to_53_are_refused_beyond_1e12_noted_1e9_fit():
    df = small()
    with pytest.raises(DesignError) as e:
        xlglmm.glmer("y ~ x + (1|g)", df.assign(y=np.where(df.index == 3, 1e300, df.y)),
                     "poisson")
    assert str(e.value) == ("counts must be at most 2^53 = 9.007e15 (row 4, up to 1e+300): "
                            "beyond it double precision cannot hold whole numbers exactly; "
                            "count in larger units")
    res = xlglmm.glmer("y ~ x + (1|g)", df.assign(y=df.y * 1e9), "poisson")
    assert np.all(np.isfinite(res.fe_params)) and res.llf < 0
    assert not any("double precision" in m for m in res.messages)
    res = xlglmm.glmer("y ~ x + (1|g)", df.assign(y=df.y * 1e12 + 1e12), "poisson")
    assert ("Counts reach 1.1e+13: above 1e12 double precision carries the log-likelihood "
            "to only about 0.07 per row, so logLik, AIC and the standard errors lose digits; "
            "counting in larger units keeps them.") in res.messages


def test_binomial_trials_beyond_2_to_53_are_refused():
    df = small().assign(s=5e15, f=5e15)
    with pytest.raises(DesignError) as e:
        xlglmm.glmer("cbind(s, f) ~ x + (1|g)", df, "binomial")
    assert str(e.value) == (
        "binomial trials must be at most 2^53 = 9.007e15 (rows 1, 2, 3, 4, 5, 6, 7, 8 and "
        "192 more, up to 1e+16): beyond it double precision cannot hold whole numbers exactly")


def test_lmm_response_beyond_double_precision_is_refused():
    df = small()
    with pytest.raises(DesignError) as e:
        xlglmm.lmer("yl ~ x + (1|g)", df.assign(yl=df.yl * 1e300))
    assert str(e.value) == (
        "the response has values as large as 3.2e+300 (rows 1, 2, 3, 4, 5, 6, 7, 8 and 192 "
        "more): beyond 1e150 their squares overflow double precision; rescale it (divide it "
        "by a power of ten)")
    with pytest.raises(DesignError) as e:
        xlglmm.lmer("yl ~ x + (1|g)", df.assign(yl=df.yl * 1e-200))
    assert "their squares underflow double precision" in str(e.value)
    res = xlglmm.lmer("yl ~ x + (1|g)", df.assign(yl=df.yl * 1e100))   # fine
    ref = xlglmm.lmer("yl ~ x + (1|g)", df)
    assert res.fe_params["x"] == pytest.approx(ref.fe_params["x"] * 1e100, rel=1e-6)


def test_gamma_response_beyond_double_precision_is_refused():
    df = small()
    ya = np.exp(df.yl)
    for s in (1e300, 1e-300):
        with pytest.raises(DesignError) as e:
            xlglmm.glmer("y ~ x + (1|g)", df.assign(y=ya * s), "gamma", link="log")
        assert str(e.value).startswith("Gamma response values must be between 1e-150 and "
                                       "1e150 (rows 1, 2, 3, 4, 5, 6, 7, 8 and 192 more, e.g. ")
        assert str(e.value).endswith("): the Gamma variance is the mean squared, which "
                                     "overflows or underflows double precision beyond them; "
                                     "rescale the response")
    ref = xlglmm.glmer("y ~ x + (1|g)", df.assign(y=ya), "gamma", link="log")
    res = xlglmm.glmer("y ~ x + (1|g)", df.assign(y=ya * 1e100), "gamma", link="log")
    assert res.fe_params["x"] == pytest.approx(ref.fe_params["x"], rel=1e-5)


# ---- review fixes (fixfit): extreme and subnormal scales

@pytest.mark.parametrize("s", [1e200, 1e-200, 4e307, 1e-310])
def test_z_and_p_of_extreme_scale_are_scale_free(s):
    """z and p from the fit's own power-of-two scale; x * 1e200 gave SE 0.0, z blank,
    p 0.0; x * 1e-310 (subnormal) was dropped as 'constant'."""
    df = small()
    ref = xlglmm.glmer("y ~ x + (1|g)", df, "poisson")
    res = xlglmm.glmer("y ~ x + (1|g)", df.assign(x=df.x * s), "poisson")
    assert res.design.x_names == ["(Intercept)", "x"]
    assert res.fe_zvalues["x"] == pytest.approx(ref.fe_zvalues["x"], rel=1e-6)
    assert res.fe_pvalues["x"] == pytest.approx(ref.fe_pvalues["x"], rel=1e-6)
    if s == 1e-310:     # estimate 4.5e309 and SE beyond double precision: blank (NaN)
        assert np.isnan(res.fe_bse["x"])
        assert any("where a standard error or estimate is beyond it too it is left blank"
                   in m for m in res.messages)
    else:
        assert res.fe_bse["x"] == pytest.approx(ref.fe_bse["x"] / s, rel=1e-6)


def test_subnormal_column_kept_by_the_rank_check():
    from xlglmm.engine.design import column_exponents, full_rank_columns, scale_by_exponents
    x = np.array([1.0, 2.0, 3.0, 5.0]) * 1e-310
    X = np.column_stack([np.ones(4), x])
    with np.errstate(all="raise"):              # no overflow on the way
        assert full_rank_columns(X).tolist() == [0, 1]
        e = column_exponents(np.max(np.abs(X), axis=0))
        assert e.tolist() == [1, -1027]            # 5e-310 = 0.60 x 2^-1027
        assert np.max(scale_by_exponents(X, e)[:, 1]) == pytest.approx(
            5e-310 * 2.0 ** 1000 * 2.0 ** 27, rel=1e-12)


# ---- review fixes (fixfit): the cost guards before the expensive work

def _ab(n=3200, levels=30, seed=1):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.poisson(2, n).astype(float),
                         "a": [f"a{i}" for i in rng.integers(0, levels, n)],
                         "b": [f"b{i}" for i in rng.integers(0, levels, n)],
                         "g": [f"g{i}" for i in rng.integers(0, 10, n)]})


def _forbid(monkeypatch):
    """The fixed-effect model matrix, its rank check and any QR fail if called (the
    random intercept's one-column Z may be built: n numbers)."""
    def boom(*a, **k):
        raise AssertionError("the expensive work ran before the refusal")
    import xlglmm.engine.design as design_mod
    real = design_mod._model_matrix

    def model_matrix(terms, *a, **k):
        if terms:
            boom()
        return real(terms, *a, **k)
    monkeypatch.setattr(design_mod, "_model_matrix", model_matrix)
    monkeypatch.setattr(design_mod, "full_rank_columns", boom)
    monkeypatch.setattr(np.linalg, "qr", boom)


@pytest.mark.parametrize("n, levels", [(3200, 30), (5000, 60)])
def test_too_slow_refused_before_the_model_matrix_and_its_qr(monkeypatch, n, levels):
    """y ~ a*b + (1|g) with a time budget of 5 s took 12-94 s (two builds of the design,
    each with two n x p QRs) before the same refusal; now neither the model matrix nor
    the rank check runs."""
    df = _ab(n, levels)
    _forbid(monkeypatch)
    with pytest.raises(DesignError) as e:
        xlglmm.glmer("y ~ a*b + (1|g)", df, "poisson", time_budget=5)
    msg = str(e.value)
    assert msg.startswith("the model cannot be fitted within the time budget of 5 s: ")
    p = int(msg.split(": ")[1].split(" fixed-effect")[0].replace(",", ""))
    assert p == cost.fixed_columns(*_terms(df, "y ~ a*b + (1|g)"))


def _terms(df, formula):
    """(terms, intercept, specs, values) of the formula's fixed part, as the design reads
    them: the columns present (not all zero), the count the guard used."""
    from xlglmm.engine.design import DataTable, _factor_codes, VarSpec
    from xlglmm.engine.formula import parse_formula
    f = parse_formula(formula)
    specs, values = {}, {}
    for t in f.terms:
        for v in t:
            codes, levels = _factor_codes(DataTable(df).column(v.column))
            specs[v], values[v] = VarSpec("factor", levels), codes
    return f.terms, f.intercept, specs, values


def test_the_rank_check_is_counted_in_the_time_bound():
    re = build_design("y ~ 1 + (1|g)", _ab(), POISSON).re_terms
    n, p = 3200, 883
    c = cost._cost(n, p, re)
    assert cost.rank_work(n, p) == 2.0 * n * p * p
    budget = (cost.MIN_ITERATIONS * c.work + 0.5 * cost.rank_work(n, p)) / cost.RATE
    cost.check_before_matrix(n, p, re, budget + cost.rank_work(n, p) / cost.RATE)
    with pytest.raises(cost.CostError, match="cannot be fitted within the time budget"):
        cost.check_before_matrix(n, p, re, budget)       # fits only without the rank check


def test_the_worksheet_builds_the_design_once(monkeypatch):
    from xlglmm.sheet import cache, models, udfs
    import xlglmm.engine.fit as fit_mod
    calls = []
    real = fit_mod.build_design

    def counted(*a, **k):
        calls.append(k.get("time_budget"))
        return real(*a, **k)
    monkeypatch.setattr(fit_mod, "build_design", counted)
    cache.clear()
    df = small(seed=11)
    rows = [["y", "x", "g"]] + [[float(a), float(b), c] for a, b, c in
                                zip(df.y, df.x, df.g)]
    out = udfs.GLMM("y ~ x + (1|g)", rows, "poisson")
    assert isinstance(out, list), out
    assert calls == [models.DEFAULT_TIME_BUDGET]


def test_the_size_guards_apply_to_the_python_api():
    """The worksheet's own checks (20,000 columns, 1e8 cells, 200 variance
    parameters) were never applied to xlglmm.glmer; now one guard serves both."""
    rng = np.random.default_rng(3)
    n = 60
    df = pd.DataFrame({"y": rng.poisson(2, n).astype(float),
                       "d": [f"d{i}" for i in rng.integers(0, 30, n)],
                       "g": [f"g{i}" for i in rng.integers(0, 5, n)]})
    ndl = df.d.nunique()
    with pytest.raises(DesignError) as e:
        xlglmm.glmer("y ~ 1 + (d||g)", df, "poisson")
    assert str(e.value) == (
        f"the random effects would need {1 + ndl * (ndl + 1) // 2} variance and correlation "
        "parameters (the limit is 200); use fewer random slopes, uncorrelated ones (||), "
        "or factors with fewer levels")


# ---- review fixes (fixfit): transforms that leave the numbers

def _tx(col, values):
    df = small(n=40)
    df[col] = values
    return df


def test_log_of_zero_is_an_error_naming_the_rows():
    x = np.abs(small(n=40).x.to_numpy()) + 0.5
    x[[2, 6]] = 0.0
    with pytest.raises(DesignError) as e:
        xlglmm.glmer("y ~ log(z) + (1|g)", _tx("z", x), "poisson")
    assert str(e.value) == "log(z) is not finite in rows 3, 7 (log of 0)"


def test_exp_overflow_is_an_error_naming_the_rows():
    x = small(n=40).x.to_numpy().copy()
    x[4] = 1200.0
    with pytest.raises(DesignError) as e:
        xlglmm.glmer("y ~ exp(z) + (1|g)", _tx("z", x), "poisson")
    assert str(e.value) == ("exp(z) is not finite in row 5 (exp of a value beyond 709.78 "
                            "overflows double precision)")


def test_log_of_a_negative_is_missing_with_a_note_as_in_r():
    """R: log(-1) is NaN ("NaNs produced"), the row then dropped by na.omit (lme4 fits
    on 39 of 40 rows; tests/r_transforms.R)."""
    x = np.abs(small(n=40).x.to_numpy()) + 0.5
    x[2] = -1.0
    res = xlglmm.glmer("y ~ log(z) + (1|g)", _tx("z", x), "poisson")
    assert res.nobs == 39 and res.n_dropped == 1
    assert ("log(z) is not a number in row 3 (log of a negative number): those rows were "
            "removed, as R's NaN is.") in res.messages
