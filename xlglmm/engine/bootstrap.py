"""The bootstrap of a fitted mixed model: parametric (lme4's ``bootMer``,
MixedModels.jl's ``parametricbootstrap``) or by cases (the seed's cluster
bootstrap), each replicate refitted by ``model.refit`` from the fit's estimates.

* **Parametric** (``resample="parametric"``): new responses simulated from the fitted
  model -- new random effects b for every level, new noise from the family -- and
  refitted with the model's symbolic structure and warm starts.  A GLMM draws
  b = Lambda z and the family's response given mu (Gamma and Gaussian GLMMs with the
  fitted dispersion sigma^2); an LMM draws y = X beta + Z b + sigma e / sqrt(w) with
  b = sigma Lambda z (its Lambda is relative to sigma; lme4 ignores the weights
  here); a negative binomial fit whose theta was estimated draws NB2 with that
  theta and every refit estimates theta again (the Poisson fit, then the search,
  as the fit itself did).
* **By cases** (``resample=`` a grouping factor's name): the factor's levels drawn
  with replacement, every row of a drawn level kept, and each copy of a level made
  a level of its own (a level drawn twice is two groups); a factor nested in the
  drawn one is copied with it; any other factor (crossed with it) keeps its levels,
  so its random effects are not resampled: for crossed designs this is the
  seed's cluster bootstrap, valid for the drawn factor's variation and
  conservative or liberal for the rest (no resampling scheme is exact for crossed
  random effects).  ``resample="observation"``: rows drawn with replacement, every
  factor keeping its levels.  Each replicate is the same formula, family and
  settings fitted to its rows (a replicate whose rows no longer identify every
  fixed effect, or leave a factor one level, is counted as failed).

Reproducible: replicate i draws from its own generator,
``numpy.random.SeedSequence(seed, spawn_key=(i,))`` (``SeedSequence(seed).spawn(n)[i]``),
and every refit starts from the same state, the fit's estimates (the model is
never changed by a refit), so a replicate's numbers do not depend on how many
replicates run, in which order, or where: in this process, on local processes or
on a Dask cluster (``engine.workers``; numpy's generators are stable across its
versions by policy, not by guarantee).  Refits use the RX standard errors (no
finite-difference Hessians: a bootstrap's intervals come from the replicates).  A
refit that fails or does not converge is counted, not used; singular refits are
counted and kept.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from . import workers as _workers
from .covariance import random_effects_scale
from .family import zero_probability
from .family_parameter import FamilyParameterModel, parameter_of
from .lmm import LinearMixedModel
from .model import GeneralizedLinearMixedModel, MixedModel, ModelError
from .profile import sdcor_names, sdcor_of_theta

MAX_NSIM = 1_000_000
PARAMETRIC = "parametric"
OBSERVATIONS = "observation"


class BootstrapError(ValueError):
    """The bootstrap cannot run on this fit as asked: says why."""


def draw_response(model, beta, theta, sigma, rng) -> np.ndarray:
    """One response drawn from a fitted model at (beta, theta, sigma), in the design's
    row order and scale (what ``model.refit`` takes): eta = offset + X beta + sum
    over terms of Z b with new b, then the family's draw given mu (see the module's
    notes for the LMM's and the dispersion's share)."""
    d = model.design
    fam = model.family
    # b = scale Lambda z: scale sigma for an LMM and lme4's Laplace of the Gamma
    # (their Lambda is relative to sigma), 1 elsewhere
    scale = random_effects_scale(fam, sigma)
    eta = d.offset + d.X @ beta
    for t, L in zip(d.re_terms, model.devfun.lambdas(theta)):
        b = scale * (rng.standard_normal((t.nlevels, t.k)) @ L.T)
        eta = eta + np.einsum("ij,ij->i", t.Z, b[t.codes])
    # (zero-inflated: the family draws the count, then the structural zeros with p0)
    wt = zero_probability(d.zi_X, fam.zi_coef) if fam.zero_inflated else d.weights
    return fam.simulate(fam.linkinv(eta), wt, rng, dispersion=sigma ** 2)


def simulate_response(result, rng) -> np.ndarray:
    """One response drawn from a fitted result (``draw_response`` at its estimates)."""
    return draw_response(result.model, result.fe_params.to_numpy(), result.theta,
                         result.sigma, rng)


def parameter_names(model, theta_estimated: bool) -> list:
    """The names of ``parameter_values``: each random-effects term's SDs and
    correlations in theta's order, named as the profile names them
    (``profile.sdcor_names``: ``sd_(Intercept)|plant``, ``cor_(Intercept).x|g``),
    ``sigma`` (LMMs and families with a dispersion), ``nb_theta`` (an NB fit that
    estimated it), ``phi`` (an NB1, beta or beta-binomial fit that estimated it), the
    zero-inflation coefficients a fit estimated (``zi_(Intercept)``...), then the
    fixed effects."""
    names = [name for name, _ in sdcor_names(model.devfun.terms)]
    if model.family.has_dispersion:
        names.append("sigma")
    if theta_estimated:
        names.append("nb_theta")
    if phi_estimated(model):
        names.append("phi")
    return names + [f"zi_{n}" for n in zi_estimated(model)] + list(model.design.x_names)


def zi_estimated(model) -> list:
    """The zero-inflation coefficients the model's fit estimated (their names)."""
    zi = model.estimates.zi if model.estimates is not None else None
    return list(zi.names) if zi is not None else []


