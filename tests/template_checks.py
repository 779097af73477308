"""Checks shared by the tests that recalculate the templates (``xlglmm recalc`` in
tests/workbook/test_workbooks.py, LibreOffice Calc in tests/bridges/test_libreoffice.py):
where the xlglmm formulas of a template are, and each kind of block checked against
``xlglmm.glmer`` fitted to the data read back from the workbook."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from openpyxl.worksheet.formula import ArrayFormula
from scipy import stats

import xlglmm
from xlglmm.workbook import excel_formula

ROOT = Path(__file__).resolve().parents[1]
WORKBOOKS = ROOT / "workbooks"
TEMPLATE_FILES = sorted(WORKBOOKS.glob("*.xlsx"))
XLGLMM_CALL = re.compile(r"\b(GLMM(_[A-Z]+)?|LMM)\s*\(", re.I)
# sheets between Model and Data
EXTRA_SHEETS = {"workplace_safety": ["NB2 vs Poisson", "Intervals", "Checks",
                                     "Plan the next study"],
                "grouseticks": ["NB2 vs Poisson", "Checks", "Zero inflation"]}


# ---- helpers ------------------------------------------------------------------------------

def xlglmm_formulas(path) -> dict:
    """'Sheet!A1' -> (formula text, array range) for every cell calling an xlglmm
    function, found with openpyxl independently of the recalc code."""
    wb = openpyxl.load_workbook(path)
    found = {}
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                v = c.value
                text, ref = (v.text, v.ref) if isinstance(v, ArrayFormula) else (v, None)
                if isinstance(text, str) and text.startswith("=") and XLGLMM_CALL.search(text):
                    found[f"{ws.title}!{c.coordinate}"] = (text, ref)
    return found


def block_at(ws, ref: str) -> list:
    r1, c1, r2, c2 = excel_formula.parse_range(ref)
    return [[ws.cell(r, c).value for c in range(c1, c2 + 1)] for r in range(r1, r2 + 1)]


def data_frame(wb) -> pd.DataFrame:
    """The Data sheet's table, as values."""
    ws = wb["Data"]
    (table,) = ws.tables.values()
    rows = block_at(ws, table.ref)
    return pd.DataFrame(rows[1:], columns=rows[0])


def row_of(block, label):
    for r in block:
        if r and r[0] == label:
            return r
    raise KeyError(label)


def close(a, b, rel=1e-6, abs_=1e-8):
    return a == pytest.approx(b, rel=rel, abs=abs_)


