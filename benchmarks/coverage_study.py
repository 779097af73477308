"""Coverage of xlglmm's 95% intervals: the test an interval cannot fake.

    python benchmarks/coverage_study.py --nsim 500 --boot 200 --seed 1      # ~10 min on 2 cores

The truth is the workplace-safety model as fitted to the shipped data
(``incidents ~ training + (1|plant) + (1|month)``, Poisson, offset log(employees):
its fixed effects and its two SDs), on the data's own design (20 plants x 8 months,
the plants' employees and training).  Each of ``--nsim`` data sets draws new plant
and month effects and new counts from it, is fitted by ``xlglmm.glmer``, and records
whether each interval covers the true value:

* the training effect: Wald (``res.conf_int()``), profile
  (``res.conf_int(method="profile")``), parametric bootstrap (``res.bootstrap(B)``,
  percentile);
* the two SDs: profile, bootstrap, and Wald on the SD from the deviance's Hessian in
  (theta, beta) (``res.hessian``: SE = sqrt of the diagonal of 2 H^-1; for a Poisson
  model the SD is theta).

Each coverage is reported with its Wilson 95% interval and the intervals' mean width;
fits that failed and fits that were singular are counted.  When the result's
``predict`` accepts ``interval`` (prediction intervals, being written), the report
also gives the coverage of the 95% prediction interval of a new 200-employee plant's
count (:func:`prediction_coverage`).

Data set i draws from ``numpy.random.SeedSequence(seed, spawn_key=(i,))`` (one child
for the data, one for its bootstrap's seed), so the numbers do not depend on how many
processes run (``--processes``, default 2) or in which order.  The report (markdown,
with date and machine) goes to ``benchmarks/results/<date>-<host>-coverage.md`` and is
printed.  (Not named coverage.py: Numba imports the ``coverage`` package, and a
script's own folder comes first on ``sys.path``.)
"""
from __future__ import annotations

import argparse
import inspect
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.polynomial.hermite_e import hermegauss
from scipy import special, stats

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))   # a clone, not installed

import xlglmm                                         # noqa: E402
from xlglmm.engine.results import sd_label            # noqa: E402
from xlglmm.workbook.templates import dataset         # noqa: E402

FORMULA = "incidents ~ training + (1 | plant) + (1 | month)"
EFFECT = "training"
SD_PLANT = sd_label("(Intercept)", "plant")
SD_MONTH = sd_label("(Intercept)", "month")
PARAMETERS = (EFFECT, SD_PLANT, SD_MONTH)
#: the bootstrap's intervals: "bootstrap" is the percentile interval, "bootstrap
#: basic" 2 estimate - its quantiles, "bootstrap-t" the studentized (fixed effects)
BOOTSTRAP_KINDS = {"bootstrap": "percentile", "bootstrap basic": "basic",
                   "bootstrap-t": "studentized"}
METHODS = ("Wald", "profile", *BOOTSTRAP_KINDS)
LEVEL = 0.95
ALPHA = 1.0 - LEVEL
Z = float(special.ndtri(1.0 - ALPHA / 2.0))
NEW_PLANT_EMPLOYEES = 200
NEW_PLANT_MONTH = 1              # an existing month: its effect is the data set's own
GH_POINTS = 40                   # Gauss-Hermite points over the new plant's effect


@dataclass(frozen=True)
class Truth:
    """The model the data sets are drawn from: the data's design (plant, month,
    training, employees), the fixed effects and the SDs of the two intercepts."""
    design: pd.DataFrame
    intercept: float
    training: float
    sd_plant: float
    sd_month: float

    def value(self, parameter: str) -> float:
        return {EFFECT: self.training, SD_PLANT: self.sd_plant,
                SD_MONTH: self.sd_month}[parameter]


@dataclass(frozen=True)
class SimulatedData:
    """One data set and the month effects it was drawn with (the prediction for a
    new plant in an existing month is conditional on that month's effect)."""
    data: pd.DataFrame
    month_effects: dict


def fit(data: pd.DataFrame):
    return xlglmm.glmer(FORMULA, data, "poisson",
                        offset=np.log(data["employees"].to_numpy(float)))


