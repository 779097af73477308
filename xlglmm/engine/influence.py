"""The influence of each level of a grouping factor: the model refitted without that
level's rows (lme4's ``influence.merMod`` with ``groups=``), and the DFBETAS and
Cook's distance lme4 makes of those refits (``dfbetas``, ``cooks.distance``).

For level i of the factor, the refit is the same formula, family and settings on the
rows whose level is not i: that level is gone from the factor, and a level of
another factor left without rows is gone too (``bootstrap.design_of_rows``).  It
starts from the full fit's estimates (``model.refit_model``), as lme4 starts its
refits from the fit's theta and fixed effects; a negative binomial fit whose theta
was estimated estimates it again (``bootstrap.refit_estimating_theta``).  The refits
run through ``engine.workers.run``: in this process, on local processes or on a Dask
cluster, with the same numbers wherever they run (every refit starts from the same
state).

What each row reports, as lme4 1.1-31 defines it (its R/influence.R):

* ``dfbetas_<effect>``: (beta_(-i) - beta) / SE_(-i), the change in the fixed effect
  when level i is left out, in standard errors of the refit (lme4 divides by the
  refit's ``vcov``, not the full fit's).  The sign is lme4's: without the level
  minus with it.
* ``cooks_distance``: D_i = d' [(n - p) / (n p) V^-1] d with d = beta_(-i) - beta, V
  the full fit's covariance of the fixed effects, n the factor's number of levels
  and p the number of fixed effects (lme4's ``cooks.distance.influence.merMod``:
  the levels play the part of observations).
* ``change_<parameter>``: each random-effect SD, correlation, sigma (families with
  a dispersion, LMMs) and the NB theta (when estimated), without the level minus
  with it (the sign of lme4's ``dfbeta(which = "var.cov")``; lme4 reports
  variances and covariances, these are on the scale of the result's ``varcorr``:
  SDs and correlations).
* ``fixef_<effect>``: the fixed effect without the level (lme4's
  ``influence(m)$"fixed.effects[-g]"``).

The flags use the usual cut-offs for n units, n being the number of levels: Cook's
distance above 4/n (Bollen & Jackman 1990, "Regression diagnostics: an expository
treatment of outliers and influential cases"; the cut-off that Nieuwenhuis, te
Grotenhuis & Pelzer 2012, "influence.ME", The R Journal 4(2), apply to the levels of
a mixed model) and |DFBETAS| above 2/sqrt(n) (Belsley, Kuh & Welsch 1980, "Regression
Diagnostics", ch. 2, their size-adjusted cut-off).  They point at levels to look at,
not at levels to remove.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import workers as _workers
from .bootstrap import (case_plan, check_time_budget, design_of_rows,
                        estimates_family_parameter, parameter_names, parameter_values,
                        phi_estimated, refit_estimating_theta, zi_estimated)
from .model import MixedModel


class InfluenceError(ValueError):
    """Influence cannot be computed as asked: says why."""


class LevelRefit(NamedTuple):
    """One level's refit: its parameters (``bootstrap.parameter_values``: the
    variance parameters, then the fixed effects) and the fixed effects' SEs, or
    None when it failed (``failure`` says why) or the time budget stopped it
    (``out_of_time``)."""
    values: np.ndarray | None
    se: np.ndarray | None
    converged: bool = False
    singular: bool = False
    failure: str = ""
    out_of_time: bool = False


@dataclass
class Job:
    """What every refit reads (``engine.workers`` sends it once per worker): the
    fitted model (the warm start), the rows each level of the factor has, whether
    theta is estimated again (NB) and the wall-clock deadline (None: no budget)."""
    model: MixedModel
    rows_of: list
    estimates_theta: bool
    deadline: float | None


def refit_without(job: Job, level: int) -> LevelRefit:
    """The model refitted without the rows of ``level`` (its code in the factor).  A
    failure loses this level only: its message is kept."""
    left = None if job.deadline is None else job.deadline - time.time()
    if left is not None and left <= 0:
        return LevelRefit(None, None, out_of_time=True)
    model = job.model
    keep = np.ones(model.design.nobs, bool)
    keep[job.rows_of[level]] = False
    try:
        design = design_of_rows(model.design, np.flatnonzero(keep))
        if job.estimates_theta:
            fitted = refit_estimating_theta(model, design=design, time_budget=left,
                                            se_method=model.se_method)
        else:   # (no budget: the model's own settings, its budget among them)
            fitted = model.refit_model(design=design,
                                       **({} if left is None else {"time_budget": left}))
            fitted.estimate()
    except Exception as e:      # one failed refit must not lose the others
        return LevelRefit(None, None, failure=f"{type(e).__name__}: {e}")
    est = fitted.estimates
    if est.stopped_by_budget:
        return LevelRefit(None, None, out_of_time=True)
    values = parameter_values(model, est.theta, est.beta, est.sigma,
                              est.nb.theta if est.nb is not None else None,
                              est.phi.phi if est.phi is not None else None,
                              () if est.zi is None else est.zi.coef)
    return LevelRefit(values, np.sqrt(np.diag(est.vcov)), bool(est.converged),
                      bool(est.singular),
                      "" if est.converged else "; ".join(est.messages) or "not converged")


def check_group(design, group) -> str:
    """``group`` (None: the first random-effects term's factor) checked against the
    model's grouping factors: InfluenceError names them."""
    names = list(design.ngroups)
    if group is None:
        return names[0]
    if not isinstance(group, str) or group not in names:
        listed = ", ".join(f"'{g}'" for g in names)
        raise InfluenceError(f"group must be a grouping factor of the model ({listed}), "
                             f"not {group!r}")
    return group


def influence(result, group=None, time_budget=None, workers=None, client=None,
              progress=None) -> pd.DataFrame:
    """One row per level of ``group`` (see the module's notes for the columns),
    indexed by the level's name; the rows of the levels the time budget left
    undone are absent.  ``attrs``: ``group``, ``n_levels`` (all the factor's
    levels: the n of Cook's distance and of the cut-offs), ``cooks_cutoff``,
    ``dfbetas_cutoff``, ``stopped_by_budget``, ``where`` (where the refits ran)
    and ``seconds``."""
    model = result.model
    if model.optimum is None:
        raise InfluenceError("influence needs a fitted model")
    group = check_group(model.design, group)
    check_time_budget(time_budget, InfluenceError)
    t0 = time.perf_counter()
    term = next(t for t in model.design.re_terms if t.group == group)
    estimates_theta = estimates_family_parameter(result)
    job = Job(model, case_plan(model.design, group).rows_of, estimates_theta,
              None if time_budget is None else time.time() + float(time_budget))
    report = (_workers.terminal_progress("influence") if progress is None
              else (lambda done, total: progress("influence", done)))
    try:
        out = _workers.run(refit_without, job, range(term.nlevels), client=client,
                           workers=workers, time_budget=time_budget, progress=report)
    except _workers.WorkersError as e:
        raise InfluenceError(str(e)) from None
    done = [(i, r) for i, r in zip(out.indices, out.results) if not r.out_of_time]
    table = _table(result, [term.levels[i] for i, _ in done], [r for _, r in done],
                   [len(job.rows_of[i]) for i, _ in done], term.nlevels)
    table.index.name = group
    table.attrs.update(
        group=group, n_levels=term.nlevels,
        cooks_cutoff=4.0 / term.nlevels, dfbetas_cutoff=2.0 / math.sqrt(term.nlevels),
        stopped_by_budget=bool(out.stopped_by_budget or len(done) < term.nlevels),
        where="; ".join([out.where] + out.notes), seconds=time.perf_counter() - t0)
    return table


def lme4_measures(dfbeta, se_without, vcov, n_levels: int):
    """(DFBETAS, Cook's distance) as lme4 makes them of the changes ``dfbeta`` (levels
    x fixed effects, without the level minus with it), the refits' standard errors
    ``se_without`` (same shape), the full fit's covariance ``vcov`` and the number
    of levels: dfbeta / se_without, and d' [(n - p) / (n p) vcov^-1] d per level."""
    dfbeta = np.asarray(dfbeta, float)
    p = dfbeta.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        dfbetas = dfbeta / np.asarray(se_without, float)
    if not p:
        return dfbetas, np.zeros(len(dfbeta))
    weight = (n_levels - p) / (n_levels * p) * np.linalg.inv(np.asarray(vcov, float))
    return dfbetas, np.einsum("ij,jk,ik->i", dfbeta, weight, dfbeta)


def _table(result, levels, refits, rows, n_levels) -> pd.DataFrame:
    """The columns of the module's notes from the refits of ``levels``."""
    model = result.model
    fixed = list(model.design.x_names)
    p = len(fixed)
    names = parameter_names(model, result.nb_theta_se is not None)
    full = parameter_values(model, result.theta, result.fe_params.to_numpy(), result.sigma,
                            result.nb_theta if result.nb_theta_se is not None else None,
                            result.phi if phi_estimated(model) else None,
                            result.zi_params.to_numpy() if zi_estimated(model) else ())
    values = np.full((len(refits), len(names)), np.nan)
    se = np.full((len(refits), p), np.nan)
    for k, r in enumerate(refits):
        if r.values is not None:
            values[k], se[k] = r.values, r.se
    n_var = len(names) - p
    dfbeta = values[:, n_var:] - full[n_var:]
    dfbetas, cooks = lme4_measures(dfbeta, se, result.fe_cov.to_numpy(), n_levels)
    cols = {"rows": np.asarray(rows, np.int64)}
    cols.update({f"dfbetas_{f}": dfbetas[:, j] for j, f in enumerate(fixed)})
    cols["cooks_distance"] = cooks
    cols.update({f"change_{nm}": values[:, j] - full[j] for j, nm in enumerate(names[:n_var])})
    cols.update({f"fixef_{f}": values[:, n_var + j] for j, f in enumerate(fixed)})
    cols["influential_cooks"] = cooks > 4.0 / n_levels
    cols["influential_dfbetas"] = (np.abs(dfbetas) > 2.0 / math.sqrt(n_levels)).any(axis=1)
    cols["failed"] = np.array([r.values is None for r in refits], bool)
    cols["converged"] = np.array([r.converged for r in refits], bool)
    cols["singular"] = np.array([r.singular for r in refits], bool)
    cols["message"] = [r.failure for r in refits]
    return pd.DataFrame(cols, index=pd.Index(levels, dtype=object))
