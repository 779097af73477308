"""Power by simulation (issue 19), xlglmm and the plain lme4 loop side by side in one run.

    python benchmarks/power_speed.py              # lme4 and xlglmm at 200 simulations,
                                                  # xlglmm at 1,000 too, then the headline

Two planned studies (the designs of tests/engine/test_power_lme4.py): the
workplace-sized Poisson study (20 plants crossed with 8 months, training on every
other plant, an offset; training log(0.7)) and a Bernoulli one (30 groups of 10,
treatment on every other group; trt 0.8), each by the Wald z-test and by the
likelihood-ratio test (the null model refitted).  lme4's side is
``Rscript benchmarks/power_lme4.R <design> <test> <nsim> <seed>``: a plain loop
(new random effects and responses with R's RNG, glmer's default fit, summary's z-test
or anova(null, full)), single-threaded, R and lme4 loaded before its clock starts.
xlglmm's side is ``xlglmm.power(plan, term, test=, nsim=, seed=)`` on 1 worker (this
process) and on the 2 cores (``workers=2``), each timed on the wall clock around the
call (the pilot fits and the start of the processes included), after a warm-up (Numba's
compilation not counted).  Everything runs one after the other, never two heavy jobs at
once, a design and test's lme4 run right before its xlglmm runs (so the two share the
machine's load); the one-thread runs are timed in CPU time too (the process's user +
system time, which other work on a shared machine does not inflate).

The headline: the workplace-sized design, 1,000 simulations, LRT, on the 2 cores
(issue 19: under 30 s), and the same run on a 2-worker Dask LocalCluster, whose power,
rejections and estimates must be identical (the script stops with an error if not).
The powers are set beside lme4's reference (tests/data/power_lme4.json, 2,000
simulations each) with the Monte Carlo error of their difference.  The report, with the
date, the machine and the versions, goes to
``benchmarks/results/<date>-<host>-power-speed.md`` and is printed.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE.parent))      # a clone, not installed (0: this folder)

import xlglmm                                               # noqa: E402
from machine import busy_lines, description, is_busy, write_report  # noqa: E402
from power_calibration import BINOMIAL_LME4_EFFECT, binomial_plan, poisson_plan  # noqa: E402

R_SCRIPT = HERE / "power_lme4.R"
REFERENCE = HERE.parent / "tests" / "data" / "power_lme4.json"
SEED = 1


DESIGNS = {"poisson": (poisson_plan, "training", "Poisson, 20 plants × 8 months crossed, "
                       "offset, 160 rows"),
           "binomial": (functools.partial(binomial_plan, BINOMIAL_LME4_EFFECT), "trt",
                        "Bernoulli, 30 groups × 10 rows, 300 rows")}
TESTS = ("wald", "lrt")


def lme4_run(design: str, test: str, nsim: int) -> dict:
    """The R loop's JSON, or {"error": why}."""
    if not shutil.which("Rscript"):
        return {"error": "Rscript is not installed"}
    run = subprocess.run(["Rscript", str(R_SCRIPT), design, test, str(nsim), str(SEED)],
                         capture_output=True, text=True, timeout=7200)
    if run.returncode != 0:
        err = run.stderr.strip().splitlines()
        return {"error": err[-1] if err else f"Rscript exited with {run.returncode}"}
    return json.loads(run.stdout.strip().splitlines()[-1])


class Timed(NamedTuple):
    result: object
    seconds: float          # wall clock
    cpu: float              # this process's CPU time (all of it on 1 worker)


def timed_power(plan, term, test, nsim, **kw) -> Timed:
    t0, c0 = time.perf_counter(), time.process_time()
    res = xlglmm.power(plan, term, test=test, nsim=nsim, seed=SEED,
                       progress=lambda *_: None, **kw)
    return Timed(res, time.perf_counter() - t0, time.process_time() - c0)


def side_by_side(nsim: int, big: int) -> tuple:
    """Per (design, test), one after the other: the R loop (``nsim``), then xlglmm at
    ``nsim`` and ``big`` simulations on 1 and 2 workers (so both sides of a row run
    under the same load).  (lme4's JSON per (design, test), xlglmm's Timed per
    (design, test, nsim, workers))."""
    plans = {d: make() for d, (make, _, _) in DESIGNS.items()}
    for d, (_, term, _) in DESIGNS.items():            # warm-up: compiles the kernels
        for test in TESTS:
            xlglmm.power(plans[d], term, test=test, nsim=5, seed=SEED, workers=1,
                         progress=lambda *_: None)
    theirs, ours = {}, {}
    for d, (_, term, _) in DESIGNS.items():
        for test in TESTS:
            print(f"lme4 {d} {test} ...", file=sys.stderr, flush=True)
            theirs[d, test] = lme4_run(d, test, nsim)
            for n in (nsim, big):
                for w in (1, 2):
                    print(f"xlglmm {d} {test} nsim {n} workers {w} ...", file=sys.stderr,
                          flush=True)
                    ours[d, test, n, w] = timed_power(plans[d], term, test, n, workers=w)
    return theirs, ours