def workplace_truth() -> Truth:
    """The workplace-safety fit's estimates, on the shipped data's design."""
    data = dataset("workplace_safety")
    res = fit(data)
    sds = res.varcorr.set_index("grp")["sdcor"]
    return Truth(data[["plant", "month", "training", "employees"]].copy(),
                 float(res.fe_params["(Intercept)"]), float(res.fe_params[EFFECT]),
                 float(sds["plant"]), float(sds["month"]))


def simulate(truth: Truth, rng: np.random.Generator) -> SimulatedData:
    """New plant and month effects from N(0, SD^2), then Poisson counts given them.
    Written here rather than taken from the bootstrap's simulator, so that an error
    there shows as a coverage failure instead of cancelling out."""
    d = truth.design
    plants, plant_codes = np.unique(d["plant"].to_numpy(str), return_inverse=True)
    months, month_codes = np.unique(d["month"].to_numpy(), return_inverse=True)
    b_plant = rng.normal(0.0, truth.sd_plant, len(plants))
    b_month = rng.normal(0.0, truth.sd_month, len(months))
    eta = (truth.intercept + truth.training * d["training"].to_numpy(float)
           + np.log(d["employees"].to_numpy(float)) + b_plant[plant_codes]
           + b_month[month_codes])
    y = rng.poisson(np.exp(eta))
    return SimulatedData(d.assign(incidents=y),
                         {m.item(): float(b) for m, b in zip(months, b_month)})


def wald_sd_intervals(res) -> dict:
    """SD +- z SE, the SE from the deviance's Hessian in (theta, beta): the
    covariance of the estimates is 2 H^-1 (the deviance is -2 log-likelihood).  For a
    Poisson model each scalar term's SD is its theta.  NaN limits when H cannot be
    inverted or the SD's variance is not positive."""
    h = np.asarray(res.hessian, float)
    try:
        cov = 2.0 * np.linalg.inv(h)
    except np.linalg.LinAlgError:
        cov = np.full_like(h, np.nan)
    out = {}
    for j, row in enumerate(res.varcorr.itertuples()):
        var = cov[j, j]
        se = math.sqrt(var) if var > 0 else float("nan")
        out[sd_label(row.var1, row.grp)] = (row.sdcor - Z * se, row.sdcor + Z * se)
    return out


def in_process(method) -> dict:
    """``workers=1`` for a result's method that takes it (profile, bootstrap): the study
    runs its data sets in parallel already, and a pool inside a pool's (daemonic)
    worker cannot start."""
    return {"workers": 1} if "workers" in inspect.signature(method).parameters else {}


def intervals(res, boot: int, boot_seed: int, profile_which) -> tuple[dict, dict]:
    """{(parameter, method): (lower, upper)} of one fit, and the bootstrap's counts.
    A method that raises is recorded as its message (one failure must not lose the
    others, or the run)."""
    out, counts = {}, {}
    wald = res.conf_int(ALPHA)
    out[EFFECT, "Wald"] = tuple(wald.loc[EFFECT, ["lower", "upper"]])
    for name, lim in wald_sd_intervals(res).items():
        out[name, "Wald"] = lim
    try:
        prof = res.profile(profile_which, **in_process(res.profile)).conf_int(ALPHA)
        for name in prof.index.intersection(PARAMETERS):
            out[name, "profile"] = tuple(prof.loc[name, ["lower", "upper"]])
    except Exception as e:      # noqa: BLE001 -- counted in the report
        out["profile"] = f"{type(e).__name__}: {e}"
    if boot:
        try:
            bs = res.bootstrap(boot, seed=boot_seed, **in_process(res.bootstrap))
            counts = {"replicates": len(bs.replicates), "failed": bs.failed,
                      "singular": bs.singular}
            for method, kind in BOOTSTRAP_KINDS.items():
                ci = bs.conf_int(ALPHA, method=kind).dropna()
                for name in ci.index.intersection(PARAMETERS):
                    out[name, method] = tuple(ci.loc[name, ["lower", "upper"]])
        except Exception as e:  # noqa: BLE001 -- counted in the report
            out["bootstrap"] = f"{type(e).__name__}: {e}"
    return out, counts


