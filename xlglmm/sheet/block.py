"""Fitted model -> the labelled 2D block a worksheet function spills.

One rectangular list of rows; blank cells are ``None`` (Excel shows them empty);
numbers stay numbers.  Sections, each opened by a header row:

    Fixed effects | Estimate | Std. Error | z value | Pr(>|z|) | CI low | CI high | IRR | IRR low | IRR high
    (one row per term)
    Zero inflation | Estimate | Std. Error | z value | Pr(>|z|) | CI low | CI high | OR | OR low | OR high
    (zero-inflated fits: one row per coefficient, "zi (Intercept)", "zi YEAR96", ...)
    Random effects | Term | Variance | Std.Dev. | Corr ...
    Model fit | Value
    logLik, AIC, BIC, deviance, df.resid, nobs, npar, groups: <factor> (one row each),
    rows dropped, method, likelihood, family, zero inflation (its formula; zero-inflated
    fits only), converged, singular
    Notes
    (one sentence per row)

The ratio columns are headed IRR (incidence rate ratio) for log links and OR (odds
ratio) for the logit link; other links leave them out.  A linear mixed model's fixed
effects have lmerTest's columns instead, t tests with Satterthwaite's df:

    Fixed effects | Estimate | Std. Error | df | t value | Pr(>|t|) | CI low | CI high

The intervals a fit's parameters have (GLMM_CONFINT), one row per parameter:

    Parameter | Estimate | CI low | CI high | Method | Replicates | Note
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
from scipy import stats

from .grid import MAX_CELL_TEXT
from ..engine.results import GLMMResult

BLANK = None


SIGNIFICANT_DIGITS = 12


def significant(values, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Numbers rounded to ``digits`` significant digits, as the blocks show them.

    The engine's results are accurate to ~1e-8 relative; the digits beyond depend on
    the last bits of the CPU's arithmetic.  Two quantities that are equal in exact
    arithmetic (two groups with the same data get the same BLUP) then differ in the
    last bit, and a RANK, MATCH or sort over them would order them by that bit --
    differently on another machine.  Rounded, they are equal, and ties are ties.
    The rounding is Python's correctly rounded decimal conversion (the same on every
    platform), not a power-of-ten scaling (whose pow() differs between libraries)."""
    x = np.asarray(values, dtype=float)
    flat = [_round(v, digits) for v in x.ravel().tolist()]
    return np.array(flat, dtype=float).reshape(x.shape)


