"""Linear mixed models (issue 16): lmer's time, and Satterthwaite's t tests', in two
source trees side by side.

    python benchmarks/lmm_speed.py /work/main .           # base tree, new tree
    python benchmarks/lmm_speed.py . --rounds 5

Each tree runs in its own subprocess (PYTHONPATH = the tree), the trees alternating
round by round so that the machine's load hits both alike.  Per model: the fit's
wall and CPU time (``time.process_time``: what the process itself spent, the
better measure on a shared machine), the minimum over the fits of all rounds
(after a warm-up fit), the number of deviance evaluations and the REML criterion
(or -2 logLik), so that a speed-up never hides another optimum.  The models: the
LMM peers of ``bench.py`` (mlmRev's Hsb82 and Exam, read through Rscript) and the
LMMs of the test references (sleepstudy, Penicillin, Dyestuff).  lme4's times are
``bench.py --only peer_lmm_hsb82 peer_lmm_exam``'s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r'''
import json, sys, time
import numpy as np, pandas as pd
sys.path.insert(0, sys.argv[1] + "/benchmarks"); sys.path.insert(0, sys.argv[1] + "/tests")
sys.path.insert(0, sys.argv[1] + "/tests/engine")
import xlglmm, bench
from refs import load_frame, manifest
reps = int(sys.argv[2])
models = {}
for name in ("peer_lmm_hsb82", "peer_lmm_exam"):
    spec = bench.PEER_MODELS[name]
    df = pd.read_pickle(sys.argv[3] + f"/{name}.pkl")
    for c in spec.get("factors", []):
        df[c] = pd.Categorical(df[c].astype(str))
    models[name] = (spec["formula"], df, True)
for name, spec in manifest("models_negbin_lmm.json").items():
    if "REML" in spec:
        models[name] = (spec["formula"], load_frame(spec), spec["REML"])
out = {}
for name, (formula, df, reml) in models.items():
    fit = lambda: xlglmm.lmer(formula, df, REML=reml)
    res = fit()
    res.t_tests()
    wall, cpu, tt = [], [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        res = fit()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        c0 = time.process_time()
        res.t_tests()
        tt.append(time.process_time() - c0)
    out[name] = dict(wall=wall, cpu=cpu, tt=tt, evals=res.evaluations, dev=res.deviance)
print(json.dumps(out))
'''


def cached_peer_data(cache: Path):
    """The peers' data frames, read once through bench.load (Rscript) into ``cache``."""
    sys.path.insert(0, str(HERE))
    import bench
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("peer_lmm_hsb82", "peer_lmm_exam"):
        f = cache / f"{name}.pkl"
        if not f.exists():
            bench.load(bench.PEER_MODELS[name]).to_pickle(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+", help="source trees (the first is the base)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5, help="fits per round")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "xlglmm-lmm-speed"))
    a = ap.parse_args(argv)
    cached_peer_data(Path(a.cache))
    trees = [str(Path(t).resolve()) for t in a.trees]
    runs = {t: [] for t in trees}
    for _ in range(a.rounds):
        for t in trees:
            env = dict(os.environ, PYTHONPATH=t)
            p = subprocess.run([sys.executable, "-c", CHILD, t, str(a.reps), a.cache], env=env,
                               capture_output=True, text=True, check=True, cwd=t)
            runs[t].append(json.loads(p.stdout.strip().splitlines()[-1]))
    names = list(runs[trees[0]][0])
    head = "| model | " + " | ".join(
        f"{Path(t).name}: fit wall ms | fit CPU ms | t_tests CPU ms | evals | deviance"
        for t in trees) + " |"
    print(head)
    print("|" + "---|" * (1 + 5 * len(trees)))
    for n in names:
        cells = []
        for t in trees:
            rs = [r[n] for r in runs[t]]
            cells += [f"{1e3 * min(min(r['wall']) for r in rs):.1f}",
                      f"{1e3 * min(min(r['cpu']) for r in rs):.1f}",
                      f"{1e3 * min(min(r['tt']) for r in rs):.1f}",
                      str(rs[-1]["evals"]), f"{rs[-1]['dev']:.6f}"]
        print(f"| {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
