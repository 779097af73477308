"""Intervals on the workplace-safety model, xlglmm and lme4 side by side in one run.

    python benchmarks/intervals_speed.py                    # lme4's bootMer: 200 replicates
    python benchmarks/intervals_speed.py --lme4-nsim 1000   # lme4's real 1000 (~ 2.5 min)

* **profile**: lme4's ``confint(m, method = "profile")`` against
  ``res.conf_int(method="profile")``, every parameter (the two SDs and the two fixed
  effects), each on a fresh fit so that nothing is cached; median of ``--reps`` for
  xlglmm (after one warm-up, so Numba's compilation is not counted), of
  ``--lme4-reps`` for lme4.  The two sets of limits are compared too.
* **bootstrap**: lme4's ``bootMer(m, function(x) c(fixef(x), getME(x, "theta")),
  nsim = N)`` against ``res.bootstrap(--nsim)`` (default 1000; median of ``--reps``).
  lme4 runs ``--lme4-nsim`` replicates (default 200: 1000 take minutes); its time per
  replicate and the extrapolation to ``--nsim`` are reported, labelled as such.

lme4 runs in ``Rscript benchmarks/intervals_lme4.R`` (R and lme4 loaded before the
clock starts).  The table, with the date, the machine and the versions, goes to
``benchmarks/results/<date>-<host>-intervals.md`` and is printed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE.parent))      # a clone, not installed (0: this folder)

from coverage_study import fit                              # noqa: E402  (beside this)
from machine import busy_lines, description, is_busy, write_report  # noqa: E402
from xlglmm.workbook.templates import dataset               # noqa: E402

R_SCRIPT = HERE / "intervals_lme4.R"


def xlglmm_side(data, reps: int, nsim: int, seed: int) -> dict:
    """Median seconds of the profile intervals and of the bootstrap, each on a fresh
    fit, after a warm-up that compiles what they use."""
    warm = fit(data)
    warm.conf_int(method="profile")
    warm.bootstrap(5, seed=seed)
    profile_s, boot_s = [], []
    for _ in range(reps):
        res = fit(data)
        t0 = time.perf_counter()
        ci = res.conf_int(method="profile")
        profile_s.append(time.perf_counter() - t0)
    for _ in range(reps):
        res = fit(data)
        t0 = time.perf_counter()
        boot = res.bootstrap(nsim, seed=seed)
        boot_s.append(time.perf_counter() - t0)
    return {"profile_seconds": profile_s, "boot_seconds": boot_s, "profile_ci": ci,
            "boot_failed": boot.failed, "boot_singular": boot.singular}


def lme4_side(csv: Path, reps: int, nsim: int, seed: int) -> dict:
    if not shutil.which("Rscript"):
        return {"error": "Rscript is not installed"}
    out = subprocess.run(["Rscript", str(R_SCRIPT), str(csv), str(reps), str(nsim),
                          str(seed)], capture_output=True, text=True, timeout=7200)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip()
                else f"Rscript exited with {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])    # the script's last line


def limits_agreement(ours, theirs: dict) -> float:
    """The largest difference between the two sets of profile limits, as a fraction
    of lme4's interval's width."""
    worst = 0.0
    for name, lo, hi in zip(theirs["names"], theirs["lower"], theirs["upper"]):
        width = hi - lo
        worst = max(worst, abs(ours.loc[name, "lower"] - lo) / width,
                    abs(ours.loc[name, "upper"] - hi) / width)
    return worst


def report(ours: dict, theirs: dict, args, header: list, busy: bool) -> str:
    med = statistics.median
    p_ours, b_ours = med(ours["profile_seconds"]), med(ours["boot_seconds"])
    lines = ["# Intervals on the workplace-safety model: xlglmm and lme4", "", *header,
             f"- command: `python benchmarks/intervals_speed.py --reps {args.reps} "
             f"--nsim {args.nsim} --lme4-reps {args.lme4_reps} --lme4-nsim {args.lme4_nsim}"
             f" --seed {args.seed}`", ""]
    lines += busy_lines(busy)
    lines += ["Model: `incidents ~ training + (1|plant) + (1|month)`, Poisson, offset "
              "log(employees), 160 rows.  Each timing starts from a fresh fit; xlglmm's "
              "after a warm-up (Numba's compilation not counted).", "",
              "| task | xlglmm | lme4 | lme4 / xlglmm |", "|---|---|---|---|"]
    if "error" in theirs:
        lines += [f"| profile CIs, all 4 parameters | {p_ours:.3f} s | {theirs['error']} | |",
                  f"| parametric bootstrap, {args.nsim} replicates | {b_ours:.2f} s | | |"]
        return "\n".join(lines) + "\n"
    p_lme4 = med(theirs["profile_seconds"])
    lines.append(f"| profile CIs, all 4 parameters (median of {args.reps} / "
                 f"{len(theirs['profile_seconds'])}) | {p_ours:.3f} s | {p_lme4:.2f} s | "
                 f"{p_lme4 / p_ours:.0f}× |")
    n_lme4 = theirs["boot_nsim"]
    if n_lme4:
        b_lme4 = theirs["boot_seconds"]
        per = b_lme4 / n_lme4
        lines.append(f"| parametric bootstrap, per replicate | {1e3 * b_ours / args.nsim:.1f} ms"
                     f" | {1e3 * per:.0f} ms ({n_lme4} replicates) | "
                     f"{per / (b_ours / args.nsim):.0f}× |")
        if n_lme4 == args.nsim:
            lines.append(f"| parametric bootstrap, {args.nsim} replicates (median of "
                         f"{args.reps} / 1) | {b_ours:.2f} s | {b_lme4:.1f} s | "
                         f"{b_lme4 / b_ours:.0f}× |")
        else:
            lines.append(f"| parametric bootstrap, {args.nsim} replicates (median of "
                         f"{args.reps}) | {b_ours:.2f} s | **extrapolated** from {n_lme4}: "
                         f"{per * args.nsim:.0f} s | {per * args.nsim / b_ours:.0f}× "
                         "(extrapolated) |")
    lines += ["", f"Profile limits: the largest difference from lme4's is "
              f"{100 * limits_agreement(ours['profile_ci'], theirs['profile_ci']):.2g}% of lme4's "
              "interval's width.  Bootstrap refits: xlglmm "
              f"{ours['boot_failed']} failed, {ours['boot_singular']} singular (of "
              f"{args.nsim}); lme4 {theirs['boot_failed']} failed (of {n_lme4}).",
              "", f"Versions: R {theirs['versions']['R']}, lme4 {theirs['versions']['lme4']}.",
              "", "Raw seconds: xlglmm profile "
              + ", ".join(f"{s:.3f}" for s in ours["profile_seconds"])
              + "; bootstrap " + ", ".join(f"{s:.2f}" for s in ours["boot_seconds"])
              + "; lme4 profile " + ", ".join(f"{s:.2f}" for s in theirs["profile_seconds"])
              + (f"; bootMer {theirs['boot_seconds']:.1f}" if n_lme4 else "") + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="xlglmm repetitions (median)")
    ap.add_argument("--nsim", type=int, default=1000, help="xlglmm's bootstrap replicates")
    ap.add_argument("--lme4-reps", type=int, default=1, help="lme4 profile repetitions")
    ap.add_argument("--lme4-nsim", type=int, default=200,
                    help="lme4's bootMer replicates (default 200; 0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-lme4", action="store_true", help="xlglmm only")
    ap.add_argument("--out", type=Path, default=None,
                    help="report file (default benchmarks/results/<date>-<host>-intervals.md)")
    args = ap.parse_args(argv)
    if min(args.reps, args.nsim, args.lme4_reps) < 1 or args.lme4_nsim < 0 or args.seed < 0:
        ap.error("--reps, --nsim and --lme4-reps must be >= 1, --lme4-nsim and --seed >= 0")
    busy = is_busy()
    header = description()
    data = dataset("workplace_safety")
    print("xlglmm ...", file=sys.stderr, flush=True)
    ours = xlglmm_side(data, args.reps, args.nsim, args.seed)
    if args.no_lme4:
        theirs = {"error": "not run (--no-lme4)"}
    else:
        print("lme4 ...", file=sys.stderr, flush=True)
        theirs = lme4_side(HERE.parent / "xlglmm" / "data" / "workplace_safety.csv",
                           args.lme4_reps, args.lme4_nsim, args.seed)
    text = report(ours, theirs, args, header, busy)
    write_report(text, "intervals", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
