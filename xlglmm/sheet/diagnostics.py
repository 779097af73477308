"""The bodies of the model-check functions -- GLMM_CHECK, GLMM_RESID,
GLMM_INFLUENCE -- and their blocks.  Each takes the fit's leading arguments (both
forms, ``models.companion_model``), reuses the cached fit, checks its own
arguments before any work, runs within what the fit left of the call's time
budget, and caches its block on the model and its arguments."""
from __future__ import annotations


import numpy as np

from . import block, cache, models, values
from ..engine import jit
from ..engine.model_check import COLUMNS as CHECK_COLUMNS
from ..engine.residuals import RESIDUAL_TYPES, SimulationError
from ..engine.simulation_tests import MAX_NSIM as MAX_CHECK_NSIM, MIN_REFITS
from .values import SheetError

#: GLMM_RESID's simulations for the quantile residual: each is one draw of every row;
#: simulated values held at once (about 80 MB; the Python API allows more)
MAX_RESID_NSIM = 10_000
MAX_RESID_VALUES = 10_000_000


def _model(args: tuple):
    """The model of the fit's leading arguments, in either form."""
    y, X, groups, offset, x_random, fit_intercept, nAGQ, _family, _trials, _link = args
    return models.companion_model(args, (y, X, groups, offset, x_random, fit_intercept,
                                         nAGQ), y)


# ---- GLMM_CHECK -----------------------------------------------------------------------

CHECK_HEAD = ["Check", "Value", "Expected", "p", "Problem", "Verdict"]


def check(args: tuple, nsim, seed) -> list:
    why = (f"each simulation is a refit, and below {MIN_REFITS} no p-value can fall below "
           "5%; 0 leaves the simulation tests out")
    n = models.nsim_argument(nsim, 250, MAX_CHECK_NSIM, why)
    if 0 < n < MIN_REFITS:
        raise SheetError(f"nsim must be 0 or a whole number from {MIN_REFITS} to "
                         f"{MAX_CHECK_NSIM:,} ({why})")
    s = models.seed_argument(seed)
    m = _model(args)

    def make():
        clock = jit.Stopwatch()
        res = models.fit_model(m)
        try:
            result = res.check(n, s, time_budget=models.remaining_budget(clock),
                               progress=models.quietly)
        except ValueError as e:             # a request the engine refuses: its reason
            raise SheetError(str(e)) from None
        return check_block(result)
    return cache.cached_block(cache.digest("check", m.key, n, s), make)


def check_block(result) -> list:
    """A header, one row per check (``model_check.ROWS``), then the simulations'
    account (refits used of those asked for, seed) and the notes."""
    rows = [CHECK_HEAD]
    for name, r in result.table.iterrows():
        rows.append([name] + [block.cell(r[c]) for c in CHECK_COLUMNS])
    sim = result.simulation
    if sim is not None:
        rows.append(["refitted simulations", sim.refits, sim.nsim, None, None,
                     f"seed {sim.seed}; each p-value ranks the data among their "
                     "refitted simulations"])
    for note in result.notes:
        rows.append(["note", None, None, None, None, note])
    return block.rectangular(rows)


# ---- GLMM_RESID -----------------------------------------------------------------------

RESID_HEAD = {"fitted": "fitted", "observed": "observed", "response": "response resid",
              "pearson": "Pearson resid", "deviance": "deviance resid",
              "quantile": "quantile resid (simulated)"}


def resid(args: tuple, type_, nsim, seed) -> list:
    kind = values.scalar(type_, "resid_type", "deviance", "text", choices=RESIDUAL_TYPES)
    n = models.nsim_argument(nsim, 250, MAX_RESID_NSIM, "simulations behind the quantile "
                      "residual")
    if n == 0:
        raise SheetError("nsim must be at least 1: the quantile residual is simulated")
    s = models.seed_argument(seed)
    m = _model(args)
    if n * m.n_rows > MAX_RESID_VALUES:
        raise SheetError(f"nsim = {n:,} simulations of {m.n_rows:,} rows are too many for a "
                         f"worksheet: ask for at most {max(1, MAX_RESID_VALUES // m.n_rows):,}")

    def make():
        res = models.fit_model(m)
        try:
            table = res.residuals_table(kind, n, s)
        except SimulationError as e:            # too many values for this many rows
            raise SheetError(str(e)) from None
        return resid_block(table, res.design.kept_rows, m.n_rows, kind)
    return cache.cached_block(cache.digest("resid", m.key, kind, n, s), make)


