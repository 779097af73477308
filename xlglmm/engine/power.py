"""Power by simulation (simr's ``powerSim`` and ``powerCurve``, for every model
xlglmm fits): how often a study of a given design detects an effect of a given
size.

The truth a study is simulated from is either a fitted model (its estimates, the
tested effect optionally changed: ``effect=``) or a model written out
(``planning.PlannedModel``: formula, family, fixed effects, random-effect SDs and
correlations, on a table of the design: ``planning.design_table``).  Either way:

1. **The design.**  The fit's or the plan's rows, or those rows cut or extended
   along a grouping factor (``levels=``: n levels of it, taken kind by kind so the
   tested term keeps its mix (``spread_order``), beyond the existing ones copies of
   them in the same order, each copy a new level, a factor nested in it copied
   with it: simr's ``extend``) or with every row repeated (``rows=``).
2. **Pilot fits.**  One response is drawn at the truth (its own stream of the
   seed) and the model -- and for the likelihood-ratio test the null model, the
   tested term's columns removed -- fitted to it.  Every simulation's refits are
   these models refitted, starting at the truth (its theta and beta; the null
   model's beta less the tested columns) rather than at the pilot's estimates (one
   random draw's: an unlucky, separated one sent refits to spurious optima); an
   NB theta, phi or zero inflation re-estimated starts from the pilot's fit.  So no
   simulation depends on another.
3. **Simulations.**  Simulation i draws a response at the truth from
   ``numpy.random.SeedSequence(seed, spawn_key=(i,))`` (new random effects for
   every level, new noise), refits the model (re-estimating any family parameter
   the fit estimated: NB theta, phi, zero inflation) and tests the term:

   * ``wald``: z = estimate / SE (the Hessian's SEs, lme4's); for an LMM the
     t-test with Satterthwaite's df (lmerTest's); a term of several columns by
     the Wald chi-square on their covariance;
   * ``lrt``: the likelihood-ratio test against the null model (LMMs fitted by
     ML, as lme4's ``anova``), chi-square with as many df as the term has columns;
   * ``profile``: the 1 - alpha profile interval of the (one-column) effect
     excludes 0.

Power is the share of the converged simulations that reject at ``alpha``, with
the Clopper-Pearson interval (simr's ``binom.test``).  Simulations whose refit
failed or did not converge are counted and left out; singular fits are counted
and kept.  The estimates' mean, bias (against the truth), SD and mean SE say how
well the design estimates the effect.

The simulations run through ``engine.workers.run`` (local processes, or a Dask
``client=``); each depends on its index and the seed only, so the numbers are the
same in one process, on two workers or on a cluster.  A time budget stops the
run between simulations: the result says how many ran and how to ask for more.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from . import workers as _workers
from .bootstrap import (check_nsim_and_seed, check_time_budget, design_of_rows,
                        draw_response, estimates_family_parameter, refit_estimating_theta)
from .design import DesignError, term_columns
from .lmm import LinearMixedModel, LMMResult
from .model import ModelError

TESTS = ("wald", "lrt", "profile")
#: the most simulations one design point may ask for
MAX_NSIM = 1_000_000
#: the most rows a design point may have (guards the memory of a run before it starts)
MAX_ROWS = 2_000_000
#: the most numbers a design point's arrays may hold (8 bytes each: 400 MB)
MAX_CELLS = 50_000_000
#: the seed's stream of the pilot response (simulation indices stay below MAX_NSIM)
PILOT_KEY = 2 ** 32 - 1
PILOT_TRIES = 5


class PowerError(ValueError):
    """The power analysis cannot run as asked: says why."""


class OutOfTime(PowerError):
    """The time budget ran out before a design point's first simulation."""


# ---- the truth and the design ------------------------------------------------------------

@dataclass
class Truth:
    """What responses are simulated at: a model (unfitted, or fitted: its design and
    family are the ones drawn from) and its parameters on the data's scale."""
    model: object
    beta: np.ndarray
    theta: np.ndarray
    sigma: float

    @property
    def design(self):
        return self.model.design


def tested_columns(design, term: str) -> list:
    """The columns of X of ``term`` (a term's label, ``training``, ``factor(k)``,
    ``x:k``, or one column's name, ``kB``): PowerError naming the terms there are."""
    if not isinstance(term, str) or not term.strip():
        raise PowerError("term must name a fixed effect of the model")
    by_term = term_columns(design.spec)
    cols = by_term.get(term.strip())
    if cols is None and term.strip() in design.x_names and term.strip() != "(Intercept)":
        cols = [term.strip()]
    if not cols:
        names = ", ".join(f"'{t}'" for t, c in by_term.items() if c) or "none"
        raise PowerError(f"term '{term}' is not a fixed effect of the model (its terms: "
                         f"{names})")
    return cols