# ---- prediction intervals (enabled when res.predict accepts interval=) ------------------

def prediction_available(res) -> bool:
    return "interval" in inspect.signature(res.predict).parameters


def count_interval_probability(lower: float, upper: float, mu_fixed: float,
                               sd: float, points: int = GH_POINTS) -> float:
    """P(lower <= Y <= upper) exactly (to quadrature accuracy) for a new group's count:
    Y | b ~ Poisson(mu_fixed exp(b)), b ~ N(0, sd^2).  The Poisson probability of the
    interval is a smooth function of b, averaged by Gauss-Hermite quadrature -- the
    coverage of a fresh count, without the noise of drawing one."""
    x, w = hermegauss(points)
    mu = mu_fixed * np.exp(sd * x)
    p = stats.poisson.cdf(math.floor(upper), mu) - stats.poisson.cdf(math.ceil(lower) - 1, mu)
    return float(w @ p / math.sqrt(2.0 * math.pi))


def new_plant() -> pd.DataFrame:
    """A new 200-employee plant, untrained and trained, in an existing month."""
    return pd.DataFrame({"plant": ["new plant", "new plant"],
                         "month": [NEW_PLANT_MONTH, NEW_PLANT_MONTH], "training": [0, 1],
                         "employees": [NEW_PLANT_EMPLOYEES, NEW_PLANT_EMPLOYEES]})


def prediction_coverage(res, truth: Truth, month_effect: float) -> dict:
    """{"untrained": p, "trained": p}: the probability that the 95% prediction interval
    of ``res`` for the new plant's count covers a fresh count of that plant, whose
    effect is drawn from N(0, sd_plant^2) in a month whose effect is ``month_effect``
    (the data set's own).  Averaged over data sets, this is the interval's coverage."""
    new = new_plant()
    pred = res.predict(new, interval="prediction", level=LEVEL,
                       offset=np.log(new["employees"].to_numpy(float)))
    out = {}
    for label, row, training in zip(("untrained", "trained"), pred.itertuples(),
                                    new["training"]):
        mu_fixed = NEW_PLANT_EMPLOYEES * math.exp(truth.intercept + truth.training * training
                                                  + month_effect)
        out[label] = count_interval_probability(row.lower, row.upper, mu_fixed,
                                                truth.sd_plant)
    return out


# ---- one data set, and many ----------------------------------------------------------

@dataclass
class Record:
    """What one data set gave: ``error`` when its fit failed; otherwise its
    intervals (or a method's error message), whether the fit was singular, the
    bootstrap's counts and the prediction intervals' coverage (None: not available)."""
    index: int
    error: str = ""
    singular: bool = False
    intervals: dict | None = None
    bootstrap: dict | None = None
    prediction: dict | None = None


def one_data_set(truth: Truth, seed: int, index: int, boot: int,
                 profile_which=None) -> Record:
    data_seq, boot_seq = np.random.SeedSequence(seed, spawn_key=(index,)).spawn(2)
    sim = simulate(truth, np.random.default_rng(data_seq))
    try:
        res = fit(sim.data)
    except Exception as e:      # noqa: BLE001 -- counted in the report
        return Record(index, error=f"{type(e).__name__}: {e}")
    if not res.converged:
        return Record(index, error="; ".join(res.messages) or "not converged")
    ints, counts = intervals(res, boot, int(boot_seq.generate_state(1)[0]), profile_which)
    pred = None
    if prediction_available(res):
        try:
            pred = prediction_coverage(res, truth, sim.month_effects[NEW_PLANT_MONTH])
        except Exception as e:  # noqa: BLE001 -- listed with the other methods' messages
            ints["prediction"] = f"{type(e).__name__}: {e}"
    return Record(index, singular=res.singular, intervals=ints, bootstrap=counts,
                  prediction=pred)


_WORKER: dict = {}


def _init_worker(truth, seed, boot, profile_which, boot_sets):
    _WORKER.update(truth=truth, seed=seed, boot=boot, profile_which=profile_which,
                   boot_sets=boot_sets)