def phi_estimated(model) -> bool:
    """The model's fit estimated its family's phi (NB1, beta, beta-binomial)."""
    return model.estimates is not None and model.estimates.phi is not None


def parameter_values(model, theta, beta, sigma, nb_theta=None, phi=None,
                     zi=()) -> np.ndarray:
    """The parameters ``parameter_names`` names, at (theta, beta, sigma), the NB's
    estimated theta and the estimated phi (None: not estimated); the SDs as the
    result's ``varcorr`` reports them (times sigma)."""
    extra = [sigma] if model.family.has_dispersion else []
    if nb_theta is not None:
        extra.append(nb_theta)
    if phi is not None:
        extra.append(phi)
    return np.concatenate([sdcor_of_theta(model.devfun.terms, np.asarray(theta, float),
                                          random_effects_scale(model.family, sigma)),
                           np.array(extra, float), np.asarray(zi, float),
                           np.asarray(beta, float)])


def statistics_of(result) -> pd.Series:
    """The default statistics: ``parameter_values`` at the result's estimates."""
    nb_theta = result.nb_theta if result.nb_theta_se is not None else None
    phi = result.phi if phi_estimated(result.model) else None
    zi = result.zi_params.to_numpy() if zi_estimated(result.model) else ()
    return pd.Series(parameter_values(result.model, result.theta, result.fe_params.to_numpy(),
                                      result.sigma, nb_theta, phi, zi),
                     index=parameter_names(result.model, nb_theta is not None), dtype=float)


def _estimated_values(model) -> np.ndarray:
    """``statistics_of`` of a fitted model without building its result."""
    est = model.estimates
    return parameter_values(model, est.theta, est.beta, est.sigma,
                            None if est.nb is None else est.nb.theta,
                            None if est.phi is None else est.phi.phi,
                            () if est.zi is None else est.zi.coef)