def resid_block(table, kept_rows, n_rows: int, kind: str) -> list:
    """A header, then one row per row of y (rows the fit dropped blank): fitted,
    observed, the four residuals and the normal quantile of ``kind``'s rank."""
    head = [RESID_HEAD[c] for c in table.columns if c != "qq"]
    head.append(f"normal quantile ({kind})")
    cols = [block.significant(table[c].to_numpy()) for c in table.columns]
    rows = [[None] * len(head) for _ in range(n_rows)]
    for i, r in zip(kept_rows, zip(*cols)):
        rows[i] = [float(v) if np.isfinite(v) else None for v in r]
    return [head] + rows


# ---- GLMM_INFLUENCE -------------------------------------------------------------------

def influence(args: tuple, group) -> list:
    g = values.scalar(group, "group", None, "text")
    m = _model(args)

    def make():
        clock = jit.Stopwatch()
        res = models.fit_model(m)
        try:
            table = res.influence(g, time_budget=models.remaining_budget(clock), progress=models.quietly)
        except ValueError as e:             # a factor the model does not have: its names
            raise SheetError(str(e)) from None
        return influence_block(table)
    return cache.cached_block(cache.digest("influence", m.key, g), make)


def parameter_words(name: str) -> str:
    """A variance parameter's name as a column head in words that wrap:
    ``sd_(Intercept)|plant`` -> ``SD (Intercept) | plant``, ``cor_a.b|g`` ->
    ``cor a.b | g``, ``nb_theta`` -> ``theta``."""
    if name == "nb_theta":
        return "theta"
    kind, _, rest = name.partition("_")
    if kind in ("sd", "cor") and "|" in rest:
        term, _, group = rest.rpartition("|")
        return f"{'SD' if kind == 'sd' else 'cor'} {term} | {group}"
    return name


def influence_block(table) -> list:
    """A header, one row per level of the factor (its name, its rows, each fixed
    effect's DFBETAS, Cook's distance, the change of each variance parameter when
    the level is left out, whether it passes a cut-off, a note), then the cut-offs
    and, when the time budget stopped the refits, how many levels it left undone."""
    a = table.attrs
    fixed = [c[len("dfbetas_"):] for c in table.columns if c.startswith("dfbetas_")]
    changes = [c for c in table.columns if c.startswith("change_")]
    head = ([a["group"], "rows"] + [f"DFBETAS {f}" for f in fixed] + ["Cook's distance"]
            + [f"change in {parameter_words(c[len('change_'):])}" for c in changes]
            + ["influential", "note"])
    rows = [head]
    for level, r in table.iterrows():
        note = r["message"] or ("the refit was singular" if r["singular"] else
                                "" if r["converged"] else "the refit did not converge")
        rows.append([level, int(r["rows"])] + [block.cell(r[f"dfbetas_{f}"]) for f in fixed]
                    + [block.cell(r["cooks_distance"])] + [block.cell(r[c]) for c in changes]
                    + [bool(r["influential_cooks"] or r["influential_dfbetas"]),
                       block.cell_text(note) if note else None])     # blank, not ""
    rows.append(["cut-offs", None] + [block.cell(a["dfbetas_cutoff"])] * len(fixed)
                + [block.cell(a["cooks_cutoff"])] + [None] * len(changes)
                + [None, f"influential: Cook's distance > 4/n or |DFBETAS| > 2/sqrt(n), "
                         f"n = {a['n_levels']} levels (lme4's measures)"])
    if a["stopped_by_budget"]:
        rows.append(["note", None] + [None] * (len(head) - 3)
                    + [f"the time budget stopped the refits: {len(table)} of "
                       f"{a['n_levels']} levels done"])
    return block.rectangular(rows)
