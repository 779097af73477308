"""xlglmm against lme4 and glmmTMB, side by side, on the same data in one run.

    python benchmarks/bench.py                      # reference models + series to 1e5
    python benchmarks/bench.py --sizes 1e3 1e4 1e5 1e6 --reps 3
    python benchmarks/bench.py --only pois_1e4 safety_crossed --no-peers
    python benchmarks/bench.py --only peer_nb2_one_intercept peer_lmm_hsb82 lmm_sleepstudy

Each xlglmm fit runs in a fresh subprocess (so its peak memory is its own), after a
warm-up fit that loads the compiled kernels from numba's cache: the time is the fit
alone, as lme4's is (R and lme4 already loaded).  lme4 is timed in Rscript when it is
installed (apt-get install r-cran-lme4 r-cran-glmmtmb r-cran-jsonlite), with the same
formula, data and nAGQ, and so is glmmTMB (Laplace only: no nAGQ > 1).  Every
log-likelihood is printed, so a speed-up never hides a worse optimum.

The "best peer" is the faster of lme4 and glmmTMB among those whose log-likelihood is
equal to xlglmm's within LLF_TOL or better (a better one is flagged: xlglmm missed the
optimum).  A log-likelihood on another scale by design -- lme4's for nAGQ > 1,
lme4's Laplace for Gamma, negative binomial, probit and cloglog models (xlglmm and
glmmTMB compute the exact one) -- cannot be compared; that peer still counts (marked
with a dagger), so the ratio never flatters xlglmm.

The peer shapes (issue 16: "peer_*") are seeded simulations (make_data.PEER_SHAPES)
and two data sets of R's mlmRev package; "lmm_*" are the linear mixed models of the
test references on lme4's own data sets; both read through Rscript.

Zero inflation (issue 17, "zip_*", "zinb2_*", "zinb1_*": glmmTMB's ziformula; lme4 has
none, so glmmTMB is the only peer) runs the references of tests/data/glmmtmb; both
programs compute the same likelihood, so the difference of the log-likelihoods is noted
and one above ZI_LLF_TOL (1e-3) is flagged as another optimum:

    python benchmarks/bench.py --only zip_sim zinb2_sim zinb1_sim zip_grouse \
        zinb2_grouse zinb1_grouse --reps 7 --kind issue17-zero-inflation

Writes benchmarks/results/<date>-<host>-<kind>.md (and .json; kind "peers" unless
--kind) and prints the table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
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

from make_data import PEER_SHAPES, SERIES, make, make_peer  # noqa: E402
from xlglmm.engine.family import make_family  # noqa: E402

#: log-likelihoods closer than this are the same optimum
LLF_TOL = 1e-2
#: R repeats a fit until reps fits or this many seconds (a slow peer is timed fewer times)
R_BUDGET_S = 30.0
PEERS = ("lme4", "glmmTMB")

SERIES_MODELS = {
    "poisson": {"formula": "y ~ x1 + x2 + x3 + (1|g1) + (1|g2)", "family": "poisson",
                "offset_log": "exposure", "factors": ["g1", "g2"]},
    "binomial": {"formula": "y ~ x + z + (x|g)", "family": "binomial", "factors": ["g"]},
}

# issue 16's shapes; "gaussian" is a linear mixed model (REML, as lmer's default)
PEER_MODELS = {
    "peer_bin_nested_16fe": {
        "simulated": "bin_nested_16fe", "family": "binomial",
        "formula": "y ~ " + " + ".join(f"x{j}" for j in range(1, 16)) + " + (1|outer) + (1|inner)",
        "factors": ["outer", "inner"]},
    "peer_lmm_hsb82": {
        "rdata": "mlmRev::Hsb82", "family": "gaussian",
        "formula": "mAch ~ meanses * cses + sector * cses + (cses|school)",
        "factors": ["school", "sector"]},
    "peer_lmm_exam": {
        "rdata": "mlmRev::Exam", "family": "gaussian",
        "formula": "normexam ~ standLRT + sex + (standLRT|school)",
        "factors": ["school", "sex"]},
    "peer_nb2_one_intercept": {
        "simulated": "nb2_one_intercept", "family": "negbin",
        "formula": "y ~ x1 + x2 + (1|g1)", "factors": ["g1"]},
    "peer_nb2_crossed_7fe": {
        "simulated": "nb2_crossed_7fe", "family": "negbin",
        "formula": "y ~ f + x1 + x2 + x3 + (1|g1) + (1|g2)", "factors": ["f", "g1", "g2"]},
    "peer_nb2_offset_interaction": {
        "simulated": "nb2_offset_interaction", "family": "negbin",
        "formula": "y ~ x1 * x3 + x2 + (1|g1)", "offset_log": "exposure",
        "factors": ["g1"]},
    "peer_gamma_slope_8fe": {
        "simulated": "gamma_slope_8fe", "family": "gamma", "link": "log",
        "formula": "y ~ x * z + f + w + (x|g)", "factors": ["f", "g"]},
    "peer_pois_crossed_7fe": {
        "simulated": "pois_crossed_7fe", "family": "poisson",
        "formula": "y ~ f + x1 + x2 + x3 + (1|g1) + (1|g2)", "offset_log": "exposure",
        "factors": ["f", "g1", "g2"]},
}
assert {m["simulated"] for m in PEER_MODELS.values() if "simulated" in m} == set(PEER_SHAPES)

# the linear mixed models of the test references (lme4's own data sets, REML): issue 16
# asks for >= 5x lmer on every LMM, the small ones included
LMM_REFERENCES = {
    "lmm_sleepstudy": {"rdata": "lme4::sleepstudy", "family": "gaussian",
                       "formula": "Reaction ~ Days + (Days|Subject)", "factors": ["Subject"]},
    "lmm_penicillin": {"rdata": "lme4::Penicillin", "family": "gaussian",
                       "formula": "diameter ~ 1 + (1|plate) + (1|sample)",
                       "factors": ["plate", "sample"]},
    "lmm_dyestuff": {"rdata": "lme4::Dyestuff", "family": "gaussian",
                     "formula": "Yield ~ 1 + (1|Batch)", "factors": ["Batch"]},
}


# issue 17's families (glmmTMB's; lme4 has none of them), on the reference data sets
ISSUE17_MODELS = {
    "nb1_grouse": {"csv": str(PACKAGE_DATA / "grouseticks.csv"), "family": "nb1",
                   "formula": "TICKS ~ YEAR + HEIGHT + (1|LOCATION)",
                   "factors": ["YEAR", "LOCATION"]},
    "betabinomial_cbpp": {"csv": str(PACKAGE_DATA / "cbpp.csv"), "family": "betabinomial",
                          "formula": "cbind(incidence, size - incidence) ~ period + (1|herd)",
                          "factors": ["period", "herd"]},
    "beta_sim": {"csv": str(DATA / "beta_sim.csv"), "family": "beta",
                 "formula": "y ~ x + (1|g)", "factors": ["g"]},
}
#: glmmTMB's names of those families
GLMMTMB_FAMILIES = {"nb1": "nbinom1", "beta": "beta_family()",
                    "betabinomial": "betabinomial()"}

#: the same optimum for a zero-inflated fit: both programs compute the same exact
#: Laplace likelihood (tests/data/glmmtmb, logLik to 1e-7), so a difference above this
#: is flagged
ZI_LLF_TOL = 1e-3
# issue 17's zero inflation (glmmTMB's ziformula; lme4 has none): the references of
# tests/data/glmmtmb.  The grouseticks ZINB2 fit is a boundary fit (the zi intercept
# runs to -inf in both programs: no zeros beyond the NB2's).
ZI_MODELS = {
    "zip_sim": {"csv": str(DATA / "glmmtmb" / "zinb_sim.csv"), "family": "poisson",
                "formula": "y ~ x + (1|g)", "ziformula": "~w", "factors": ["g"]},
    "zinb2_sim": {"csv": str(DATA / "glmmtmb" / "zinb_sim.csv"), "family": "negbin",
                  "formula": "y ~ x + (1|g)", "ziformula": "~w", "factors": ["g"]},
    "zinb1_sim": {"csv": str(DATA / "glmmtmb" / "zinb_sim.csv"), "family": "nb1",
                  "formula": "y ~ x + (1|g)", "ziformula": "~w", "factors": ["g"]},
    "zip_grouse": {"csv": str(PACKAGE_DATA / "grouseticks.csv"), "family": "poisson",
                   "formula": "TICKS ~ YEAR + cHEIGHT + (1|LOCATION)", "ziformula": "~1",
                   "factors": ["YEAR", "LOCATION"]},
    "zinb2_grouse": {"csv": str(PACKAGE_DATA / "grouseticks.csv"), "family": "negbin",
                     "formula": "TICKS ~ YEAR + cHEIGHT + (1|LOCATION)", "ziformula": "~1",
                     "factors": ["YEAR", "LOCATION"]},
    "zinb1_grouse": {"csv": str(PACKAGE_DATA / "grouseticks.csv"), "family": "nb1",
                     "formula": "TICKS ~ YEAR + cHEIGHT + (1|LOCATION)", "ziformula": "~1",
                     "factors": ["YEAR", "LOCATION"]},
}
for _spec in ZI_MODELS.values():
    _spec["llf_tol"] = ZI_LLF_TOL


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


def r_data(name: str) -> pd.DataFrame:
    """A data set an installed R package ships ("package::name"), through Rscript."""
    package, dataset = name.split("::")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "data.csv"
        subprocess.run(["Rscript", "-e", f'data({dataset}, package = "{package}"); '
                        f'write.csv({dataset}, "{csv}", row.names = FALSE)'],
                       check=True, capture_output=True)
        return pd.read_csv(csv)


def load(spec: dict) -> pd.DataFrame:
    if "series" in spec:
        df = make(spec["series"])
    elif "simulated" in spec:
        df = make_peer(spec["simulated"])
    elif "rdata" in spec:
        df = r_data(spec["rdata"])
    else:
        df = pd.read_csv(spec["csv"])
    for col, expr in spec.get("derive", {}).items():
        df[col] = df.eval(expr)          # trusted manifests only
    return df


# ---- xlglmm, in a child process ------------------------------------------------------

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r})
import numpy as np, pandas as pd
import xlglmm
spec = json.loads({spec!r})
df = pd.read_parquet(spec["frame"]) if spec["frame"].endswith(".parquet") else pd.read_pickle(spec["frame"])
for col in spec.get("factors", []):
    v = df[col].astype(str)
    df[col] = pd.Categorical(v, categories=sorted(v.unique(), key=lambda s: (0, float(s), s) if s.replace('.', '', 1).isdigit() else (1, 0.0, s)))
# warm-up: load the compiled kernels (this family, link and nAGQ) from the cache
family = spec["family"]
counts = np.array([3., 0, 1, 5, 2, 0, 7, 1, 4])
y = ((counts > 1.5).astype(float) if family in ("binomial", "betabinomial") else
     (counts + 0.5) / 9.0 if family == "beta" else counts + (family == "gamma"))
w = pd.DataFrame({{"y": y,
                   "x": [0., 1, 0, 1, 0, 1, 1, 0, 1], "g": list("aaabbbccc")}})
kw = {{}} if family == "gaussian" else {{"family": family, "nAGQ": spec.get("nAGQ", 1)}}
if spec.get("link"): kw["link"] = spec["link"]
fit = xlglmm.lmer if family == "gaussian" else xlglmm.glmer
# (one trial per row leaves a beta-binomial's phi unidentified: its kernels are the
# binomial warm-up's)
fit("y ~ x + (1|g)", w, **{{**kw, "family": "binomial"}} if family == "betabinomial" else kw)
if spec.get("ziformula"):
    # the zero-inflated kernels too (a small seeded data set with excess zeros)
    rng = np.random.default_rng(1)
    gw = np.repeat(np.arange(8), 10)
    xw = rng.normal(size=80)
    yw = rng.poisson(np.exp(0.5 + 0.3 * xw + rng.normal(0, 0.5, 8)[gw])) * (rng.random(80) > 0.3)
    ww = pd.DataFrame({{"y": yw.astype(float), "x": xw, "w": (np.arange(80) % 2).astype(float),
                        "g": pd.Categorical([f"g{{j}}" for j in gw])}})
    fit("y ~ x + (1|g)", ww, **kw, ziformula=spec["ziformula"])
    kw["ziformula"] = spec["ziformula"]
if spec.get("offset_log"): kw["offset"] = np.log(df[spec["offset_log"]].to_numpy(float))
if spec.get("weights"): kw["weights"] = df[spec["weights"]].to_numpy(float)
times = []
for _ in range(spec["reps"]):
    t0 = time.perf_counter()
    r = fit(spec["formula"], df, **kw)
    times.append(time.perf_counter() - t0)
print(json.dumps({{"seconds": float(np.median(times)), "llf": r.llf, "converged": r.converged,
                  "evaluations": r.evaluations,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_xlglmm(spec, df, reps, tmp) -> dict:
    frame = Path(tmp) / "frame.pkl"
    df.to_pickle(frame)
    s = {k: v for k, v in spec.items() if k in ("formula", "family", "link", "nAGQ",
                                                 "offset_log", "weights", "factors",
                                                 "ziformula")}
    s.update(frame=str(frame), reps=reps)
    code = CHILD.format(root=str(ROOT), here=str(HERE), spec=json.dumps(s))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- lme4 and glmmTMB, in Rscript ------------------------------------------------------

R_TEMPLATE = r"""
suppressPackageStartupMessages({{library({package}); library(jsonlite)}})
d <- read.csv("{csv}")
{factors}
{derive}
times <- c()
repeat {{
  t0 <- proc.time()[["elapsed"]]
  m <- suppressWarnings(suppressMessages({call}))
  times <- c(times, proc.time()[["elapsed"]] - t0)
  if (length(times) >= {reps} || sum(times) > {budget}) break
}}
cat(toJSON(list(seconds = median(times), llf = as.numeric(logLik(m)), fits = length(times)),
           auto_unbox = TRUE, digits = NA))