def check_fit_block(block, res, alpha=0.05):
    """A fit block against a GLMMResult: every number."""
    head = block[0]
    if isinstance(res, xlglmm.LMMResult):     # lmerTest's columns: Satterthwaite's t tests
        assert head[:6] == ["Fixed effects", "Estimate", "Std. Error", "df", "t value",
                            "Pr(>|t|)"]
        tests = res.t_tests()
        q = stats.t.ppf(1 - alpha / 2, tests["df"])
        ci = pd.DataFrame({"lower": tests["estimate"] - q * tests["se"],
                           "upper": tests["estimate"] + q * tests["se"]})
        middle = lambda name: [tests.loc[name, "df"], tests.loc[name, "t"],
                               tests.loc[name, "p"]]
    else:
        assert head[:5] == ["Fixed effects", "Estimate", "Std. Error", "z value", "Pr(>|z|)"]
        ci = res.conf_int(alpha)
        middle = lambda name: [res.fe_zvalues[name], res.fe_pvalues[name]]
    for name in res.fe_params.index:
        r = row_of(block, name)
        want = [res.fe_params[name], res.fe_bse[name], *middle(name),
                ci.loc[name, "lower"], ci.loc[name, "upper"]]
        for got, w in zip(r[1:len(want) + 1], want):
            assert close(got, w, rel=1e-5, abs_=1e-10), (name, r, want)
        if len(head) > len(want) + 1:          # the ratio columns
            for got, w in zip(r[7:10], np.exp(want[0:1] + want[4:6])):
                assert close(got, w, rel=1e-5), (name, r)
    # variance components, in the block's order
    i = next(k for k, r in enumerate(block) if r[0] == "Random effects")
    vc = res.varcorr
    own = vc[vc.var2.isna()] if "var2" in vc else vc
    for k, rec in enumerate(own.itertuples(index=False)):
        r = block[i + 1 + k]
        if rec.grp == "Residual":                       # LMM: var1 is NaN, the cell blank
            assert (r[0], r[1]) == ("Residual", None)
        else:
            assert (r[0], r[1]) == (rec.grp, rec.var1)
        assert close(r[2], rec.vcov, rel=1e-4, abs_=1e-8)
        assert close(r[3], rec.sdcor, rel=1e-4, abs_=1e-8)
    for label, value in (("logLik", res.llf), ("AIC", res.aic), ("BIC", res.bic),
                         ("deviance", res.deviance)):
        assert close(row_of(block, label)[1], value, rel=1e-9, abs_=1e-6), label
    assert row_of(block, "nobs")[1] == res.nobs
    assert row_of(block, "npar")[1] == res.npar
    for g, n in res.ngroups.items():
        assert row_of(block, f"groups: {g}")[1] == n
    assert row_of(block, "converged")[1] is True
    if getattr(res, "nb_theta", None) is not None:            # GLMM_NEGBIN
        assert close(row_of(block, "NB theta")[1], res.nb_theta, rel=1e-6)
        assert row_of(block, "family")[1].startswith("negbin")
        if res.nb_theta_se is None or not np.isfinite(res.nb_theta_se):   # at its limit
            assert row_of(block, "NB theta SE")[1] is None
        else:
            assert close(row_of(block, "NB theta SE")[1], res.nb_theta_se, rel=1e-6)
            assert close(row_of(block, "NB theta CI low")[1], res.nb_theta_ci[0], rel=1e-6)
            assert close(row_of(block, "NB theta CI high")[1], res.nb_theta_ci[1], rel=1e-6)
    if res.family.zero_inflated:          # the zero-inflation section and its fit row
        check_zero_inflation_rows(block, res, alpha)
    else:
        assert not any(r[0] in ("Zero inflation", "zero inflation") for r in block)
    if isinstance(res, xlglmm.LMMResult):                     # LMM
        assert close(row_of(block, "sigma (residual SD)")[1], res.sigma, rel=1e-9)
        assert row_of(block, "method")[1] == ("REML" if res.reml else "ML")
        if res.reml:
            assert close(row_of(block, "REML criterion")[1], res.REMLcrit, rel=1e-9)
        else:
            assert not any(r[0] == "REML criterion" for r in block)
        for g, v in res.icc_by_group.items():
            assert close(row_of(block, f"ICC: {g}")[1], v, rel=1e-9)


def check_zero_inflation_rows(block, res, alpha=0.05):
    """A zero-inflated fit's section: a row "zi <name>" per coefficient with the
    estimate, SE, z, p, Wald interval and the odds ratio with its interval
    (``res.zi_*``); an undetermined coefficient its estimate only."""
    head = row_of(block, "Zero inflation")
    assert head[1:7] == ["Estimate", "Std. Error", "z value", "Pr(>|z|)",
                         f"CI low {100 * (1 - alpha):g}%", f"CI high {100 * (1 - alpha):g}%"]
    assert head[7:10] == ["OR", "OR low", "OR high"]
    ci = res.zi_conf_int(alpha)
    for name in res.zi_params.index:
        r = row_of(block, f"zi {name}")
        assert close(r[1], res.zi_params[name], rel=1e-5, abs_=1e-8), (name, r)
        if name in res.zi_undetermined:
            assert all(v is None for v in r[2:]), r
            continue
        want = [res.zi_bse[name], res.zi_zvalues[name], res.zi_pvalues[name],
                ci.loc[name, "lower"], ci.loc[name, "upper"]]
        for got, w in zip(r[2:7], want):
            assert close(got, w, rel=1e-5, abs_=1e-10), (name, r, want)
        for got, w in zip(r[7:10], np.exp([res.zi_params[name], *want[3:5]])):
            assert close(got, w, rel=1e-5), (name, r)
    # (the worksheet writes "zinb" as "~1", "zinb ~ YEAR" as "~YEAR", as R prints them)
    assert row_of(block, "zero inflation")[1].replace(" ", "") == \
        res.design.spec.zi_formula.text.replace(" ", "")


