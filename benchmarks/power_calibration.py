"""Calibration of ``xlglmm.power`` (issue 19, "Done means: Correctness"): does the
simulated power agree with a power known exactly or from a huge simulation, and does
each test hold its level?

    python benchmarks/power_calibration.py --nsim 4000 --seed 1 --independent 2000
    # ~3 min on 2 cores (busy)

Three studies, each a call of ``xlglmm.power`` (so the numbers do not depend on the
number of processes: simulation i draws from ``SeedSequence(seed, spawn_key=(i,))``):

1. **Exact power of a balanced LMM.**  A cluster-randomised design, 2m clusters of n
   rows, every other cluster treated (``lmm_plan``), ``y ~ trt + (1|g)``, cluster SD
   sb, residual SD s.  For a balanced design the REML fit's t-test of trt with
   Satterthwaite's df is the two-sample t-test on the 2m cluster means (df 2m - 2)
   whenever the cluster variance is estimated above 0, so the power is
   P(|T| > t_crit) for T noncentral t with df 2m - 2 and noncentrality
   delta / sqrt(2 (sb^2 + s^2/n) / m) (``exact_lmm_power``).  A fit is singular when
   the between-cluster mean square falls below the within one: with sb = 1, s = 1,
   n = 5 that has probability P(F(18, 80) < 1 / (1 + 5)) = 4.9e-5 (``singular_chance``),
   so the formula applies to all but about 1 simulation in 20,000.
2. **The workplace-sized Poisson GLMM vs 100,000 simulations** (``poisson_plan``: 20
   plants x 8 months crossed, every other plant trained, exposure 150 + 10 i for
   plant i, offset its log; intercept -3.5, training log 0.7, plant SD 0.4, month SD
   0.2).  The reference, tests/data/power_reference.json, was made once by
   benchmarks/power_reference.py with seeds no run here uses.
3. **Type I error** (effect 0) of the Wald and the likelihood-ratio tests on the
   Poisson design (20 and 40 plants) and on a binomial one (30 clusters of 10 rows,
   every other treated, intercept -0.5, SD 0.6: ``binomial_plan``).  The issue asks
   for 4-6% at 5%.

The report (markdown, with date, machine and command) goes to ``--out`` (default
benchmarks/results/2026-11-30-power-calibration.md) and is printed.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))   # a clone, not installed

import xlglmm  # noqa: E402
from xlglmm.engine.power import clopper_pearson  # noqa: E402

ALPHA = 0.05
REFERENCE = Path(__file__).resolve().parent.parent / "tests" / "data" / "power_reference.json"

# the balanced LMM
LMM_PAIRS, LMM_ROWS, LMM_SD, LMM_SIGMA = 10, 5, 1.0, 1.0       # m pairs: 2m = 20 clusters
LMM_EFFECTS = (0.0, 1.0, 1.5)

# the workplace-sized Poisson GLMM
POISSON_INTERCEPT, POISSON_EFFECT = -3.5, math.log(0.7)
POISSON_SD = {"plant": 0.4, "month": 0.2}
POISSON_FORMULA = "incidents ~ training + (1|plant) + (1|month)"

# the binomial GLMM (its effect in the comparison with lme4: power about 0.7)
BINOMIAL_INTERCEPT, BINOMIAL_SD, BINOMIAL_LME4_EFFECT = -0.5, 0.6, 0.8


def lmm_plan(delta: float, pairs: int = LMM_PAIRS, rows: int = LMM_ROWS,
             sb: float = LMM_SD, s: float = LMM_SIGMA):
    """2 * pairs clusters of ``rows`` rows, every other one treated."""
    d = xlglmm.design_table({"g": 2 * pairs}, rows=rows, split={"trt": ("g", 0.5)})
    return xlglmm.planned_model("y ~ trt + (1|g)", d, "gaussian",
                                fixed={"(Intercept)": 0.0, "trt": float(delta)},
                                sd={"g": sb}, sigma=s)


def exact_lmm_power(delta: float, pairs: int = LMM_PAIRS, rows: int = LMM_ROWS,
                    sb: float = LMM_SD, s: float = LMM_SIGMA, alpha: float = ALPHA) -> float:
    """The two-sided t-test's power on the cluster means: noncentral t, df 2m - 2."""
    df = 2 * pairs - 2
    ncp = delta / math.sqrt(2.0 * (sb ** 2 + s ** 2 / rows) / pairs)
    tc = stats.t.ppf(1.0 - alpha / 2.0, df)
    return float(stats.nct.sf(tc, df, ncp) + stats.nct.cdf(-tc, df, ncp))


