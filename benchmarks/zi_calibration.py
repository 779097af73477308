"""Calibration of the zero-inflated fits (issue 17) on simulated data with a known truth.

    python benchmarks/zi_calibration.py --nsim 2000 --seed 1     # ~5-10 min on 2 cores

Two studies, each data set drawn from ``numpy.random.SeedSequence(seed, spawn_key=(study,
i))`` (the numbers do not depend on ``--processes``):

1. **Coverage of the Wald intervals** of a zero-inflated NB2 GLMM shaped like
   tests/data/glmmtmb/zinb_sim.csv: 50 groups x 12 rows, x ~ N(0, 1), w ~ Bernoulli(1/2),
   log mu = 0.5 + 0.6 x + b, b ~ N(0, 0.5^2), a structural zero with probability
   plogis(-1.2 + 0.9 w), else NB2(mu, theta = 2).  Fitted by
   ``glmer("y ~ x + (1|g)", family="negbin", ziformula="~ w")``; the 95% Wald intervals
   of the fixed effects, the zero-inflation coefficients and theta (on log theta) are
   counted against the truth, with the binomial Monte Carlo SE of each coverage, and the
   mean estimates' bias.
2. **The boundary likelihood-ratio test** of zero inflation: NB2 data without zero
   inflation (the same design, p0 = 0), fitted as NB2 and as ZINB2 with ``zi ~ 1``.
   Under this null the statistic 2 (logLik_ZINB - logLik_NB2) is a 50:50 mixture of
   chi2_0 and chi2_1 (Self and Liang 1987): the naive chi2_1 p-value is conservative
   (rejects about 2.5% at 5%), the halved one holds its level.  GLMM_COMPARE's note
   says so.

The report goes to ``--out`` (default benchmarks/results/2026-11-30-zi-calibration.md)
with the date, machine and load.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))   # a clone, not installed

TRUTH = {"(Intercept)": 0.5, "x": 0.6, "zi_(Intercept)": -1.2, "zi_w": 0.9,
         "log_theta": np.log(2.0)}
GROUPS, PER = 50, 12


def draw(seed: int, study: int, i: int, zero_inflated: bool) -> pd.DataFrame:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(study, i)))
    g = np.repeat(np.arange(GROUPS), PER)
    n = len(g)
    x, w = rng.standard_normal(n), rng.binomial(1, 0.5, n).astype(float)
    b = rng.normal(0.0, 0.5, GROUPS)
    mu = np.exp(0.5 + 0.6 * x + b[g])
    y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
    if zero_inflated:
        y = np.where(rng.random(n) < special.expit(-1.2 + 0.9 * w), 0.0, y)
    return pd.DataFrame({"y": y, "x": x, "w": w, "g": [f"g{k:02d}" for k in g]})


def coverage_one(args):
    import xlglmm
    seed, i = args
    df = draw(seed, 1, i, True)
    t = time.perf_counter()
    try:
        r = xlglmm.glmer("y ~ x + (1|g)", df, "negbin", ziformula="~ w")
    except Exception as e:      # a failed fit is counted, not dropped
        return {"i": i, "failed": f"{type(e).__name__}: {e}"}
    out = {"i": i, "failed": "", "converged": r.converged, "seconds": time.perf_counter() - t}
    ci = r.conf_int()
    for k in ("(Intercept)", "x"):
        out[k] = r.fe_params[k]
        out[k + "_lo"], out[k + "_hi"] = ci.loc[k, "lower"], ci.loc[k, "upper"]
    zci = r.zi_conf_int()
    for k in ("(Intercept)", "w"):
        out["zi_" + k] = r.zi_params[k]
        out["zi_" + k + "_lo"], out["zi_" + k + "_hi"] = zci.loc[k, "lower"], zci.loc[k, "upper"]
    lt, se = np.log(r.nb_theta), r.nb_theta_se / r.nb_theta
    out["log_theta"], out["log_theta_lo"], out["log_theta_hi"] = lt, lt - 1.96 * se, lt + 1.96 * se
    return out


def lrt_one(args):
    import xlglmm
    seed, i = args
    df = draw(seed, 2, i, False)
    try:
        nb = xlglmm.glmer("y ~ x + (1|g)", df, "negbin")
        zi = xlglmm.glmer("y ~ x + (1|g)", df, "zinb")
    except Exception as e:
        return {"i": i, "failed": f"{type(e).__name__}: {e}"}
    stat = max(2.0 * (zi.llf - nb.llf), 0.0)
    return {"i": i, "failed": "", "stat": stat, "raw_dllf": zi.llf - nb.llf,
            "p_naive": float(stats.chi2.sf(stat, 1)),
            "p_halved": 0.5 * float(stats.chi2.sf(stat, 1)) if stat > 0 else 1.0,
            "converged": nb.converged and zi.converged}


def warm(_):
    import xlglmm
    xlglmm.glmer("y ~ x + (1|g)", draw(0, 9, 0, True), "negbin", ziformula="~ w")


def report(cov: pd.DataFrame, lrt: pd.DataFrame, args, seconds: float,
           machine: list) -> str:
    from machine import load_average     # benchmarks/machine.py
    lines = [f"# Zero inflation: Wald coverage and the boundary LRT ({time.strftime('%Y-%m-%d')})",
             "", f"`python benchmarks/zi_calibration.py --nsim {args.nsim} --seed {args.seed}`"
             f" ({seconds / 60:.1f} min, {args.processes} processes)", "",
             *machine, f"- load average at the end: {load_average()}", "",
             "## 1. Coverage of 95% Wald intervals (ZINB2, zi ~ w)", "",
             f"{len(cov)} data sets; failed fits: {int((cov.failed != '').sum())}; "
             f"not converged: {int((~cov.converged.fillna(False).astype(bool)).sum())}; "
             f"median time per fit {cov.seconds.median():.2f} s.", "",
             "| parameter | truth | mean estimate | bias (MC SE) | coverage | MC SE |",
             "|---|---|---|---|---|---|"]
    ok = cov[cov.failed == ""]
    for k, v in TRUTH.items():
        est = ok[k].astype(float)
        inside = ((ok[k + "_lo"] <= v) & (v <= ok[k + "_hi"])).astype(float)
        c = float(inside.mean())
        lines.append(f"| {k} | {v:.4g} | {est.mean():.4f} | {est.mean() - v:+.4f} "
                     f"({est.std(ddof=1) / np.sqrt(len(est)):.4f}) | {100 * c:.1f}% | "
                     f"{100 * np.sqrt(c * (1 - c) / len(inside)):.1f}% |")
    okl = lrt[lrt.failed == ""]
    n = len(okl)
    rej = {k: float((okl[k] < 0.05).mean()) for k in ("p_naive", "p_halved")}
    zero = float((okl.stat <= 1e-6).mean())
    lines += ["", "## 2. The LRT of zero inflation under the null (NB2 data, p0 = 0)", "",
              f"{len(lrt)} data sets; failed: {int((lrt.failed != '').sum())}; "
              f"statistic at 0 (ZINB = NB2, the zi probability at its boundary): "
              f"{100 * zero:.1f}% (theory: 50%).", "",
              "| p-value | rejections at 5% | MC SE |", "|---|---|---|"]
    for k, name in (("p_naive", "chi2_1 (naive)"), ("p_halved", "halved (50:50 mixture)")):
        lines.append(f"| {name} | {100 * rej[k]:.1f}% | {100 * np.sqrt(rej[k] * (1 - rej[k]) / n):.1f}% |")
    lines += ["", "The largest negative logLik_ZINB - logLik_NB2 (the ZINB fit below its own "
              f"boundary, which contains the NB2 fit): {okl.raw_dllf.min():.2e}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsim", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                         "2026-11-30-zi-calibration.md"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import description     # (its load average: the start's)
    machine = description()
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.processes) as pool:
        pool.map(warm, range(args.processes))
        jobs = [(args.seed, i) for i in range(args.nsim)]
        cov = pd.DataFrame(pool.map(coverage_one, jobs, chunksize=4))
        lrt = pd.DataFrame(pool.map(lrt_one, jobs, chunksize=4))
    text = report(cov, lrt, args, time.perf_counter() - t0, machine)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
