"""Calibration and power of the model checks (``res.check``): do their p-values
mean what they say?

    python benchmarks/check_calibration.py --datasets 200 --power 100 --refits 250 --seed 1
    # ~15 min on 2 cores

A p-value is honest when, on data drawn from the fitted model itself, it is uniform
on (0, 1): then a check flags a good model 5% of the time at 5%, no more and no
less.  The truth is the workplace-safety model as fitted to the shipped data
(``incidents ~ training + (1|plant) + (1|month)``, Poisson, offset log(employees),
on the data's design: ``coverage_study.workplace_truth``).  Each of ``--datasets``
data sets draws new plant and month effects and new counts from it, is fitted by
``xlglmm.glmer`` and checked by ``res.check(nsim=--refits, seed=i, workers=1)``.
For every test the report gives the p-values' deciles, their rejection rate at 5%
with its Wilson 95% interval and the KS p-value of the p-values against U(0, 1):

* the four simulation tests calibrated by refits (``engine.simulation_tests``):
  uniformity, dispersion, zero-inflation, outliers;
* the Pearson chi-squared test as ``performance::check_overdispersion``;
* DHARMa's tests without refits (``res.simulated_residuals(--refits, seed=i)``), to
  document why the checks refit: fitted to the observed data and not to the
  simulated ones, they find the observed data too good.

Power: ``--power`` data sets with the same conditional means but NB2 counts of
theta = 2 (a Poisson draw at mean x Gamma(2, 1/2)), and ``--power`` with 30% extra
zeros (each row zero with probability 0.3, else its Poisson draw), each fitted with
the Poisson model and checked: the dispersion (resp. zero-inflation) test should
reject at 5% in at least 80% of them.

The criteria, stated before the run: a continuous p-value under the model has a KS
p-value above 0.01 and a Wilson interval of its rejection rate that contains 5%.
The outlier test's statistic is a small count (each of the 160 rows is beyond all
the other data sets with probability 2 / (refits + 1): 1.3 rows expected with 250
refits), so its p-value takes few values (1 whenever no row is outlying): it cannot be
uniform, only valid (rejection at 5% at most 5%).

Data set i of the model draws from ``numpy.random.SeedSequence(seed, spawn_key=(i,))``
and the power sets from ``spawn_key=(1, i)`` (NB2) and ``(2, i)`` (extra zeros), so
the numbers do not depend on the number of processes (``--processes``, default 2)
or on the order.  The report (markdown, with date and machine) goes to
``benchmarks/results/<date>-<host>-check-calibration.md`` and is printed.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))   # a clone, not installed

from benchmarks.coverage_study import Truth, fit, wilson, workplace_truth  # noqa: E402
from xlglmm.engine.model_check import PEARSON                             # noqa: E402
from xlglmm.engine.simulation_tests import (DISPERSION, OUTLIERS, UNIFORMITY,  # noqa: E402
                                            ZEROS)

ALPHA = 0.05
#: the kinds of data set: drawn from the model, NB2 counts, extra zeros
MODEL, NB2, EXTRA_ZEROS = "model", "NB2 theta = 2", "30% extra zeros"
KIND_KEYS = {MODEL: (), NB2: (1,), EXTRA_ZEROS: (2,)}
NB2_THETA = 2.0
ZERO_SHARE = 0.3
REFIT_TESTS = (UNIFORMITY, DISPERSION, ZEROS, OUTLIERS)
#: the p-values recorded per data set: the refitted tests, Pearson's, and DHARMa's
#: without refits (prefixed)
NO_REFIT = "no refit: "
P_NAMES = (*REFIT_TESTS, PEARSON, *(NO_REFIT + t for t in REFIT_TESTS))
#: the test each alternative is meant to catch
POWER_TEST = {NB2: DISPERSION, EXTRA_ZEROS: ZEROS}
POWER_WANTED = 0.8
KS_WANTED = 0.01


def conditional_means(truth: Truth, rng: np.random.Generator) -> np.ndarray:
    """Each row's mean given new plant and month effects drawn from N(0, SD^2):
    exp(intercept + training effect + log(employees) + plant effect + month effect).
    Written here rather than taken from the engine's simulator, so that an error
    there cannot cancel out."""
    d = truth.design
    plant = d["plant"].astype("category").cat.codes.to_numpy()
    month = d["month"].astype("category").cat.codes.to_numpy()
    effects = (rng.normal(0.0, truth.sd_plant, plant.max() + 1)[plant]
               + rng.normal(0.0, truth.sd_month, month.max() + 1)[month])
    return np.exp(truth.intercept + truth.training * d["training"].to_numpy(float)
                  + np.log(d["employees"].to_numpy(float)) + effects)


def draw_counts(kind: str, mu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts of the given kind at the conditional means ``mu``."""
    if kind == NB2:
        return rng.poisson(mu * rng.gamma(NB2_THETA, 1.0 / NB2_THETA, mu.shape))
    y = rng.poisson(mu)
    if kind == EXTRA_ZEROS:
        y[rng.random(mu.shape) < ZERO_SHARE] = 0
    return y


