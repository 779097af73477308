"""Is a change slower?  The benchmark of two revisions, side by side in one run.

    python benchmarks/compare_revisions.py BASE_REV [--rounds 2] [--sizes 1e3 1e4]

Checks ``BASE_REV`` out into a temporary git worktree and runs ``benchmarks/bench.py
--no-lme4`` there and in this working tree, alternating (base, new, base, new, ...) so
that a change in the machine's load hits both alike; each fit's time is the median of
its rounds.  Writes ``benchmarks/results/<date>-<host>-revisions.md`` with, per model,
both times, new/base, and both log-likelihoods (a speed-up must not come from another
optimum).  lme4 is not run: its time is the same for both, so new/base is the change
in the ratio to lme4 that the main benchmark reports.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_bench(tree: Path, out: Path, extra: list) -> list:
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run([sys.executable, str(tree / "benchmarks" / "bench.py"), "--no-lme4",
                    "--out", str(out), *extra], check=True, env=env, cwd=tree,
                   stdout=subprocess.DEVNULL)
    (path,) = out.glob("*.json")
    rows = json.loads(path.read_text())
    path.unlink()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="git revision to compare against (e.g. a commit)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", nargs="*", default=["1e3", "1e4", "1e5"])
    ap.add_argument("--reps", default="3")
    ap.add_argument("--out", default=str(HERE / "results"))
    a = ap.parse_args(argv)
    extra = ["--sizes", *a.sizes, "--reps", a.reps]
    tmp = Path(tempfile.mkdtemp())
    base_tree = tmp / "base"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base_tree), a.base],
                   check=True, cwd=ROOT)
    times: dict = {"base": {}, "new": {}}
    llf: dict = {"base": {}, "new": {}}
    try:
        for r in range(a.rounds):
            for who, tree in (("base", base_tree), ("new", ROOT)):
                out = tmp / f"{who}{r}"
                out.mkdir()
                for row in run_bench(tree, out, extra):
                    times[who].setdefault(row["model"], []).append(row["xlglmm_s"])
                    llf[who][row["model"]] = row["xlglmm_llf"]
                print(f"round {r + 1}: {who} done", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT)
        shutil.rmtree(tmp, ignore_errors=True)
    base_rev = subprocess.run(["git", "rev-parse", "--short", a.base], capture_output=True,
                              text=True, cwd=ROOT).stdout.strip()
    new_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=ROOT).stdout.strip()
    lines = [f"# xlglmm, {base_rev} (base) against {new_rev} (new), side by side",
             "",
             f"{dt.date.today()} on {platform.node()} ({os.cpu_count()} cores), "
             f"`python benchmarks/compare_revisions.py {a.base} --rounds {a.rounds}`: "
             f"each time the median of {a.rounds} rounds (each round itself a median of "
             f"{a.reps} fits below 1e5 rows), base and new alternating.",
             "",
             "| model | base s | new s | new/base | base logLik | new logLik |",
             "|---|---|---|---|---|---|"]
    ratios = []
    for model in times["base"]:
        tb = statistics.median(x for x in times["base"][model] if x)
        tn = statistics.median(x for x in times["new"].get(model, []) if x)
        ratios.append(tn / tb)
        lines.append(f"| {model} | {tb:.4f} | {tn:.4f} | {tn / tb:.3f} | "
                     f"{llf['base'][model]:.6f} | {llf['new'].get(model, float('nan')):.6f} |")
    lines += ["", f"Geometric mean of new/base: "
              f"{statistics.geometric_mean(ratios):.3f} over {len(ratios)} models."]
    text = "\n".join(lines) + "\n"
    path = Path(a.out) / f"{dt.date.today()}-{platform.node().split('.')[0]}-revisions.md"
    path.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