def _round(f: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """One number to ``digits`` significant digits (non-finite ones unchanged)."""
    return float(f"{f:.{digits - 1}e}") if math.isfinite(f) else f


def _num(v):
    """A finite float (to ``SIGNIFICANT_DIGITS`` significant digits), or a blank cell."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return BLANK
    return _round(f) if math.isfinite(f) else BLANK


def cell(v):
    """A cell of any kind: a boolean as it is, text cut to Excel's limit
    (``cell_text``), a number to SIGNIFICANT_DIGITS, a blank for None or a
    non-finite number."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str):
        return cell_text(v)
    return BLANK if v is None else _num(v)


def _text(v):
    """A label cell: text, or a blank cell for None/NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return BLANK
    s = str(v)
    return s if s else BLANK


def ratio_label(result: GLMMResult) -> str | None:
    return result.family.ratio_name


def fit_block(result: GLMMResult, alpha: float = 0.05, extra_fit_rows=(), tests=None,
              notes=None) -> list:
    """The fit's block.  ``tests``: a linear mixed model's t tests
    (``LMMResult.t_tests``), which give the fixed effects lmerTest's columns -- df, t,
    Pr(>|t|) -- and intervals from t quantiles with those df (a normal test, df
    infinite, shows a blank df and z's headings; an undefined df, NaN, blank p and
    interval); ``notes``: the notes to show (default: the result's messages)."""
    rows: list = []
    level = 100 * (1 - alpha)
    lvl = f"{level:.10g}%"
    ratio = ratio_label(result)
    if tests is None:
        head = ["Fixed effects", "Estimate", "Std. Error", "z value", "Pr(>|z|)"]
        ci = result.conf_int(alpha)
        lower, upper = ci["lower"], ci["upper"]
        middle = {name: [_num(result.fe_zvalues[name]), _num(result.fe_pvalues[name])]
                  for name in result.fe_params.index}
    else:
        stat = "z" if np.all(np.isinf(tests["df"])) else "t"
        head = ["Fixed effects", "Estimate", "Std. Error", "df", f"{stat} value",
                f"Pr(>|{stat}|)"]
        q = stats.t.ppf(1.0 - alpha / 2.0, tests["df"])       # the normal's at df = inf
        lower, upper = tests["estimate"] - q * tests["se"], tests["estimate"] + q * tests["se"]
        middle = {name: [_num(tests["df"][name]), _num(tests["t"][name]),
                         _num(tests["p"][name])] for name in tests.index}
    head += [f"CI low {lvl}", f"CI high {lvl}"]
    if ratio:
        head += [ratio, f"{ratio} low", f"{ratio} high"]
    rows.append(head)
    for name in result.fe_params.index:
        est = result.fe_params[name]
        lo, hi = lower[name], upper[name]
        r = [name, _num(est), _num(result.fe_bse[name]), *middle[name], _num(lo), _num(hi)]
        if ratio:
            with np.errstate(over="ignore", invalid="ignore"):
                r += [_num(np.exp(est)), _num(np.exp(lo)), _num(np.exp(hi))]
        rows.append(r)
    if len(result.fe_params) == 0:
        rows.append(["(none)"])
    rows.append([])
    if result.family.zero_inflated:
        rows += zero_inflation_rows(result, alpha, len(head) - (3 if ratio else 0))
        rows.append([])

    rows.append(["Random effects", "Term", "Variance", "Std.Dev.", "Corr"])
    vc = result.varcorr
    current = None
    seen_terms: list = []
    corr = {}
    for r in vc.itertuples(index=False):
        if r.var2 is not None and not (isinstance(r.var2, float) and math.isnan(r.var2)):
            corr[(r.grp, r.var1, r.var2)] = r.sdcor
    for r in vc.itertuples(index=False):
        if r.var2 is not None and not (isinstance(r.var2, float) and math.isnan(r.var2)):
            continue
        if r.grp != current:
            current, seen_terms = r.grp, []
        row = [_text(r.grp), _text(r.var1), _num(r.vcov), _num(r.sdcor)]
        for prev in seen_terms:     # lme4's lower triangle: correlations with earlier terms
            row.append(_num(corr.get((r.grp, prev, r.var1))))
        seen_terms.append(r.var1)
        rows.append(row)
    rows.append([])

    rows.append(["Model fit", "Value"])
    fit_rows = [
        ("logLik", result.llf), ("AIC", result.aic), ("BIC", result.bic),
        ("deviance", result.deviance), ("df.resid", result.df_resid),
        ("nobs", result.nobs), ("npar", result.npar)]
    for g, k in result.ngroups.items():
        fit_rows.append((f"groups: {g}", k))
    fit_rows += list(extra_fit_rows)
    fit_rows += [("rows dropped", result.n_dropped), ("method", result.method),
                 *([("likelihood", result.likelihood)]
                   if not result.family.is_gaussian else []),
                 ("family", f"{result.family.name} ({result.family.link})"),
                 *([(ZERO_INFLATION_ROW, zero_inflation_text(result))]
                   if result.family.zero_inflated else []),
                 ("converged", result.converged), ("singular", result.singular)]
    for label, value in fit_rows:
        if isinstance(value, (bool, np.bool_)):
            rows.append([label, bool(value)])
        elif isinstance(value, str):
            rows.append([label, value])
        else:
            rows.append([label, _num(value)])
    rows.append([])

    rows.append(["Notes"])
    notes = list(result.messages if notes is None else notes) or ["none"]
    for m in notes:
        rows.append([m])
    return rectangular(rows)


#: the zero-inflation section's header cell, the prefix of its rows' labels and the
#: model-fit row naming the zero-inflation formula (GLMM_COMPARE reads it)
ZERO_INFLATION_HEAD = "Zero inflation"
ZERO_INFLATION_PREFIX = "zi "
ZERO_INFLATION_ROW = "zero inflation"


def zero_inflation_text(result) -> str:
    """The zero-inflation formula as the fit used it ("~1", "~YEAR")."""
    zf = result.design.spec.zi_formula
    return getattr(zf, "text", None) or "~1"


def zero_inflation_rows(result, alpha: float, ratio_col: int) -> list:
    """A zero-inflated fit's section: a header, then one row per coefficient of the
    zero-inflation model (the log odds of a structural zero), labelled "zi <name>",
    with the fixed effects' columns (estimate, SE, z, p, CI) and the odds ratio
    exp(estimate) with its interval in the columns the fixed effects' ratio takes
    (``ratio_col``); an undetermined coefficient (at the boundary, the notes say why)
    has its estimate only."""
    lvl = f"{100 * (1 - alpha):.10g}%"
    head = [ZERO_INFLATION_HEAD, "Estimate", "Std. Error", "z value", "Pr(>|z|)",
            f"CI low {lvl}", f"CI high {lvl}"]
    head += [BLANK] * (ratio_col - len(head)) + ["OR", "OR low", "OR high"]
    rows = [head]
    ci = result.zi_conf_int(alpha)
    undetermined = set(result.zi_undetermined)
    for name in result.zi_params.index:
        est = result.zi_params[name]
        r = [f"{ZERO_INFLATION_PREFIX}{name}", _num(est)]
        if name in undetermined:
            rows.append(r)
            continue
        lo, hi = ci.loc[name, "lower"], ci.loc[name, "upper"]
        r += [_num(result.zi_bse[name]), _num(result.zi_zvalues[name]),
              _num(result.zi_pvalues[name]), _num(lo), _num(hi)]
        r += [BLANK] * (ratio_col - len(r))
        with np.errstate(over="ignore", invalid="ignore"):
            r += [_num(np.exp(est)), _num(np.exp(lo)), _num(np.exp(hi))]
        rows.append(r)
    return rows


# MAX_CELL_TEXT (excel_formula): the most characters an Excel cell holds; a longer text
# (a level label of an interaction of two long labels, a factor level after its
# variable's name) is cut to it and ends with a mark saying so, with the full text's
# length and a short hash of it (two labels that differ only beyond the cut stay apart)


def cut_mark(s: str) -> str:
    digest = hashlib.sha1(s.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"\u2026 (cut: {len(s):,} characters, #{digest})"


def cell_text(s):
    """A text cell no longer than Excel allows (others unchanged)."""
    if isinstance(s, str) and len(s) > MAX_CELL_TEXT:
        mark = cut_mark(s)
        return s[:MAX_CELL_TEXT - len(mark)] + mark
    return s


def rectangular(rows: list) -> list:
    """Rows padded to one width with blank cells; every block passes through here, so
    here texts are cut to what a cell holds."""
    width = max(len(r) for r in rows)
    return [[cell_text(v) if isinstance(v, str) else v for v in r] + [BLANK] * (width - len(r))
            for r in rows]


def ranef_block(result: GLMMResult) -> list:
    """One row per level: group, level, then each term's BLUP and conditional SD,
    then the level's number of rows and, for a random intercept, its raw
    (unshrunk) estimate and shrinkage factor (``engine.shrinkage``: the shrinkage
    plot's two axes)."""
    blocks = []
    width = 2
    shrunk = result.shrinkage()
    for g, vals in result.random_effects.items():
        sds = result.random_effects_sd[g]
        if vals.ndim == 1:
            vals, sds = vals.to_frame(), sds.to_frame()
            vals.columns = sds.columns = [_term_of(result, g)]
        blocks.append((g, vals, sds, shrunk.get(g)))
        width = max(width, 2 + 2 * vals.shape[1])
    rows = []
    for g, vals, sds, shr in blocks:
        head = ["group", "level"]
        for c in vals.columns:
            head += [c, f"{c} cond.SD"]
        head += ["rows"] + (["raw (Intercept)", "shrinkage"] if shr is not None else [])
        rows.append(head)
        counts = _level_rows(result, g)
        for lev in vals.index:
            r = [g, lev]
            for c in vals.columns:
                r += [_num(vals.loc[lev, c]), _num(sds.loc[lev, c])]
            r.append(int(counts[lev]))
            if shr is not None:
                r += [_num(shr.loc[lev, "raw"]), _num(shr.loc[lev, "shrinkage"])]
            rows.append(r)
    return rectangular(rows) if rows else [["(no random effects)"]]


def _level_rows(result, group) -> dict:
    """Level -> number of fitted rows, for one grouping factor."""
    t = next(t for t in result.design.re_terms if t.group == group)
    return dict(zip(t.levels, np.bincount(t.codes, minlength=t.nlevels)))


def _term_of(result, group):
    for t in result.design.re_terms:
        if t.group == group:
            return t.colnames[0]
    return "(Intercept)"


def confint_block(rows, alpha: float, replicates: int | None) -> list:
    """GLMM_CONFINT's block: a header, then one row per parameter from ``rows`` of
    (name, estimate, lower, upper, method, note); the same columns for every method
    (so that sheets can set methods side by side): ``Method`` names the interval of
    the row (the bootstrap's differ by parameter), ``Replicates`` holds the
    bootstrap's count of replicates used, blank for the others; a blank limit is one
    the method does not give (the note says why)."""
    lvl = f"{100 * (1 - alpha):.10g}%"
    out = [["Parameter", "Estimate", f"CI low {lvl}", f"CI high {lvl}", "Method",
            "Replicates", "Note"]]
    for name, est, lo, hi, method, note in rows:
        out.append([_text(name), _num(est), _num(lo), _num(hi), method, replicates,
                    _text(note)])
    return rectangular(out)


#: GLMM_COMPARE's note when one model has zero inflation and the other not
ZERO_INFLATION_TEST_NOTE = (
    "Zero inflation is tested on the boundary of the parameter space (a structural-zero "
    "probability p0 = 0), so the chi-square p-value is conservative (too large); with one "
    "zero-inflation coefficient the correct p is half of it: a 50:50 mixture of "
    "chi-square with 0 and 1 df (Self & Liang 1987).")
ACROSS_FAMILIES_NOTE = ("AIC is valid across families (each logLik is the full "
                        "likelihood with its constants): the smaller AIC is the better model.")


def _p_text(p: float) -> str:
    """A p-value in a sentence: "= 0.2058", or "< 0.0001" (no exponent: a wrapped cell
    would break "1.2e-10" at its hyphen)."""
    return f"= {_round(p, 4):.4g}" if p >= 1e-4 else "< 0.0001"


def compare_block(fit1: dict, fit2: dict, zero_inflation: str | None = None) -> list:
    """anova()-style likelihood-ratio test from two fits' statistics
    (dicts with name, npar, AIC, BIC, logLik, deviance, nobs).  ``zero_inflation``:
    "boundary" when one model is the other with zero inflation added (the test is on
    the boundary: a note, and with Df 1 the halved p-value), "both" when either is
    zero-inflated (a note on AIC)."""
    a, b = sorted([fit1, fit2], key=lambda f: f["npar"])
    chisq = max(0.0, 2.0 * (b["logLik"] - a["logLik"]))
    df = b["npar"] - a["npar"]
    p = float(stats.chi2.sf(chisq, df)) if df > 0 else BLANK
    head = ["Model", "npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    rows = [head,
            [a["name"], a["npar"], _num(a["AIC"]), _num(a["BIC"]), _num(a["logLik"]),
             _num(a["deviance"]), BLANK, BLANK, BLANK],
            [b["name"], b["npar"], _num(b["AIC"]), _num(b["BIC"]), _num(b["logLik"]),
             _num(b["deviance"]), _num(chisq) if df > 0 else BLANK, df if df > 0 else BLANK,
             _num(p)]]
    notes = []
    if df == 0:
        notes.append("The models have the same number of parameters: no likelihood-ratio "
                      "test; compare AIC/BIC.")
    if zero_inflation == "boundary" and df > 0:
        notes.append(ZERO_INFLATION_TEST_NOTE)
        if df == 1:
            notes.append(f"Here: chi-square p {_p_text(p)}, the boundary-corrected "
                         f"p {_p_text(p / 2.0)}.")
    if zero_inflation:
        notes.append(ACROSS_FAMILIES_NOTE)
    if df > 0 and any(f.get("singular") for f in (a, b)):
        notes.append("A variance at its boundary (zero) makes the chi-square p-value "
                     "conservative (roughly twice too large).")
    if notes:
        rows.append([])
        rows.append(["Notes"])
        rows += [[m] for m in notes]
    return rectangular(rows)
