"""The body of GLMM_POWER -- "how likely is the next study to detect the effect?" --
and its block.

It takes the fit's leading arguments (both forms, ``models.companion_model``),
reuses the cached fit, checks its own arguments before any simulation, simulates
from the fit (the tested effect optionally changed) on the fit's design or on
designs varied along a grouping factor, the rows or the effect size
(``engine.power.power_curve``), within what the fit left of the call's time
budget, and caches its block on the model and its arguments.
"""
from __future__ import annotations

import math

import numpy as np

from . import block, cache, models, values
from ..engine import jit
from ..engine.power import (ALONG_EFFECT, ALONG_ROWS, TESTS, PowerError, power_curve,
                            tested_columns)
from ..engine.power import power as engine_power
from .values import SheetError

#: GLMM_POWER's nsim when blank: 200 simulations give the power to about +-7
#: percentage points (its 95% interval) and take a few seconds per design point for
#: a model of the workplace study's size on two cores (the LRT refits two models);
#: 1,000 would take a worksheet call's whole time budget for a curve of 4 points
DEFAULT_NSIM = 200
#: the most design points (values) of one call
MAX_POINTS = 50
#: the row that heads the notes, below the design points
NOTES_HEAD = "Notes"
#: the test's words in the notes
TEST_WORDS = {"lrt": "likelihood-ratio test (against the model without it)",
              "wald": "Wald test (estimate / SE; for an LMM the t-test with "
                      "Satterthwaite's df)",
              "profile": "profile-likelihood interval (rejects when it excludes 0)"}


def effect_argument(effect) -> float | None:
    """The tested effect's true value on the link scale (None: the fit's estimate)."""
    try:
        e = values.scalar(effect, "effect", None, "number")
    except SheetError:
        raise SheetError("effect must be a number on the link scale (e.g. =LN(0.7) for a "
                         "rate or odds ratio of 0.7), or blank for the fit's estimate") from None
    return e


def along_argument(along) -> str | None:
    a = values.scalar(along, "along", None, "text")
    return a or None


def values_argument(vals, along: str | None) -> list:
    """The design points: the numbers of ``vals`` (a range; blanks skipped), in
    order, checked for what ``along`` varies."""
    cells = [c for r in values.as_grid(vals, "values") for c in r if not values.is_blank(c)]
    if along is None:
        if cells:
            raise SheetError("values needs along: the grouping factor whose number of levels "
                             "they are (e.g. \"plant\"), \"rows\" or \"effect\"")
        return []
    if not cells:
        raise SheetError("along needs values: a range of the design points (e.g. the "
                         "numbers of plants 10, 20, 30, 40)")
    if len(cells) > MAX_POINTS:
        raise SheetError(f"values has {len(cells)} numbers; the most is {MAX_POINTS} design "
                         "points (each is a whole power analysis)")
    out = []
    for c in cells:
        if values.is_error(c):
            raise SheetError(f"values holds an Excel error value ({c.strip().upper()})")
        if isinstance(c, (bool, np.bool_)) or not values.is_number(c):
            raise SheetError(f"values must be numbers; it holds the text '{c}'"
                             if isinstance(c, str) else "values must be numbers")
        f = values.to_float(c)
        if not math.isfinite(f):
            raise SheetError("values must be finite numbers")
        if along.lower() == ALONG_EFFECT:
            out.append(f)
            continue
        what = ("the number of copies of every row" if along.lower() == ALONG_ROWS else
                f"the number of levels of '{along}'")
        if not (f.is_integer() and f >= 1):
            raise SheetError(f"values are {what}: each must be a whole number >= 1, not "
                             f"{f:g}" + (" (a design needs at least one level of every "
                                         "factor)" if f <= 0 else ""))
        out.append(int(f))
    return out


def _factors(res) -> list:
    return list(res.model.design.ngroups)


def _default_term(res) -> str:
    """The first fixed-effects term with a column in X (the intercept aside)."""
    from ..engine.design import term_columns
    for label, cols in term_columns(res.model.design.spec).items():
        if cols:
            return label
    raise SheetError("the model has no fixed effect to test besides the intercept")


def _check_term(res, term: str, effect) -> list:
    try:
        cols = tested_columns(res.model.design, term)
    except PowerError as e:
        raise SheetError(str(e)) from None
    if effect is not None and len(cols) > 1:
        raise SheetError(f"effect is one number, for a term of one column; '{term}' has "
                         f"{len(cols)} ({', '.join(cols)}): leave effect blank (the fit's "
                         "estimates)")
    return cols


def _resolve_along(res, along: str | None) -> str | None:
    """``along`` as power_curve takes it: a grouping factor's name as the model
    spells it, "rows" or "effect"; a SheetError naming the choices otherwise."""
    if along is None:
        return None
    factors = _factors(res)
    for g in factors:
        if g == along or g.lower() == along.lower():
            return g
    if along.lower() in (ALONG_ROWS, ALONG_EFFECT):
        return along.lower()
    names = ", ".join(f"'{g}'" for g in factors)
    raise SheetError(f"along must be a grouping factor of the model ({names}), \"rows\" or "
                     f"\"effect\", not '{along}'")