def check_ranef_block(block, res):
    """Each level's BLUPs and conditional SDs, then its rows, raw estimate and
    shrinkage (``res.shrinkage()``) in the columns its group's header names."""
    rows = [r for r in block if r[0] != "group"]
    shrunk = res.shrinkage()
    n = 0
    for g, vals in res.random_effects.items():
        sds = res.random_effects_sd[g]
        head = next(h for i, h in enumerate(block) if h[0] == "group" and block[i + 1][0] == g)
        width = 2 + 2 * (1 if vals.ndim == 1 else vals.shape[1])
        assert head[width:width + 3] == ["rows", "raw (Intercept)", "shrinkage"], head
        for lev in vals.index:
            r = next(r for r in rows if r[0] == g and str(r[1]) == str(lev))
            v = vals.loc[lev] if vals.ndim == 1 else vals.loc[lev].iloc[0]
            s = sds.loc[lev] if sds.ndim == 1 else sds.loc[lev].iloc[0]
            assert close(r[2], v, rel=1e-4, abs_=1e-7), (g, lev)
            assert close(r[3], s, rel=1e-4, abs_=1e-7), (g, lev)
            if vals.ndim == 2:
                for k in range(1, vals.shape[1]):
                    assert close(r[2 + 2 * k], vals.loc[lev].iloc[k], rel=1e-4, abs_=1e-7)
            want = shrunk[g].loc[lev]
            assert r[width] == want["rows"], (g, lev)
            # the raw estimate is a weighted mean of working residuals at the fit:
            # as precise as the fit (1e-4 of the BLUPs'); the shrinkage 1 - BLUP/raw
            # inherits both errors
            assert close(r[width + 1], want["raw"], rel=1e-4, abs_=1e-7), (g, lev)
            assert close(r[width + 2], want["shrinkage"], rel=1e-3, abs_=1e-6), (g, lev)
            n += 1
    assert n == len(rows)


def check_predict_block(block, res):
    assert block[0] == ["predicted (response)"]
    got = np.array([r[0] for r in block[1:]], float)
    np.testing.assert_allclose(got, res.fittedvalues, rtol=1e-5, atol=1e-9)


def check_zero_block(block, res):
    """A GLMM_PREDICT(..., "zero") column: each fitted row's P(Y = 0)."""
    assert block[0] == ["predicted (zero)"]
    got = np.array([r[0] for r in block[1:]], float)
    np.testing.assert_allclose(got, res.predict(type="zero"), rtol=1e-5, atol=1e-9)


def check_confint_block(block, spec):
    """A GLMM_CONFINT block against the Python API's intervals by the same method
    (``spec``: the result, the method and the bootstrap's nsim and seed)."""
    res, method, nsim, seed = spec
    assert block[0][:5] == ["Parameter", "Estimate", "CI low 95%", "CI high 95%", "Method"]
    if method == "bootstrap":
        boot = res.bootstrap(nsim, seed)
        ci, estimates = boot.recommended(), boot.estimates
    else:
        ci = res.conf_int(method=method)
        estimates = pd.concat([res.fe_params, pd.Series(
            {n: t.estimate for n, t in res.profile().traces.items()})])
    for row in block[1:]:
        name = row[0]
        assert row[4] == (ci.loc[name, "kind"] if method == "bootstrap" else method)
        assert close(row[1], estimates[name], rel=1e-5, abs_=1e-6)
        if name in ci.index:
            assert close(row[2], ci.loc[name, "lower"], rel=1e-4, abs_=1e-6), (name, method)
            assert close(row[3], ci.loc[name, "upper"], rel=1e-4, abs_=1e-6), (name, method)
        else:           # Wald gives an SD no interval, and says so
            assert row[2] is None and row[3] is None and "no Wald interval" in row[6]
        if method == "bootstrap":
            assert row[5] == len(boot.replicates)
    assert {r[0] for r in block[1:]} >= set(res.fe_params.index)


def check_interval_block(block, spec):
    """A GLMM_PREDICT block with an interval against ``res.predict`` (``spec``: the
    result, the interval, the new rows and their offset)."""
    res, interval, newdata, offset = spec
    want = res.predict(newdata, offset=offset, interval=interval)
    assert block[0][0] == "predicted (response)" and interval in " ".join(block[0][2:]) \
        .replace("CI of the mean", "confidence")
    got = np.array([r[:4] for r in block[1:]], float)
    np.testing.assert_allclose(got, want[["fit", "se_link", "lower", "upper"]].to_numpy(),
                               rtol=1e-5, atol=1e-9)


