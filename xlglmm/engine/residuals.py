"""Responses simulated from a fitted model (lme4's ``simulate``) and DHARMa's
simulation-based (scaled quantile) residuals with the tests DHARMa runs on them.

Simulation: column i of ``simulate(result, nsim, seed)`` is one response drawn
from the fitted model -- new random effects for every level, new noise from the
family -- by the bootstrap's draw (``bootstrap.simulate_response``) with the
generator ``numpy.random.SeedSequence(seed, spawn_key=(i,))``: the response the
parametric bootstrap's replicate i refits, the same whatever ``nsim`` is.  Rows are
the fit's rows (``design.row_labels``) on the fit's scale (a binomial model's
proportion of successes out of its trials).

Scaled residuals (DHARMa's ``getQuantile``, method "PIT", its default): for row j,
with ``lower = mean(sim_j < y_j)`` and ``upper = mean(sim_j <= y_j)`` over the
nsim simulations, the residual is ``lower`` where the two agree and a uniform draw
between them where they differ (a tie of y with simulated values: every integer
response, so DHARMa's ``integerResponse=TRUE`` randomisation).  Under the fitted
model they are uniform on (0, 1) whatever the family.  The uniform draws come from
``SeedSequence(seed, spawn_key=(0, 0))``, a stream no simulated column uses.
The simulations are unconditional (new random effects: lme4's ``simulate``
default and DHARMa's ``simulateREs`` up to 0.4.6; DHARMa 0.4.7 made simulating
conditional on the fitted random effects its lme4 default).

The tests (DHARMa's ``tests.R``; a two-sided simulation p-value is DHARMa's
``getP``: ``min(1, 2 min(mean(T_sim <= T_obs), mean(T_sim >= T_obs)))``):

* uniformity: the Kolmogorov-Smirnov test of the residuals against U(0, 1)
  (``testUniformity``: R's ``ks.test``; here ``scipy.stats.kstest``);
* dispersion (``testDispersion``, type "DHARMa", for simulations without refits):
  with f the population-level fitted means (lme4's ``predict(re.form = ~0)``,
  DHARMa's ``getFitted``) and V the variance of all simulated values together,
  ``T(x) = var(x - f) / V`` for the observed response and for every simulated
  column; the statistic is ``T(y) / mean(T(sim))`` (> 1: more variable than the
  model allows), p two-sided from the simulations;
* zero-inflation (``testZeroInflation``): ``T(x) = number of zeros``, statistic
  ``T(y) / mean(T(sim))``, p two-sided from the simulations;
* outliers (``testOutliers``, type "binomial"): the residuals below 1/(nsim+1) or
  above 1 - 1/(nsim+1) (a response outside every simulated value) counted and
  tested by the exact two-sided binomial test against the rate 2/(nsim+1).
  DHARMa uses this type for continuous responses and for more than 500 rows; for
  fewer integer rows its default bootstraps the expected rate instead (not built
  here: the binomial test is then somewhat liberal, as DHARMa warns).

A binomial model with trials is simulated and tested on its proportions (DHARMa
multiplies the simulations by the weights and then subtracts the fitted
proportion in its dispersion statistic; for 0/1 responses the two agree).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .bootstrap import check_nsim_and_seed, simulate_response

#: nsim and the simulated values held at once are bounded: a simulation is memory
MAX_NSIM = 100_000
MAX_VALUES = 50_000_000
#: the residuals' randomisation stream (a key no simulated column, (i,), has)
UNIFORM_KEY = (0, 0)


class SimulationError(ValueError):
    """The simulation cannot run as asked: says why."""


def check_request(nobs: int, nsim, seed) -> None:
    """``nsim`` a whole number from 1 to MAX_NSIM whose simulations fit in
    MAX_VALUES values, ``seed`` a whole number >= 0; else SimulationError."""
    check_nsim_and_seed(nsim, seed, MAX_NSIM, SimulationError)
    if nsim * nobs > MAX_VALUES:
        raise SimulationError(f"nsim = {nsim:,} simulations of {nobs:,} rows are more than "
                              f"{MAX_VALUES:,} values: ask for at most "
                              f"{MAX_VALUES // max(nobs, 1):,}")


def simulate(result, nsim: int = 1, seed: int = 0) -> pd.DataFrame:
    """``nsim`` responses drawn from the fitted ``result`` (see the module's notes):
    a DataFrame, one row per fitted row, columns ``sim_1`` ... ``sim_<nsim>``."""
    check_request(result.nobs, nsim, seed)
    columns = [simulate_response(result, np.random.default_rng(
        np.random.SeedSequence(seed, spawn_key=(i,)))) for i in range(nsim)]
    return pd.DataFrame(np.column_stack(columns), index=result.design.row_labels,
                        columns=[f"sim_{i + 1}" for i in range(nsim)])


def scaled_residuals(observed, simulated, rng) -> np.ndarray:
    """DHARMa's PIT residuals of ``observed`` (n) given ``simulated`` (n x nsim),
    ties randomised by draws from ``rng`` (one per row, as DHARMa draws)."""
    y = np.asarray(observed, float)[:, None]
    sim = np.asarray(simulated, float)
    lower = (sim < y).mean(axis=1)
    upper = (sim <= y).mean(axis=1)
    drawn = rng.uniform(lower, upper)
    return np.where(lower != upper, drawn, lower)


def simulation_p(simulated, observed: float) -> float:
    """DHARMa's two-sided p-value of ``observed`` among the ``simulated`` statistics."""
    s = np.asarray(simulated, float)
    return float(min(1.0, 2.0 * min(np.mean(s <= observed), np.mean(s >= observed))))


@dataclass
class SimulatedResiduals:
    """A fit's scaled residuals and the simulations they came from: ``residuals``
    (Series, one per row), ``simulated`` (DataFrame, rows x nsim), ``observed``
    and ``fitted`` (the population-level means), ``nsim`` and ``seed``."""
    residuals: pd.Series
    simulated: pd.DataFrame
    observed: np.ndarray
    fitted: np.ndarray
    seed: int

    @property
    def nsim(self) -> int:
        return self.simulated.shape[1]

    def uniformity(self) -> tuple:
        """(KS statistic D, p) of the residuals against U(0, 1)."""
        ks = stats.kstest(self.residuals.to_numpy(), "uniform")
        return float(ks.statistic), float(ks.pvalue)

    def _generic(self, statistic) -> tuple:
        """(T(y) / mean T(sim), two-sided simulation p) for a statistic of a response."""
        observed = statistic(self.observed)
        simulated = np.array([statistic(c) for c in self.simulated.to_numpy().T])
        return float(observed / simulated.mean()), simulation_p(simulated, observed)

    def dispersion(self) -> tuple:
        """(observed / simulated spread around the fitted means, p)."""
        expected_var = np.var(self.simulated.to_numpy(), ddof=1)
        return self._generic(lambda x: np.var(x - self.fitted, ddof=1) / expected_var)

    def zero_inflation(self) -> tuple:
        """(observed / mean simulated number of zeros, p)."""
        return self._generic(lambda x: np.count_nonzero(x == 0))

    def outliers(self) -> tuple:
        """(number of residuals outside every simulation, binomial p against the
        rate 2/(nsim+1))."""
        r = self.residuals.to_numpy()
        edge = 1.0 / (self.nsim + 1)
        count = int(np.count_nonzero(r < edge) + np.count_nonzero(r > 1.0 - edge))
        return count, float(stats.binomtest(count, len(r), 2.0 * edge).pvalue)

    def tests(self) -> pd.DataFrame:
        """The four tests, one row each: ``statistic`` and ``p``."""
        rows = {"uniformity (KS)": self.uniformity(), "dispersion": self.dispersion(),
                "zero-inflation": self.zero_inflation(), "outliers": self.outliers()}
        return pd.DataFrame(rows.values(), index=list(rows), columns=["statistic", "p"],
                            dtype=float)


def normal_scores(values) -> np.ndarray:
    """The theoretical normal quantile of each value's rank: what a normal Q-Q plot
    puts on its x axis (R's ``qqnorm``: ``qnorm(ppoints(n))[rank]``, with
    ppoints' a = 3/8 up to 10 values and 1/2 above; ties by their order)."""
    v = np.asarray(values, float)
    n = len(v)
    a = 3.0 / 8.0 if n <= 10 else 0.5
    ranks = np.empty(n)
    ranks[np.argsort(v, kind="stable")] = np.arange(1, n + 1)
    return stats.norm.ppf((ranks - a) / (n + 1 - 2 * a))


#: residual_frame's residual columns, in order (its ``qq`` pairs with one of them)
RESIDUAL_TYPES = ("response", "pearson", "deviance", "quantile")


def residual_frame(result, qq_of: str = "deviance", nsim: int = 250,
                   seed: int = 0) -> pd.DataFrame:
    """One row per fitted row: ``fitted`` (the conditional mean), ``observed``, the
    ``response``, ``pearson`` and ``deviance`` residuals at the conditional modes
    (``result.resid``), the ``quantile`` residual (DHARMa's scaled residual from
    ``nsim`` simulations with ``seed``: uniform on (0, 1) under the model) and
    ``qq``, the normal quantile of the rank of the ``qq_of`` residual -- a
    residual-vs-fitted chart and a normal Q-Q chart, as the workplace study draws
    them."""
    if qq_of not in RESIDUAL_TYPES:
        raise SimulationError(f"the residual type must be one of {', '.join(RESIDUAL_TYPES)}, "
                              f"not {qq_of!r}")
    out = pd.DataFrame({"fitted": result.fittedvalues.to_numpy(),
                        "observed": np.asarray(result.design.y, float)},
                       index=result.design.row_labels)
    for kind in RESIDUAL_TYPES[:3]:
        out[kind] = result.resid(kind).to_numpy()
    out["quantile"] = simulated_residuals(result, nsim, seed).residuals.to_numpy()
    out["qq"] = normal_scores(out[qq_of].to_numpy())
    return out


def simulated_residuals(result, nsim: int = 250, seed: int = 0) -> SimulatedResiduals:
    """DHARMa's scaled residuals of ``result`` from ``nsim`` simulations (DHARMa's
    default 250) with ``seed``; their tests are the returned object's methods."""
    simulated = simulate(result, nsim, seed)
    observed = np.asarray(result.design.y, float)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=UNIFORM_KEY))
    r = scaled_residuals(observed, simulated.to_numpy(), rng)
    fitted = result.predict(include_re=False).to_numpy()
    return SimulatedResiduals(pd.Series(r, index=simulated.index, name="scaled_resid"),
                              simulated, observed, fitted, seed)
