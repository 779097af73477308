"""Calibration of the model checks beyond Poisson counts: a 0/1 binomial and a Gamma
(log) model, where the uniformity and outlier tests have no dispersion or zeros test
beside them.

    python benchmarks/check_calibration_families.py --datasets 100 --refits 100   # ~5 min

The truths are seeded designs of 40 groups x 10 rows with one covariate x ~ N(0, 1):
0/1 outcomes with logit p = -0.3 + 0.5 x + b, SD(b) = 0.8, and Gamma amounts with
shape 2 and log mean 1 + 0.3 x + b, SD(b) = 0.5, each fitted once; data set i is
``res.simulate(1, seed=i)`` of that fit, refitted and checked with
``res.check(refits, seed=i)``.  Under the model the p-values of the uniformity test
must be uniform (KS p > 0.01, rejection rate's Wilson interval containing 5%) and the
outlier test's valid (at most 5%); ``benchmarks/check_calibration.py`` is the study
of the workplace model (all four tests and their power).  The report (markdown, date
and machine) goes to ``benchmarks/results/<date>-<host>-check-calibration-families.md``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))   # a clone, not installed

import xlglmm                                                                  # noqa: E402
from benchmarks.check_calibration import HEAD, Summary, _table_row, calibrated  # noqa: E402
from xlglmm.engine.simulation_tests import OUTLIERS, UNIFORMITY                 # noqa: E402

FORMULA = "y ~ x + (1|g)"
GROUPS, PER_GROUP = 40, 10
TESTS = (UNIFORMITY, OUTLIERS)


def truths(seed: int = 5) -> dict:
    """name -> (data, family, link) of the two seeded truths (fitted in ``fitted``)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(GROUPS), PER_GROUP)
    x = rng.normal(size=len(g))
    base = pd.DataFrame({"x": x, "g": [f"G{k:02d}" for k in g]})
    eta = -0.3 + 0.5 * x + rng.normal(0.0, 0.8, GROUPS)[g]
    binary = base.assign(y=rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))).astype(float))
    mu = np.exp(1.0 + 0.3 * x + rng.normal(0.0, 0.5, GROUPS)[g])
    amounts = base.assign(y=rng.gamma(2.0, mu / 2.0))
    return {"0/1 binomial (logit)": (binary, "binomial", None),
            "Gamma (log)": (amounts, "gamma", "log")}


def fitted(data, family, link):
    return xlglmm.glmer(FORMULA, data, family=family, link=link)


def one(job: tuple) -> tuple:
    name, i, refits = job
    data, family, link = truths()[name]
    truth = fitted(data, family, link)
    y = truth.simulate(1, seed=i).iloc[:, 0].to_numpy()
    res = fitted(data.assign(y=y), family, link)
    table = res.check(refits, seed=i, workers=1).table
    return name, {t: float(table.at[t, "p"]) for t in TESTS}


def main(argv=None) -> int:
    from machine import description, write_report   # beside this script (sys.path[0])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", type=int, default=100)
    ap.add_argument("--refits", type=int, default=100)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    header = description()
    t0 = time.perf_counter()
    jobs = [(name, i, args.refits) for name in truths() for i in range(args.datasets)]
    with multiprocessing.get_context("fork").Pool(args.processes) as pool:
        out = pool.map(one, jobs)
    lines = ["# Calibration of the model checks: 0/1 binomial and Gamma models", "",
             *header,
             f"- command: `python benchmarks/check_calibration_families.py --datasets "
             f"{args.datasets} --refits {args.refits} --processes {args.processes}`",
             f"- time: {time.perf_counter() - t0:.0f} s", "",
             f"Each truth: {GROUPS} groups x {PER_GROUP} rows, `{FORMULA}` (see the "
             "script); data sets simulated from its fit.  Criterion as "
             "check_calibration.py's (uniformity: KS p > 0.01 and 5% inside the "
             "rejection rate's interval; outliers: valid).", ""]
    for name in truths():
        lines += [f"## {name}", "", *HEAD]
        for test in TESTS:
            p = np.array([ps[test] for n, ps in out if n == name])
            s = Summary(name, test, p[np.isfinite(p)], int(np.count_nonzero(~np.isfinite(p))))
            lines.append(_table_row(s, "pass" if calibrated(s) else "FAIL"))
        lines.append("")
    write_report("\n".join(lines), "check-calibration-families", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