def check_compare_block(block, r1, r2):
    a, b = sorted([r1, r2], key=lambda r: r.npar)
    assert block[0][:2] == ["Model", "npar"]
    assert block[1][1] == a.npar and block[2][1] == b.npar
    chisq = 2 * (b.llf - a.llf)
    assert close(block[2][6], chisq, rel=1e-6, abs_=1e-6)
    assert block[2][7] == b.npar - a.npar
    assert close(block[2][8], stats.chi2.sf(chisq, b.npar - a.npar), rel=1e-5, abs_=1e-300)
    assert close(block[1][2], a.aic, rel=1e-9) and close(block[2][2], b.aic, rel=1e-9)


def check_check_block(block, spec):
    """A GLMM_CHECK block against ``res.check(nsim, seed)`` (``spec``: the result,
    nsim, seed and the checks expected to flag a problem): every number to 1e-9
    relative (the block holds 12 significant digits of the same computation: the
    p-values are ranks among the same seeded refits), the problems and the verdicts'
    words."""
    res, nsim, seed, problems = spec
    want = res.check(nsim, seed)
    assert block[0] == ["Check", "Value", "Expected", "p", "Problem", "Verdict"]
    for name, w in want.table.iterrows():
        r = row_of(block, name)
        for got, x in zip(r[1:4], w[["value", "expected", "p"]]):
            if np.isnan(x):
                assert got is None, (name, r)
            else:
                assert close(got, x, rel=1e-9, abs_=1e-12), (name, r, x)
        assert r[4] == w["problem"] and r[5] == w["verdict"], (name, r)
    assert set(want.problems) == set(problems)
    assert {r[0] for r in block[1:] if r[4] is True or r[4] == 1} == set(problems)
    sim = row_of(block, "refitted simulations")
    assert sim[1:3] == [nsim, nsim] and sim[5].startswith(f"seed {seed};")
    assert [r[5] for r in block if r[0] == "note"] == want.notes


def check_resid_block(block, spec):
    """A GLMM_RESID block against ``res.residuals_table(resid_type, nsim, seed)``:
    every column, the simulated quantile residual included (the same seed, the same
    draws)."""
    res, resid_type, nsim, seed = spec
    want = res.residuals_table(resid_type, nsim, seed)
    assert block[0] == ["fitted", "observed", "response resid", "Pearson resid",
                        "deviance resid", "quantile resid (simulated)",
                        f"normal quantile ({resid_type})"]
    got = np.array(block[1:], float)
    np.testing.assert_allclose(got, want.to_numpy(float), rtol=1e-6, atol=1e-9)


def check_influence_block(block, spec):
    """A GLMM_INFLUENCE block against ``res.influence(group)``: per level its rows,
    DFBETAS, Cook's distance and changes to 1e-9 relative (12 significant digits of
    the same refits), the flags, and the cut-offs row."""
    res, group = spec
    want = res.influence(group, workers=1)
    assert block[0][:2] == [group, "rows"] and block[0][-2:] == ["influential", "note"]
    numbers = [c for c in want.columns if c.startswith(("dfbetas_", "change_"))]
    numbers.insert(len([c for c in numbers if c.startswith("dfbetas_")]), "cooks_distance")
    for level, w in want.iterrows():
        r = row_of(block, level)
        assert r[1] == w["rows"]
        for got, x in zip(r[2:2 + len(numbers)], w[numbers]):
            assert close(got, x, rel=1e-9, abs_=1e-12), (level, r)
        assert r[-2] == bool(w["influential_cooks"] or w["influential_dfbetas"])
    cut = row_of(block, "cut-offs")
    assert close(cut[2 + len(numbers) - len([c for c in numbers if c.startswith("change_")]) - 1],
                 want.attrs["cooks_cutoff"])


