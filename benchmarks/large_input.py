"""A full Excel column through a worksheet function: wall time and peak memory.

Builds what xlwings hands GLMM_POISSON for y, X, groups and offset ranges of
1,048,576 rows (every row of a worksheet) x 10 predictors -- lists of rows of
Python floats and str, as xlwings passes ranges declared ndim=2 -- and calls the
function, as Excel would, with the default time budget.  Reports

* wall time of the call, split into validation (worksheet values -> arrays),
  the fit (design, optimisation, standard errors) and the result block;
* memory: the process's resident set size (RSS) after the imports, after the
  worksheet values are built (what xlwings itself would hold), and its peak
  (ru_maxrss) during the call; optionally the peak of Python/NumPy allocations
  during the call (tracemalloc: slower, run separately with --tracemalloc).

    python benchmarks/large_input.py                    # 1,048,576 x 10, two groupings
    python benchmarks/large_input.py --rows 100000 --groups 1
    python benchmarks/large_input.py --tracemalloc      # + traced allocation peak

Run from the repository root (no install needed).
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from xlglmm.sheet import cache, models, udfs  # noqa: E402

EXCEL_ROWS = 1_048_576


def rss_mb() -> float:
    """Current resident set size (Linux /proc; else the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2 ** 20 if sys.platform == "darwin" else r / 1024


def worksheet_values(n: int, p: int, groups: int, seed: int = 2024):
    """y (with header), X (header + n rows x p), groups (header + n x groups), offset:
    lists of rows of Python floats / str, as xlwings passes them."""
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, p)).round(4)
    n1, n2 = 5000, 100
    g1 = r.integers(0, n1, n)
    g2 = r.integers(0, n2, n)
    expo = r.integers(10, 500, n)
    u = r.normal(0, 0.5, n1)
    v = r.normal(0, 0.3, n2)
    beta = np.linspace(-0.3, 0.3, p)
    eta = -3 + X @ beta + u[g1] + (v[g2] if groups > 1 else 0) + np.log(expo)
    y = r.poisson(np.exp(eta)).astype(float)
    y_rng = [["count"]] + [[v] for v in y.tolist()]
    X_rng = [[f"x{j + 1}" for j in range(p)]] + X.tolist()
    lab1 = [f"site{k}" for k in range(n1)]
    lab2 = [f"week{k}" for k in range(n2)]
    if groups > 1:
        g_rng = [["site", "week"]] + [[lab1[a], lab2[b]] for a, b in zip(g1.tolist(), g2.tolist())]
    else:
        g_rng = [["site"]] + [[lab1[a]] for a in g1.tolist()]
    off_rng = [["log exposure"]] + [[v] for v in np.log(expo).tolist()]
    return y_rng, X_rng, g_rng, off_rng


def warm_up():
    """Load the Numba kernels (from the on-disk cache) outside the measurement."""
    y = [[2.0], [3.0], [5.0], [1.0], [2.0], [4.0], [0.0], [1.0]]
    x = [[1.0], [2.0], [3.0], [1.0], [2.0], [3.0], [1.0], [2.0]]
    g = [["a", "p"], ["a", "q"], ["b", "p"], ["b", "q"], ["c", "p"], ["c", "q"], ["d", "p"],
         ["d", "q"]]
    udfs.GLMM_POISSON(y, x, g, [[0.1]] * 8)
    cache.clear()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=EXCEL_ROWS)
    ap.add_argument("--predictors", type=int, default=10)
    ap.add_argument("--groups", type=int, default=2, choices=(1, 2))
    ap.add_argument("--tracemalloc", action="store_true",
                    help="also trace Python/NumPy allocations during the call (slower)")
    a = ap.parse_args(argv)

    warm_up()
    gc.collect()
    rss0 = rss_mb()
    t = time.perf_counter()
    y, X, g, off = worksheet_values(a.rows, a.predictors, a.groups)
    t_build = time.perf_counter() - t
    gc.collect()
    rss1 = rss_mb()
    print(f"xlglmm large input: {a.rows:,} rows x {a.predictors} predictors, "
          f"{a.groups} grouping column(s), Poisson with offset "
          f"(Python {platform.python_version()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs)")
    print(f"  worksheet values built in {t_build:.1f} s; RSS {rss0:,.0f} MB after imports, "
          f"{rss1:,.0f} MB with the values (+{rss1 - rss0:,.0f} MB: what xlwings holds)")

    if a.tracemalloc:
        tracemalloc.start()
    t0 = time.perf_counter()
    m = models.model_from_ranges("poisson", y, X, g, off)
    t1 = time.perf_counter()
    res = models.fit_model(m)
    t2 = time.perf_counter()
    blk = udfs._fit_block(m, 0.05)
    t3 = time.perf_counter()
    traced = None
    if a.tracemalloc:
        traced = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
    peak = peak_rss_mb()
    cache.clear()
    del m, res, blk
    gc.collect()
    # the same through the worksheet function itself (as Excel calls it)
    t4 = time.perf_counter()
    out = udfs.GLMM_POISSON(y, X, g, off)
    t5 = time.perf_counter()
    ok = isinstance(out, list)
    print(f"  validation {t1 - t0:.1f} s, fit {t2 - t1:.1f} s, block {t3 - t2:.2f} s "
          f"(total {t3 - t0:.1f} s); GLMM_POISSON end to end {t5 - t4:.1f} s")
    print(f"  peak RSS {peak:,.0f} MB (+{peak - rss1:,.0f} MB over the worksheet values)"
          + (f"; tracemalloc peak during the call {traced:,.0f} MB" if traced else ""))
    if ok:
        get = {r[0]: r[1] for r in out if r and isinstance(r[0], str)}
        print(f"  result: block {len(out)} x {len(out[0])}; nobs {get.get('nobs'):,.0f}, "
              f"converged {get.get('converged')}, method {get.get('method')}, "
              f"logLik {get.get('logLik'):.2f}")
        notes = [r[0] for r in out[[r[0] for r in out].index("Notes") + 1:]]
        for n in notes:
            print(f"  note: {n}")
    else:
        print(f"  result: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