def with_effect(beta: np.ndarray, names: list, cols: list, effect) -> np.ndarray:
    """``beta`` with the tested columns set to ``effect`` (a number for a one-column
    term, a dict column -> value for any term; None keeps them)."""
    beta = np.array(beta, dtype=float)
    if effect is None:
        return beta
    if isinstance(effect, dict):
        unknown = [k for k in effect if k not in cols]
        if unknown:
            raise PowerError(f"effect names {', '.join(map(str, unknown))}, not a column of "
                             f"the term ({', '.join(cols)})")
        values = effect
    else:
        if len(cols) != 1:
            raise PowerError(f"the term has {len(cols)} columns ({', '.join(cols)}): give "
                             "effect as a dict of column -> value")
        values = {cols[0]: effect}
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) \
                or not math.isfinite(v):
            raise PowerError(f"the effect of {k} must be a finite number (on the link "
                             "scale: log of a rate ratio, log of an odds ratio)")
        beta[names.index(k)] = float(v)
    return beta


def extended_design(design, along: str, n: int, cols=None):
    """The design with ``n`` levels of grouping factor ``along``: its levels in the
    order of ``spread_order``, then copies of them in turn in that order (a level's
    copy is a new level, with the copied level's rows, covariates and offsets; a
    factor nested in ``along`` is copied with it, a factor crossed with it keeps its
    levels)."""
    from .bootstrap import BootstrapError, case_plan
    try:
        cases = case_plan(design, along)
    except BootstrapError:
        raise PowerError(f"levels: '{along}' is not a grouping factor of the model "
                         f"({group_names(design)})") from None
    L = len(cases.rows_of)
    spread = spread_order(design, cases.rows_of, cols)
    order = [spread[j % L] for j in range(n)]
    rows = np.concatenate([cases.rows_of[j] for j in order])
    copy = np.repeat(np.arange(n) // L, [len(cases.rows_of[j]) for j in order])
    if n <= L:      # the first n levels as they are, their rows in the design's order
        return design_of_rows(design, np.sort(rows))       # (n = L: the design itself)
    return design_of_rows(design, rows, copy, cases.copied)


def spread_order(design, rows_of: list, cols=None) -> list:
    """The levels of a factor (``rows_of[l]``: level l's rows) in an order whose
    every prefix keeps the design's mix of them: levels alike in their rows of the
    tested columns ``cols`` (names; None: all of X) -- plants with training, plants
    without, whatever else differs between plants, such as their size -- form a
    kind, and the kinds are
    interleaved in proportion to their sizes, each in its own order (level i of a
    kind of size m at (i + 1/2) / m; ties: the kind seen first).  So the first 10
    of 20 plants, 10 trained and 10 not, are 5 and 5 rather than the first 10
    (all trained, when the data list the trained plants first: a design that
    cannot estimate the effect), and the copies that extend a design keep its
    balance.  Levels that all differ (a covariate varying by level) keep their
    order."""
    X = design.X if cols is None else design.X[:, [design.x_names.index(c) for c in cols]]
    kinds: dict = {}
    kind_of = [kinds.setdefault(np.unique(X[rows], axis=0).tobytes(), len(kinds))
               for rows in rows_of]
    size = np.bincount(kind_of, minlength=len(kinds))
    seen = np.zeros(len(kinds), dtype=int)
    keys = []
    for j, k in enumerate(kind_of):
        keys.append(((seen[k] + 0.5) / size[k], k, j))
        seen[k] += 1
    return [j for _, _, j in sorted(keys)]


def group_names(design) -> str:
    return ", ".join(f"'{g}'" for g in design.ngroups)


def repeated_design(design, r: int):
    """The design with every row repeated ``r`` times (more rows per level of every
    factor: more months per plant, say, when months are not a factor)."""
    return design_of_rows(design, np.repeat(np.arange(design.nobs), r))


def whole_number(value, what: str, why: str = "") -> int:
    """``value`` as a whole number >= 1 (an int, or a float without a fraction), else
    PowerError naming ``what`` (and, for a number below 1, ``why``)."""
    if isinstance(value, bool) or not (isinstance(value, (int, np.integer))
                                       or (isinstance(value, float) and value.is_integer())):
        raise PowerError(f"{what} must be a whole number >= 1, not {value!r}")
    if int(value) < 1:
        raise PowerError(f"{what} must be a whole number >= 1, not {int(value)}"
                         + (f" ({why})" if why else ""))
    return int(value)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple:
    """The Clopper-Pearson (exact binomial) interval of k successes in n trials
    (R's ``binom.test``)."""
    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


def design_point(design, levels: dict | None, rows, cols=None):
    """The design of one point: ``levels`` {factor: n} applied in order, then
    ``rows`` repeats; checked for size before any array is made."""
    d = design
    for g, n in (levels or {}).items():
        n = whole_number(n, f"levels of '{g}'")
        if not any(t.group == g for t in d.re_terms):
            raise PowerError(f"levels: '{g}' is not a grouping factor of the model "
                             f"({group_names(d)})")
        per_level = d.nobs / max(1, next(t.nlevels for t in d.re_terms if t.group == g))
        if per_level * n > MAX_ROWS:
            raise PowerError(f"{n:,} levels of '{g}' make about {per_level * n:,.0f} rows; "
                             f"the most is {MAX_ROWS:,}")
        _check_cells(d, per_level * n)
        try:
            d = extended_design(d, g, n, cols)
        except ModelError:      # too few levels to tell the effects apart
            raise PowerError(f"{n:,} level{'s' if n != 1 else ''} of '{g}' "
                             f"{'do' if n != 1 else 'does'} not identify "
                             "every fixed effect (a term that varies between its levels "
                             "needs levels of each kind): use more levels") from None
    if rows is not None:
        r = whole_number(rows, "rows")
        if d.nobs * r > MAX_ROWS:
            raise PowerError(f"rows={r} makes {d.nobs * r:,} rows; the most is {MAX_ROWS:,}")
        _check_cells(d, d.nobs * r)
        if r > 1:
            d = repeated_design(d, r)
    return d


def _check_cells(design, nrows) -> None:
    """The arrays of a design of ``nrows`` rows like ``design`` (X, Z of every term,
    the response, weights, offset, codes) fit in MAX_CELLS numbers: checked before
    they are made."""
    width = design.X.shape[1] + sum(t.k + 1 for t in design.re_terms) + 4
    if nrows * width > MAX_CELLS:
        raise PowerError(f"this design would hold about {nrows * width:,.0f} numbers "
                         f"({nrows:,.0f} rows x {width} columns); the most is "
                         f"{MAX_CELLS:,}: use fewer levels or rows")


def null_design(design, cols: list):
    """The design less the tested columns (the null model of the LRT)."""
    keep = [j for j, n in enumerate(design.x_names) if n not in cols]
    return dataclasses.replace(design, X=np.ascontiguousarray(design.X[:, keep]),
                               x_names=[design.x_names[j] for j in keep],
                               messages=list(design.messages))


# ---- one simulation ----------------------------------------------------------------------

class Trial(NamedTuple):
    """One simulation's outcome: the p-value (NaN for the profile test, which gives
    ``reject`` only), the tested columns' estimates and SEs, or why it failed."""
    reject: bool | None = None
    pvalue: float = float("nan")
    estimate: np.ndarray | None = None
    se: np.ndarray | None = None
    singular: bool = False
    failure: str | None = None
    out_of_time: bool = False


@dataclass
class Job:
    """What every simulation reads (sent once per worker): the truth, the pilot fits
    its refits start from (``null``: the LRT's), the tested columns' indices, the
    test and its level, the seed, whether the family parameter is re-estimated,
    and the wall-clock deadline (None: none)."""
    truth: Truth
    full: object
    null: object
    cols: list
    test: str
    alpha: float
    seed: int
    estimating: bool
    lmm: bool
    deadline: float | None


def _fitted(base, y, job: Job, left, se_method):
    """``base`` refitted to ``y`` (warm start from ``base``'s optimum), estimating the
    family parameter again when the fit did."""
    if job.estimating:
        return refit_estimating_theta(base, y=y, time_budget=left, se_method=se_method)
    settings = {} if job.lmm else {"se_method": se_method}
    if left is not None:
        settings["time_budget"] = left
    m = base.refit_model(y, **settings)
    m.estimate()
    return m


def simulation(job: Job, i: int) -> Trial:
    """Simulation ``i``: its response, the refit(s), the test.  Any failure loses
    this simulation only."""
    rng = np.random.default_rng(np.random.SeedSequence(job.seed, spawn_key=(i,)))
    left = None if job.deadline is None else job.deadline - time.time()
    if left is not None and left <= 0:
        return Trial(out_of_time=True)
    t = job.truth
    try:
        y = draw_response(t.model, t.beta, t.theta, t.sigma, rng)
        full = _fitted(job.full, y, job, left, "rx" if job.test == "lrt" else "hessian")
        est = full.estimates
        if not est.converged:
            return _unconverged(job, est)
        beta = np.asarray(est.beta, float)[job.cols]
        V = np.asarray(est.vcov, float)[np.ix_(job.cols, job.cols)]
        se = np.sqrt(np.clip(np.diag(V), 0.0, None))
        if job.test == "lrt":
            null = _fitted(job.null, y, job, left, "rx").estimates
            if not null.converged:
                return _unconverged(job, null, "the null model: ")
            stat = max(0.0, 2.0 * (est.llf - null.llf))
            p = float(stats.chi2.sf(stat, len(job.cols)))
        elif job.test == "wald":
            p = _wald_p(full, est, beta, V, se, job)
        else:
            return _profile_trial(full, est, beta, se, job)
    except Exception as e:      # one failed simulation must not lose the others
        return Trial(failure=f"{type(e).__name__}: {e}")
    if not math.isfinite(p):
        return Trial(failure="the test gave no p-value (a standard error of 0 or NaN)")
    return Trial(bool(p < job.alpha), p, beta, se, bool(est.singular))


def _unconverged(job: Job, est, what: str = "") -> Trial:
    if job.deadline is not None and time.time() >= job.deadline:
        return Trial(out_of_time=True)      # stopped by the budget
    return Trial(failure=what + ("; ".join(est.messages) or "not converged"))


def _wald_p(model, est, beta, V, se, job: Job) -> float:
    if len(job.cols) > 1:
        try:
            stat = float(beta @ np.linalg.solve(V, beta))
        except np.linalg.LinAlgError:
            return float("nan")
        return float(stats.chi2.sf(stat, len(job.cols)))
    z = float(beta[0] / se[0]) if se[0] > 0 else float("nan")
    if job.lmm:
        from .satterthwaite import satterthwaite_df
        df = float(satterthwaite_df(LMMResult(model, est))[job.cols[0]])
        return float(2.0 * stats.t.sf(abs(z), df)) if df > 0 else float("nan")
    return float(2.0 * stats.norm.sf(abs(z)))


def _profile_trial(model, est, beta, se, job: Job) -> Trial:
    from .profile import profile
    name = model.design.x_names[job.cols[0]]
    left = None if job.deadline is None else max(job.deadline - time.time(), 1e-3)
    ci = profile(model, which=[name], budget_seconds=left, workers=1).conf_int(job.alpha)
    lo, hi = float(ci.loc[name, "lower"]), float(ci.loc[name, "upper"])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        if job.deadline is not None and time.time() >= job.deadline:
            return Trial(out_of_time=True)
        return Trial(failure=f"the profile interval has no end ({ci.loc[name, 'note']})")
    return Trial(bool(lo > 0.0 or hi < 0.0), float("nan"), beta, se, bool(est.singular))


# ---- the result -----------------------------------------------------------------------

@dataclass
class PowerResult:
    """One design's power: of ``n_tried`` simulations asked for and run,
    ``n_failed`` failed (``failures``: (index, why)), the rest (``n_used``) tested;
    ``power`` = rejections / n_used with its Clopper-Pearson interval
    (``conf_int``); the tested columns' true values (``effect``), estimates and
    SEs per used simulation; the design's size (``nobs``, ``levels``)."""
    term: str
    columns: list
    test: str
    alpha: float
    effect: np.ndarray
    nsim: int
    seed: int
    rejected: np.ndarray
    pvalues: np.ndarray
    estimates: pd.DataFrame
    ses: pd.DataFrame
    n_tried: int
    failures: list
    n_singular: int
    nobs: int
    levels: dict
    seconds: float
    stopped_by_budget: bool = False
    where: str = "in process"
    notes: list = field(default_factory=list)

    @property
    def n_used(self) -> int:
        return int(len(self.rejected))

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    @property
    def power(self) -> float:
        return float(np.mean(self.rejected)) if self.n_used else float("nan")

    def conf_int(self, level: float = 0.95) -> tuple:
        """The Clopper-Pearson (exact binomial) interval of the power."""
        if self.n_used == 0:
            return float("nan"), float("nan")
        return clopper_pearson(int(np.sum(self.rejected)), self.n_used, level)

    @property
    def mean_estimate(self) -> pd.Series:
        return self.estimates.mean()

    @property
    def bias(self) -> pd.Series:
        return self.estimates.mean() - pd.Series(self.effect, index=self.columns)

    @property
    def sd_estimate(self) -> pd.Series:
        return self.estimates.std(ddof=1)

    @property
    def mean_se(self) -> pd.Series:
        return self.ses.mean()

    @property
    def failed_share(self) -> float:
        return self.n_failed / self.n_tried if self.n_tried else float("nan")

    @property
    def singular_share(self) -> float:
        return self.n_singular / self.n_used if self.n_used else float("nan")

    def row(self) -> dict:
        """One line of a power curve's table."""
        lo, hi = self.conf_int()
        out = {"nobs": self.nobs, **{f"levels {g}": n for g, n in self.levels.items()},
               "effect": float(self.effect[0]), "power": self.power, "lower": lo,
               "upper": hi, "simulations": self.n_used, "failed": self.n_failed,
               "singular": self.n_singular}
        if self.n_used:
            c = self.columns[0]
            out.update({"mean estimate": float(self.mean_estimate[c]),
                        "bias": float(self.bias[c]), "sd estimate": float(self.sd_estimate[c]),
                        "mean se": float(self.mean_se[c])})
        return out

    def summary(self) -> str:
        lo, hi = self.conf_int()
        eff = ", ".join(f"{c} = {v:.4g}" for c, v in zip(self.columns, self.effect))
        lines = [f"Power for {self.term} ({eff}), {self.test} test at alpha {self.alpha:g}:",
                 f"  {self.power:.1%} (95% CI {lo:.1%} to {hi:.1%}), "
                 f"{int(np.sum(self.rejected))} of {self.n_used} simulations",
                 f"  design: {self.nobs} rows; "
                 + ", ".join(f"{n} levels of {g}" for g, n in self.levels.items()),
                 f"  failed fits: {self.n_failed} of {self.n_tried}; singular fits: "
                 f"{self.n_singular}"]
        if self.n_used:
            for c in self.columns:
                lines.append(f"  {c}: mean estimate {self.mean_estimate[c]:.4g} (bias "
                             f"{self.bias[c]:+.3g}), SD {self.sd_estimate[c]:.3g}, mean SE "
                             f"{self.mean_se[c]:.3g}")
        lines.append(f"  {self.seconds:.1f} s, {self.where}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


@dataclass
class PowerCurve:
    """``power_curve``'s points: one PowerResult per value of ``along``, and their
    table (one row per point)."""
    along: str
    values: list
    results: list

    @property
    def table(self) -> pd.DataFrame:
        rows = [{self.along: v, **r.row()} for v, r in zip(self.values, self.results)]
        return pd.DataFrame(rows)

    def summary(self) -> str:
        return self.table.to_string(index=False)

    def __repr__(self) -> str:
        return self.summary()


# ---- the source ---------------------------------------------------------------------

def _source_truth(source, term, effect):
    """(truth, tested columns, estimating) of a fitted result or a PlannedModel."""
    if isinstance(source, Truth):        # a planned model
        cols = tested_columns(source.design, term)
        beta = with_effect(source.beta, source.design.x_names, cols, effect)
        return Truth(source.model, beta, source.theta, source.sigma), cols, False
    model = getattr(source, "model", None)
    if model is None or getattr(model, "optimum", None) is None:
        raise PowerError("power needs a fitted model (a glmer or lmer result) or a planned "
                         "model (xlglmm.planned_model)")
    cols = tested_columns(model.design, term)
    beta = with_effect(source.fe_params.to_numpy(), model.design.x_names, cols, effect)
    truth = Truth(model, beta, np.asarray(source.theta, float), float(source.sigma))
    return truth, cols, estimates_family_parameter(source)


def _pilot_fits(truth: Truth, design, cols, test, estimating, seed, end, out_of_time):
    """The fits every simulation's refits start from: the model (and for the LRT
    the null model) fitted to a response drawn at the truth on ``design``, by the
    wall-clock time ``end`` (None: no limit; past it, PowerError ``out_of_time``
    rather than another try or a misleading message about the design)."""
    lmm = isinstance(truth.model, LinearMixedModel)
    draw_model = truth.model
    if design is not truth.design:
        draw_model = _unfitted_on(truth.model, design)
    messages = []
    for k in range(PILOT_TRIES):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(PILOT_KEY - k,)))
        try:
            y = draw_response(draw_model, truth.beta, truth.theta, truth.sigma, rng)
        except (ValueError, OverflowError, FloatingPointError) as e:
            raise PowerError(f"responses cannot be drawn at these values ({e}): the effects, "
                             "SDs or sigma make means or variances too large for the family "
                             "(effects are on the link scale: the log of a rate ratio, the "
                             "log of an odds ratio)") from None
        d = dataclasses.replace(design, y=y, messages=list(design.messages))
        try:
            full = _pilot(truth.model, d, test, estimating, lmm, _left(end, out_of_time))
            null = None
            if test == "lrt":
                null = _pilot(full, null_design(d, cols), test, estimating, lmm,
                              _left(end, out_of_time))
        except (ModelError, DesignError) as e:      # DesignError: the cost's CostError
            if end is not None and time.time() >= end:
                raise OutOfTime(out_of_time) from None
            raise PowerError(f"the model cannot be fitted on this design: {e}") from None
        bad = [m for m in (full, null) if m is not None and not m.estimates.converged]
        if not bad:
            if not estimating:
                # the refits start at the truth, not at the pilot's estimates: the
                # pilot is one random draw, and an unlucky one (a separated binomial
                # draw, its effect estimated at -38) sent refits that converge from
                # scratch to spurious optima (the effect at -1e6, the full model's
                # likelihood below the null's: LRT p = 1) or to failure
                keep = [j for j, n in enumerate(full.design.x_names) if n not in cols]
                _start_at(full, truth.beta, truth.theta)
                if null is not None:
                    _start_at(null, np.asarray(truth.beta, float)[keep], truth.theta)
            return draw_model, full, null
        if end is not None and time.time() >= end:     # stopped by the budget
            raise OutOfTime(out_of_time)
        messages = bad[0].estimates.messages
    raise PowerError("the model did not converge on any of 5 data sets simulated at these "
                     "values (" + ("; ".join(messages) or "not converged") + "): check the "
                     "effects and SDs, or use a larger design")