def _run_one(index: int) -> Record:
    w = _WORKER
    boot = w["boot"] if index < w["boot_sets"] else 0
    return one_data_set(w["truth"], w["seed"], index, boot, w["profile_which"])


def study(truth: Truth, nsim: int, boot: int, seed: int, processes: int = 1,
          boot_sets: int | None = None, profile_which=None, progress=None) -> list:
    """Records of data sets 0..nsim-1 (the bootstrap on the first ``boot_sets``,
    default all), in index order whatever the number of processes."""
    args = (truth, seed, boot, profile_which, nsim if boot_sets is None else boot_sets)
    if processes <= 1:
        _init_worker(*args)
        runs = map(_run_one, range(nsim))
        return [_reported(r, progress) for r in runs]
    # one BLAS thread per process: the 2 processes share the 2 cores
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    ctx = multiprocessing.get_context("spawn")     # no fork of a process with threads
    with ctx.Pool(processes, initializer=_init_worker, initargs=args) as pool:
        return [_reported(r, progress) for r in pool.imap(_run_one, range(nsim))]


def _reported(record: Record, progress) -> Record:
    if progress is not None:
        progress(record)
    return record


# ---- the summary ---------------------------------------------------------------------

def wilson(covered: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return float("nan"), float("nan")
    p = covered / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@dataclass
class Coverage:
    parameter: str
    method: str
    n: int              # data sets with a finite interval
    covered: int
    missing: int        # fits where the method failed or gave a NaN limit
    mean_width: float

    @property
    def rate(self) -> float:
        return self.covered / self.n if self.n else float("nan")


def coverage(records: list, truth: Truth, parameter: str, method: str) -> Coverage:
    n = covered = missing = 0
    widths = []
    for r in records:
        if r.error or r.intervals is None:
            continue
        lim = r.intervals.get((parameter, method))
        if lim is None and method not in r.intervals:
            continue            # not asked for (a profile of some parameters, no bootstrap)
        if lim is None or not all(map(math.isfinite, lim)):
            missing += 1        # the method failed (its message) or gave a NaN limit
            continue
        lo, hi = lim
        n += 1
        covered += lo <= truth.value(parameter) <= hi
        widths.append(hi - lo)
    return Coverage(parameter, method, n, covered, missing,
                    float(np.mean(widths)) if widths else float("nan"))


def coverages(records: list, truth: Truth) -> list:
    return [c for p in PARAMETERS for m in METHODS
            if (c := coverage(records, truth, p, m)).n + c.missing > 0]


PLAN = """\
Prediction intervals: {status}.  The plan, `prediction_coverage(res, truth,
month_effect)` in benchmarks/coverage_study.py, run for every data set once
`res.predict` accepts `interval`: predict a new 200-employee plant (a level not in
the data), untrained and trained, in month {month} with `res.predict(newdata,
interval="prediction", level=0.95)` (columns fit, se_link, lower, upper); the
interval covers a fresh count
of that plant with probability E_b[P(lower <= Y <= upper | b)], Y | b ~
Poisson(200 exp(b0 + b1 training + u_month + b)), b ~ N(0, sd_plant^2), computed
exactly (Poisson CDF, {points}-point Gauss-Hermite over b) rather than by one draw;
the mean over data sets is the coverage, reported with mean +- 1.96 SD/sqrt(n)."""


def report(records: list, truth: Truth, args, seconds: float, header: list) -> str:
    ok = [r for r in records if not r.error]
    lines = ["# Coverage of 95% intervals on data simulated from the workplace-safety model",
             "", *header,
             f"- command: `python benchmarks/coverage_study.py --nsim {args.nsim} "
             f"--boot {args.boot} --seed {args.seed} --processes {args.processes}`",
             f"- time: {seconds:.0f} s ({seconds / max(len(records), 1):.2f} s per data set "
             f"on {args.processes} processes)", "",
             f"Truth (the shipped data's fit): intercept {truth.intercept:.4f}, training "
             f"{truth.training:.4f}, SD plant {truth.sd_plant:.4f}, SD month "
             f"{truth.sd_month:.4f}; the data's design (20 plants x 8 months, offset "
             "log(employees)).", "",
             f"{len(records)} data sets: {len(records) - len(ok)} fits failed, "
             f"{sum(r.singular for r in ok)} singular (kept).  "
             + bootstrap_counts(ok, args.boot),
             "",
             "| parameter | true value | method | n | coverage | Wilson 95% CI | mean width "
             "| no interval |",
             "|---|---|---|---|---|---|---|---|"]
    for c in coverages(records, truth):
        lo, hi = wilson(c.covered, c.n)
        name = c.parameter.replace("|", "\\|")       # a cell of a markdown table
        lines.append(f"| {name} | {truth.value(c.parameter):.4f} | {c.method} | {c.n} "
                     f"| {c.rate:.1%} | {lo:.1%} – {hi:.1%} | {c.mean_width:.4f} "
                     f"| {c.missing} |")
    lines += ["", "Wald for the SDs: SD ± 1.96 SE, the SE from the deviance's Hessian in "
              "(theta, beta) at the estimate (`res.hessian`); its lower limit may be "
              "negative.  Where H cannot be inverted there is no Wald interval (counted "
              "under 'no interval')."]
    errors = sorted({v for r in ok for k, v in r.intervals.items() if isinstance(v, str)}
                    | {r.error for r in records if r.error})
    if errors:
        lines += ["", "Messages of failed fits or methods:", ""] + [f"- {e}" for e in errors]
    lines += ["", prediction_section(ok)]
    return "\n".join(lines) + "\n"


def bootstrap_counts(records: list, boot: int) -> str:
    if not boot:
        return "No bootstrap (--boot 0)."
    failed = sum(r.bootstrap.get("failed", 0) for r in records if r.bootstrap)
    singular = sum(r.bootstrap.get("singular", 0) for r in records if r.bootstrap)
    return (f"Bootstrap: B = {boot} replicates per data set: percentile ('bootstrap'), "
            "basic and studentized ('bootstrap-t', fixed effects: t = (replicate - "
            f"estimate) / replicate's RX SE) intervals; {failed} refits failed and "
            f"{singular} were singular over all data sets.")


def prediction_section(records: list) -> str:
    preds = [r.prediction for r in records if r.prediction is not None]
    if preds:
        status = "measured, table below"
    elif any("prediction" in r.intervals for r in records):
        status = "every prediction failed (the messages above)"
    else:
        status = "not available in this revision (res.predict has no interval argument)"
    text = PLAN.format(status=status, month=NEW_PLANT_MONTH, points=GH_POINTS)
    if not preds:
        return text
    rows = ["", "| new plant | n | coverage | ± 1.96 SD/sqrt(n) |", "|---|---|---|---|"]
    for label in ("untrained", "trained"):
        p = np.array([d[label] for d in preds])
        rows.append(f"| {label} | {len(p)} | {p.mean():.1%} | "
                    f"{1.96 * p.std(ddof=1) / math.sqrt(len(p)):.1%} |")
    return text + "\n" + "\n".join(rows)


def main(argv=None) -> int:
    from machine import description, write_report   # beside this script (sys.path[0])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nsim", type=int, default=500, help="data sets (default 500)")
    ap.add_argument("--boot", type=int, default=200,
                    help="bootstrap replicates per data set (default 200; 0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None,
                    help="report file (default benchmarks/results/<date>-<host>-coverage.md)")
    args = ap.parse_args(argv)
    if args.nsim < 1 or args.boot < 0 or args.seed < 0 or args.processes < 1:
        ap.error("--nsim and --processes must be >= 1, --boot and --seed >= 0")
    header = description()
    truth = workplace_truth()
    t0 = time.perf_counter()

    def progress(r):
        if (r.index + 1) % 25 == 0:
            print(f"  {r.index + 1}/{args.nsim} data sets, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)

    records = study(truth, args.nsim, args.boot, args.seed, args.processes, progress=progress)
    text = report(records, truth, args, time.perf_counter() - t0, header)
    write_report(text, "coverage", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
