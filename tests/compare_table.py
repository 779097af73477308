"""Print the table 'how results compare with lme4' for docs/lme4.md (a tool beside the
reference tests, whose loader it uses).

    python tests/compare_table.py            # markdown table on stdout

Fits every reference model in tests/data (the shared set, the extra forms, and the
negative binomial / linear mixed models) and compares with lme4 1.1-31's answers
stored beside them: log-likelihood difference, the worst fixed effect in units of
lme4's SE, the worst SE and random-effect SD as relative differences.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]   # the package, and refs beside this file

import xlglmm  # noqa: E402
from refs import expected, fit, load_frame, manifest, sds_by_group  # noqa: E402


def rows():
    sets = [("models.json", False), ("extra/models.json", True), ("models_negbin_lmm.json", False)]
    for mf, extra in sets:
        for name, spec in manifest(mf).items():
            exp = expected(name, extra)
            if spec.get("lmm"):
                res = xlglmm.lmer(spec["formula"], load_frame(spec), REML=spec["REML"])
            else:
                res, _ = fit(spec)
            yield name, spec, exp, res


def main() -> int:
    print("| model | n | method | ΔlogLik | worst β (SEs) | worst SE | worst SD |")
    print("|---|---|---|---|---|---|---|")
    for name, spec, exp, res in rows():
        agq = spec.get("nAGQ", 1) > 1
        dll = "(other scale)" if agq else f"{res.llf - exp['logLik']:+.1e}"
        b = s = sd = "—"
        if not spec.get("loglik_only"):
            se = np.atleast_1d(np.array(exp["se"], float))
            rb = np.array(list(exp["fixef"].values()), float)
            b = f"{np.max(np.abs(res.fe_params.to_numpy() - rb) / se):.1e}"
            s = f"{np.max(np.abs(res.fe_bse.to_numpy() / se - 1)):.1e}"
            mine, theirs = sds_by_group(res.varcorr.to_dict("records")), sds_by_group(exp["varcorr"])
            errs = [abs(a - c) / max(c, 0.5) for g in theirs for a, c in zip(mine.get(g, []), theirs[g])]
            sd = f"{max(errs):.1e}" if errs else "—"
        print(f"| {name} | {res.nobs} | {res.method} | {dll} | {b} | {s} | {sd} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