def singular_chance(pairs: int = LMM_PAIRS, rows: int = LMM_ROWS, sb: float = LMM_SD,
                    s: float = LMM_SIGMA) -> float:
    """P(the REML cluster variance is 0): the between-cluster mean square (expected
    s^2 + n sb^2) below the within one (s^2), MSB / MSW ~ (1 + n sb^2 / s^2) F."""
    k = 2 * pairs
    return float(stats.f.cdf(1.0 / (1.0 + rows * sb ** 2 / s ** 2), k - 2, k * (rows - 1)))


def poisson_plan(effect: float = POISSON_EFFECT, plants: int = 20, months: int = 8):
    """The workplace-sized design: plants x months crossed, every other plant
    trained, plant i (from 0) with exposure 150 + 10 i (offset its log)."""
    d = xlglmm.design_table({"plant": plants, "month": months},
                            split={"training": ("plant", 0.5)})
    index = np.unique(d["plant"].to_numpy(), return_inverse=True)[1]
    d["lexp"] = np.log(150.0 + 10.0 * index)
    return xlglmm.planned_model(POISSON_FORMULA, d, "poisson",
                                fixed={"(Intercept)": POISSON_INTERCEPT,
                                       "training": float(effect)},
                                sd=dict(POISSON_SD), offset="lexp")


def binomial_plan(effect: float = 0.0, clusters: int = 30, rows: int = 10):
    d = xlglmm.design_table({"g": clusters}, rows=rows, split={"trt": ("g", 0.5)})
    return xlglmm.planned_model("y ~ trt + (1|g)", d, "binomial",
                                fixed={"(Intercept)": BINOMIAL_INTERCEPT, "trt": float(effect)},
                                sd={"g": BINOMIAL_SD})


def quiet(*_args):
    pass


def run(plan, term: str, test: str, nsim: int, seed: int, workers=None):
    """One ``xlglmm.power`` run and its wall-clock seconds."""
    t0 = time.perf_counter()
    r = xlglmm.power(plan, term, test=test, nsim=nsim, seed=seed, workers=workers,
                     progress=quiet)
    return r, time.perf_counter() - t0


def mc_se(p: float, n: int) -> float:
    return math.sqrt(p * (1.0 - p) / n) if n else float("nan")


def inside(value: float, ci, widen: float = 0.0) -> bool:
    return ci[0] - widen <= value <= ci[1] + widen


def load_reference(path: Path = REFERENCE) -> dict:
    return json.loads(Path(path).read_text())


def counts(r) -> str:
    return f"{r.n_used} used, {r.n_failed} failed, {r.n_singular} singular"


def lmm_study(nsim: int, seed: int) -> tuple[list, list]:
    rows, records = ["| trt effect | exact power | simulated | 95% CI (Clopper-Pearson) | "
                     "inside | simulations | seconds |", "|---|---|---|---|---|---|---|"], []
    for k, delta in enumerate(LMM_EFFECTS):
        r, sec = run(lmm_plan(delta), "trt", "wald", nsim, seed + k)
        exact = exact_lmm_power(delta)
        ci = r.conf_int()
        records.append({"effect": delta, "exact": exact, "power": r.power, "ci": ci,
                        "inside": inside(exact, ci), "singular": r.n_singular})
        rows.append(f"| {delta:g} | {exact:.4f} | {r.power:.4f} | {ci[0]:.4f} to {ci[1]:.4f} "
                    f"| {'yes' if inside(exact, ci) else '**no**'} | {counts(r)} | "
                    f"{sec:.1f} |")
    return rows, records