def cluster_side(big: int) -> tuple:
    """The headline run on a 2-worker Dask LocalCluster: (result, seconds, seconds to
    start the cluster)."""
    from distributed import Client, LocalCluster
    plan = poisson_plan()
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        started = time.perf_counter() - t0
        xlglmm.power(plan, "training", test="lrt", nsim=4, seed=SEED, client=client,
                     progress=lambda *_: None)          # the workers load the kernels
        run = timed_power(plan, "training", "lrt", big, client=client)
    return run.result, run.seconds, started


def same_numbers(a, b) -> bool:
    return (a.power == b.power and a.n_used == b.n_used and a.n_failed == b.n_failed
            and np.array_equal(a.rejected, b.rejected)
            and np.array_equal(a.pvalues, b.pvalues, equal_nan=True)
            and np.array_equal(a.estimates.to_numpy(), b.estimates.to_numpy())
            and np.array_equal(a.ses.to_numpy(), b.ses.to_numpy()))


def mc_bound(p1, n1, p2, n2) -> float:
    """2.58 SDs of the difference of two independent binomial proportions (pooled p)."""
    p = (p1 * n1 + p2 * n2) / (n1 + n2)
    return 2.58 * math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))


def report(ours, theirs, headline, cluster, args, header, busy) -> str:
    n, big = args.nsim, args.big
    lines = ["# Power by simulation: xlglmm and the lme4 loop", "", *header,
             f"- command: `python benchmarks/power_speed.py --nsim {n} --big {big}`", ""]
    lines += busy_lines(busy)
    lines += [f"lme4: `Rscript benchmarks/power_lme4.R <design> <test> {n} {SEED}` (a plain "
              "loop, glmer's default fit, one thread; R and lme4 loaded before the clock "
              "starts).  xlglmm: `xlglmm.power(plan, term, test=, nsim=, seed=1, "
              "workers=)` after a warm-up, timed around the call (pilot fits and process "
              "start included).  Each row's runs follow each other (lme4's, then xlglmm's), "
              "so they share the machine's load.  Milliseconds per simulation on the wall "
              "clock, and in CPU time (the process's own user + system time, which other "
              "work on a shared machine does not inflate; one-thread runs only).  The ratios "
              "(×) are lme4's per simulation over xlglmm's: wall / CPU.", "",
              f"| design | test | lme4, {n} sims: wall / CPU | xlglmm 1 worker, {n}: wall / "
              f"CPU | × | xlglmm 2 workers, {n}: wall | × | xlglmm 1 worker, {big}: wall / CPU "
              f"| × | xlglmm 2 workers, {big}: wall | × |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d, (_, _, what) in DESIGNS.items():
        for test in TESTS:
            r = theirs[d, test]
            ok = "error" not in r
            cells = [f"{r['seconds_per_simulation'] * 1000:.0f} / "
                     f"{r['cpu_seconds_per_simulation'] * 1000:.0f} ms" if ok else r["error"]]
            for nn in (n, big):
                for w in (1, 2):
                    t = ours[d, test, nn, w]
                    per, cpu = t.seconds / nn, t.cpu / nn
                    if w == 1:
                        cells += [f"{per * 1000:.1f} / {cpu * 1000:.1f} ms",
                                  f"{r['seconds_per_simulation'] / per:.0f}× / "
                                  f"{r['cpu_seconds_per_simulation'] / cpu:.0f}×" if ok else ""]
                    else:
                        cells += [f"{per * 1000:.1f} ms ({t.seconds:.1f} s)",
                                  f"{r['seconds_per_simulation'] / per:.0f}×" if ok else ""]
            lines.append(f"| {what} | {test} | " + " | ".join(cells) + " |")
    lines += ["", "Powers in the same runs (seed 1 on both sides; R's RNG and numpy's differ, "
              "so the two are independent estimates):", "",
              f"| design | test | lme4, {n} | xlglmm, {n} | xlglmm, {big} | lme4 failures / "
              f"convergence warnings / singular | xlglmm failed / singular ({big}) |",
              "|---|---|---|---|---|---|---|"]
    for d, (_, _, what) in DESIGNS.items():
        for test in TESTS:
            r = theirs[d, test]
            small = ours[d, test, n, 1].result
            res = ours[d, test, big, 1].result
            rr = "—" if "error" in r else f"{r['power']:.3f}"
            rf = "—" if "error" in r else (f"{r['failures']} / {r['convergence_warnings']} / "
                                           f"{r['singular']}")
            lines.append(f"| {what} | {test} | {rr} | {small.power:.3f} | {res.power:.3f} | "
                         f"{rf} | {res.n_failed} / {res.n_singular} |")
    if REFERENCE.exists():
        ref = json.loads(REFERENCE.read_text())
        lines += ["", "Against lme4's reference (tests/data/power_lme4.json: 2,000 "
                  "simulations each, seed 2026): agreement means |xlglmm − lme4| ≤ 2.58 SDs "
                  "of the difference of two independent binomial proportions.", "",
                  f"| design | test | lme4 (2,000) | xlglmm ({big}) | difference | "
                  "2.58 SD bound | lme4 mean estimate | xlglmm mean estimate |",
                  "|---|---|---|---|---|---|---|---|"]
        for d, (_, term, what) in DESIGNS.items():
            for test in TESTS:
                r = ref.get(f"{d}_{test}")
                if r is None:
                    continue
                res = ours[d, test, big, 1].result
                b = mc_bound(res.power, res.n_used, r["power"], r["n_used"])
                lines.append(f"| {what} | {test} | {r['power']:.4f} | {res.power:.4f} | "
                             f"{res.power - r['power']:+.4f} | {b:.4f} | "
                             f"{r['mean_estimate']:.4f} | {res.mean_estimate[term]:.4f} |")
    h, h_sec, _ = headline
    c, c_sec, started = cluster
    lo, hi = h.conf_int()
    lines += ["", "## Headline", "",
              f"The workplace-sized design (20 plants × 8 months, offset), {big:,} "
              f"simulations, LRT, on the 2 cores (`workers=2`): **{h_sec:.1f} s** "
              f"(issue 19: under 30 s); power {h.power:.3f} (95% CI {lo:.3f} to {hi:.3f}), "
              f"{h.n_failed} failed, {h.n_singular} singular; ran: {h.where}.", "",
              f"The same on a 2-worker Dask LocalCluster (one thread each): {c_sec:.1f} s "
              f"(cluster started in {started:.1f} s, not counted); ran: {c.where}.  "
              "Power, rejections, p-values, estimates and SEs identical to the 2-core run: "
              f"**{same_numbers(h, c)}**."]
    r = theirs["poisson", "lrt"]
    if "error" not in r:
        per_r, cpu_r = r["seconds_per_simulation"], r["cpu_seconds_per_simulation"]
        one = ours["poisson", "lrt", big, 1]
        lines += ["", f"lme4's loop on the same design and test: {per_r:.3f} s per simulation "
                  f"on the wall clock ({cpu_r:.3f} s CPU; its {n}), so {big:,} simulations ≈ "
                  f"{per_r * big:.0f} s on one thread: xlglmm's 2-core headline is "
                  f"{per_r * big / h_sec:.0f}× faster, its 1-worker run ({one.seconds:.1f} s, "
                  f"{one.cpu:.1f} s CPU) {per_r * big / one.seconds:.0f}× on the wall clock and "
                  f"{cpu_r * big / one.cpu:.0f}× in CPU time (issue 19: ≥ 20×)."]
        lines += ["", f"Versions: R {r['R']}, lme4 {r['lme4']}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nsim", type=int, default=200,
                    help="simulations of the side-by-side timing (both sides)")
    ap.add_argument("--big", type=int, default=1000, help="xlglmm's larger run")
    ap.add_argument("--out", type=Path, default=None,
                    help="report file (default benchmarks/results/<date>-<host>-power-speed.md)")
    args = ap.parse_args(argv)
    if min(args.nsim, args.big) < 1:
        ap.error("--nsim and --big must be >= 1")
    busy = is_busy()
    header = description()
    theirs, ours = side_by_side(args.nsim, args.big)
    headline = ours["poisson", "lrt", args.big, 2]
    print("xlglmm on a LocalCluster ...", file=sys.stderr, flush=True)
    cluster = cluster_side(args.big)
    text = report(ours, theirs, headline, cluster, args, header, busy)
    write_report(text, "power-speed", args.out)
    if not same_numbers(headline.result, cluster[0]):
        raise SystemExit("the LocalCluster run's numbers differ from the 2-core run's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
