"""What a spreadsheet user waits for: first call in a fresh process, and recalculation.

    python benchmarks/latency.py            # prints the table, writes results/<date>-<host>-latency.md
    python benchmarks/latency.py --cold     # first use on a new machine: an empty Numba cache

* **first call**: a new Python process imports xlglmm and calls GLMM_POISSON on the
  160-row workplace-safety data (crossed plant and month intercepts, log offset) with
  the compiled kernels already in Numba's on-disk cache -- what the first formula of an
  Excel session costs.  Wall time of the whole process and of import + call inside it,
  median of --runs fresh processes (after one process that fills the cache).
* **warm recalculation**: the same call again in that process with unchanged inputs
  (the fit cache answers), median of 200 calls.
* **changed input**: one y value changed, so the model is fitted again (warm kernels).

* **cold** (``--cold``): the same first call with an empty Numba cache (a new
  NUMBA_CACHE_DIR per run), so the kernels are compiled -- what the very first
  formula after installing costs; and ``xlglmm.engine.jit.warm_up()`` from an empty cache,
  which compiles what the installers (``xlglmm addin install``, ``xlglmm
  libreoffice install``) compile ahead: every family, AGQ, the linear mixed model.

Targets: first call < 2 s, warm recalculation < 5 ms, cold first call <= 15 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np, pandas as pd
from xlglmm.sheet import udfs
df = pd.read_csv({csv!r})
y = [["incidents"]] + [[float(v)] for v in df.incidents]
X = [["training"]] + [[float(v)] for v in df.training]
g = [["plant", "month"]] + [[a, float(b)] for a, b in zip(df.plant, df.month)]
off = [["log_employees"]] + [[float(np.log(v))] for v in df.employees]
t1 = time.perf_counter()
block = udfs.GLMM_POISSON(y, X, g, off)
t2 = time.perf_counter()
assert block[0][0] == "Fixed effects", block
warm = []
for _ in range(200):
    a = time.perf_counter(); udfs.GLMM_POISSON(y, X, g, off); warm.append(time.perf_counter() - a)
refits = []
for k in range(7):      # seven different one-cell edits (a median: one may meet a GC pass)
    y2 = [r[:] for r in y]; y2[5 + k] = [y2[5 + k][0] + 1.0]
    a = time.perf_counter(); udfs.GLMM_POISSON(y2, X, g, off)
    refits.append(time.perf_counter() - a)
refit = sorted(refits)[3]
warm.sort()
print(json.dumps({{"import_s": t1 - t0, "first_call_s": t2 - t1, "warm_ms": 1e3 * warm[100],
                  "refit_ms": 1e3 * refit}}))
"""


COLD_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np, pandas as pd
from xlglmm.engine import jit
from xlglmm.sheet import udfs
t1 = time.perf_counter()
if {warm_up!r}:
    assert not jit.warm_up()
    print(json.dumps({{"import_s": t1 - t0, "warm_up_s": time.perf_counter() - t1,
                      "compile_s": jit.seconds(), "kernels": jit.compilations()}}))
    raise SystemExit
df = pd.read_csv({csv!r})
y = [["incidents"]] + [[float(v)] for v in df.incidents]
X = [["training"]] + [[float(v)] for v in df.training]
g = [["plant", "month"]] + [[a, float(b)] for a, b in zip(df.plant, df.month)]
off = [["log_employees"]] + [[float(np.log(v))] for v in df.employees]
t2 = time.perf_counter()
block = udfs.GLMM_POISSON(y, X, g, off)
t3 = time.perf_counter()
assert block[0][0] == "Fixed effects", block
print(json.dumps({{"import_s": t1 - t0, "first_call_s": t3 - t2, "compile_s": jit.seconds(),
                  "kernels": jit.compilations()}}))
"""


def one(python: str, cold: bool = False, warm_up: bool = False) -> dict:
    template = COLD_CHILD if cold else CHILD
    code = template.format(root=str(ROOT), warm_up=warm_up,
                           csv=str(ROOT / "xlglmm" / "data" / "workplace_safety.csv"))
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        t0 = time.perf_counter()
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True,
                             env=env)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["process_s"] = time.perf_counter() - t0
    return r


def cold(runs: int) -> list[str]:
    """First use on a new machine: every run with an empty Numba cache."""
    first = [one(sys.executable, cold=True) for _ in range(runs)]
    warm_up = [one(sys.executable, cold=True, warm_up=True) for _ in range(runs)]
    med = {k: statistics.median(r[k] for r in first) for k in first[0]}
    wmed = {k: statistics.median(r[k] for r in warm_up) for k in warm_up[0]}
    return [
        "# First use on a new machine (empty Numba cache)",
        "",
        f"{date.today()}, {platform.platform()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at the start, Python {platform.python_version()}; median of "
        f"{runs} fresh processes, each with an empty cache (`python benchmarks/latency.py --cold`).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| first GLMM_POISSON call after installing (160 rows; compiles what it needs) | "
        f"{med['first_call_s']:.1f} s | <= 15 s |",
        f"| of which compiling and loading compiled code ({int(med['kernels'])} functions compiled) | {med['compile_s']:.1f} s | |",
        f"| import of xlglmm | {med['import_s']:.2f} s | |",
        f"| whole process | {med['process_s']:.1f} s | |",
        f"| `xlglmm.engine.jit.warm_up()`: everything the installers compile ahead "
        f"({int(wmed['kernels'])} functions: every family, AGQ, LMM) | {wmed['warm_up_s']:.1f} s | |",
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--cold", action="store_true",
                    help="first use on a new machine: an empty Numba cache per run")
    a = ap.parse_args(argv)
    if a.cold:
        text = "\n".join(cold(min(a.runs, 3))) + "\n"
        print(text)
        a.out.mkdir(parents=True, exist_ok=True)
        path = a.out / f"{date.today()}-{platform.node() or 'host'}-cold.md"
        path.write_text(text)
        print(f"wrote {path}")
        return 0
    one(sys.executable)                               # fills Numba's cache if it is cold
    runs = [one(sys.executable) for _ in range(a.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    lines = [
        "# First call and recalculation latency",
        "",
        f"{date.today()}, {platform.platform()}, Python {platform.python_version()}; "
        f"median of {a.runs} fresh processes (`python benchmarks/latency.py`).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| first call in a fresh process: import + first GLMM_POISSON | "
        f"{med['import_s'] + med['first_call_s']:.2f} s | < 2 s |",
        f"| of which the import of xlglmm (+ numpy, pandas, numba, xlwings) | {med['import_s']:.2f} s | |",
        f"| of which the call (kernels from Numba's cache, fit, block) | {med['first_call_s']:.2f} s | |",
        f"| the whole child process (interpreter start, the above, 200 recalculations, 7 refits) "
        f"| {med['process_s']:.2f} s | |",
        f"| recalculation, unchanged inputs (fit cache) | {med['warm_ms']:.2f} ms | < 5 ms |",
        f"| recalculation after one y value changed (refit, warm kernels; median of 7 edits) | {med['refit_ms']:.1f} ms | |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    host = platform.node() or "host"                  # as bench.py names its files
    path = a.out / f"{date.today()}-{host}-latency.md"
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
