"""xlglmm against lme4, side by side, on the same data in one run.

    python benchmarks/bench.py                      # reference models + series to 1e5
    python benchmarks/bench.py --sizes 1e3 1e4 1e5 1e6 --reps 3
    python benchmarks/bench.py --only pois_1e4 safety_crossed --no-lme4

Each xlglmm fit runs in a fresh subprocess (so its peak memory is its own), after a
warm-up fit that loads the compiled kernels from numba's cache: the time is the fit
alone, as lme4's is (R and lme4 already loaded).  lme4 is timed in Rscript when it is
installed (apt-get install r-cran-lme4 r-cran-jsonlite), with the same formula, data
and nAGQ.  Both log-likelihoods are printed, so a speed-up never hides a worse
optimum (for nAGQ > 1 lme4 prints its log-likelihood on another scale).

Writes benchmarks/results/<date>-<host>.md (and .json) and prints the table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / "tests" / "data"            # reference manifests and test-only data sets
PACKAGE_DATA = ROOT / "xlglmm" / "data"    # the data sets the package ships: their only copy
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from make_data import SERIES, make  # noqa: E402

SERIES_MODELS = {
    "poisson": {"formula": "y ~ x1 + x2 + x3 + (1|g1) + (1|g2)", "family": "poisson",
                "offset_log": "exposure", "factors": ["g1", "g2"]},
    "binomial": {"formula": "y ~ x + z + (x|g)", "family": "binomial", "factors": ["g"]},
}


def natural(s: str):
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def reference_models() -> dict:
    out = {}
    for name, spec in json.loads((DATA / "models.json").read_text()).items():
        spec = dict(spec)
        shipped = PACKAGE_DATA / spec["data"]
        spec["csv"] = str(shipped if shipped.is_file() else DATA / spec["data"])
        out[name] = spec
    return out


def series_models(sizes) -> dict:
    out = {}
    for name, s in SERIES.items():
        n = s[1]
        if not any(abs(np.log10(n) - np.log10(z)) < 1e-9 for z in sizes):
            continue
        spec = dict(SERIES_MODELS[s[0]])
        spec["series"] = name
        spec["nAGQ"] = 1
        out[f"series_{name}"] = spec
    return out


def load(spec: dict) -> pd.DataFrame:
    df = make(spec["series"]) if "series" in spec else pd.read_csv(spec["csv"])
    for col, expr in spec.get("derive", {}).items():
        df[col] = df.eval(expr)          # trusted manifests only
    return df


# ---- xlglmm, in a child process ------------------------------------------------------

CHILD = r'''
import json, resource, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r})
import numpy as np, pandas as pd
import xlglmm
spec = json.loads({spec!r})
df = pd.read_parquet(spec["frame"]) if spec["frame"].endswith(".parquet") else pd.read_pickle(spec["frame"])
for col in spec.get("factors", []):
    v = df[col].astype(str)
    df[col] = pd.Categorical(v, categories=sorted(v.unique(), key=lambda s: (0, float(s), s) if s.replace('.', '', 1).isdigit() else (1, 0.0, s)))
# warm-up: load the compiled kernels from the cache
w = pd.DataFrame({{"y": [1., 0, 0, 1, 1, 0], "x": [0., 1, 0, 1, 0, 1], "g": list("aabbcc")}})
xlglmm.glmer("y ~ x + (1|g)", w, family=spec["family"] if spec["family"] != "gamma" else "poisson")
kw = {{"family": spec["family"], "nAGQ": spec.get("nAGQ", 1)}}
if spec.get("link"): kw["link"] = spec["link"]
if spec.get("offset_log"): kw["offset"] = np.log(df[spec["offset_log"]].to_numpy(float))
if spec.get("weights"): kw["weights"] = df[spec["weights"]].to_numpy(float)
times = []
for _ in range(spec["reps"]):
    t0 = time.perf_counter()
    r = xlglmm.glmer(spec["formula"], df, **kw)
    times.append(time.perf_counter() - t0)
print(json.dumps({{"seconds": float(np.median(times)), "llf": r.llf, "converged": r.converged,
                  "evaluations": r.evaluations,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
'''


def run_xlglmm(spec, df, reps, tmp) -> dict:
    frame = Path(tmp) / "frame.pkl"
    df.to_pickle(frame)
    s = {k: v for k, v in spec.items() if k in ("formula", "family", "link", "nAGQ",
                                                 "offset_log", "weights", "factors")}
    s.update(frame=str(frame), reps=reps)
    code = CHILD.format(root=str(ROOT), here=str(HERE), spec=json.dumps(s))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- lme4, in Rscript -------------------------------------------------------------------

R_TEMPLATE = r'''
suppressPackageStartupMessages({{library(lme4); library(jsonlite)}})
d <- read.csv("{csv}")
{factors}
{derive}
times <- c()
for (i in seq_len({reps})) {{
  t0 <- proc.time()[["elapsed"]]
  m <- suppressWarnings(suppressMessages(glmer({formula}, data = d, family = {family}{weights}, nAGQ = {nagq})))
  times <- c(times, proc.time()[["elapsed"]] - t0)
}}
cat(toJSON(list(seconds = median(times), llf = as.numeric(logLik(m))), auto_unbox = TRUE, digits = NA))
'''


def r_family(spec):
    fam = spec["family"]
    link = spec.get("link")
    if fam == "gamma":
        return f'Gamma(link = "{link or "inverse"}")'
    if link:
        return f'{fam}(link = "{link}")'
    return fam


def run_lme4(spec, df, reps, tmp, timeout) -> dict:
    if not shutil.which("Rscript"):
        return {"error": "Rscript not installed"}
    csv = Path(tmp) / "data.csv"
    df.to_csv(csv, index=False)
    formula = spec["formula"]
    if spec.get("offset_log"):
        formula = formula.replace("~", f"~ offset(log({spec['offset_log']})) +", 1)
    factors = "\n".join(f'd${v} <- factor(d${v})' for v in spec.get("factors", []))
    derive = "\n".join(f"d${k} <- with(d, {v})" for k, v in spec.get("derive", {}).items())
    weights = f", weights = {spec['weights']}" if spec.get("weights") else ""
    code = R_TEMPLATE.format(csv=csv, factors=factors, derive=derive, reps=reps,
                             formula=formula, family=r_family(spec), weights=weights,
                             nagq=spec.get("nAGQ", 1))
    script = Path(tmp) / "fit.R"
    script.write_text(code)
    try:
        out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", type=float, default=[1e3, 1e4, 1e5])
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--reps", type=int, default=3, help="repetitions (median) below 1e5 rows")
    ap.add_argument("--no-lme4", action="store_true")
    ap.add_argument("--lme4-timeout", type=float, default=3600)
    ap.add_argument("--out", default=str(HERE / "results"))
    a = ap.parse_args(argv)
    models = {**reference_models(), **series_models(a.sizes)}
    if a.only:
        models = {k: v for k, v in models.items() if k in a.only}
    rows = []
    for name, spec in models.items():
        df = load(spec)
        reps = a.reps if len(df) < 100_000 else 1
        with tempfile.TemporaryDirectory() as tmp:
            ours = run_xlglmm(spec, df, reps, tmp)
            theirs = {"error": "skipped"} if a.no_lme4 else run_lme4(spec, df, reps, tmp, a.lme4_timeout)
        row = {"model": name, "n": len(df), "nAGQ": spec.get("nAGQ", 1),
               "xlglmm_s": ours.get("seconds"), "lme4_s": theirs.get("seconds"),
               "xlglmm_llf": ours.get("llf"), "lme4_llf": theirs.get("llf"),
               "peak_mb": ours.get("peak_mb"), "evaluations": ours.get("evaluations"),
               "note": "; ".join(x for x in (ours.get("error"), theirs.get("error")) if x)}
        if row["xlglmm_s"] and row["lme4_s"]:
            row["ratio"] = row["lme4_s"] / row["xlglmm_s"]
        rows.append(row)
        print(_line(row), flush=True)
    _write(rows, Path(a.out))
    return 0


def _fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "—"


def _line(r):
    return (f"| {r['model']} | {r['n']} | {_fmt(r['xlglmm_s'], '.3f')} | {_fmt(r['lme4_s'], '.3f')} | "
            f"{_fmt(r.get('ratio'), '.1f')} | {_fmt(r['xlglmm_llf'], '.3f')} | "
            f"{_fmt(r['lme4_llf'], '.3f')} | {_fmt(r['peak_mb'], '.0f')} | {r['note']} |")


def scaling_svg(rows, path: Path):
    """Seconds against rows (log-log) for the scaling series, xlglmm and lme4: a
    small hand-written SVG, so the benchmark needs no plotting library."""
    series = {}
    for r in rows:
        if not r["model"].startswith("series_"):
            continue
        kind = "Poisson, 2 crossed intercepts" if "pois" in r["model"] else \
            "logistic, correlated slope"
        for who in ("xlglmm", "lme4"):
            t = r.get(f"{who}_s")
            if isinstance(t, (int, float)) and t > 0:
                series.setdefault((kind, who), []).append((r["n"], t))
    if not series:
        return
    W, H, L, B = 560, 360, 60, 40
    xs = [np.log10(n) for pts in series.values() for n, _ in pts]
    ys = [np.log10(t) for pts in series.values() for _, t in pts]
    x0, x1 = np.floor(min(xs)), np.ceil(max(xs))
    y0, y1 = np.floor(min(ys)), np.ceil(max(ys))
    x1 = max(x1, x0 + 1)
    y1 = max(y1, y0 + 1)
    px = lambda v: L + (v - x0) / (x1 - x0) * (W - L - 20)
    py = lambda v: H - B - (v - y0) / (y1 - y0) * (H - B - 20)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for k in range(int(x0), int(x1) + 1):
        out.append(f'<line x1="{px(k):.1f}" y1="{py(y0):.1f}" x2="{px(k):.1f}" y2="20" stroke="#ddd"/>')
        out.append(f'<text x="{px(k):.1f}" y="{H - B + 15}" text-anchor="middle">1e{k}</text>')
    for k in range(int(y0), int(y1) + 1):
        out.append(f'<line x1="{L}" y1="{py(k):.1f}" x2="{W - 20}" y2="{py(k):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 5}" y="{py(k) + 4:.1f}" text-anchor="end">{10.0 ** k:g} s</text>')
    out.append(f'<text x="{(W + L) / 2:.0f}" y="{H - 8}" text-anchor="middle">rows</text>')
    colors = {"xlglmm": "#1565C0", "lme4": "#B71C1C"}
    dash = {"Poisson, 2 crossed intercepts": "", "logistic, correlated slope": ' stroke-dasharray="5,3"'}
    ly = 30
    for (kind, who), pts in sorted(series.items()):
        pts = sorted(pts)
        d = " ".join(f"{px(np.log10(n)):.1f},{py(np.log10(t)):.1f}" for n, t in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{colors[who]}" stroke-width="2"{dash[kind]}/>')
        for n, t in pts:
            out.append(f'<circle cx="{px(np.log10(n)):.1f}" cy="{py(np.log10(t)):.1f}" r="3" fill="{colors[who]}"/>')
        out.append(f'<line x1="{L + 10}" y1="{ly}" x2="{L + 40}" y2="{ly}" stroke="{colors[who]}" stroke-width="2"{dash[kind]}/>')
        out.append(f'<text x="{L + 45}" y="{ly + 4}">{who}: {kind}</text>')
        ly += 15
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def _write(rows, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    host = platform.node() or "host"
    stamp = dt.date.today().isoformat()
    cpu = os.cpu_count()
    head = ["# xlglmm vs lme4, side by side", "",
            f"{stamp}, {platform.platform()}, {cpu} cores, Python {platform.python_version()}",
            "", "Seconds are one warm fit (median of repetitions below 1e5 rows); ratio = "
            "lme4 / xlglmm; peak MB is the xlglmm process's maximum resident memory.", "",
            "| model | n | xlglmm s | lme4 s | ratio | xlglmm logLik | lme4 logLik | peak MB | note |",
            "|---|---|---|---|---|---|---|---|---|"]
    text = "\n".join(head + [_line(r) for r in rows]) + "\n"
    (out / f"{stamp}-{host}.md").write_text(text)
    (out / f"{stamp}-{host}.json").write_text(json.dumps(rows, indent=1))
    scaling_svg(rows, out / f"{stamp}-{host}-scaling.svg")
    print(f"\nwrote {out / f'{stamp}-{host}.md'}")


if __name__ == "__main__":
    sys.exit(main())