def poisson_study(nsim: int, seed: int, reference: dict) -> tuple[list, list]:
    rows = ["| test | reference (100,000) | its MC SE | simulated | 95% CI | inside the CI "
            "widened by 1.96 reference SEs | mean estimate | SD estimate | mean SE | "
            "simulations | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    records = []
    for test, ref in reference["tests"].items():
        r, sec = run(poisson_plan(), "training", test, nsim, seed)
        ci = r.conf_int()
        ok = inside(ref["power"], ci, 1.96 * ref["mc_se"])
        records.append({"test": test, "reference": ref["power"], "power": r.power, "ci": ci,
                        "inside": ok})
        rows.append(f"| {test} | {ref['power']:.4f} | {ref['mc_se']:.4f} | {r.power:.4f} | "
                    f"{ci[0]:.4f} to {ci[1]:.4f} | {'yes' if ok else '**no**'} | "
                    f"{r.mean_estimate['training']:.4f} | {r.sd_estimate['training']:.4f} | "
                    f"{r.mean_se['training']:.4f} | {counts(r)} | {sec:.1f} |")
    return rows, records


def independent_one(args) -> dict:
    """One data set of the Poisson design drawn by this file's own code (not the
    engine's ``draw_response``: new plant and month effects, Poisson counts at
    exp(eta + offset)) and fitted from scratch by ``xlglmm.glmer`` (no warm start),
    with and without training: the Wald and LR p-values."""
    seed, i = args
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7, i)))
    data = poisson_plan().data.copy()
    plant = np.unique(data["plant"].to_numpy(), return_inverse=True)[1]
    month = np.unique(data["month"].to_numpy(), return_inverse=True)[1]
    b = rng.normal(0.0, POISSON_SD["plant"], plant.max() + 1)
    c = rng.normal(0.0, POISSON_SD["month"], month.max() + 1)
    eta = (POISSON_INTERCEPT + POISSON_EFFECT * data["training"].to_numpy() + b[plant]
           + c[month] + data["lexp"].to_numpy())
    data["incidents"] = rng.poisson(np.exp(eta)).astype(float)
    try:
        full = xlglmm.glmer(POISSON_FORMULA, data, "poisson", offset="lexp",
                            se_method="hessian")
        null = xlglmm.glmer("incidents ~ 1 + (1|plant) + (1|month)", data, "poisson",
                            offset="lexp", se_method="rx")
    except Exception as e:          # counted, not dropped
        return {"failed": f"{type(e).__name__}: {e}"}
    if not (full.converged and null.converged):
        return {"failed": "not converged"}
    lr = max(0.0, 2.0 * (full.llf - null.llf))
    return {"failed": "", "wald": float(full.fe_pvalues["training"]),
            "lrt": float(stats.chi2.sf(lr, 1)), "estimate": float(full.fe_params["training"]),
            "singular": bool(full.singular)}


def independent_study(nsim: int, seed: int, reference: dict, processes: int = 2):
    """The reference against ``nsim`` data sets drawn and fitted without
    ``xlglmm.power`` (``independent_one``), on ``processes`` processes."""
    import multiprocessing
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        out = pool.map(independent_one, [(seed, i) for i in range(nsim)], chunksize=16)
    sec = time.perf_counter() - t0
    ok = [o for o in out if not o["failed"]]
    rows = ["| test | reference (100,000, xlglmm.power) | independent loop | 95% CI | "
            "inside the CI widened by 1.96 reference SEs |", "|---|---|---|---|---|"]
    records = []
    for test, ref in reference["tests"].items():
        k, n = sum(o[test] < ALPHA for o in ok), len(ok)
        ci = clopper_pearson(k, n)
        good = inside(ref["power"], ci, 1.96 * ref["mc_se"])
        records.append({"test": test, "power": k / n, "ci": ci, "inside": good})
        rows.append(f"| {test} | {ref['power']:.4f} | {k / n:.4f} | {ci[0]:.4f} to "
                    f"{ci[1]:.4f} | {'yes' if good else '**no**'} |")
    est = np.array([o["estimate"] for o in ok])
    rows += ["", f"{len(out)} data sets, {len(out) - len(ok)} failed or not converged, "
             f"{sum(o['singular'] for o in ok)} singular; mean estimate {est.mean():.4f}, SD "
             f"{est.std(ddof=1):.4f} (reference: {reference['tests']['wald']['mean_estimate']:.4f}"
             f", {reference['tests']['wald']['sd_estimate']:.4f}); {sec:.1f} s on "
             f"{processes} processes (two fits each, no warm starts)."]
    return rows, records


#: (design, plan, term, clusters - 2: the df of a t reference for the Wald z)
TYPE_ONE = (("Poisson, 20 plants x 8 months", lambda: poisson_plan(0.0), "training", 18),
            ("Poisson, 40 plants x 8 months", lambda: poisson_plan(0.0, plants=40),
             "training", 38),
            ("binomial, 30 clusters x 10 rows", lambda: binomial_plan(0.0), "trt", 28))


