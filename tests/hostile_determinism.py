"""The worksheet calls of test_hostile's determinism tests, in a module of their own: the
tests run them here and in fresh processes (which import this module, not the test file)."""
from __future__ import annotations

import math

from refs import PACKAGE_DATA
from xlglmm.sheet import udfs


def determinism_calls():
    """Worksheet calls covering the six functions, several families and methods."""
    import pandas as pd
    from hostile_cases import TAB, G, H, X, X2, Y, YB, YS, T, col, cols
    df = pd.read_csv(PACKAGE_DATA / "workplace_safety.csv")
    y, x = col(df.incidents.tolist(), "incidents"), col(df.training.tolist(), "training")
    g = [["plant", "month"]] + cols(df.plant.tolist(), df.month.astype(str).tolist())
    off = col([math.log(v) for v in df.employees])
    gam = [["y", "x", "g"]] + [[v + 0.5, w, k] for v, w, k in zip(Y, X2, G)]
    outs = [udfs.GLMM_POISSON(y, x, g, off),
            udfs.GLMM_POISSON(col(Y), cols(X, X2), col(G), None, col(X2), False, 0.1),
            udfs.GLMM_BINOMIAL(col(YS), col(X2), col(G), col(T), None, True, 0.05, 7),
            udfs.GLMM_BINOMIAL(col(YB), col(X2), cols(G, H), None, None, True, 0.05, 1,
                               "probit"),
            udfs.GLMM("y ~ x + (x|g)", TAB),
            udfs.GLMM("y ~ x + (1|g)", gam, "gamma", "log"),
            udfs.GLMM_RANEF(y, x, g, off),
            udfs.GLMM_PREDICT(y, x, g, None, None, off),
            udfs.GLMM_PREDICT("y ~ x + (1|g)", TAB, [["x", "g"], [1.0, "a"], [2.0, "zz"]]),
            udfs.GLMM_COMPARE("y ~ x + (1|g)", "y ~ 1 + (1|g)", TAB)]
    outs.append(udfs.GLMM_COMPARE(outs[0], udfs.GLMM_POISSON(y, None, g, off)))
    return outs
