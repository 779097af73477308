"""What each lever of the exact Laplace gradient (issue 16) gains, in one process on
the same data: stage 2 and the covariance as they were and with each lever added.

    python benchmarks/gradient_levers.py                     # issue 16's shapes + grouse_slope
    python benchmarks/gradient_levers.py --only peer_bin_nested_16fe --reps 7

Variants (model internals swapped in-process; everything else the same code):

* ``values``: stage 2 on the deviance's values -- a finite-difference Hessian
  (k^2 + k evaluations) and gradients, BFGS steps, the Hessian again at the optimum
  -- and lme4's deriv12 stencil for se_method="auto" at any size (the code before
  the gradient);
* ``grad steps``: quasi-Newton steps with the exact gradient, the starting Hessian
  from its forward differences, but the final Hessian still from values;
* ``grad Hessian``: also the final Hessian from central differences of the gradient
  (2k evaluations); lme4's stencil still at any size;
* ``auto <= 10``: also lme4's stencil only up to LME4_STENCIL_MAX_PARAMS
  parameters (today's code).

Prints the median warm fit time (xlglmm's ``glmer``, design and result included),
the deviance evaluations (PIRLS mode searches; lme4's stencil's are not counted),
the log-likelihood and the largest SE difference against ``values``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402
import xlglmm  # noqa: E402
from xlglmm.engine import covariance, model, optimize  # noqa: E402

SHAPES = ["peer_bin_nested_16fe", "peer_gamma_slope_8fe", "peer_pois_crossed_7fe",
          "grouse_slope"]


def variant(name):
    """Patch the model module for one variant; returns the undo function."""
    M = model.GeneralizedLinearMixedModel
    saved = (M._gradient_steps, model.hessian_from_gradient, model.LME4_STENCIL_MAX_PARAMS)

    def undo():
        M._gradient_steps, model.hessian_from_gradient, model.LME4_STENCIL_MAX_PARAMS = saved
    if name in ("values", "grad steps", "grad Hessian"):
        model.LME4_STENCIL_MAX_PARAMS = 10 ** 9
    if name == "values":
        M._gradient_steps = M._value_steps
    if name == "grad steps":
        def value_hessian(fg, x, delta=optimize.EXACT_FD_DELTA, budget=None, warm=None,
                          g0=None):
            if g0 is not None:              # the starting Hessian: gradient differences
                return optimize.hessian_from_gradient(fg, x, delta, budget, warm, g0)
            return optimize.hessian_fd(lambda z: fg(z)[0], x, budget=budget)[1]
        model.hessian_from_gradient = value_hessian
    return undo


def fit(spec, df, kw):
    f = xlglmm.lmer if spec["family"] == "gaussian" else xlglmm.glmer
    return f(spec["formula"], df, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=SHAPES)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    refs = bench.reference_models()
    print(f"{'model':24s} {'variant':13s} {'median s':>9s} {'evals':>6s} "
          f"{'logLik':>14s} {'max |dSE|/SE':>12s}")
    for name in args.only:
        spec = bench.PEER_MODELS.get(name) or refs[name]
        df = bench.load(spec)
        for col in spec.get("factors", []):
            df[col] = df[col].astype(str)
        kw = {"family": spec["family"]}
        if spec.get("link"):
            kw["link"] = spec["link"]
        if spec.get("offset_log"):
            kw["offset"] = np.log(df[spec["offset_log"]].to_numpy(float))
        if spec.get("weights"):
            kw["weights"] = spec["weights"]
        base_se = None
        for v in ("values", "grad steps", "grad Hessian", "auto <= 10"):
            undo = variant(v)
            try:
                r = fit(spec, df, kw)          # warm-up (compilation, caches)
                ts = []
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    r = fit(spec, df, kw)
                    ts.append(time.perf_counter() - t0)
            finally:
                undo()
            se = r.fe_bse.to_numpy(float)
            if base_se is None:
                base_se = se
            dse = float(np.max(np.abs(se / base_se - 1.0)))
            print(f"{name:24s} {v:13s} {np.median(ts):9.4f} {r.evaluations:6d} "
                  f"{r.llf:14.6f} {dse:12.2e}", flush=True)


if __name__ == "__main__":
    main()