def type_one_study(nsim: int, seed: int) -> tuple[list, list]:
    """Rejections at effect 0; for the Wald z also with a t reference of df clusters -
    2 (|z| > t_0.975(df), from the same simulations: what a small-sample Wald test
    would reject)."""
    rows = ["| design | test | rejections at 5% | MC SE | 95% CI | within 4-6% | "
            "Wald z against t(clusters - 2) | SD of the estimate | mean SE | simulations | "
            "seconds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    records = []
    for name, plan, term, df in TYPE_ONE:
        for test in ("wald", "lrt"):
            r, sec = run(plan(), term, test, nsim, seed)
            ci = r.conf_int()
            ok = 0.04 <= r.power <= 0.06
            t_rate = ""
            if test == "wald":
                z = stats.norm.isf(r.pvalues / 2.0)
                q = float(np.mean(z > stats.t.ppf(1.0 - ALPHA / 2.0, df)))
                t_rate = f"{100 * q:.2f}% ({100 * mc_se(q, r.n_used):.2f}%), df {df}"
            records.append({"design": name, "test": test, "rate": r.power,
                            "mc_se": mc_se(r.power, r.n_used), "ci": ci, "ok": ok})
            rows.append(f"| {name} | {test} | {100 * r.power:.2f}% | "
                        f"{100 * mc_se(r.power, r.n_used):.2f}% | {100 * ci[0]:.2f}% to "
                        f"{100 * ci[1]:.2f}% | {'yes' if ok else '**no**'} | {t_rate} | "
                        f"{r.sd_estimate[term]:.4f} | {r.mean_se[term]:.4f} | {counts(r)} | "
                        f"{sec:.1f} |")
    return rows, records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsim", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--independent", type=int, default=2000,
                    help="data sets of the independent loop (0: none)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" /
                                         "2026-11-30-power-calibration.md"))
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import busy_lines, description, is_busy, load_average
    machine, busy = description(), is_busy()
    reference = load_reference()
    t0 = time.perf_counter()
    lmm_rows, _ = lmm_study(args.nsim, args.seed)
    poisson_rows, _ = poisson_study(args.nsim, args.seed, reference)
    type_one_rows, _ = type_one_study(args.nsim, args.seed)
    independent_rows = (independent_study(args.independent, args.seed, reference)[0]
                        if args.independent else ["(not run: --independent 0)"])
    minutes = (time.perf_counter() - t0) / 60.0
    ref_cmd = reference["command"]
    text = "\n".join([
        f"# Calibration of xlglmm.power ({time.strftime('%Y-%m-%d')})", "",
        f"`python benchmarks/power_calibration.py --nsim {args.nsim} --seed {args.seed} "
        f"--independent {args.independent}` "
        f"({minutes:.1f} min; xlglmm.power's default workers, 2 local processes)", "",
        *busy_lines(busy), *machine, f"- load average at the end: {load_average()}", "",
        "## 1. A balanced LMM against its exact power", "",
        f"`y ~ trt + (1|g)`, {2 * LMM_PAIRS} clusters of {LMM_ROWS} rows, every other "
        f"cluster treated; cluster SD {LMM_SD:g}, residual SD {LMM_SIGMA:g}; Wald test = "
        "REML t-test with Satterthwaite's df.  Exact: the noncentral t of the cluster "
        f"means' t-test (df {2 * LMM_PAIRS - 2}), which the REML test equals whenever the "
        "fit is not singular; the chance of a singular fit here is "
        f"{singular_chance():.1e}.  Simulation seeds {args.seed}, {args.seed + 1}, "
        f"{args.seed + 2}.", "", *lmm_rows, "",
        "## 2. The workplace-sized Poisson GLMM against 100,000 simulations", "",
        f"`{POISSON_FORMULA}`, offset log(150 + 10 i) for plant i = 0..19, 20 plants x 8 "
        f"months, every other plant trained; intercept {POISSON_INTERCEPT:g}, training "
        f"log 0.7, SDs plant {POISSON_SD['plant']:g}, month {POISSON_SD['month']:g}.  "
        f"Reference: tests/data/power_reference.json (`{ref_cmd}`, "
        f"{reference['machine'][0][2:]}), seed {reference['seed']}; here seed "
        f"{args.seed}.", "", *poisson_rows, "",
        "The same reference against a loop that does not use xlglmm.power: each data set "
        "drawn by this script's own numpy code and fitted from scratch by xlglmm.glmer "
        "(Wald: the Hessian's SE, as power's; LRT: against the fit without training).  "
        f"Seed {args.seed}, streams (7, i).", "", *independent_rows, "",
        "## 3. Type I error at 5% (effect 0)", "",
        "The issue asks for 4-6%.  Binomial: `y ~ trt + (1|g)`, intercept "
        f"{BINOMIAL_INTERCEPT:g}, SD {BINOMIAL_SD:g}.  Seed {args.seed}.  With 20-30 "
        "clusters the asymptotic tests (Wald z: normal reference; LRT: chi-square) reject "
        "too often, as lme4's do: the SE of a cluster-level effect is estimated from few "
        "clusters (the mean SE is below the estimates' SD) and the normal reference "
        "ignores that (P(|t_18| > 1.96) = 6.6%).  Twice the plants bring both closer to "
        "5%; the column 'Wald z against t' is the same simulations judged against a t "
        "with clusters - 2 df.", "",
        *type_one_rows, ""])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