def _start_at(model, beta, theta) -> None:
    """The fitted ``model``'s optimum moved to (beta on the data's scale, theta): where
    its refits start (``refit_model``'s warm start reads the optimum's theta and
    beta, the latter on the fit's scale of rescaled columns)."""
    e = model.devfun.x_exp
    b = np.asarray(beta, float)
    if e is not None:
        b = np.ldexp(b, np.asarray(e, np.int64))
    model.optimum = dataclasses.replace(model.optimum, beta=b,
                                        theta=np.array(theta, dtype=float))


def _left(end, out_of_time):
    """The seconds left before ``end`` (None: no limit); PowerError ``out_of_time``
    when none are."""
    if end is None:
        return None
    left = end - time.time()
    if left <= 0:
        raise OutOfTime(out_of_time)
    return left


def _unfitted_on(model, design):
    """A model like ``model`` on ``design`` (for its draws: its deviance function's
    covariance factors)."""
    return model._same_model(dataclasses.replace(design, messages=list(design.messages)))


def _pilot(model, design, test, estimating, lmm, left):
    """``model`` (fitted or not) fitted on ``design`` (its response the pilot's)."""
    settings = {}
    if lmm:
        settings["reml"] = test != "lrt"
    elif not estimating:
        settings["se_method"] = "rx"
    if left is not None:
        settings["time_budget"] = left
    if model.optimum is None:       # a planned model: the first fit
        fresh = model._same_model(design, **settings)
        fresh.estimate()
        return fresh
    if estimating:
        return refit_estimating_theta(model, design=design, time_budget=left,
                                      se_method="rx")
    fitted = model.refit_model(design=design, **settings)
    fitted.estimate()
    return fitted


