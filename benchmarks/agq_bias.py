"""Bias of the Laplace and adaptive-quadrature estimates of a random slope's SD on
binary data with few observations per group (issue 17).

    python benchmarks/agq_bias.py --nsim 200 --seed 1 --nagq 7     # ~5-10 min on 2 cores

The truth: ``y ~ x + (x | g)``, binomial with the logit link, ``--groups`` groups
(default 80) of 3 to 5 rows each (uniformly drawn), x ~ N(0, 1) per row, fixed
effects (-0.5, 0.5), a random intercept of SD 1.0 and a random slope of SD 0.8 with
correlation 0.3.  Each of ``--nsim`` data sets is fitted by
``xlglmm.glmer("y ~ x + (x|g)", family="binomial")`` twice: Laplace (nAGQ=1) and
adaptive Gauss-Hermite quadrature (``--nagq`` points per dimension, the product rule:
nAGQ^2 nodes per group).  The report gives, for both, the mean and median of the
estimated SDs (slope, intercept) and correlation, their bias against the truth with a
Monte Carlo SE (the mean's: SD / sqrt(nsim); the median's: from 2,000 bootstrap
resamples of the data sets), the paired AGQ - Laplace difference, the counts of
singular and unconverged fits (all fits are included in the summaries), and the
median time per fit (wall clock inside the worker, compilation excluded by a warm-up
fit; the two processes share 2 cores with whatever else runs).

The first ``--check-n`` data sets (default 100) are also fitted with
``--check-nagq`` points (default 11), to show that the AGQ estimates are converged
in the number of points.

Data set i draws from ``numpy.random.SeedSequence(seed, spawn_key=(i,))``, so the
numbers do not depend on the number of processes (``--processes``, default 2).  The
report goes to ``--out`` (default benchmarks/results/2026-11-30-agq-bias.md).
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

BETA = (-0.5, 0.5)
SD_INT, SD_SLOPE, CORR = 1.0, 0.8, 0.3
TRUTH = {"sd_slope": SD_SLOPE, "sd_int": SD_INT, "corr": CORR}


def simulate(seed: int, i: int, groups: int) -> pd.DataFrame:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
    sizes = rng.integers(3, 6, size=groups)             # 3, 4 or 5 rows per group
    g = np.repeat(np.arange(groups), sizes)
    x = rng.standard_normal(g.size)
    cov = np.array([[SD_INT ** 2, CORR * SD_INT * SD_SLOPE],
                    [CORR * SD_INT * SD_SLOPE, SD_SLOPE ** 2]])
    b = rng.multivariate_normal([0.0, 0.0], cov, size=groups)
    eta = BETA[0] + BETA[1] * x + b[g, 0] + b[g, 1] * x
    y = (rng.random(g.size) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{j:03d}" for j in g]})


def estimates(res) -> dict:
    vc = res.varcorr
    sd = vc[vc["var2"].isna()].set_index("var1")["sdcor"]
    corr = vc[vc["var2"].notna()]["sdcor"]
    return {"sd_slope": float(sd["x"]), "sd_int": float(sd["(Intercept)"]),
            "corr": float(corr.iloc[0]) if len(corr) else np.nan,
            "singular": bool(res.singular), "converged": bool(res.converged),
            "llf": float(res.llf)}


def one(args):
    import xlglmm
    seed, i, groups, nagq, check_nagq, check_n = args
    d = simulate(seed, i, groups)
    out = {"i": i}
    fits = [("laplace", 1), ("agq", nagq)]
    if i < check_n:
        fits.append(("check", check_nagq))
    for label, q in fits:
        t0 = time.perf_counter()
        try:
            res = xlglmm.glmer("y ~ x + (x|g)", d, family="binomial", nAGQ=q)
            e = estimates(res)
        except Exception as exc:        # counted, not hidden
            e = {"error": f"{type(exc).__name__}: {exc}"}
        e["seconds"] = time.perf_counter() - t0
        out.update({f"{label}_{k}": v for k, v in e.items()})
    return out


def warm_up(nagq):
    import xlglmm
    d = simulate(12345, 0, 20)
    for q in (1, nagq):
        xlglmm.glmer("y ~ x + (x|g)", d, family="binomial", nAGQ=q)


def median_se(x, rng, B=2000):
    x = np.asarray(x)
    idx = rng.integers(0, x.size, size=(B, x.size))
    return float(np.std(np.median(x[idx], axis=1), ddof=1))


def rule_check(df: pd.DataFrame, nagq: int, check_nagq: int) -> list[str]:
    """Is AGQ(nagq) converged in the number of points?  The same data sets refitted
    with check_nagq points."""
    if "check_sd_slope" not in df or df["check_sd_slope"].notna().sum() == 0:
        return []
    sub = df[df["check_sd_slope"].notna()]
    lines = ["", f"The rule's accuracy: the first {len(sub)} data sets refitted with "
             f"AGQ({check_nagq}); AGQ({check_nagq}) - AGQ({nagq}):", "",
             "| quantity | mean | mean absolute | max absolute |", "|---|---:|---:|---:|"]
    for q in ("sd_slope", "sd_int", "corr", "llf"):
        dlt = (sub[f"check_{q}"] - sub[f"agq_{q}"]).to_numpy(float)
        dlt = dlt[np.isfinite(dlt)]
        lines.append(f"| {q} | {dlt.mean():+.2e} | {np.abs(dlt).mean():.2e} | "
                     f"{np.abs(dlt).max():.2e} |")
    return lines


def summarise(df: pd.DataFrame, nagq: int) -> list[str]:
    rng = np.random.default_rng(0)
    n = len(df)
    lines = ["| quantity | method | mean | bias of the mean (MC SE) | median | "
             "bias of the median (MC SE) |", "|---|---|---:|---:|---:|---:|"]
    for q, truth in TRUTH.items():
        for label, name in (("laplace", "Laplace"), ("agq", f"AGQ({nagq})")):
            x = df[f"{label}_{q}"].to_numpy(float)
            x = x[np.isfinite(x)]
            m, med = x.mean(), np.median(x)
            se_m = x.std(ddof=1) / np.sqrt(x.size)
            lines.append(f"| {q} (truth {truth}) | {name} | {m:.4f} | {m - truth:+.4f} "
                         f"({se_m:.4f}) | {med:.4f} | {med - truth:+.4f} "
                         f"({median_se(x, rng):.4f}) |")
    lines += ["", "Paired difference AGQ - Laplace over the same data sets:", "",
              "| quantity | mean difference (MC SE) | median difference |",
              "|---|---:|---:|"]
    for q in TRUTH:
        dlt = (df[f"agq_{q}"] - df[f"laplace_{q}"]).to_numpy(float)
        dlt = dlt[np.isfinite(dlt)]
        lines.append(f"| {q} | {dlt.mean():+.4f} ({dlt.std(ddof=1) / np.sqrt(dlt.size):.4f})"
                     f" | {np.median(dlt):+.4f} |")
    lines += ["", "| | Laplace | " + f"AGQ({nagq}) |", "|---|---:|---:|"]
    for what, f in (("fits", lambda c: int(df[c + "_seconds"].notna().sum())),
                    ("errors", lambda c: int(df.get(c + "_error", pd.Series(dtype=object))
                                             .notna().sum())),
                    ("singular fits", lambda c: int(df[c + "_singular"].fillna(False).sum())),
                    ("not converged", lambda c: int((~df[c + "_converged"]
                                                     .fillna(True).astype(bool)).sum())),
                    ("median seconds per fit", lambda c: f"{df[c + '_seconds'].median():.3f}"),
                    ("mean seconds per fit", lambda c: f"{df[c + '_seconds'].mean():.3f}")):
        lines.append(f"| {what} | {f('laplace')} | {f('agq')} |")
    gain = (df["agq_llf"] - df["laplace_llf"]).to_numpy(float)
    lines += ["", f"Data sets: {n}.  The AGQ log-likelihood minus the Laplace one at their "
              f"own optima: median {np.median(gain):+.4f}, range [{gain.min():+.4f}, "
              f"{gain.max():+.4f}] (different approximations of the same likelihood: "
              "not a test)."]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nsim", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--groups", type=int, default=80)
    ap.add_argument("--nagq", type=int, default=7)
    ap.add_argument("--check-nagq", type=int, default=11,
                    help="refit the first --check-n data sets with this many points")
    ap.add_argument("--check-n", type=int, default=100)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parent / "results"
                    / "2026-11-30-agq-bias.md")
    a = ap.parse_args(argv)
    from machine import busy_lines, description, is_busy, write_report
    busy = busy_lines(is_busy())        # (a warning and a blank line, or nothing)
    head = description() + ([""] + busy[:-1] if busy else [])
    t0 = time.perf_counter()
    tasks = [(a.seed, i, a.groups, a.nagq, a.check_nagq, a.check_n) for i in range(a.nsim)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(a.processes, initializer=warm_up, initargs=(a.nagq,)) as pool:
        rows = pool.map(one, tasks, chunksize=4)
    wall = time.perf_counter() - t0
    df = pd.DataFrame(rows).sort_values("i")
    csv = a.out.with_suffix(".csv")
    text = "\n".join(
        [f"# Random-slope SD: Laplace vs AGQ({a.nagq}) on sparse binary data", ""] + head
        + ["", f"Command: `python benchmarks/agq_bias.py --nsim {a.nsim} --seed {a.seed} "
           f"--groups {a.groups} --nagq {a.nagq} --check-nagq {a.check_nagq} "
           f"--check-n {a.check_n} --processes {a.processes}`; "
           f"{wall / 60:.1f} min wall clock.", "",
           f"Truth: `y ~ x + (x|g)`, binomial-logit, {a.groups} groups of 3-5 rows "
           f"(uniform), x ~ N(0,1), beta = {BETA}, intercept SD {SD_INT}, slope SD "
           f"{SD_SLOPE}, correlation {CORR}.  Every fit counts (singular ones too).  "
           f"AGQ: the product rule, {a.nagq}^2 = {a.nagq ** 2} nodes per group.  No "
           "peer: R's GLMMadaptive (the one package with AGQ for vector random effects) "
           "is not installed here.", ""]
        + summarise(df, a.nagq) + rule_check(df, a.nagq, a.check_nagq)
        + ["", f"Per-data-set numbers: `{csv.name}`."]) + "\n"
    csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(csv, index=False, float_format="%.6g")
    write_report(text, "agq-bias", out=a.out)


if __name__ == "__main__":
    main()