def check_power_block(block, spec):
    """A GLMM_POWER block against ``xlglmm.power_curve`` with the same term, effect,
    test, nsim, seed and design points (``spec``): per point the design's rows, the
    effect and its rate ratio, the power, its interval and the counts exactly (the
    same seeded simulations), the estimates' mean, SD and mean SE to 1e-6 relative
    (refits from warm starts a hair apart: the fit's own optimum, found by the
    block's range form and by glmer's formula)."""
    res, term, effect, test, nsim, seed, along, points = spec
    want = xlglmm.power_curve(res, term, along, points, effect=effect, test=test, nsim=nsim,
                              seed=seed, progress=lambda *_: None)
    assert block[0] == [f"levels of {along}", "rows", "effect", "IRR", "power", "CI low 95%",
                        "CI high 95%", "simulations", "failed", "singular", "mean estimate",
                        "SD of estimates", "mean SE"]
    notes_at = [r[0] for r in block].index("Notes")
    assert notes_at == len(points) + 1
    for r, v, w in zip(block[1:], points, want.results):
        row = w.row()
        lo, hi = w.conf_int()
        assert r[0] == v and r[1] == row["nobs"] == w.nobs
        assert close(r[2], effect, rel=1e-12) and close(r[3], np.exp(effect), rel=1e-12)
        assert r[4] == pytest.approx(w.power, abs=1e-12)
        assert close(r[5], lo, rel=1e-9) and close(r[6], hi, rel=1e-9)
        assert r[7:10] == [w.n_used, w.n_failed, w.n_singular] and w.n_used == nsim
        for got, x in zip(r[10:13], (row["mean estimate"], row["sd estimate"],
                                     row["mean se"])):
            assert close(got, x, rel=1e-6), (v, r, row)
    notes = [r[0] for r in block[notes_at + 1:]]
    assert notes[0].startswith("power: the share of data sets simulated from the fit")
    assert f"seed {seed}:" in notes[2]


#: what each kind of block is checked by (each takes the block and the check's spec)
CHECKS = {"fit": check_fit_block, "ranef": check_ranef_block, "predict": check_predict_block,
          "zero": check_zero_block,
          "compare": lambda block, fits: check_compare_block(block, *fits),
          "confint": check_confint_block, "interval": check_interval_block,
          "check": check_check_block, "resid": check_resid_block,
          "influence": check_influence_block, "power": check_power_block}


# what each template's formulas compute, as xlglmm.glmer calls on the Data table

def _labels(df, *cols):
    for c in cols:
        df[c] = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
                 for v in df[c]]
    return df


def models_workplace(df):
    df = _labels(df, "plant", "month")
    res = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", df, family="poisson",
                       offset=df.log_employees.to_numpy(float))
    assert np.allclose(df.log_employees, np.log(df.employees.astype(float)), rtol=1e-15)
    nb = xlglmm.glmer("incidents ~ training + (1|plant) + (1|month)", df, family="negbin",
                      offset=df.log_employees.to_numpy(float))
    # the Intervals sheet's new plant: 200 employees, without and with training
    new = pd.DataFrame({"training": [0.0, 1.0], "plant": ["new plant"] * 2,
                        "month": [np.nan, np.nan]})
    new_offset = np.full(2, np.log(200.0))
    return {"Model!B5": ("fit", res), "Model!B35": ("ranef", res),
            "Model!O35": ("predict", res), "NB2 vs Poisson!B6": ("fit", nb),
            "Intervals!B6": ("confint", (res, "Wald", None, None)),
            "Intervals!B14": ("confint", (res, "profile", None, None)),
            "Intervals!B22": ("confint", (res, "bootstrap", 1000, 1)),
            "Intervals!C57": ("interval", (res, "confidence", new, new_offset)),
            "Intervals!C63": ("interval", (res, "prediction", new, new_offset)),
            "Checks!B5": ("check", (res, 250, 1, [])),
            "Checks!I30": ("resid", (res, "deviance", 250, 1)),
            "Checks!I5": ("influence", (res, "plant")),
            # the Plan the next study sheet: a rate ratio of 0.7, 100 simulations per
            # number of plants, seed 1, the LRT
            "Plan the next study!B22": ("power", (res, "training", np.log(0.7), "lrt", 100,
                                                  1, "plant", [10, 20, 30, 40]))}, \
        {"safety_crossed": res, "safety_crossed_nb": nb}


