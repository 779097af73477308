"""The simulation tests of a fitted model -- DHARMa's uniformity, dispersion,
zero-inflation and outlier tests -- with p-values calibrated by refitting.

Why refits.  DHARMa's default compares the observed response with responses
simulated from the fitted model (``residuals.simulated_residuals``).  But the model
was fitted to the observed response and not to the simulated ones, so the observed
response always looks better than it is: over 200 data sets drawn from the fitted
workplace model (``benchmarks/check_calibration.py``) those p-values had medians of
0.64-0.78 and rejected at 5% in 0-3% of the data sets where 5% is due -- a check
that almost never fires.  DHARMa's remedy is its ``refit = TRUE``: fit the model
again to every simulated response and compare like with like.  That is what these
tests do, with the parametric bootstrap's warm-started refits (``engine.bootstrap``:
replicate i is the response drawn from ``SeedSequence(seed, spawn_key=(i,))`` and
its refit, the same on any machine and any number of workers).

Every data set k = 0 (the observed) ... nsim (the refitted simulations) gives,
from its own fit, each row's randomised quantile residual at its conditional mean
(Dunn and Smyth's: P(Y <= y) for a continuous family, a uniform draw between
P(Y < y) and P(Y <= y) for counts -- DHARMa's scaled residual with the exact
conditional distribution in place of simulations), its Pearson chi-squared and its
zeros over the zeros its fit expects (sum over rows of P(Y = 0 | conditional
mean), as ``performance::check_zeroinflation``).  Every statistic is a function of
one data set and its own fit, so under the model the observed one and the nsim
simulated ones are alike (up to the bootstrap's plug-in of the estimates), and each
statistic of the observed one is ranked among all nsim + 1:

* **uniformity**: D_k, the Kolmogorov-Smirnov distance of data set k's quantile
  residuals from U(0, 1); p = share of data sets with D_k >= D_0 (one-sided: only a
  large distance is bad).  The residuals of one group share its fitted effect and
  are not independent, so D_0 is not judged by the KS distribution but by the D_k
  of data sets with the same dependence.  (Placing the observed residual of a row
  among the simulated data sets' residuals of that row, as DHARMa's refit option
  does, is not calibrated: the simulations' fits scatter around the observed fit,
  which sits in their middle, and for 0/1 responses the p-values pile up near 1.)
* **dispersion** (counts and binomial proportions): T_k = Pearson chi-squared;
  the statistic is T_0 / mean(T_1..nsim) (> 1: more variable than the model
  allows; DHARMa's refit dispersion test), p two-sided (DHARMa's default).
* **zero-inflation** (counts and binomial proportions): T_k = observed zeros /
  expected zeros; statistic T_0 / mean(T_1..nsim), p two-sided.
* **outliers**: O_k = rows whose quantile residual is below 1/(nsim+1) or above
  nsim/(nsim+1) (as rare as a value beyond all nsim simulations, DHARMa's
  outlier); statistic O_0, p = share with O_k >= O_0 (one-sided).

A rank p-value counts the observed data set itself, p = (1 + #{k >= 1: T_k >= T_0})
/ (R + 1) over the R refits that succeeded, so it is never 0; one-sided it is exactly
uniform under exchangeability (on its grid of 1/(R + 1)), two-sided (twice the
smaller tail, at most 1) it is valid.  The smallest p is 1/(R + 1) one-sided and
2/(R + 1) two-sided: below 5% from R = 40 on (``MIN_REFITS``), the fewest nsim
accepted.  A statistic that is not a number (the zeros of a model that expects
none) gives no p-value; the zero-inflation test needs ``MIN_EXPECTED_ZEROS``.  Refits that fail are left out (counted);
singular refits are kept.  ``benchmarks/check_calibration.py`` measures that these
p-values are uniform under the model and how often they catch NB2 counts and extra
zeros.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .bootstrap import bootstrap, check_nsim_and_seed
from .residuals import MAX_VALUES      # values held at once: (nsim + 1) data sets x rows

#: DHARMa's default number of simulations
DEFAULT_NSIM = 250
#: refits are the cost: more than this is more than a worksheet check needs
MAX_NSIM = 10_000
#: the fewest refits whose p-values can fall below 5%: the smallest rank p-value is
#: 1/(refits + 1) one-sided and 2/(refits + 1) two-sided, below 0.05 from 40 refits
MIN_REFITS = 40
#: expected zeros below this leave nothing to test (a count model whose means are all
#: large, a binomial of many trials): the zero-inflation row says so
MIN_EXPECTED_ZEROS = 0.5
#: the placements' randomisation stream (a key no replicate, (i,), has)
UNIFORM_KEY = (0, 1)

UNIFORMITY, DISPERSION, ZEROS, OUTLIERS = ("uniformity (KS)", "dispersion",
                                           "zero-inflation", "outliers")


class SimulationTestError(ValueError):
    """The simulation tests cannot run as asked: says why."""


def check_request(nobs: int, nsim, seed) -> None:
    """``nsim`` a whole number from MIN_REFITS to MAX_NSIM whose residuals fit in
    MAX_VALUES values, ``seed`` a whole number >= 0; else SimulationTestError."""
    check_nsim_and_seed(nsim, seed, MAX_NSIM, SimulationTestError)
    if nsim < MIN_REFITS:
        raise SimulationTestError(f"nsim must be at least {MIN_REFITS}: with fewer refits no "
                                  "p-value can fall below 5%")
    if (nsim + 1) * nobs > MAX_VALUES:
        raise SimulationTestError(
            f"nsim = {nsim:,} refits of {nobs:,} rows are more than {MAX_VALUES:,} "
            f"residuals: ask for at most {MAX_VALUES // max(nobs, 1) - 1:,}")


def counts_like(family, weights) -> bool:
    """Dispersion and zeros can be tested: counts, or binomial proportions of more
    than one trial (0/1 responses carry no information on either; Gamma and
    Gaussian models estimate their own scale)."""
    return family.counts_response or (family.is_binomial and bool(np.any(weights > 1)))


def data_set_statistics(result) -> pd.Series:
    """What a data set contributes, from its own fit ``result``: the bounds of
    each row's conditional quantile, P(Y < y) then P(Y <= y) at the row's
    conditional mean (``Family.cdf_bounds``: n numbers each), its Pearson
    chi-squared, its observed over expected zeros and the expected zeros (the
    three NaN where ``counts_like`` is false)."""
    d = result.design
    fam = result.family
    mu, wt = result.family_arguments     # (zero-inflated: the count's mean and p0)
    y = d.y
    dispersion = result.sigma ** 2 if fam.has_dispersion else 1.0
    lower, upper = fam.cdf_bounds(y, mu, wt, dispersion)
    chisq = zeros = expected = np.nan
    if counts_like(fam, d.weights):
        chisq = float(np.sum(result.resid("pearson").to_numpy() ** 2))
        expected = float(np.sum(np.exp(fam.log_density(0.0, mu, wt))))
        zeros = np.count_nonzero(y == 0) / expected if expected > 0 else np.nan
    return pd.Series(np.concatenate([lower, upper, [chisq, zeros, expected]]))


def rank_p(values, two_sided: bool) -> float:
    """The rank p-value of ``values[0]`` (the observed) among all of ``values``
    (the observed and the refitted simulations): one-sided for large values, or
    twice the smaller tail."""
    v = np.asarray(values, float)
    if not np.isfinite(v[0]):
        return float("nan")
    v = v[np.isfinite(v)]
    n = len(v)
    upper = np.count_nonzero(v >= v[0]) / n
    if not two_sided:
        return float(upper)
    lower = np.count_nonzero(v <= v[0]) / n
    return float(min(1.0, 2.0 * min(lower, upper)))


def quantile_residuals(lower, upper, rng) -> np.ndarray:
    """Randomised quantile residuals from their bounds (arrays of the same shape): a
    uniform draw between P(Y < y) and P(Y <= y), the bound itself where they agree
    (Dunn and Smyth's residual; DHARMa's ``integerResponse`` randomisation)."""
    return np.where(lower < upper, rng.uniform(lower, upper), upper)


def ks_distances(u) -> np.ndarray:
    """The Kolmogorov-Smirnov distance of each row of ``u`` from U(0, 1)."""
    s = np.sort(u, axis=1)
    n = s.shape[1]
    i = np.arange(1, n + 1)
    return np.maximum((i / n - s).max(axis=1), (s - (i - 1) / n).max(axis=1))


@dataclass
class SimulationTests:
    """The four tests (``table``: index the test names, columns ``statistic``, ``p``
    and ``expected`` -- the statistic's value expected under the model: the mean KS
    distance and outlier count of the refits, 1 for the dispersion and zeros
    ratios), the refits used and failed, and whether the
    time budget stopped the refits (the tests then use those that finished)."""
    table: pd.DataFrame
    nsim: int
    refits: int
    failed: int
    singular: int
    seed: int
    stopped_by_budget: bool
    seconds: float
    where: str
    observed_zeros: int
    expected_zeros: float

    @property
    def enough(self) -> bool:
        """Enough refits succeeded for the p-values to mean something."""
        return self.refits >= MIN_REFITS


def simulation_tests(result, nsim: int = DEFAULT_NSIM, seed: int = 0, time_budget=None,
                     progress=None, workers=None, client=None) -> SimulationTests:
    """The four tests of ``result`` from ``nsim`` refitted simulations (see the
    module's notes); ``time_budget`` seconds, ``workers`` / ``client`` as the
    bootstrap's."""
    check_request(result.nobs, nsim, seed)
    boot = bootstrap(result, nsim, seed, data_set_statistics, time_budget, progress,
                     workers=workers, client=client)
    n = result.nobs
    values = np.vstack([boot.estimates.to_numpy()[None, :], boot.replicates.to_numpy()])
    lower, upper = values[:, :n], values[:, n:2 * n]
    chisq, zeros = values[:, 2 * n], values[:, 2 * n + 1]
    expected = float(values[0, 2 * n + 2])
    rows = {}
    if len(values) > 1:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=UNIFORM_KEY))
        u = quantile_residuals(lower, upper, rng)
        d = ks_distances(u)
        rows[UNIFORMITY] = (d[0], d[1:].mean(), rank_p(d, False))
        edge = 1.0 / (nsim + 1)
        outliers = ((u < edge) | (u > 1.0 - edge)).sum(axis=1).astype(float)
        rows[OUTLIERS] = (outliers[0], outliers[1:].mean(), rank_p(outliers, False))
        if counts_like(result.family, result.design.weights):
            tested = [(DISPERSION, chisq)]
            if expected >= MIN_EXPECTED_ZEROS:
                tested.append((ZEROS, zeros))
            for name, t in tested:
                rows[name] = (t[0] / np.nanmean(t[1:]), 1.0, rank_p(t, True))
    order = [UNIFORMITY, DISPERSION, ZEROS, OUTLIERS]
    table = pd.DataFrame([rows[k] for k in order if k in rows],
                         index=[k for k in order if k in rows],
                         columns=["statistic", "expected", "p"], dtype=float)
    y = result.design.y
    return SimulationTests(table, int(nsim), len(boot.replicates), boot.failed, boot.singular,
                           int(seed), boot.stopped_by_budget, boot.seconds, boot.where,
                           int(np.count_nonzero(y == 0)), expected)
