"""The first fit on a new install: compilation is reported, never counted against
the fit's time budget, and cached even when the package is installed read-only.

A fresh Python process imports xlglmm from a read-only copy of the package (as
site-packages owned by root, or a Python under Program Files), with an empty home
folder, and fits the 160-row workplace-safety model with a time budget far shorter
than compiling the kernels takes.  The fit must converge to the same numbers as this
process's fit, say on stderr that it compiles and how long that took, write nothing
into the package, and leave Numba's cache in the user's cache folder -- so that a
second fresh process compiles nothing.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xlglmm
from refs import PACKAGE_DATA
from refs import PRECISION

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 0.5          # seconds of fitting; compiling the kernels takes several seconds

CHILD = r"""
import json, sys
import numpy as np, pandas as pd
import xlglmm
df = pd.read_csv(sys.argv[1])
res = xlglmm.glmer("incidents ~ training", df, "poisson", groups=["plant", "month"],
                   offset=np.log(df.employees), time_budget=float(sys.argv[2]))
print(json.dumps({"converged": res.converged, "beta": res.fe_params.tolist(),
                  "se": res.fe_bse.tolist(), "llf": res.llf, "messages": res.messages,
                  "compile_seconds": res.compile_seconds, "seconds": res.seconds,
                  "compilations": xlglmm.engine.jit.compilations(),
                  "package": xlglmm.__file__}))
"""


def _read_only_runner():
    """A command prefix that runs a process without the power to write read-only
    files (root ignores file modes unless it drops CAP_DAC_OVERRIDE)."""
    if sys.platform == "win32":
        pytest.skip("read-only install simulated with POSIX file modes")
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop CAP_DAC_OVERRIDE")
    return [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"]


def _snapshot(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def read_only_install(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first_use")
    site = tmp / "site"
    shutil.copytree(ROOT / "xlglmm", site / "xlglmm",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    home = tmp / "home"
    home.mkdir()
    before = _snapshot(site)
    for p in [site, *site.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NUMBA_", "XDG_CACHE", "PYTHON"))}
    env.update(HOME=str(home), PYTHONPATH=str(site), XLGLMM_VERBOSE="1",
               PYTHONDONTWRITEBYTECODE="1")
    prefix = _read_only_runner()

    def run():
        out = subprocess.run(prefix + [sys.executable, "-c", CHILD,
                                       str(PACKAGE_DATA / "workplace_safety.csv"),
                                       str(BUDGET)],
                             capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr

    first = run()
    second = run()
    yield {"first": first, "second": second, "site": site, "home": home, "before": before}
    for p in [site, *site.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_the_first_fit_is_not_stopped_by_compiling(read_only_install):
    df = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")
    here = xlglmm.glmer("incidents ~ training", df, "poisson", groups=["plant", "month"],
                        offset=np.log(df.employees))
    got, stderr = read_only_install["first"]
    assert got["package"].startswith(str(read_only_install["site"]))
    assert got["compile_seconds"] > BUDGET        # the budget alone would have run out
    assert got["converged"] is True, got["messages"]
    se = here.fe_bse.to_numpy()
    assert np.all(np.abs(np.array(got["beta"]) - here.fe_params.to_numpy()) / se
                  <= PRECISION["estimate_in_se"])
    assert np.allclose(got["se"], se, rtol=PRECISION["se_rel"], atol=0)
    assert abs(got["llf"] - here.llf) <= PRECISION["loglik_abs"]
    assert not any("budget" in m for m in got["messages"])
    lines = stderr.strip().splitlines()
    assert any("compiling the numerical kernels" in s for s in lines), stderr
    done = [s for s in lines if s.startswith("xlglmm: compiled in")]
    assert len(done) == 1 and f"{got['compile_seconds']:.1f} s" in done[0]


def test_a_read_only_install_caches_in_the_user_folder(read_only_install):
    assert _snapshot(read_only_install["site"]) == read_only_install["before"]
    cached = list((read_only_install["home"] / ".cache" / "numba").rglob("*.nbi"))
    assert cached, "Numba's index files are in the user's cache folder"
    second, stderr = read_only_install["second"]
    assert second["compilations"] == 0             # all loaded from that cache
    assert "compiling" not in stderr
    assert second["compile_seconds"] < read_only_install["first"][0]["compile_seconds"]
    assert second["beta"] == read_only_install["first"][0]["beta"]


def test_compilation_time_is_counted_per_thread():
    """A fit's clock subtracts only the compilation that held up its own thread:
    four threads compiling at once leave each one's elapsed time >= 0 (a process-wide
    total once made it negative), and the time is compilation, not fitting."""
    import threading
    import time
    import numba
    from xlglmm.engine import jit
    results = []

    def work(k):
        clock = jit.Stopwatch()
        f = numba.njit(lambda x, k=k: x * k + 1.0)   # a new function: compiled here
        f(1.0)
        results.append((clock.elapsed(), clock.compiled()))
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for elapsed, compiled in results:
        assert elapsed >= 0.0
        assert compiled > elapsed            # nearly all of each thread's time
