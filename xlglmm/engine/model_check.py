"""Is the model any good: every check of a fit in one table, each with a verdict in
plain words -- what ``GLMM_CHECK`` spills and ``res.check()`` returns.

The rows (``ROWS``): the dispersion ratio with its chi-squared test as
``performance::check_overdispersion`` computes it (``checks.overdispersion``); the
four simulation tests with p-values calibrated by refits
(``simulation_tests``); Nakagawa's R² and the ICC (``checks``); whether a
variance was estimated as zero and whether the fit converged.  A row that does not
apply to the family (dispersion and zeros of a Gaussian, Gamma or 0/1 model) is kept
with NaN numbers and a verdict saying why, so the table has one shape for every
model.  A test flags a problem at p < ``ALPHA`` (5%); the verdicts name the usual
remedy.  The chi-squared test is shown because it is what ``performance`` and the
workplace study report, but it is conservative in a GLMM (its df ignore the
shrinkage: under the model its p-values had a median of 0.89,
``benchmarks/check_calibration.py``), so the verdict on dispersion rests on the
refitted simulations.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import checks
from .simulation_tests import (DEFAULT_NSIM, DISPERSION, OUTLIERS, UNIFORMITY, ZEROS,
                               MIN_REFITS, SimulationTests, check_request, counts_like,
                               simulation_tests)

ALPHA = 0.05
PEARSON = "dispersion ratio (Pearson)"
R2_MARGINAL, R2_CONDITIONAL = "R² marginal", "R² conditional"
ICC_ADJUSTED, ICC_CONDITIONAL = "ICC adjusted", "ICC conditional"
SINGULAR, CONVERGENCE = "singular fit", "convergence"
ROWS = (PEARSON, UNIFORMITY, DISPERSION, ZEROS, OUTLIERS, R2_MARGINAL, R2_CONDITIONAL,
        ICC_ADJUSTED, ICC_CONDITIONAL, SINGULAR, CONVERGENCE)
COLUMNS = ("value", "expected", "p", "problem", "verdict")


@dataclass
class ModelCheck:
    """The checks of one fit: ``table`` (a DataFrame indexed by ``ROWS``, columns
    ``value`` -- the statistic --, ``expected`` -- its value under the model where
    one is meaningful --, ``p``, ``problem`` -- True where the check fails -- and
    ``verdict``), the simulation tests' details (``simulation``: refits used and
    failed, seed, time) and ``notes`` (why a check could not be computed)."""
    table: pd.DataFrame
    simulation: SimulationTests | None
    notes: list

    @property
    def problems(self) -> list:
        """The names of the checks that flag a problem."""
        return [name for name in self.table.index if self.table.at[name, "problem"]]

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", 90, "display.width", 200):
            return repr(self.table)


def _row(value=math.nan, expected=math.nan, p=math.nan, problem=False, verdict=""):
    return {"value": float(value), "expected": float(expected), "p": float(p),
            "problem": bool(problem), "verdict": verdict}


#: the family as a verdict names it
_WORDS = {"poisson": "Poisson", "binomial": "binomial", "Gamma": "Gamma",
          "gaussian": "normal"}


def _family_word(res) -> str:
    label = res.family.spec.label
    return _WORDS.get(label, "negative binomial" if res.family.has_theta else label)


def dispersion_verdict(res, ratio: float, p: float, simulated: bool) -> tuple:
    """(problem, words) for a dispersion statistic ``ratio`` with p-value ``p``."""
    word = _family_word(res)
    if p < ALPHA and ratio > 1.0:
        remedy = ("try GLMM_NEGBIN or an observation-level random effect"
                  if res.family.counts_response and not res.family.has_theta else
                  "add an observation-level random effect or a covariate that explains it")
        return True, (f"the data vary {ratio:.1f}x more than a {word} model allows "
                      f"(overdispersion): standard errors are too small; {remedy}")
    if p < ALPHA and simulated:
        return True, (f"the data vary less than a {word} model expects (ratio {ratio:.2f}, "
                      "underdispersion): standard errors are too large")
    return False, f"no evidence of overdispersion (ratio {ratio:.2f})"


def _not_applicable(res) -> str:
    if res.family.is_binomial:
        return "not applicable: 0/1 responses carry no information on dispersion or zeros"
    return (f"not applicable: a {_family_word(res)} model estimates its own scale "
            "and has no excess zeros to count")


def _pearson_row(res) -> dict:
    if not counts_like(res.family, res.design.weights):
        return _row(verdict=_not_applicable(res))
    od = checks.overdispersion(res)
    problem, words = dispersion_verdict(res, od["ratio"], od["p"], simulated=False)
    return _row(od["ratio"], 1.0, od["p"], problem,
                f"{words} [chi2 = {od['chisq']:.2f} on {od['df']:.0f} df, as performance]")


def _simulation_rows(res, sim: SimulationTests | None, why_not: str) -> dict:
    rows = {}
    table = sim.table if sim is not None and sim.enough else None
    for name in (UNIFORMITY, DISPERSION, ZEROS, OUTLIERS):
        if table is None:
            rows[name] = _row(verdict=why_not)
        elif name not in table.index:
            rows[name] = _row(verdict=(
                f"not applicable: the model expects {sim.expected_zeros:.2g} zeros, too "
                "few to test" if name == ZEROS and counts_like(res.family, res.design.weights)
                else _not_applicable(res)))
        else:
            value, expected, p = table.loc[name, ["statistic", "expected", "p"]]
            rows[name] = _row(value, expected, p, *_simulation_verdict(name, value, expected,
                                                                       p, res, sim))
    return rows


def _simulation_verdict(name, value, expected, p, res, sim) -> tuple:
    bad = p < ALPHA
    if name == UNIFORMITY:
        return bad, ("the residuals do not follow the model's distribution: plot "
                     "GLMM_RESID's simulated residuals against the fitted values"
                     if bad else "the residuals follow the model's distribution")
    if name == DISPERSION:
        return dispersion_verdict(res, value, p, simulated=True)
    if name == ZEROS:
        counts = f"{sim.observed_zeros} zeros observed, {sim.expected_zeros:.1f} expected"
        if bad and value > 1.0:
            return True, (f"more zeros than the model allows ({counts}): try GLMM_NEGBIN "
                          "(zero-inflated families are not yet available)")
        if bad:
            return True, f"fewer zeros than the model expects ({counts})"
        return False, f"zeros as the model expects ({counts})"
    tail = f"1/{sim.nsim + 1}"
    return bad, (f"{value:.0f} rows lie in the outer {tail} tails of the model's "
                 f"distribution at their fitted means ({expected:.1f} expected): look at "
                 "them in GLMM_RESID" if bad else
                 f"no more outlying rows than expected ({value:.0f} in the outer {tail} "
                 f"tails; {expected:.1f} expected)")


def _variance_rows(res, notes: list) -> dict:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")         # (they are kept as notes)
            v = checks.variances(res)
        r2, icc = v.r2(), v.icc()
        notes.extend(f"R² and ICC: {note}" for note in v.notes)
    except (checks.CheckError, ValueError) as e:
        notes.append(f"R² and ICC: {e}")
        why = f"not computed: {e}"
        return {name: _row(verdict=why)
                for name in (R2_MARGINAL, R2_CONDITIONAL, ICC_ADJUSTED, ICC_CONDITIONAL)}
    zero = ("not defined: a variance is estimated as zero" if math.isnan(r2["conditional"])
            else None)
    return {
        R2_MARGINAL: _row(r2["marginal"], verdict="share of the variance the fixed effects "
                          "explain (Nakagawa)"),
        R2_CONDITIONAL: _row(r2["conditional"], verdict=zero or "share the fixed and random "
                             "effects explain together"),
        ICC_ADJUSTED: _row(icc["adjusted"], verdict=zero or "share of the variance left "
                           "after the fixed effects that lies between groups"),
        ICC_CONDITIONAL: _row(icc["conditional"], verdict=zero or "share of all the variance "
                              "that lies between groups"),
    }


def _fit_rows(res) -> dict:
    singular = _row(float(res.singular), problem=res.singular,
                    verdict="a variance or correlation is estimated at its boundary: "
                            "simplify the random effects" if res.singular else
                            "no variance estimated as zero")
    problems = [m for m in res.messages if "converge" in m.lower()]
    convergence = _row(float(res.converged and not problems),
                       problem=not res.converged or bool(problems),
                       verdict="; ".join(problems) if problems else
                       ("converged" if res.converged else "the fit did not converge"))
    return {SINGULAR: singular, CONVERGENCE: convergence}


def check(res, nsim: int = DEFAULT_NSIM, seed: int = 0, time_budget=None, progress=None,
          workers=None, client=None) -> ModelCheck:
    """Every check of ``res`` (see the module's notes): the simulation tests from
    ``nsim`` refits with ``seed`` (``nsim=0``: left out) within ``time_budget``
    seconds."""
    notes = []
    sim, why_not = None, "not run (nsim = 0)"
    if isinstance(nsim, (int, np.integer)) and not isinstance(nsim, bool) and nsim == 0:
        check_request(res.nobs, MIN_REFITS, seed)   # the seed is checked all the same
    else:                                           # (simulation_tests checks nsim)
        sim = simulation_tests(res, nsim, seed, time_budget, progress, workers, client)
        if not sim.enough:
            why_not = (f"not enough refits: {sim.refits} of {nsim} finished"
                       + (" within the time budget" if sim.stopped_by_budget else "")
                       + (f", {sim.failed} failed" if sim.failed else "")
                       + f"; a p-value below 5% needs at least {MIN_REFITS}")
            notes.append(why_not)
        elif sim.stopped_by_budget:
            notes.append(f"the time budget stopped the refits: the tests use {sim.refits} "
                         f"of the {nsim} asked for")
        if sim.failed:
            notes.append(f"{sim.failed} of the refits failed to converge and are left out")
    rows = {PEARSON: _pearson_row(res), **_simulation_rows(res, sim, why_not),
            **_variance_rows(res, notes), **_fit_rows(res)}
    table = pd.DataFrame([rows[name] for name in ROWS], index=list(ROWS), columns=COLUMNS)
    return ModelCheck(table, sim, notes)