@dataclass
class BootstrapResult:
    """The replicates (one row per successful refit, indexed by its replicate number
    i -- the one its seed is made of --, one column per statistic), the original
    estimates, the counts of refits that failed or were singular, and the failures
    as (replicate number, message).
    ``resample``: "parametric", "observation" or the grouping factor resampled;
    ``where``: where the replicates ran (``engine.workers``); ``stopped_by_budget``:
    the time budget stopped the run before all ``nsim`` replicates (the replicates
    finished are kept: ``len(replicates) + failed < nsim``)."""
    estimates: pd.Series
    replicates: pd.DataFrame
    nsim: int
    seed: int
    failed: int = 0
    singular: int = 0
    seconds: float = float("nan")
    stopped_by_budget: bool = False
    failures: list = field(default_factory=list)
    resample: str = PARAMETRIC
    where: str = "in process"
    #: the replicates' RX standard errors of the fixed effects (rows as
    #: ``replicates``) and the fit's own: what the studentized interval divides by
    fixed_se: pd.DataFrame | None = None
    estimate_fixed_se: pd.Series | None = None

    @property
    def se(self) -> pd.Series:
        """Bootstrap standard errors: the replicates' standard deviations."""
        return self.replicates.std(ddof=1)

    def conf_int(self, alpha: float = 0.05, method: str = "percentile") -> pd.DataFrame:
        """``percentile``: the replicates' alpha/2 and 1 - alpha/2 quantiles;
        ``basic``: 2 estimate - those quantiles (reversed); ``studentized`` (the
        bootstrap-t, fixed effects only; NaN for the others): the quantiles q of
        t = (replicate - estimate) / replicate's SE give estimate - q SE, so an SE
        that the fit underestimates (few groups: the SDs come out small, and the
        SEs with them) is corrected by how much the replicates underestimate theirs."""
        if not 0.0 < alpha < 1.0:
            raise ValueError("alpha must be between 0 and 1")
        if len(self.replicates) == 0:
            raise BootstrapError(f"no replicate succeeded ({self.failed} failed"
                                 + (", stopped by the time budget" if self.stopped_by_budget
                                    else "") + "): no interval")
        lo = self.replicates.quantile(alpha / 2.0)
        hi = self.replicates.quantile(1.0 - alpha / 2.0)
        if method == "percentile":
            return pd.DataFrame({"lower": lo, "upper": hi})
        if method == "basic":
            return pd.DataFrame({"lower": 2.0 * self.estimates - hi,
                                 "upper": 2.0 * self.estimates - lo})
        if method == "studentized":
            return self._studentized(alpha)
        raise ValueError("method must be 'percentile', 'basic' or 'studentized'")

    def recommended(self, alpha: float = 0.05) -> pd.DataFrame:
        """The intervals benchmarks/coverage_study.py supports (500 data sets shaped
        like the workplace study: percentile 91% for the training effect and 83% for
        the SDs, these 94% and 83-93%): the studentized interval for the fixed
        effects (when the replicates kept their SEs), the basic one for the
        variance parameters, held inside their ranges (an SD, sigma, theta >= 0, a
        correlation within +-1).  Columns ``lower``, ``upper`` and ``kind`` (which
        interval each row is)."""
        basic = self.conf_int(alpha, "basic")
        kind = pd.Series("bootstrap basic", index=basic.index)
        out = basic.copy()
        if self.fixed_se is not None:
            names = list(self.fixed_se.columns)
            out.loc[names] = self.conf_int(alpha, "studentized").loc[names]
            kind[names] = "bootstrap-t"
        for name in out.index.difference(list(self.fixed_se.columns)
                                          if self.fixed_se is not None else []):
            low = -1.0 if name.startswith("cor_") else 0.0
            high = 1.0 if name.startswith("cor_") else np.inf
            out.loc[name] = out.loc[name].clip(low, high)
        out["kind"] = kind
        return out

    def _studentized(self, alpha: float) -> pd.DataFrame:
        if self.fixed_se is None:
            raise BootstrapError("the studentized interval needs the replicates' standard "
                                 "errors: the default statistics only")
        out = pd.DataFrame({"lower": np.nan, "upper": np.nan}, index=self.estimates.index)
        names = list(self.fixed_se.columns)
        est, se = self.estimates[names], self.estimate_fixed_se[names]
        t = (self.replicates[names] - est) / self.fixed_se
        out.loc[names, "lower"] = est - t.quantile(1.0 - alpha / 2.0) * se
        out.loc[names, "upper"] = est - t.quantile(alpha / 2.0) * se
        return out


class Replicate(NamedTuple):
    """One replicate's outcome: its statistics (None when it failed: ``failure``
    says why; or when the time budget stopped its refit: ``out_of_time``)."""
    values: np.ndarray | None
    singular: bool = False
    failure: str | None = None
    out_of_time: bool = False
    fixed_se: np.ndarray | None = None      # the refit's RX standard errors of beta


@dataclass
class Cases:
    """How a case bootstrap draws its rows: ``rows_of[l]``, the rows of level l of
    the resampled factor (all rows, one level each, for ``observation``), and per
    random-effects term whether its factor is copied with the drawn one (the
    factor itself and factors nested in it) or keeps its levels."""
    rows_of: list
    copied: list


@dataclass
class Job:
    """What every replicate reads (``engine.workers`` sends it once per worker): the
    fitted model (its optimum the warm start of every refit), the estimates the
    responses are simulated at, the statistics (a function of a result, made of
    each refit by ``result_class``) and how many they are, the seed, the
    resampling plan (None: parametric), whether theta is estimated again (NB),
    and the wall-clock deadline of the time budget (None: no budget)."""
    model: MixedModel
    beta: np.ndarray
    theta: np.ndarray
    sigma: float
    statistics: object
    result_class: type
    n_statistics: int
    seed: int
    cases: Cases | None
    estimates_theta: bool
    deadline: float | None