"""


def r_family(spec):
    fam = spec["family"]
    link = spec.get("link")
    if fam == "gamma":
        return f'Gamma(link = "{link or "inverse"}")'
    if link:
        return f'{fam}(link = "{link}")'
    return fam


def r_call(peer: str, spec: dict) -> str:
    """The R expression fitting ``spec`` with ``peer`` ("lme4" or "glmmTMB"): lmer /
    glmer.nb / glmer, or glmmTMB with the matching family (nbinom2 for NB2, REML for a
    linear mixed model, as lmer's default)."""
    formula = spec["formula"]
    if spec.get("offset_log"):
        formula = formula.replace("~", f"~ offset(log({spec['offset_log']})) +", 1)
    weights = f", weights = {spec['weights']}" if spec.get("weights") else ""
    if spec.get("ziformula"):
        weights += f", ziformula = {spec['ziformula']}"
    fam = spec["family"]
    if peer == "lme4":
        if fam == "gaussian":
            return f"lmer({formula}, data = d, REML = TRUE)"
        if fam == "negbin":
            return f"glmer.nb({formula}, data = d)"
        return (f"glmer({formula}, data = d, family = {r_family(spec)}{weights}, "
                f"nAGQ = {spec.get('nAGQ', 1)})")
    family = {"gaussian": "gaussian, REML = TRUE", "negbin": "nbinom2",
              **GLMMTMB_FAMILIES}.get(fam, r_family(spec))
    return f"glmmTMB({formula}, data = d, family = {family}{weights})"


def run_r(peer, spec, df, reps, tmp, timeout) -> dict:
    if not shutil.which("Rscript"):
        return {"error": "Rscript not installed"}
    if peer == "glmmTMB" and spec.get("nAGQ", 1) > 1:
        return {"error": "n/a (glmmTMB has no AGQ)"}
    if peer == "lme4" and spec["family"] in GLMMTMB_FAMILIES:
        return {"error": "n/a (lme4 has no such family)"}
    if peer == "lme4" and spec.get("ziformula"):
        return {"error": "n/a (lme4 has no zero inflation)"}
    csv = Path(tmp) / "data.csv"
    if not csv.is_file():
        df.to_csv(csv, index=False)
    factors = "\n".join(f'd${v} <- factor(d${v})' for v in spec.get("factors", []))
    derive = "\n".join(f"d${k} <- with(d, {v})" for k, v in spec.get("derive", {}).items())
    code = R_TEMPLATE.format(package=peer, csv=csv, factors=factors, derive=derive,
                             reps=reps, budget=R_BUDGET_S, call=r_call(peer, spec))
    script = Path(tmp) / "fit.R"
    script.write_text(code)
    try:
        out = subprocess.run(["Rscript", str(script)], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"{peer}: timeout after {timeout} s"}
    if out.returncode != 0:
        return {"error": f"{peer}: " + (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def other_scale(peer: str, spec: dict) -> bool:
    """The peer's log-likelihood is on another scale than xlglmm's by design: lme4's
    for nAGQ > 1, and its Laplace approximation for the families and links where it
    is not the exact one xlglmm and glmmTMB compute (Gamma, negative binomial, probit,
    cloglog: ``Family.laplace_differs``)."""
    if peer != "lme4":
        return False
    fam = make_family(spec["family"], spec.get("link"))
    return spec.get("nAGQ", 1) > 1 or (not fam.is_gaussian and fam.laplace_differs)


def best_peer(row: dict, spec: dict) -> tuple:
    """(name, seconds, notes): the faster peer at xlglmm's optimum or a better one; a
    peer on another scale counts too (name with a dagger).  A peer lower by more than
    LLF_TOL (a model's own ``llf_tol`` when it has one) does not count; one higher by
    more is flagged; with ``llf_tol`` each comparable peer's difference is noted."""
    ours = row["xlglmm_llf"]
    tol = spec.get("llf_tol", LLF_TOL)
    best, notes = None, []
    for peer in PEERS:
        t, llf = row[f"{peer}_s"], row[f"{peer}_llf"]
        if not isinstance(t, (int, float)):
            continue
        name = peer
        if "llf_tol" in spec and isinstance(ours, (int, float)) and not other_scale(peer, spec):
            notes.append(f"{peer} − xlglmm logLik {llf - ours:+.1e}"
                         + (f" (**> {tol:g}: not the same optimum**)"
                            if abs(llf - ours) > tol else ""))
        if other_scale(peer, spec):
            name += "†"
        elif isinstance(ours, (int, float)) and llf < ours - tol:
            notes.append(f"{peer} logLik lower by {ours - llf:.3g}: not counted")
            continue
        elif isinstance(ours, (int, float)) and llf > ours + tol:
            notes.append(f"**{peer} logLik higher by {llf - ours:.3g}**")
        if best is None or t < best[1]:
            best = (name, t)
    return (best or (None, None)) + (notes,)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", type=float, default=[1e3, 1e4, 1e5])
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--reps", type=int, default=3, help="repetitions (median) below 1e5 rows")
    # (--no-lme4: its name before glmmTMB joined; compare_revisions.py passes it to
    # older revisions and this one alike)
    ap.add_argument("--no-peers", "--no-lme4", dest="no_peers", action="store_true",
                    help="time xlglmm alone")
    ap.add_argument("--peer-timeout", type=float, default=3600)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--kind", default="peers",
                    help="the report's name: <date>-<host>-<kind>.md (default peers)")
    a = ap.parse_args(argv)
    from machine import description, is_busy
    busy = is_busy()
    machine = description({"R peers": r_versions()})
    models = {**reference_models(), **LMM_REFERENCES, **PEER_MODELS, **ISSUE17_MODELS,
              **ZI_MODELS, **series_models(a.sizes)}
    if a.only:
        models = {k: v for k, v in models.items() if k in a.only}
    rows = []
    for name, spec in models.items():
        df = load(spec)
        reps = a.reps if len(df) < 100_000 else 1
        with tempfile.TemporaryDirectory() as tmp:
            ours = run_xlglmm(spec, df, reps, tmp)
            theirs = {p: {"error": "skipped"} if a.no_peers else
                      run_r(p, spec, df, reps, tmp, a.peer_timeout) for p in PEERS}
        row = {"model": name, "family": spec["family"], "n": len(df),
               "ziformula": spec.get("ziformula"),
               "nAGQ": spec.get("nAGQ", 1),
               "xlglmm_s": ours.get("seconds"), "xlglmm_llf": ours.get("llf"),
               "peak_mb": ours.get("peak_mb"), "evaluations": ours.get("evaluations")}
        for p in PEERS:
            row[f"{p}_s"], row[f"{p}_llf"] = theirs[p].get("seconds"), theirs[p].get("llf")
            row[f"{p}_fits"] = theirs[p].get("fits")
            row[f"{p}_other_scale"] = other_scale(p, spec)
        row["best_peer"], best_s, notes = best_peer(row, spec)
        if row["xlglmm_s"] and best_s:
            row["ratio"] = best_s / row["xlglmm_s"]
        row["note"] = "; ".join([x for x in (ours.get("error"), *(theirs[p].get("error") for p in PEERS))
                                 if x and x != "skipped"] + notes)
        rows.append(row)
        print(_line(row), flush=True)
    _write(rows, Path(a.out), machine, busy, a.kind)
    return 0


def r_versions() -> str:
    if not shutil.which("Rscript"):
        return "not installed"
    out = subprocess.run(["Rscript", "-e", 'cat(sprintf("R %s, lme4 %s, glmmTMB %s", '
                          'getRversion(), packageVersion("lme4"), packageVersion("glmmTMB")))'],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "—"


def _line(r):
    return (f"| {r['model']} | {r['n']} | {_fmt(r['xlglmm_s'], '.3f')} | {_fmt(r['lme4_s'], '.3f')} | "
            f"{_fmt(r['glmmTMB_s'], '.3f')} | {r['best_peer'] or '—'} | {_fmt(r.get('ratio'), '.1f')} | "
            f"{_fmt(r['xlglmm_llf'], '.3f')} | {_llf(r, 'lme4')} | {_llf(r, 'glmmTMB')} | "
            f"{_fmt(r['peak_mb'], '.0f')} | {r['note']} |")


def _llf(r, peer):
    """A peer's log-likelihood, with a dagger when it is on another scale."""
    mark = "†" if r[f"{peer}_other_scale"] and isinstance(r[f"{peer}_llf"], (int, float)) else ""
    return _fmt(r[f"{peer}_llf"], ".3f") + mark


def scaling_svg(rows, path: Path):
    """Seconds against rows (log-log) for the scaling series, xlglmm and its peers: a
    small hand-written SVG, so the benchmark needs no plotting library."""
    series = {}
    for r in rows:
        if not r["model"].startswith("series_"):
            continue
        kind = "Poisson, 2 crossed intercepts" if "pois" in r["model"] else \
            "logistic, correlated slope"
        for who in ("xlglmm", *PEERS):
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
    colors = {"xlglmm": "#1565C0", "lme4": "#B71C1C", "glmmTMB": "#2E7D32"}
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


def _write(rows, out: Path, machine: list, busy: bool, kind: str = "peers"):
    from machine import busy_lines
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{dt.date.today().isoformat()}-{platform.node() or 'host'}-{kind}"
    head = ["# xlglmm vs lme4 and glmmTMB, side by side", "", *machine, "", *busy_lines(busy),
            "Seconds are one warm fit (xlglmm: median of the repetitions below 1e5 rows; "
            f"R: median of the repetitions, fewer once they pass {R_BUDGET_S:.0f} s).  "
            "Best peer: the faster of lme4 and glmmTMB at xlglmm's log-likelihood "
            f"(within {LLF_TOL}) or a better one; † = its log-likelihood is on another "
            "scale by design (lme4 with nAGQ > 1, and lme4's Laplace for Gamma, negative "
            "binomial, probit and cloglog models: xlglmm and glmmTMB compute the exact "
            "one), so it is not compared but still counts.  ratio = best "
            "peer / xlglmm.  Peak MB is the xlglmm process's maximum resident memory.", "",
            "| model | n | xlglmm s | lme4 s | glmmTMB s | best peer | ratio | xlglmm logLik | "
            "lme4 logLik | glmmTMB logLik | peak MB | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    text = "\n".join(head + [_line(r) for r in rows]) + "\n"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    scaling_svg(rows, out / f"{stem}-scaling.svg")
    print(f"\nwrote {out / f'{stem}.md'}")


if __name__ == "__main__":
    sys.exit(main())