# ---- the public functions ----------------------------------------------------------------

def _check(test, alpha, nsim, seed, time_budget):
    if not isinstance(test, str) or test.strip().lower() not in TESTS:
        raise PowerError(f"test must be one of: {', '.join(TESTS)}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not 0.0 < alpha < 1.0:
        raise PowerError("alpha must be a number between 0 and 1 (0.05: a 5% test)")
    check_nsim_and_seed(nsim, seed, MAX_NSIM, PowerError)
    check_time_budget(time_budget, PowerError)
    return test.strip().lower()


def power(source, term: str, effect=None, *, test: str = "lrt", nsim: int = 1000,
          seed: int = 1, alpha: float = 0.05, levels: dict | None = None, rows=None,
          time_budget=None, workers=None, client=None, progress=None) -> PowerResult:
    """The power of the test of ``term`` by ``nsim`` simulations (see the module's
    notes).

    source : a fitted result (``glmer``, ``lmer``) or ``planned_model(...)``
    term : the fixed-effects term tested (``"training"``; a factor's term tests all
        its columns; one column's name tests that column)
    effect : its true value on the link scale (``math.log(0.7)``: a 30% lower rate);
        None keeps the fit's estimate or the plan's value; a dict for several columns
    test : "lrt" (default), "wald" or "profile"
    levels : {grouping factor: number of levels} of the simulated design (default:
        the fit's or the plan's); ``rows``: every row repeated this many times
    time_budget : seconds for the whole run (stops between simulations: the result
        says how many ran); ``workers``: local processes; ``client``: Dask
    """
    curve = _run([(levels, rows, effect)], source, term, test=test, nsim=nsim, seed=seed,
                 alpha=alpha, time_budget=time_budget, workers=workers, client=client,
                 progress=progress)
    return curve[0]


ALONG_EFFECT = "effect"
ALONG_ROWS = "rows"


def power_curve(source, term: str, along: str, values, effect=None, *, test: str = "lrt",
                nsim: int = 1000, seed: int = 1, alpha: float = 0.05,
                levels: dict | None = None, rows=None, time_budget=None, workers=None,
                client=None, progress=None) -> PowerCurve:
    """``power`` at each of ``values`` of ``along``: a grouping factor (its number
    of levels), ``"rows"`` (each row repeated) or ``"effect"`` (the effect size).
    Every point uses the same seed; a time budget is shared out evenly between the
    points still to run."""
    if not isinstance(along, str) or not along.strip():
        raise PowerError("along must name a grouping factor, 'rows' or 'effect'")
    along = along.strip()
    vals = list(np.atleast_1d(np.asarray(values, dtype=object))) \
        if not isinstance(values, (str, bytes)) else None
    if not vals:
        raise PowerError("values must be one or more numbers")
    if len(vals) > 100:
        raise PowerError("a power curve takes at most 100 values")
    points = []
    for v in vals:
        if along == ALONG_EFFECT:
            points.append((levels, rows, v if not isinstance(v, np.generic) else v.item()))
        elif along == ALONG_ROWS:
            points.append((levels, v, effect))
        else:
            points.append(({**(levels or {}), along: v}, rows, effect))
    results = _run(points, source, term, test=test, nsim=nsim, seed=seed, alpha=alpha,
                   time_budget=time_budget, workers=workers, client=client,
                   progress=progress)
    return PowerCurve(along, [v.item() if isinstance(v, np.generic) else v for v in vals],
                      results)


def _run(points, source, term, *, test, nsim, seed, alpha, time_budget, workers, client,
         progress) -> list:
    test = _check(test, alpha, nsim, seed, time_budget)
    truth0, cols0, estimating = _source_truth(source, term, None)
    if test == "profile" and len(cols0) > 1:
        raise PowerError("the profile test takes a one-column term: use 'lrt' for a term "
                         f"of {len(cols0)} columns")
    if test == "profile" and truth0.model.family.zero_inflated:
        raise PowerError("profile intervals are not available for zero-inflated models: "
                         "use test 'lrt' or 'wald'")
    report = (_workers.terminal_progress("power") if progress is None
              else (lambda done, _t: progress("power", done)))
    st = Settings(test, estimating, int(nsim), int(seed), float(alpha),
                  None if time_budget is None else time.time() + float(time_budget),
                  time_budget, workers, client, report, len(points) * int(nsim))
    out = []
    for k, (levels, rows, effect) in enumerate(points):
        t0 = time.perf_counter()
        truth, cols, _ = _source_truth(source, term, effect)
        design = design_point(truth.design, levels, rows, cols)
        try:
            out.append(_point(k, len(points), truth, cols, design, term, st, t0))
        except OutOfTime as e:
            # the budget ran out before this point's first simulation: the points
            # that ran are kept and this one is reported as not run (the whole call
            # fails only when no point ran)
            out.append(_not_run(truth, design, term, cols, st, str(e)))
    if out and not any(r.n_tried for r in out):
        raise OutOfTime(out[0].notes[0])
    return out


@dataclass
class Settings:
    """What every design point of one call shares: the test, whether a family
    parameter is re-estimated, nsim, seed, alpha, the call's wall-clock deadline
    (None: none) and its time budget, where the simulations run, the progress
    report and the number of simulations of the whole call."""
    test: str
    estimating: bool
    nsim: int
    seed: int
    alpha: float
    deadline: float | None
    time_budget: float | None
    workers: int | None
    client: object
    report: object
    total: int

    def out_of_time(self) -> str:
        """The note of a point the budget stopped before its first simulation."""
        return budget_message(0, self.nsim, self.time_budget)


def _not_run(truth, design, term, cols, st: Settings, why) -> PowerResult:
    """A design point the time budget left no time for: no simulations, the note."""
    names = list(cols)
    idx = [design.x_names.index(c) for c in names]
    empty = pd.DataFrame(np.zeros((0, len(names))), columns=names)
    return PowerResult(term, names, st.test, st.alpha, np.asarray(truth.beta, float)[idx],
                       st.nsim, st.seed, np.zeros(0, bool), np.zeros(0), empty,
                       empty.copy(), 0, [], 0, int(design.nobs), design.ngroups, 0.0,
                       True, "not run", [why])


#: below this many levels of the factor a tested effect varies between, the GLMM's
#: asymptotic tests are noticeably liberal (docs/power.md: 40 plants gave 5.5-6.0%)
FEW_LEVELS = 40


def few_levels_between(design, cols) -> tuple | None:
    """(factor, levels) of the grouping factor with the most levels among those the
    tested columns are constant within (a between-plant treatment: plant), when it
    has fewer than FEW_LEVELS; None otherwise."""
    X = design.X[:, cols]
    best = None
    for t in design.re_terms:
        # constant within its levels: one distinct (level, columns) row per level
        constant = len(np.unique(np.column_stack([t.codes, X]), axis=0)) == t.nlevels
        if constant and (best is None or t.nlevels > best[1]):
            best = (t.group, t.nlevels)
    return best if best is not None and best[1] < FEW_LEVELS else None


def containing_terms(design, term: str) -> list:
    """The model's other terms whose variables include all of ``term``'s (``x:k``
    contains ``x``): testing ``term`` with them kept breaks marginality."""
    parts = set(term.split(":"))
    return [t for t in term_columns(design.spec)
            if t != term and parts < set(t.split(":"))]


def _point(k, npoints, truth, cols, design, term, st: Settings, t0) -> PowerResult:
    """Design point k of npoints: its pilot fits and simulations, in its share of what
    is left of the budget (OutOfTime when that share is spent before a simulation)."""
    left = None if st.deadline is None else (st.deadline - time.time()) / (npoints - k)
    if left is not None and left <= 0:
        raise OutOfTime(st.out_of_time())
    # the point's share of the budget counts its pilot fits too
    point_deadline = None if left is None else time.time() + left
    draw_model, full, null = _pilot_fits(truth, design, cols, st.test, st.estimating,
                                         st.seed, point_deadline,
                                         None if st.time_budget is None else
                                         st.out_of_time())
    if point_deadline is not None:
        left = point_deadline - time.time()
        if left <= 0:
            raise OutOfTime(st.out_of_time())
    job = Job(Truth(draw_model, truth.beta, truth.theta, truth.sigma), full, null,
              [full.design.x_names.index(c) for c in cols], st.test, st.alpha,
              st.seed, st.estimating, isinstance(full, LinearMixedModel), point_deadline)
    done_before = k * st.nsim
    step = None if st.report is None else \
        (lambda d, _t, b=done_before: st.report(b + d, st.total))
    try:
        run = _workers.run(simulation, job, range(st.nsim), client=st.client,
                           workers=st.workers, time_budget=left, progress=step)
    except _workers.WorkersError as e:
        raise PowerError(str(e)) from None
    return _result(run, job, truth, design, term, cols, st.nsim, st.seed, st.time_budget,
                   time.perf_counter() - t0)


def budget_message(done: int, nsim: int, time_budget) -> str:
    return (f"the time budget ({time_budget:g} s) ran out after {done:,} of {nsim:,} "
            "simulations: give a larger time_budget, or fewer simulations (nsim)")


def _result(run, job: Job, truth: Truth, design, term, cols, nsim, seed, time_budget,
            seconds) -> PowerResult:
    rejected, pvalues, est, ses, failures, singular = [], [], [], [], [], 0
    stopped = run.stopped_by_budget
    for i, tr in zip(run.indices, run.results):
        if tr.out_of_time:
            stopped = True
        elif tr.failure is not None:
            failures.append((i, tr.failure))
        else:
            rejected.append(tr.reject)
            pvalues.append(tr.pvalue)
            est.append(tr.estimate)
            ses.append(tr.se)
            singular += tr.singular
    tried = len(rejected) + len(failures)
    if stopped and tried == 0:
        raise OutOfTime(budget_message(0, nsim, time_budget))
    notes = []
    if stopped:
        notes.append(budget_message(tried, nsim, time_budget))
    if failures:
        notes.append(f"{len(failures)} of {tried} simulated data sets could not be fitted "
                     f"(left out of the power; first: {failures[0][1]}); counting them as "
                     f"not detected, the power would be {sum(rejected) / tried:.3f}")
    if singular:
        notes.append(f"{singular} of {len(rejected)} fits were singular (a variance "
                     "estimated as 0): kept")
    if job.estimating:
        notes.append("each simulation re-estimates the family's parameter (theta, phi or "
                     "the zero inflation), as the fit did")
    if job.test == "wald" and job.lmm and len(cols) == 1:
        notes.append("Wald: t-test with Satterthwaite's df (lmerTest's)")
    if job.test == "wald" and len(cols) > 1:
        notes.append(f"Wald: chi-square test of the {len(cols)} columns together")
    few = few_levels_between(design, job.cols)
    if few is not None and not job.lmm and job.test in ("wald", "lrt"):
        g, n = few
        notes.append(f"{term} varies between only {n} levels of {g}: with so few, a GLMM's "
                     "Wald and LRT reject a true null more often than alpha (at 5%, about "
                     "7.9% and 6.5% with 20 plants, 6.0% and 5.5% with 40: docs/power.md), "
                     "so this power is a little optimistic; the LRT less so")
    wider = containing_terms(design, term)
    if wider:
        notes.append(f"the model keeps {', '.join(wider)}, which contain{'s' if len(wider) == 1 else ''} "
                     f"{term}: the test of {term} alone then depends on how the other "
                     "variables are coded (centred or not), as in R")
    levels = design.ngroups
    names = list(cols)
    k = len(names)
    return PowerResult(term, names, job.test, job.alpha,
                       np.asarray(truth.beta, float)[job.cols],
                       int(nsim), int(seed), np.array(rejected, dtype=bool),
                       np.array(pvalues, dtype=float),
                       pd.DataFrame(np.array(est).reshape(len(est), k), columns=names),
                       pd.DataFrame(np.array(ses).reshape(len(ses), k), columns=names),
                       tried, failures, singular, int(design.nobs), levels, seconds,
                       stopped, "; ".join([run.where] + run.notes), notes)