def case_plan(design, resample: str) -> Cases:
    """The plan of a case bootstrap by ``resample`` (a grouping factor's name, or
    ``observation``), checked: BootstrapError names the factors there are."""
    terms = design.re_terms
    if resample == OBSERVATIONS:
        return Cases([np.array([i]) for i in range(design.nobs)], [False] * len(terms))
    drawn = next((t for t in terms if t.group == resample), None)
    if drawn is None:
        names = ", ".join(f"'{g}'" for g in design.ngroups)
        raise BootstrapError(f"resample must be '{PARAMETRIC}', '{OBSERVATIONS}' or a "
                             f"grouping factor of the model ({names}), not {resample!r}")
    order = np.argsort(drawn.codes, kind="stable")
    bounds = np.cumsum(np.bincount(drawn.codes, minlength=drawn.nlevels))[:-1]
    copied = [t.group == resample or nested_in(t.codes, drawn.codes) for t in terms]
    return Cases(np.split(order, bounds), copied)


def nested_in(codes, outer) -> bool:
    """Every level of ``codes`` lies within one level of ``outer``."""
    pairs = np.unique(np.stack([codes, outer]), axis=1)
    return pairs.shape[1] == len(np.unique(codes))


def resampled_design(design, cases: Cases, rng):
    """The design of one case-bootstrap replicate: the rows of the drawn levels (or
    rows), each copied factor's levels renamed per copy (``P01#2``: the level drawn
    second), absent levels of the others dropped."""
    n_units = len(cases.rows_of)
    draw = rng.integers(0, n_units, n_units)
    rows = np.concatenate([cases.rows_of[k] for k in draw])
    copy = np.repeat(np.arange(n_units), [len(cases.rows_of[k]) for k in draw])
    return design_of_rows(design, rows, copy, cases.copied)


def design_of_rows(design, rows, copy=None, copied=None):
    """The design made of ``rows`` of ``design`` (in that order, repeats allowed):
    every factor keeps the levels it still has, except a factor ``copied`` (one flag
    per term) whose levels are renamed per ``copy`` (each row's copy number: a level
    drawn twice is two groups).  ModelError when the rows no longer identify every
    fixed effect."""
    terms = []
    for j, t in enumerate(design.re_terms):
        old = t.codes[rows]
        if copied is not None and copied[j]:
            keys, codes = np.unique(np.stack([copy, old]), axis=1, return_inverse=True)
            levels = [f"{t.levels[lv]}#{c + 1}" for c, lv in keys.T]
        else:
            keep, codes = np.unique(old, return_inverse=True)
            levels = [t.levels[lv] for lv in keep]
        terms.append(dataclasses.replace(t, codes=codes.reshape(-1).astype(np.int64),
                                         levels=levels, Z=t.Z[rows]))
    X = design.X[rows]
    if X.shape[1] and np.linalg.matrix_rank(X) < X.shape[1]:
        raise ModelError("the rows kept do not identify every fixed effect")
    return dataclasses.replace(
        design, y=design.y[rows], weights=design.weights[rows], offset=design.offset[rows],
        X=X, zi_X=None if design.zi_X is None else design.zi_X[rows],
        re_terms=terms, nobs=len(rows), n_input=len(rows), n_dropped=0,
        dropped_rows=np.zeros(0, np.int64), kept_rows=design.kept_rows[rows],
        row_labels=design.row_labels[rows], messages=[])


def estimates_family_parameter(result) -> bool:
    """The fit estimated a family parameter with the others (an NB theta, the exact
    Laplace's Gamma dispersion): a refit must estimate it again."""
    return (result.nb_theta_se is not None or getattr(result, "dispersion_se", None) is not None
            or getattr(result, "phi_se", None) is not None
            or getattr(result, "_zi", None) is not None)


