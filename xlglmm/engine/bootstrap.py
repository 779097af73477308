"""The parametric bootstrap of a fitted GLMM (lme4's ``bootMer``, MixedModels.jl's
``parametricbootstrap``): simulate new responses from the fitted model -- new
random effects b ~ N(0, Lambda Lambda') for every level and new noise from the
family -- refit each with the model's symbolic structure and warm starts
(``model.refit``), and collect statistics of the refits.

Reproducible: replicate i draws from its own generator,
``numpy.random.SeedSequence(seed, spawn_key=(i,))`` (``SeedSequence(seed).spawn(n)[i]``,
made when the replicate runs), so its numbers do not depend on how many replicates
run, in which order, or on how many workers (numpy's generators are stable across
its versions by policy, not by guarantee).  Refits use
the RX standard errors (no finite-difference Hessians: a bootstrap's intervals come
from the replicates, not from each refit's SEs).  A refit that fails or stops at the
budget is counted, not used; singular refits are counted and kept.

Not yet: families with a dispersion parameter, an NB fit whose theta was estimated,
the case (cluster) bootstrap, workers (Dask).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .results import sd_label

MAX_NSIM = 1_000_000


class BootstrapError(ValueError):
    """The bootstrap cannot run on this fit (yet): says why."""


def simulate_response(result, rng) -> np.ndarray:
    """One response drawn from the fitted model, in the design's row order and scale
    (what ``model.refit`` takes): eta = offset + X beta + sum over terms of Z b with
    new b, then the family's draw given mu."""
    model = result.model
    d = model.design
    fam = model.family
    eta = d.offset + d.X @ result.fe_params.to_numpy()
    for t, L in zip(d.re_terms, model.devfun.lambdas(result.theta)):
        b = rng.standard_normal((t.nlevels, t.k)) @ L.T
        eta = eta + np.einsum("ij,ij->i", t.Z, b[t.codes])
    return fam.simulate(fam.linkinv(eta), d.weights, rng)


def statistics_of(result) -> pd.Series:
    """The default statistics: each scalar term's SD (``sd_(Intercept)|group``, the
    names of the profile) and SD/correlation entries of larger terms, then the
    fixed effects."""
    vals, names = [], []
    vc = result.varcorr
    for row in vc.itertuples():
        if row.grp == "Residual":
            continue
        if row.var2 is None or (isinstance(row.var2, float) and np.isnan(row.var2)):
            names.append(sd_label(row.var1, row.grp))
        else:
            names.append(f"cor_{row.var1}.{row.var2}|{row.grp}")
        vals.append(float(row.sdcor))
    return pd.concat([pd.Series(vals, index=names, dtype=float),
                      result.fe_params.astype(float)])


@dataclass
class BootstrapResult:
    """The replicates (one row per successful refit, one column per statistic), the
    original estimates, and the counts of refits that failed or were singular."""
    estimates: pd.Series
    replicates: pd.DataFrame
    nsim: int
    seed: int
    failed: int = 0
    singular: int = 0
    seconds: float = float("nan")
    stopped_by_budget: bool = False
    failures: list = field(default_factory=list)

    @property
    def se(self) -> pd.Series:
        """Bootstrap standard errors: the replicates' standard deviations."""
        return self.replicates.std(ddof=1)

    def conf_int(self, alpha: float = 0.05, method: str = "percentile") -> pd.DataFrame:
        """``percentile``: the replicates' alpha/2 and 1 - alpha/2 quantiles;
        ``basic``: 2 estimate - those quantiles (reversed)."""
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
        raise ValueError("method must be 'percentile' or 'basic'")


def parametric_bootstrap(result, nsim: int, seed: int, statistics=statistics_of,
                         time_budget=None, progress=None) -> BootstrapResult:
    """``nsim`` replicates of ``statistics(refit)`` (default: ``statistics_of``)."""
    model = result.model
    if model.family.has_dispersion:
        raise BootstrapError(f"the bootstrap of {model.family.name} models (a dispersion "
                             "parameter) is not available yet")
    est = getattr(model, "estimates", None)
    if est is not None and est.nb is not None:
        raise BootstrapError("the bootstrap of a negative binomial fit whose theta was "
                             "estimated is not available yet")
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) \
            or not 1 <= nsim <= MAX_NSIM:
        raise BootstrapError(f"nsim must be a whole number from 1 to {MAX_NSIM:,}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BootstrapError("seed must be a whole number >= 0")
    if time_budget is not None and not (isinstance(time_budget, (int, float))
                                        and not isinstance(time_budget, bool)
                                        and time_budget > 0 and np.isfinite(time_budget)):
        raise BootstrapError("time_budget must be a positive number of seconds")
    t0 = time.perf_counter()
    estimates = statistics(result)
    rows, failures = [], []
    singular = 0
    stopped = False
    for i in range(int(nsim)):
        left = None if time_budget is None else time_budget - (time.perf_counter() - t0)
        if left is not None and left <= 0:
            stopped = True
            break
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(i,)))
        try:
            y = simulate_response(result, rng)
            settings = {"se_method": "rx"}
            if left is not None:
                settings["time_budget"] = left
            refit = model.refit(y, **settings)
            if not refit.converged:
                failures.append((i, "; ".join(refit.messages) or "not converged"))
                continue
            stat = np.asarray(statistics(refit), dtype=float).reshape(-1)
            if stat.shape != (len(estimates),):
                raise BootstrapError(f"the statistics gave {stat.size} numbers for a "
                                     f"replicate and {len(estimates)} for the fit")
        except BootstrapError:
            raise
        except Exception as e:      # one failed replicate must not lose the others
            failures.append((i, f"{type(e).__name__}: {e}"))
            continue
        finally:
            if progress is not None:
                progress("bootstrap", i + 1)
        singular += bool(refit.singular)
        rows.append(stat)
    reps = pd.DataFrame(np.array(rows).reshape(len(rows), len(estimates)),
                        columns=estimates.index)
    return BootstrapResult(estimates, reps, int(nsim), int(seed), len(failures), singular,
                           time.perf_counter() - t0, stopped, failures)
