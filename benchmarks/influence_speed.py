"""The influence of each level (leave-one-level-out refits), xlglmm and lme4 side by
side in one run.

    python benchmarks/influence_speed.py              # 5 repetitions of xlglmm, 3 of lme4

lme4's ``influence(m, groups = "plant")`` on the workplace-safety model (Poisson,
plant and month crossed, an offset; 20 refits) and ``influence(m, groups =
"Subject")`` on sleepstudy (an LMM with a random slope; 18 refits), against
``res.influence(group)``: each timed on a fresh fit, xlglmm's median of ``--reps``
after a warm-up (Numba's compilation not counted), lme4's median of ``--lme4-reps``
(R and lme4 loaded before the clock starts: ``Rscript benchmarks/influence_lme4.R``).
xlglmm runs as called by default (it decides itself whether processes pay: for
refits this fast they stay in this process, which the report says).  The two sets of
DFBETAS and Cook's distances are compared too.  The table, with the date, the
machine and the versions, goes to ``benchmarks/results/<date>-<host>-influence.md``
and is printed.
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

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE.parent))      # a clone, not installed (0: this folder)

import xlglmm                                               # noqa: E402
from machine import busy_lines, description, is_busy, write_report  # noqa: E402
from xlglmm.workbook.templates import dataset               # noqa: E402

R_SCRIPT = HERE / "influence_lme4.R"
DATA = HERE.parent / "xlglmm" / "data"


def fit_workplace():
    data = dataset("workplace_safety")
    return xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", data, "poisson",
                        offset=np.log(data["employees"].to_numpy(float)))


def fit_sleepstudy():
    data = dataset("sleepstudy")
    data["Subject"] = data["Subject"].astype(str)
    return xlglmm.lmer("Reaction ~ Days + (Days|Subject)", data)


# (the bars escaped: the descriptions are cells of a markdown table)
CASES = {"workplace": (fit_workplace, "plant", "Poisson GLMM, `incidents ~ training + "
                       "(1\\|plant) + (1\\|month)`, offset log(employees), 160 rows"),
         "sleepstudy": (fit_sleepstudy, "Subject", "LMM (REML), `Reaction ~ Days + "
                        "(Days\\|Subject)`, 180 rows")}


def xlglmm_side(reps: int) -> dict:
    """Per case: the seconds of each repetition (a fresh fit each), the last table
    and where its refits ran."""
    out = {}
    for name, (fit, group, _) in CASES.items():
        fit().influence(group)              # warm-up: compiles what the refits use
        seconds = []
        for _ in range(reps):
            res = fit()
            t0 = time.perf_counter()
            table = res.influence(group)
            seconds.append(time.perf_counter() - t0)
        out[name] = {"seconds": seconds, "table": table}
    return out


def lme4_side(reps: int) -> dict:
    if not shutil.which("Rscript"):
        return {"error": "Rscript is not installed"}
    out = subprocess.run(["Rscript", str(R_SCRIPT), str(DATA / "workplace_safety.csv"),
                          str(DATA / "sleepstudy.csv"), str(reps)],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip()
                else f"Rscript exited with {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])    # the script's last line


def agreement(table, theirs: dict) -> tuple:
    """The largest |difference| of the DFBETAS and of Cook's distances, level by level."""
    ours = table.loc[theirs["levels"]]
    dfbetas = ours[[c for c in ours.columns if c.startswith("dfbetas_")]].to_numpy()
    return (float(np.abs(dfbetas - np.array(theirs["dfbetas"])).max()),
            float(np.abs(ours["cooks_distance"].to_numpy()
                         - np.array(theirs["cooks_distance"])).max()))


def report(ours: dict, theirs: dict, args, header: list, busy: bool) -> str:
    med = statistics.median
    lines = ["# Influence of each level: xlglmm and lme4", "", *header,
             f"- command: `python benchmarks/influence_speed.py --reps {args.reps} "
             f"--lme4-reps {args.lme4_reps}`", ""]
    lines += busy_lines(busy)
    lines += ["Each timing starts from a fresh fit; xlglmm's after a warm-up (Numba's "
              "compilation not counted).  lme4: `influence(m, groups = g)`; xlglmm: "
              "`res.influence(g)` (every level refitted without its rows, warm-started "
              "from the fit; DFBETAS and Cook's distance as lme4 defines them).", "",
              "| model | group (refits) | xlglmm | lme4 | lme4 / xlglmm | largest difference: "
              "DFBETAS, Cook's D |", "|---|---|---|---|---|---|"]
    for name, (_, group, what) in CASES.items():
        o = ours[name]
        t_ours = med(o["seconds"])
        n = o["table"].attrs["n_levels"]
        if "error" in theirs:
            lines.append(f"| {what} | {group} ({n}) | {t_ours:.3f} s | {theirs['error']} | | |")
            continue
        t_lme4 = med(theirs[name]["seconds"])
        d_beta, d_cook = agreement(o["table"], theirs[name])
        lines.append(f"| {what} | {group} ({n}) | {t_ours:.3f} s | {t_lme4:.2f} s | "
                     f"{t_lme4 / t_ours:.0f}× | {d_beta:.1e}, {d_cook:.1e} |")
    lines += ["", "xlglmm's refits ran: " + "; ".join(
        f"{name} {ours[name]['table'].attrs['where']}" for name in CASES) + "."]
    if "error" not in theirs:
        lines += ["", f"Versions: R {theirs['versions']['R']}, lme4 "
                  f"{theirs['versions']['lme4']}."]
    lines += ["", "Raw seconds: " + "; ".join(
        f"{name}: xlglmm " + ", ".join(f"{s:.3f}" for s in ours[name]["seconds"])
        + ("" if "error" in theirs else
           ", lme4 " + ", ".join(f"{s:.2f}" for s in theirs[name]["seconds"]))
        for name in CASES) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="xlglmm repetitions (median)")
    ap.add_argument("--lme4-reps", type=int, default=3, help="lme4 repetitions (median)")
    ap.add_argument("--no-lme4", action="store_true", help="xlglmm only")
    ap.add_argument("--out", type=Path, default=None,
                    help="report file (default benchmarks/results/<date>-<host>-influence.md)")
    args = ap.parse_args(argv)
    if min(args.reps, args.lme4_reps) < 1:
        ap.error("--reps and --lme4-reps must be >= 1")
    busy = is_busy()
    header = description()
    print("xlglmm ...", file=sys.stderr, flush=True)
    ours = xlglmm_side(args.reps)
    if args.no_lme4:
        theirs = {"error": "not run (--no-lme4)"}
    else:
        print("lme4 ...", file=sys.stderr, flush=True)
        theirs = lme4_side(args.lme4_reps)
    write_report(report(ours, theirs, args, header, busy), "influence", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