def refit_estimating_theta(model, y=None, design=None, time_budget=None, se_method="rx"):
    """A model whose fit estimated a family parameter, refitted estimating it again
    as the fit did (``family_parameter.FamilyParameterModel`` with the family's
    ``parameter_of``: NB2's theta, the exact Gamma's dispersion, NB1's, the beta's or
    beta-binomial's phi, each from its start fit), the fits warm-started from
    ``model``'s optimum or the search's previous point; its ``estimates`` hold the
    parameter (``nb``, ``dispersion`` or ``phi``).  ``se_method``: the final fit's
    covariance (default RX: a bootstrap needs none)."""
    fam = model.family
    parameter = parameter_of(fam)
    if model.estimates is not None and model.estimates.zi is not None:
        return _refit_zero_inflated(model, parameter, y, design, time_budget, se_method)

    def response():
        return model.design.y if y is None else y

    def fit_start():
        return model.refit(y, design=design, family=parameter.start(fam, response),
                           se_method="rx", time_budget=time_budget)

    def model_at(value, se_method, seconds):
        return model.refit_model(y, design=design, family=parameter.family_at(fam, value),
                                 se_method=se_method, time_budget=seconds)
    est = FamilyParameterModel(parameter, fam, fit_start, model_at, se_method=se_method,
                               time_budget=time_budget, max_evals=model.max_evals)
    est.fit()
    return est.model


def _refit_zero_inflated(model, parameter, y, design, time_budget, se_method):
    """``refit_estimating_theta`` of a zero-inflated fit: the zero-inflation
    coefficients (and NB2's theta or NB1's phi, when the fit estimated it) again
    (``zero_inflation.ZeroInflatedModel``, from the Poisson GLMM)."""
    from .family import Family
    from .zero_inflation import ZeroInflatedModel
    fam = model.family
    est = model.estimates
    if parameter is not None and est.nb is None and est.phi is None:
        parameter = None            # the fit held it

    def fit_start():
        return model.refit(y, design=design, family=Family("poisson", fam.link),
                           se_method="rx", time_budget=time_budget)

    def model_at(f, se_method, seconds):
        return model.refit_model(y, design=design, family=f, se_method=se_method,
                                 time_budget=seconds)
    zim = ZeroInflatedModel(fam, parameter, fit_start, model_at, se_method=se_method,
                            time_budget=time_budget, max_evals=model.max_evals)
    zim.fit()
    return zim.model


def replicate(job: Job, i: int) -> Replicate:
    """Replicate ``i``: its data (simulated, or resampled), the refit, its
    statistics.  Any failure of the refit loses this replicate only; statistics of
    the wrong length are the caller's error (BootstrapError)."""
    rng = np.random.default_rng(np.random.SeedSequence(job.seed, spawn_key=(i,)))
    left = None if job.deadline is None else job.deadline - time.time()
    if left is not None and left <= 0:
        return Replicate(None, out_of_time=True)
    # a GLMM's refit needs no standard errors: RX's, no finite-difference Hessians
    settings = {"se_method": "rx"} if isinstance(job.model, GeneralizedLinearMixedModel) \
        else {}
    if left is not None:
        settings["time_budget"] = left
    try:
        if job.cases is None:
            data = {"y": draw_response(job.model, job.beta, job.theta, job.sigma, rng)}
        else:
            data = {"design": resampled_design(job.model.design, job.cases, rng)}
        if job.estimates_theta:
            fitted = refit_estimating_theta(job.model, **data, time_budget=left)
        else:
            fitted = job.model.refit_model(**data, **settings)
            fitted.estimate()
        est = fitted.estimates
        if not est.converged and job.deadline is not None and time.time() >= job.deadline:
            return Replicate(None, out_of_time=True)       # stopped by the budget
        if not est.converged:
            return Replicate(None, failure="; ".join(est.messages) or "not converged")
        if job.statistics is statistics_of:
            stat = _estimated_values(fitted)
        else:
            stat = np.asarray(job.statistics(job.result_class(fitted, est)),
                              dtype=float).reshape(-1)
    except Exception as e:      # one failed replicate must not lose the others
        return Replicate(None, failure=f"{type(e).__name__}: {e}")
    if stat.shape != (job.n_statistics,):
        raise BootstrapError(f"the statistics gave {stat.size} numbers for a replicate "
                             f"and {job.n_statistics} for the fit")
    return Replicate(stat, singular=bool(est.singular), fixed_se=rx_standard_errors(est))


