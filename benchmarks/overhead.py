"""The fixed cost around a fit, two revisions side by side: building the design
(``design.build_design``) and the result (``GLMMResult`` / ``LMMResult`` from the
model and its estimates), per model -- the phases outside the optimisation, which on
small and mid-size models are a large share of a fit (issue 16).

    python benchmarks/overhead.py BASE_REV [--rounds 3] [--calls 15]
                                  [--factors cat|obj|raw] [--only NAME ...] [--no-fit]

``BASE_REV``'s package is exported (``git archive``: no worktree is made) to a
temporary directory; each round runs one child per tree, alternating (base, this
tree), so that the machine's load hits both alike.  A child builds the design and
the result ``--calls`` times each and keeps the least (load only ever adds time),
and times one whole warm fit (design, model, estimate, result) for scale; the
report takes the least over rounds.  Grouping columns are passed as ``--factors``:
``cat`` pandas Categoricals (as bench.py and the worksheet functions pass text),
``obj`` object columns of str, ``raw`` as the data come (numbers, pandas strings).
Models: issue 16's shapes, the shared references and bench.py's series
(``series_pois_1e6``...; with ``--no-fit`` for those).
Writes ``benchmarks/results/<date>-<host>-overhead.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402

MODELS = ["peer_lmm_hsb82", "peer_lmm_exam", "peer_bin_nested_16fe", "peer_pois_crossed_7fe",
          "peer_gamma_slope_8fe", "pois_1e3", "grouse_loc", "cbpp_laplace"]

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np, pandas as pd
import xlglmm
assert xlglmm.__file__.startswith({root!r}), xlglmm.__file__
from xlglmm.engine.design import build_design
from xlglmm.engine.family import make_family
from xlglmm.engine.lmm import GAUSSIAN, LinearMixedModel, LMMResult
from xlglmm.engine.model import GeneralizedLinearMixedModel
from xlglmm.engine.results import GLMMResult

def least(f, calls):
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter(); f(); best = min(best, time.perf_counter() - t0)
    return 1e3 * best

out = {{}}
for name, spec in json.loads({specs!r}).items():
    df = pd.read_pickle(spec["frame"])
    for col in spec.get("factors", []):
        if {factors!r} == "cat":
            df[col] = pd.Categorical(df[col].astype(str))
        elif {factors!r} == "obj":
            df[col] = pd.Series(df[col].astype(str).tolist(), dtype=object)
    off = np.log(df[spec["offset_log"]].to_numpy(float)) if spec.get("offset_log") else None
    lmm = spec["family"] == "gaussian"
    fam = GAUSSIAN if lmm else make_family(spec["family"], spec.get("link"))
    def design():
        return build_design(spec["formula"], df, fam, offset=off, weights=spec.get("weights"))
    def model(d):
        return LinearMixedModel(d, True) if lmm else \
            GeneralizedLinearMixedModel(d, fam, spec.get("nAGQ", 1))
    Result = LMMResult if lmm else GLMMResult
    def fit():
        m = model(design())
        return Result(m, m.estimate())
    res = fit()                                   # warm: kernels loaded
    whole = float("nan")
    if {whole_fit}:
        t0 = time.perf_counter(); res = fit(); whole = 1e3 * (time.perf_counter() - t0)
    m = res.model
    out[name] = dict(design=least(design, {calls}),
                     result=least(lambda: Result(m, m.estimates), {calls}),
                     fit=whole, llf=res.llf)
print(json.dumps(out))
"""


def export(rev: str, dest: Path) -> Path:
    """The package of revision ``rev`` under ``dest`` (git archive of xlglmm/)."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = dest / "base.tar"
    with open(tar, "wb") as fh:
        subprocess.run(["git", "archive", rev, "xlglmm"], cwd=ROOT, stdout=fh, check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest)
    return dest


def frames(names: list, tmp: Path) -> dict:
    """Each model's spec with its data written once to a pickle (``frame``)."""
    import bench
    specs = {}
    for name in names:
        spec = dict(bench.PEER_MODELS.get(name) or bench.reference_models().get(name)
                    or bench.series_models([1e5, 1e6])[name])
        path = tmp / f"{name}.pkl"
        bench.load(spec).to_pickle(path)
        spec["frame"] = str(path)
        specs[name] = spec
    return specs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="the revision to compare with (e.g. main, a commit)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument("--factors", choices=("cat", "obj", "raw"), default="cat")
    ap.add_argument("--only", nargs="+", default=MODELS)
    ap.add_argument("--no-fit", action="store_true",
                    help="no whole fit timed (large models: one fit per child only)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    busy = machine.is_busy()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = export(a.base, tmp / "base")
        specs = json.dumps(frames(a.only, tmp))
        trees = {"base": base, "new": ROOT}
        runs: dict = {k: [] for k in trees}
        for _ in range(a.rounds):
            for kind, tree in trees.items():
                code = CHILD.format(root=str(tree), specs=specs, factors=a.factors,
                                    calls=a.calls, whole_fit=not a.no_fit)
                env = dict(os.environ, PYTHONPATH=str(tree))
                out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                     capture_output=True, text=True).stdout
                runs[kind].append(json.loads(out.strip().splitlines()[-1]))
    best = {k: {name: {f: min(r[name][f] for r in rs) for f in ("design", "result", "fit")}
                for name in a.only} for k, rs in runs.items()}
    lines = [f"# The fixed cost around a fit: {a.base} vs this tree", ""]
    lines += machine.busy_lines(busy)
    lines += [f"`python benchmarks/overhead.py {a.base} --rounds {a.rounds} --calls {a.calls} "
              f"--factors {a.factors}{' --no-fit' if a.no_fit else ''} --only {' '.join(a.only)}`",
              "",
              f"Least time of {a.calls} calls x {a.rounds} rounds (ms): build_design and the "
              "result's construction; `fit` is one whole warm fit (design, model, estimate, "
              "result), for scale. Grouping columns: "
              + {"cat": "pandas Categoricals", "obj": "object columns of str",
                 "raw": "as the data come"}[a.factors] + ".", "",
              "| model | design base | design new | result base | result new | fit base | "
              "fit new | logLik base | logLik new |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in a.only:
        b, n = best["base"][name], best["new"][name]
        lb, ln = runs["base"][0][name]["llf"], runs["new"][0][name]["llf"]
        lines.append(f"| {name} | {b['design']:.2f} | {n['design']:.2f} | {b['result']:.2f} | "
                     f"{n['result']:.2f} | {b['fit']:.1f} | {n['fit']:.1f} | {lb:.6f} | "
                     f"{ln:.6f} |")
    lines += ["", *machine.description()]
    machine.write_report("\n".join(lines) + "\n", "overhead", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
