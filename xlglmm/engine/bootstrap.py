"""The parametric bootstrap of a fitted GLMM (lme4's ``bootMer``, MixedModels.jl's
``parametricbootstrap``): simulate new responses from the fitted model -- new
random effects b ~ N(0, Lambda Lambda') for every level and new noise from the
family -- refit each with the model's symbolic structure and warm starts
(``model.refit``), and collect statistics of the refits.

Reproducible: replicate i draws from its own generator,
``numpy.random.SeedSequence(seed).spawn(nsim)[i]``, so its numbers do not depend
on how many replicates run, in which order, or on how many workers.  Refits use
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

from .design import DesignError


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
            names.append(f"sd_{row.var1}|{row.grp}")
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
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or not nsim >= 1:
        raise BootstrapError("nsim must be a whole number of at least 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BootstrapError("seed must be a whole number >= 0")
    t0 = time.perf_counter()
    estimates = statistics(result)
    streams = np.random.SeedSequence(int(seed)).spawn(int(nsim))
    rows, failures = [], []
    singular = 0
    stopped = False
    for i, ss in enumerate(streams):
        if time_budget is not None and time.perf_counter() - t0 > time_budget:
            stopped = True
            break
        y = simulate_response(result, np.random.default_rng(ss))
        try:
            refit = model.refit(y, se_method="rx")
        except (DesignError, ValueError) as e:       # ModelError is a ValueError
            failures.append((i, str(e)))
            continue
        if not refit.converged:
            failures.append((i, "; ".join(refit.messages) or "not converged"))
            continue
        singular += bool(refit.singular)
        rows.append(statistics(refit).to_numpy())
        if progress is not None:
            progress("bootstrap", i + 1)
    reps = pd.DataFrame(np.array(rows).reshape(len(rows), len(estimates)),
                        columns=estimates.index)
    return BootstrapResult(estimates, reps, int(nsim), int(seed), len(failures), singular,
                           time.perf_counter() - t0, stopped, failures)