def models_grouse(df):
    # GLMM's formula form reads the table as it is: numeric LOCATION and INDEX, their
    # levels in numeric order (the seeded simulations draw the effects in that order)
    table = df.copy()
    df = _labels(df, "LOCATION", "INDEX")
    assert (df.YEAR96 == (df.YEAR == 96)).all() and (df.YEAR97 == (df.YEAR == 97)).all()
    m1 = xlglmm.glmer("TICKS ~ YEAR96 + YEAR97 + (1|LOCATION)", df, family="poisson")
    m2 = xlglmm.glmer("TICKS ~ YEAR96 + YEAR97 + (1|LOCATION) + (1|INDEX)", df,
                      family="poisson")
    m3 = xlglmm.glmer("TICKS ~ YEAR96 + YEAR97 + (1 + YEAR96 + YEAR97|LOCATION)", df,
                      family="poisson")
    nb = xlglmm.glmer("TICKS ~ YEAR96 + YEAR97 + (1|LOCATION)", df, family="negbin")
    # the Checks sheet's observation-level model, by its formula (GLMM's form)
    olre = xlglmm.glmer("TICKS ~ factor(YEAR) + (1|LOCATION) + (1|INDEX)", table,
                        family="poisson")
    assert olre.llf == pytest.approx(m2.llf, abs=1e-6)       # model 2 of the Model sheet
    # the Zero inflation sheet: one model, four families (GLMM's form)
    zf = "TICKS ~ factor(YEAR) + cHEIGHT + (1|LOCATION)"
    zfits = [xlglmm.glmer(zf, table, family=f) for f in ("poisson", "zipoisson", "negbin",
                                                         "zinb")]
    zcells = {f"Zero inflation!{c}6": ("fit", r) for c, r in zip(("B", "M", "X", "AI"), zfits)}
    zcells.update({f"Zero inflation!{c}6": ("zero", r)
                   for c, r in zip(("AT", "AU", "AV", "AW"), zfits)})
    zcells.update({"Zero inflation!B58": ("compare", (zfits[0], zfits[1])),
                   "Zero inflation!B68": ("compare", (zfits[2], zfits[3]))})
    # the Poisson model's counts vary more, and have more zeros, than it allows
    flagged = ["dispersion ratio (Pearson)", "uniformity (KS)", "dispersion",
               "zero-inflation", "outliers"]
    return ({"Model!B6": ("fit", m1), "Model!M6": ("fit", m2), "Model!X6": ("fit", m3),
             "Model!B42": ("compare", (m1, m2)), "Model!B46": ("compare", (m1, m3)),
             "Model!B52": ("ranef", m2), "Model!O52": ("predict", m2),
             "NB2 vs Poisson!B6": ("fit", nb),
             "Checks!B5": ("check", (m1, 250, 1, flagged)),
             "Checks!B22": ("check", (olre, 250, 1, [])),
             "Checks!B39": ("check", (nb, 100, 1, [])), **zcells},
            {"grouse_loc": m1, "grouse_loc_index": m2, "grouse_slope": m3,
             "glmmtmb:grouse_nb": nb, "glmmtmb:grouse_zip": zfits[1],
             "glmmtmb:grouse_zinb2": zfits[3]})        # (the exact Laplace: glmmTMB's nbinom2)


def models_cbpp(df):
    df = _labels(df, "herd")
    for k in (2, 3, 4):
        assert (df[f"period{k}"] == (df.period == k)).all()
    df["prop"] = df.incidence / df["size"]
    res = xlglmm.glmer("prop ~ period2 + period3 + period4 + (1|herd)", df,
                       family="binomial", weights=df["size"].to_numpy(float))
    return {"Model!B5": ("fit", res), "Model!B35": ("ranef", res),
            "Model!O35": ("predict", res)}, {"cbpp_laplace": res}


def models_sleep(df):
    df = _labels(df, "Subject")
    reml = xlglmm.lmer("Reaction ~ Days + (Days|Subject)", df)
    ml = xlglmm.lmer("Reaction ~ Days + (Days|Subject)", df, REML=False)
    icpt = xlglmm.lmer("Reaction ~ Days + (1|Subject)", df)
    assert icpt.icc_by_group and not reml.icc_by_group
    return ({"Model!B6": ("fit", reml), "Model!K6": ("fit", ml), "Model!T6": ("fit", icpt),
             "Model!B44": ("ranef", reml), "Model!X44": ("predict", reml),
             "Model!B66": ("ranef", icpt)},
            {"sleep_reml": reml, "sleep_ml": ml})


MODELS = {"workplace_safety": models_workplace, "grouseticks": models_grouse,
          "cbpp": models_cbpp, "sleepstudy": models_sleep}
