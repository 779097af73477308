"""Two large crossed factors (issue 16): xlglmm's time and peak memory, lme4 beside it.

    python benchmarks/large_crossed.py                       # all five cases, lme4 on 1e5
    python benchmarks/large_crossed.py --only pois_1e5_2000x2000 --no-peers
    python benchmarks/large_crossed.py --peer-timeout 600 --blas-threads 1

The cases are make_data.LARGE_CROSSED (seeded): Poisson with an exposure offset and
three covariates (``glmer``) and Gaussian with three covariates (``lmer``, REML), each
with two crossed random intercepts whose levels are drawn at random, so that the
second factor's Schur complement is dense (r x r, r its levels plus the fixed
effects): 1e5 rows with 2,000 x 2,000 levels, 1e6 with 10,000 x 5,000, and the
scaling series' 1e6 rows with 10,000 x 200.

Each xlglmm fit runs in a fresh subprocess after a warm-up fit that loads the
compiled kernels from numba's cache (bench.py's child: the time is the fit alone,
peak RSS from resource.getrusage).  lme4 (glmer / lmer in Rscript, the same formula
and data) runs on the 1e5 cases only, with a timeout ("> timeout" when it runs out).
``--blas-threads`` sets OPENBLAS_NUM_THREADS for the xlglmm child (default: the
environment's, i.e. OpenBLAS's own choice).

Writes benchmarks/results/<date>-<host>-large-crossed.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import CHILD, ROOT, run_r  # noqa: E402
from make_data import LARGE_CROSSED, make_large_crossed  # noqa: E402
from machine import busy_lines, description, is_busy, write_report  # noqa: E402

FORMULA = "y ~ x1 + x2 + x3 + (1|g1) + (1|g2)"
#: the issue's targets: seconds, and MB of peak memory where one is set
TARGETS = {"pois_1e5_2000x2000": (10, None), "gauss_1e5_2000x2000": (10, None),
           "pois_1e6_10000x5000": (120, 4096), "gauss_1e6_10000x5000": (120, 4096),
           "pois_1e6_10000x200": (20, None)}
#: lme4 is timed on these only (the 1e6 cases would take hours)
WITH_PEER = ("pois_1e5_2000x2000", "gauss_1e5_2000x2000")


def spec_of(name: str) -> dict:
    family = LARGE_CROSSED[name][0]
    spec = {"formula": FORMULA, "family": family, "factors": ["g1", "g2"]}
    if family == "poisson":
        spec["offset_log"] = "exposure"
    return spec


#: bench.py's child, timing CPU seconds too (on a busy machine the wall time is an
#: upper bound; with one BLAS thread the CPU time is the fit's own work)
LARGE_CHILD = CHILD.replace(
    "    t0 = time.perf_counter()\n",
    "    t0 = time.perf_counter(); c0 = time.process_time()\n").replace(
    "    times.append(time.perf_counter() - t0)\n",
    "    times.append(time.perf_counter() - t0); cpu = time.process_time() - c0\n").replace(
    '"converged": r.converged,', '"converged": r.converged, "cpu": cpu, '
    '"se_method": r.vcov_method,')
assert LARGE_CHILD.count("process_time") == 2 and '"cpu": cpu' in LARGE_CHILD


def run_xlglmm(spec, df, tmp) -> dict:
    frame = Path(tmp) / "frame.pkl"
    df.to_pickle(frame)
    s = dict(spec, frame=str(frame), reps=1)
    code = LARGE_CHILD.format(root=str(ROOT), here=str(HERE), spec=json.dumps(s))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(name: str, peers: bool, timeout: float, blas_threads) -> dict:
    df = make_large_crossed(name)
    spec = spec_of(name)
    old = os.environ.get("OPENBLAS_NUM_THREADS")
    with tempfile.TemporaryDirectory() as tmp:
        if blas_threads:
            os.environ["OPENBLAS_NUM_THREADS"] = str(blas_threads)
        try:
            ours = run_xlglmm(spec, df, tmp)
        finally:
            if blas_threads:
                if old is None:
                    os.environ.pop("OPENBLAS_NUM_THREADS", None)
                else:
                    os.environ["OPENBLAS_NUM_THREADS"] = old
        theirs = (run_r("lme4", spec, df, 1, tmp, timeout) if peers and name in WITH_PEER
                  else {"error": "not run"})
    return {"name": name, "n": len(df), "levels": f"{df.g1.nunique():,} x {df.g2.nunique():,}",
            "ours": ours, "lme4": theirs}


def _cell_lme4(res: dict, timeout: float) -> tuple[str, str]:
    if "seconds" in res:
        return f"{res['seconds']:.1f}", f"{res['llf']:.3f}"
    err = res.get("error", "")
    if "timeout" in err:
        return f"> {timeout:.0f} (timeout)", ""
    return ("" if err == "not run" else err), ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--no-peers", action="store_true", help="time xlglmm alone")
    ap.add_argument("--peer-timeout", type=float, default=600.0)
    ap.add_argument("--blas-threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    busy = is_busy()
    names = [n for n in LARGE_CROSSED if not a.only or n in a.only]
    lines = ["# Two large crossed factors: xlglmm and lme4", "",
             *description({"OPENBLAS_NUM_THREADS": str(a.blas_threads or
                                                        os.environ.get("OPENBLAS_NUM_THREADS",
                                                                       "(default)"))}),
             "", *busy_lines(busy),
             f"Formula `{FORMULA}` (Poisson: `glmer`, offset log(exposure); Gaussian: "
             "`lmer`, REML).  One warm xlglmm fit in a fresh process (peak MB: its maximum "
             "resident memory); lme4 in Rscript on the 1e5 cases, one fit, timeout "
             f"{a.peer_timeout:.0f} s.  Data: benchmarks/make_data.py LARGE_CROSSED (seeded).",
             "", "| case | n | levels | xlglmm s | CPU s | target s | peak MB | evaluations "
             "| SEs | xlglmm logLik | lme4 s | lme4 logLik | converged |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        row = run(name, not a.no_peers, a.peer_timeout, a.blas_threads)
        o = row["ours"]
        t_s, t_mb = TARGETS[name]
        target = f"< {t_s}" + (f" (< {t_mb} MB)" if t_mb else "")
        l4_s, l4_llf = _cell_lme4(row["lme4"], a.peer_timeout)
        if "seconds" in o:
            cells = [f"{o['seconds']:.1f}", f"{o['cpu']:.1f}", target, f"{o['peak_mb']:.0f}",
                     str(o["evaluations"]), o["se_method"], f"{o['llf']:.3f}", l4_s, l4_llf,
                     str(o["converged"])]
        else:
            cells = [o.get("error", "failed"), "", target, "", "", "", "", l4_s, l4_llf, ""]
        line = f"| {name} | {row['n']:,} | {row['levels']} | " + " | ".join(cells) + " |"
        print(line, flush=True)
        lines.append(line)
    write_report("\n".join(lines) + "\n", "large-crossed", Path(a.out) if a.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