def power(args: tuple, term, effect, test, nsim, seed, along, vals, alpha) -> list:
    """GLMM_POWER's body (``args``: the fit's leading arguments)."""
    t = values.scalar(test, "test", "lrt", "text", choices=TESTS)
    n = models.nsim_argument(nsim, DEFAULT_NSIM, models.MAX_SHEET_NSIM, "each simulation "
                             "is a refit, two for the LRT, and a worksheet call has a time "
                             "budget", least=1)
    s = models.seed_argument(seed)
    a = models.alpha_argument(alpha)
    e = effect_argument(effect)
    name = values.scalar(term, "term", None, "text") or None
    how = along_argument(along)
    points = values_argument(vals, how)
    y, X, groups, offset, x_random, fit_intercept, nAGQ, _family, _trials, _link = args
    m = models.companion_model(args, (y, X, groups, offset, x_random, fit_intercept, nAGQ),
                               y)

    def make():
        clock = jit.Stopwatch()         # the fit's time (no compilation) counts too
        res = models.fit_model(m)
        tested = name or _default_term(res)
        cols = _check_term(res, tested, e)
        if t == "profile" and len(cols) > 1:
            raise SheetError(f"the profile test takes a term of one column; '{tested}' has "
                             f"{len(cols)}: use test \"lrt\"")
        g = _resolve_along(res, how)
        budget = models.remaining_budget(clock)
        settings = dict(effect=e, test=t, nsim=n, seed=s, alpha=a, time_budget=budget,
                        progress=models.quietly)
        try:
            if g is None:       # the fit's design: one point
                results = [engine_power(res, tested, **settings)]
            else:
                results = power_curve(res, tested, g, points, **settings).results
        except PowerError as err:
            raise SheetError(_sheet_words(str(err), budget)) from None
        return power_block(points or [None], results, res, tested, g, e, budget)
    return cache.cached_block(cache.digest("power", m.key, name, e, t, n, s, how,
                                           points, a), make)


def _sheet_words(message: str, budget: float) -> str:
    """The engine's words for a worksheet: its time budget is the call's (set by
    XLGLMM_TIME_BUDGET), not an argument."""
    if message.startswith("the time budget"):
        return (f"the time budget ({budget:.3g} s left after the fit) ran out before the "
                "first simulation finished (each refits the model): set the environment "
                "variable XLGLMM_TIME_BUDGET (seconds, default 60) higher and restart "
                "Excel or Calc")
    return message


def _first_head(along: str | None) -> str:
    if along is None:
        return "design"
    if along == ALONG_EFFECT:
        return "effect (link scale)"
    if along == ALONG_ROWS:
        return "copies of each row"
    return f"levels of {along}"


def power_block(points: list, results: list, res, term: str, along: str | None, effect,
                budget: float) -> list:
    """A header, one row per design point (the varied value, the design's rows, the
    effect simulated and its ratio, the power with its 95% Clopper-Pearson interval,
    the simulations used, failed and singular, the estimates' mean, SD and mean SE),
    then a row "Notes" and the notes, one per row in the first column (as the fit
    block's)."""
    ratio = block.ratio_label(res)
    head = [_first_head(along), "rows", "effect"] + ([ratio] if ratio else []) + \
        ["power", "CI low 95%", "CI high 95%", "simulations", "failed", "singular",
         "mean estimate", "SD of estimates", "mean SE"]
    rows = [head]
    for v, r in zip(points, results):
        row = r.row()
        first = "as fitted" if along is None else v
        eff = row["effect"]
        line = [block.cell(first), int(row["nobs"]), block.cell(eff)]
        if ratio:
            line.append(block.cell(math.exp(eff)) if eff < 700 else None)
        line += [block.cell(row["power"]), block.cell(row["lower"]),
                 block.cell(row["upper"]), int(row["simulations"]), int(row["failed"]),
                 int(row["singular"]), block.cell(row.get("mean estimate")),
                 block.cell(row.get("sd estimate")), block.cell(row.get("mean se"))]
        rows.append(line)
    rows.append([NOTES_HEAD])
    rows += [[text] for text in _notes(points, results, res, term, along, effect, budget)]
    return block.rectangular(rows)


def _notes(points, results, res, term, along, effect, budget) -> list:
    first = results[0]
    ratio = block.ratio_label(res)
    cols = first.columns
    what = f"'{term}'" + (f" (its columns {', '.join(cols)}; the effect and estimates "
                          f"shown are {cols[0]}'s)" if len(cols) > 1 else "")
    truth = ("the fit's estimate" if effect is None and along != ALONG_EFFECT else
             "the effect in the row" if along == ALONG_EFFECT else
             f"effect {effect:.6g}" + (f" ({ratio} {math.exp(effect):.4g})"
                                       if ratio and effect < 700 else ""))
    notes = [f"power: the share of data sets simulated from the fit, with {term} at "
             f"{truth} and the other parameters at their estimates, in which the "
             f"{TEST_WORDS[first.test]} of {what} rejects at alpha {first.alpha:g}; CI: "
             "the exact binomial (Clopper-Pearson) 95% interval"]
    used = [r.n_used for r in results if r.n_used]
    if used:
        nmin = min(used)
        notes.append(f"Monte Carlo error: with {nmin:,} simulations the power's standard "
                     f"error is at most {0.5 / math.sqrt(nmin):.2g} (at power 50%); more "
                     "simulations (nsim) narrow the CI: 4 times as many halve it")
    notes.append(f"seed {first.seed}: the same seed gives the same numbers on every "
                 "machine, unless the time budget stops a run")
    for v, r in zip(points, results):
        where = "" if along is None else f"{_first_head(along)} {v:g}: "
        if r.stopped_by_budget:
            notes.append(f"{where}the time budget ({budget:.3g} s left after the fit, "
                         f"shared by the {len(points)} design point"
                         f"{'s' if len(points) != 1 else ''}) stopped the run after "
                         f"{r.n_tried:,} of {r.nsim:,} simulations: ask for fewer "
                         "simulations (nsim) or design points, or set the environment "
                         "variable XLGLMM_TIME_BUDGET (seconds, default 60) higher and "
                         "restart Excel or Calc")
        for note in r.notes:
            if not note.startswith("the time budget"):
                notes.append(where + note)
    return notes