@dataclass
class Record:
    """One data set: its kind and index, ``error`` when its fit failed, whether the
    fit was singular, its p-values by ``P_NAMES`` (NaN: not computed, e.g. too few
    refits) and the refits that failed."""
    kind: str
    index: int
    error: str = ""
    singular: bool = False
    p: dict = field(default_factory=dict)
    failed_refits: int = 0


def one_data_set(truth: Truth, kind: str, index: int, seed: int, refits: int) -> Record:
    rng = np.random.default_rng(np.random.SeedSequence(seed,
                                                       spawn_key=(*KIND_KEYS[kind], index)))
    y = draw_counts(kind, conditional_means(truth, rng), rng)
    try:
        res = fit(truth.design.assign(incidents=y))
    except Exception as e:      # noqa: BLE001 -- counted in the report
        return Record(kind, index, error=f"{type(e).__name__}: {e}")
    checked = res.check(refits, seed=index, workers=1)
    p = {name: float(checked.table.at[name, "p"]) for name in (*REFIT_TESTS, PEARSON)}
    no_refit = res.simulated_residuals(refits, seed=index).tests()["p"]
    p.update({NO_REFIT + name: float(no_refit[name]) for name in REFIT_TESTS})
    return Record(kind, index, singular=res.singular, p=p,
                  failed_refits=checked.simulation.failed)


_WORKER: dict = {}


def _init_worker(truth, seed, refits):
    _WORKER.update(truth=truth, seed=seed, refits=refits)


def _run_one(job: tuple) -> Record:
    w = _WORKER
    return one_data_set(w["truth"], *job, w["seed"], w["refits"])


def study(truth: Truth, datasets: int, power: int, refits: int, seed: int,
          processes: int = 1, progress=None) -> list:
    """Records of ``datasets`` data sets drawn from the model and ``power`` of each
    alternative, in a fixed order whatever the number of processes."""
    jobs = [(MODEL, i) for i in range(datasets)] + [
        (kind, i) for kind in (NB2, EXTRA_ZEROS) for i in range(power)]
    args = (truth, seed, refits)
    if processes <= 1:
        _init_worker(*args)
        return [_reported(r, progress) for r in map(_run_one, jobs)]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")           # one BLAS thread per process
    ctx = multiprocessing.get_context("spawn")     # no fork of a process with threads
    with ctx.Pool(processes, initializer=_init_worker, initargs=args) as pool:
        return [_reported(r, progress) for r in pool.imap(_run_one, jobs)]


def _reported(record: Record, progress) -> Record:
    if progress is not None:
        progress(record)
    return record


@dataclass
class Summary:
    """The p-values of one test over the data sets of one kind."""
    kind: str
    test: str
    p: np.ndarray       # the finite ones
    missing: int

    @property
    def rejections(self) -> int:
        return int(np.count_nonzero(self.p < ALPHA))

    @property
    def rate(self) -> float:
        return self.rejections / len(self.p) if len(self.p) else math.nan

    @property
    def wilson(self) -> tuple:
        return wilson(self.rejections, len(self.p))

    @property
    def ks_p(self) -> float:
        """The KS p-value of the p-values against U(0, 1)."""
        return float(stats.kstest(self.p, "uniform").pvalue) if len(self.p) else math.nan

    @property
    def deciles(self) -> np.ndarray:
        return np.quantile(self.p, np.arange(1, 10) / 10) if len(self.p) else np.full(9, np.nan)


def summarise(records: list, kind: str, test: str) -> Summary:
    p = np.array([r.p[test] for r in records if r.kind == kind and not r.error])
    return Summary(kind, test, p[np.isfinite(p)], int(np.count_nonzero(~np.isfinite(p))))


def calibrated(s: Summary) -> bool:
    """The criterion under the model: uniform (KS p > KS_WANTED) with a rejection rate
    whose Wilson interval contains ALPHA; for the outlier count, valid only."""
    lo, hi = s.wilson
    if s.test.endswith(OUTLIERS):
        return lo <= ALPHA
    return s.ks_p > KS_WANTED and lo <= ALPHA <= hi