def rx_standard_errors(est) -> np.ndarray:
    """The fixed effects' standard errors from RX (sigma^2 (RX'RX)^-1; what a refit
    computes without finite differences): the pivot of the studentized interval."""
    return np.sqrt(np.clip(np.diag(est.vcov_rx), 0.0, None))


def check_nsim_and_seed(nsim, seed, max_nsim: int, error: type) -> None:
    """``nsim`` a whole number from 1 to ``max_nsim`` and ``seed`` a whole number >= 0
    (the rule of every seeded simulation: the bootstrap's, ``residuals``'), else
    ``error`` saying which."""
    whole = (int, np.integer)
    if isinstance(nsim, bool) or not isinstance(nsim, whole) or not 1 <= nsim <= max_nsim:
        raise error(f"nsim must be a whole number from 1 to {max_nsim:,}")
    if isinstance(seed, bool) or not isinstance(seed, whole) or seed < 0:
        raise error("seed must be a whole number >= 0")


def check_time_budget(time_budget, error: type) -> None:
    """``time_budget`` None or a positive finite number of seconds (the rule of every
    run of refits: the bootstrap's, the influence's), else ``error``."""
    if time_budget is not None and not (isinstance(time_budget, (int, float))
                                        and not isinstance(time_budget, bool)
                                        and time_budget > 0 and math.isfinite(time_budget)):
        raise error("time_budget must be a positive number of seconds")


def _check_arguments(nsim, seed, time_budget, resample):
    check_nsim_and_seed(nsim, seed, MAX_NSIM, BootstrapError)
    check_time_budget(time_budget, BootstrapError)
    if not isinstance(resample, str):
        raise BootstrapError(f"resample must be '{PARAMETRIC}', '{OBSERVATIONS}' or the "
                             "name of a grouping factor")


def bootstrap(result, nsim: int, seed: int, statistics=statistics_of, time_budget=None,
              progress=None, resample: str = PARAMETRIC, workers=None,
              client=None) -> BootstrapResult:
    """``nsim`` replicates of ``statistics(refit)`` (default: ``statistics_of``),
    resampled as ``resample`` says (see the module's notes), run by
    ``engine.workers.run`` (``workers``: local processes; ``client``: a Dask
    client); ``progress(stage, done)`` as replicates finish."""
    _check_arguments(nsim, seed, time_budget, resample)
    model = result.model
    if model.optimum is None:
        raise BootstrapError("the bootstrap needs a fitted model")
    t0 = time.perf_counter()
    cases = None if resample == PARAMETRIC else case_plan(model.design, resample)
    estimates = statistics(result)
    job = Job(model, result.fe_params.to_numpy(), np.asarray(result.theta, float),
              float(result.sigma), statistics, type(result), len(estimates), int(seed),
              cases,
              estimates_family_parameter(result),
              None if time_budget is None else time.time() + float(time_budget))
    # (no callback: a line on an interactive terminal, nothing elsewhere)
    report = (_workers.terminal_progress("bootstrap") if progress is None
              else (lambda done, total: progress("bootstrap", done)))
    try:
        out = _workers.run(replicate, job, range(int(nsim)), client=client, workers=workers,
                           time_budget=time_budget, progress=report)
    except _workers.WorkersError as e:
        raise BootstrapError(str(e)) from None
    rows, ses, numbers, failures, singular = [], [], [], [], 0
    stopped = out.stopped_by_budget
    for i, rep in zip(out.indices, out.results):
        if rep.out_of_time:
            stopped = True
        elif rep.failure is not None:
            failures.append((i, rep.failure))
        else:
            rows.append(rep.values)
            ses.append(rep.fixed_se)
            numbers.append(i)
            singular += rep.singular
    index = pd.Index(numbers, name="replicate")
    reps = pd.DataFrame(np.array(rows).reshape(len(rows), len(estimates)),
                        columns=estimates.index, index=index)
    fixed_se = estimate_se = None
    if statistics is statistics_of:
        names = list(model.design.x_names)
        fixed_se = pd.DataFrame(np.array(ses).reshape(len(ses), len(names)), columns=names,
                                index=index)
        estimate_se = pd.Series(rx_standard_errors(model.estimates), index=names)
    where = "; ".join([out.where] + out.notes)
    return BootstrapResult(estimates, reps, int(nsim), int(seed), len(failures), singular,
                           time.perf_counter() - t0, stopped, failures, resample, where,
                           fixed_se, estimate_se)
