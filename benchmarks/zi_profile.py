"""Where a zero-inflated fit's time goes (issue 17): each stage of
``zero_inflation.ZeroInflatedModel.fit`` timed, with its Laplace deviance evaluations
(``devfun.evaluations``: one PIRLS mode search each) and PIRLS iterations.

    python benchmarks/zi_profile.py                 # bench.py's ZI_MODELS
    python benchmarks/zi_profile.py zinb1_sim --reps 3

Stages: the Poisson GLMM without zero inflation (``fit_start``), the start of the
count parameter and zi coefficients (a small scipy search, no PIRLS), the fit at that
start (``m0``), the joint quasi-Newton search over (theta, c, beta), the reported fit
at the estimate, and the joint Hessian behind the covariances.  Times are one warm fit
(the kernels compiled and loaded by a first fit); nothing in the engine is changed,
its methods are wrapped.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import xlglmm  # noqa: E402
from xlglmm.engine import zero_inflation as zi  # noqa: E402
from bench import ZI_MODELS  # noqa: E402

STAGES = ("start fit (Poisson GLMM)", "zi start search", "fit at start (m0)",
          "joint search", "reported fit", "joint Hessian (SEs)")


class Recorder:
    def __init__(self):
        self.rows = []
        self.extra = {}

    def add(self, stage, seconds, evals, iters):
        self.rows.append((stage, seconds, evals, iters))


def instrument(rec: Recorder):
    """Wrap ZeroInflatedModel's stages (restored by the returned function)."""
    cls = zi.ZeroInflatedModel
    orig = {n: getattr(cls, n) for n in ("fit", "_start", "_fit_at", "_search_joint",
                                         "_covariance")}
    calls = {"fit_at": 0}

    def fit(self):
        inner = self._fit_start

        def timed_start():
            t0 = time.perf_counter()
            r = inner()
            dev = r.model.devfun
            rec.add(STAGES[0], time.perf_counter() - t0, dev.evaluations, dev.pirls_iterations)
            return r
        self._fit_start = timed_start
        calls["fit_at"] = 0
        return orig["fit"](self)

    def _start(self):
        t0 = time.perf_counter()
        r = orig["_start"](self)
        rec.add(STAGES[1], time.perf_counter() - t0, 0, 0)
        return r

    def _fit_at(self, family, se_method, seconds, warm=None):
        t0 = time.perf_counter()
        m = orig["_fit_at"](self, family, se_method, seconds, warm)
        stage = STAGES[2] if calls["fit_at"] == 0 else STAGES[4]
        calls["fit_at"] += 1
        rec.add(stage, time.perf_counter() - t0, m.devfun.evaluations, m.devfun.pirls_iterations)
        return m

    def _search_joint(self, m0, c0):
        dev = m0.devfun
        e0, i0 = dev.evaluations, dev.pirls_iterations
        counts = {"value_and_gradient": 0, "deviance": 0}
        vg, call = zi.ZeroInflatedJointDeviance.value_and_gradient, zi.ZeroInflatedJointDeviance.__call__

        def vg_counted(fun, x):
            counts["value_and_gradient"] += 1
            return vg(fun, x)

        def call_counted(fun, x):
            counts["deviance"] += 1
            return call(fun, x)
        zi.ZeroInflatedJointDeviance.value_and_gradient = vg_counted
        zi.ZeroInflatedJointDeviance.__call__ = call_counted
        t0 = time.perf_counter()
        try:
            r = orig["_search_joint"](self, m0, c0)
        finally:
            zi.ZeroInflatedJointDeviance.value_and_gradient = vg
            zi.ZeroInflatedJointDeviance.__call__ = call
        rec.add(STAGES[3], time.perf_counter() - t0, dev.evaluations - e0,
                dev.pirls_iterations - i0)
        rec.extra.update(method=self.method, gradients=counts["value_and_gradient"],
                         joint_calls=counts["deviance"], k=len(c0), ntheta=dev.ntheta,
                         p=len(m0.optimum.beta))
        return r

    def _covariance(self, est, k, held):
        dev = self.model.devfun
        e0, i0 = dev.evaluations, dev.pirls_iterations
        t0 = time.perf_counter()
        r = orig["_covariance"](self, est, k, held)
        rec.add(STAGES[5], time.perf_counter() - t0, dev.evaluations - e0,
                dev.pirls_iterations - i0)
        return r

    for n, f in (("fit", fit), ("_start", _start), ("_fit_at", _fit_at),
                 ("_search_joint", _search_joint), ("_covariance", _covariance)):
        setattr(cls, n, f)

    def restore():
        for n, f in orig.items():
            setattr(cls, n, f)
    return restore


def load(spec):
    df = pd.read_csv(spec["csv"])
    for col in spec.get("factors", []):
        df[col] = pd.Categorical(df[col].astype(str))
    return df


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=list(ZI_MODELS))
    ap.add_argument("--reps", type=int, default=3, help="profiled fits (the last is shown)")
    a = ap.parse_args(argv)
    for name in a.models:
        spec = ZI_MODELS[name]
        df = load(spec)
        kw = dict(family=spec["family"], ziformula=spec["ziformula"])
        xlglmm.glmer(spec["formula"], df, **kw)          # warm-up: kernels loaded
        totals = []
        for _ in range(a.reps):
            rec = Recorder()
            restore = instrument(rec)
            try:
                t0 = time.perf_counter()
                r = xlglmm.glmer(spec["formula"], df, **kw)
                total = time.perf_counter() - t0
            finally:
                restore()
            totals.append(total)
        print(f"\n### {name}: {spec['family']} {spec['formula']}, zi {spec['ziformula']} "
              f"(logLik {r.llf:.6f}; median total {np.median(totals):.3f} s of {a.reps})\n")
        print(f"joint search: method {rec.extra.get('method')}, {rec.extra.get('gradients')} "
              f"gradient evaluations, {rec.extra.get('joint_calls')} deviance calls; "
              f"{rec.extra.get('ntheta')} theta + {rec.extra.get('k')} c + "
              f"{rec.extra.get('p')} beta\n")
        print("| stage | s | share | deviance evaluations | PIRLS iterations |")
        print("|---|---|---|---|---|")
        for stage, s, e, i in rec.rows:
            print(f"| {stage} | {s:.3f} | {100 * s / total:.0f}% | {e} | {i} |")
        rest = total - sum(s for _, s, _, _ in rec.rows)
        print(f"| other (design, results) | {rest:.3f} | {100 * rest / total:.0f}% | | |")
        print(f"| **total** | {total:.3f} | | {sum(e for _, _, e, _ in rec.rows)} | "
              f"{sum(i for _, _, _, i in rec.rows)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