def _table_row(s: Summary, verdict: str) -> str:
    lo, hi = s.wilson
    deciles = " ".join(f"{q:.2f}" for q in s.deciles)
    return (f"| {s.test} | {len(s.p)} | {s.missing} | {deciles} | {s.rate:.1%} "
            f"| {lo:.1%} – {hi:.1%} | {s.ks_p:.3g} | {verdict} |")


HEAD = ["| test | n | no p | deciles 10% … 90% | rejected at 5% | Wilson 95% CI "
        "| KS p vs U(0,1) | criterion |", "|---|---|---|---|---|---|---|---|"]


def report(records: list, truth: Truth, args, seconds: float, header: list) -> str:
    ok = [r for r in records if not r.error]
    lines = ["# Calibration and power of the model checks (res.check)", "", *header,
             f"- command: `python benchmarks/check_calibration.py --datasets {args.datasets} "
             f"--power {args.power} --refits {args.refits} --seed {args.seed} "
             f"--processes {args.processes}`",
             f"- time: {seconds:.0f} s for {len(records)} data sets on {args.processes} "
             "processes", "",
             "Truth, the shipped data's fit on its design (20 plants x 8 months, offset "
             "log(employees)): " + ", ".join(
                 f"{name} {value:.4f}" for name, value in (
                     ("intercept", truth.intercept), ("training", truth.training),
                     ("SD plant", truth.sd_plant), ("SD month", truth.sd_month))) + ".", "",
             f"{len(records)} data sets: {len(records) - len(ok)} fits failed, "
             f"{sum(r.singular for r in ok)} singular (kept); "
             f"{sum(r.failed_refits for r in ok)} of the refits failed (left out).", "",
             f"## Under the model ({args.datasets} data sets, {args.refits} refits each)", "",
             "Criterion (the four refitted tests): KS p > 0.01 and the Wilson interval "
             "of the rejection rate contains 5%.  The outlier count is small "
             f"({2 * len(truth.design) / (args.refits + 1):.1f} rows expected), so its p-value takes few values (1 whenever no "
             "row is outlying) and cannot be uniform, only valid: the lower limit of its "
             "interval at most 5%.  Pearson's test and DHARMa's tests without refits "
             "are shown for comparison: uniform or not.", "",
             *HEAD]
    for test in P_NAMES:
        s = summarise(records, MODEL, test)
        if test in REFIT_TESTS:
            verdict = "pass" if calibrated(s) else "FAIL"
        else:
            verdict = "uniform" if s.ks_p > KS_WANTED else "not uniform"
        lines.append(_table_row(s, verdict))
    lines += ["", f"## Power ({args.power} data sets each, fitted with the Poisson model)",
              "", f"Criterion: the test meant for the alternative rejects at 5% in at "
              f"least {POWER_WANTED:.0%} of the data sets.", "", *HEAD]
    for kind, meant in POWER_TEST.items():
        lines.append(f"| **{kind}** | | | | | | | |")
        for test in P_NAMES:
            s = summarise(records, kind, test)
            verdict = ("" if test != meant else
                       "pass" if s.rate >= POWER_WANTED else "FAIL")
            lines.append(_table_row(s, verdict))
    errors = sorted({r.error for r in records if r.error})
    if errors:
        lines += ["", "Messages of failed fits:", ""] + [f"- {e}" for e in errors]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from machine import description, write_report   # beside this script (sys.path[0])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=int, default=200,
                    help="data sets drawn from the model (default 200)")
    ap.add_argument("--power", type=int, default=100,
                    help="data sets of each alternative (default 100; 0: none)")
    ap.add_argument("--refits", type=int, default=250,
                    help="refitted simulations per check (default 250)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="report file (default "
                    "benchmarks/results/<date>-<host>-check-calibration.md)")
    args = ap.parse_args(argv)
    if min(args.datasets, args.refits, args.processes) < 1 or min(args.power, args.seed) < 0:
        ap.error("--datasets, --refits and --processes must be >= 1, --power and --seed >= 0")
    header = description()
    truth = workplace_truth()
    t0 = time.perf_counter()
    total = args.datasets + 2 * args.power
    done = []

    def progress(r):
        done.append(r)
        if len(done) % 25 == 0:
            print(f"  {len(done)}/{total} data sets, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)

    records = study(truth, args.datasets, args.power, args.refits, args.seed,
                    args.processes, progress)
    text = report(records, truth, args, time.perf_counter() - t0, header)
    write_report(text, "check-calibration", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
