"""The reference power of the workplace-sized Poisson GLMM (issue 19), made once:
100,000 simulations of ``benchmarks/power_calibration.poisson_plan`` (20 plants x 8
months, training log 0.7) by ``xlglmm.power``, Wald and likelihood-ratio tests.

    nohup python benchmarks/power_reference.py --nsim 100000 --seed 20261130 &
    # ~10 min per test on 2 cores

Writes tests/data/power_reference.json: per test the rejections, the simulations
used, failed and singular, the power with its 95% Clopper-Pearson interval and
Monte Carlo SE, the estimates' mean, SD and mean SE, and the seconds; with the
design, the truth, the seed, the command, the date and the machine
(benchmarks/machine.py).  tests/engine/test_power_calibration.py checks a 2,000-
simulation run (other seeds) against it.  The seed must differ from every seed the
tests and benchmarks/power_calibration.py use (they use small ones).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))   # a clone, not installed

import xlglmm  # noqa: E402
from benchmarks.power_calibration import (POISSON_EFFECT, POISSON_FORMULA,  # noqa: E402
                                          POISSON_INTERCEPT, POISSON_SD, REFERENCE,
                                          poisson_plan, quiet)

TESTS = ("wald", "lrt")


def reference(test: str, nsim: int, seed: int) -> dict:
    t0 = time.perf_counter()
    r = xlglmm.power(poisson_plan(), "training", test=test, nsim=nsim, seed=seed,
                     progress=quiet)
    lo, hi = r.conf_int()
    k, n = int(r.rejected.sum()), r.n_used
    p = k / n
    return {"rejections": k, "used": n, "failed": r.n_failed, "singular": r.n_singular,
            "power": p, "mc_se": math.sqrt(p * (1.0 - p) / n), "ci95": [lo, hi],
            "mean_estimate": float(r.mean_estimate["training"]),
            "sd_estimate": float(r.sd_estimate["training"]),
            "mean_se": float(r.mean_se["training"]),
            "seconds": round(time.perf_counter() - t0, 1), "where": r.where}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsim", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--tests", default=",".join(TESTS))
    ap.add_argument("--out", default=str(REFERENCE))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import description, load_average     # benchmarks/machine.py
    machine = description()
    out = {"what": "power of the training effect, xlglmm.power on "
                   "benchmarks/power_calibration.poisson_plan()",
           "formula": POISSON_FORMULA, "family": "poisson", "offset": "log(150 + 10 i), "
           "plant i = 0..19", "design": "20 plants x 8 months crossed, training on every "
           "other plant (plant02, plant04, ...)",
           "truth": {"(Intercept)": POISSON_INTERCEPT, "training": POISSON_EFFECT,
                     "sd": POISSON_SD},
           "alpha": 0.05, "nsim": args.nsim, "seed": args.seed,
           "command": f"python benchmarks/power_reference.py --nsim {args.nsim} "
                      f"--seed {args.seed} --tests {args.tests}",
           "machine": machine, "tests": {}}
    for test in args.tests.split(","):
        out["tests"][test] = reference(test, args.nsim, args.seed)
        print(test, out["tests"][test], flush=True)
    out["load_average_at_the_end"] = load_average()
    text = json.dumps(out, indent=2) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
