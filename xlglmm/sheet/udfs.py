"""Excel worksheet functions (xlwings UDFs).

    =GLMM_POISSON(y, X, groups, [offset], [x_random], [fit_intercept], [alpha], [nAGQ])
    =GLMM_BINOMIAL(y, X, groups, [trials], [x_random], [fit_intercept], [alpha], [nAGQ], [link])
    =GLMM(formula, data, [family], [link], [offset], [weights], [alpha], [nAGQ])
    =GLMM_RANEF(...)     BLUPs and conditional SDs, one row per level
    =GLMM_PREDICT(...)   predictions for new rows
    =GLMM_COMPARE(...)   likelihood-ratio test of two fits, as anova()
    =GLMM_CONFINT(...)   Wald, profile or bootstrap intervals of a fit's parameters
    =GLMM_CHECK(...)     is the model any good: dispersion, simulated-residual tests, R², ICC
    =GLMM_RESID(...)     fitted values and residuals, one row per data row
    =GLMM_INFLUENCE(...) each level of a grouping factor left out: DFBETAS, Cook's distance
    =GLMM_POWER(...)     power by simulation from the fit, on its design or on designs varied

The companions take the *same leading arguments as the fit* (so a formula is written
by copying the fit's and renaming it), in either of two forms:

* range form, as GLMM_POISSON / GLMM_BINOMIAL: ``y, X, groups, ...`` with ``family``
  ("poisson" by default) and ``trials`` further right;
* formula form, as GLMM: when the first argument is a formula (text containing
  ``~``), the next are ``data, ...`` (see each function's docstring).

GLMM_COMPARE takes the two fits' spilled blocks (``=GLMM_COMPARE(F2#, M2#)``): the
likelihood-ratio test needs only their log-likelihoods and parameter counts.

Every function returns either its block or one text cell starting ``#GLMM!`` that
says what is wrong; no exception ever reaches Excel.  Fits are cached on their
validated inputs, so recalculation with unchanged inputs returns at once and the
companions reuse the fit.

Here: each function's body and its declaration (``FUNCTIONS``, the only list of their
names).  The model a call describes and its cached fit are :mod:`.models`; checking
cell values :mod:`.values`; laying a result out as cells :mod:`.block`.
"""
from __future__ import annotations

import inspect
import math
import dataclasses
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import xlwings as xw

from . import block, cache, diagnostics, models, planning, values
from ..numfmt import shorten
from ..engine import jit
from ..engine.bootstrap import BootstrapError, statistics_of
from ..engine.design import DesignError
from ..engine.family import SHEET_LINKS, function_links
from ..engine.fit import ModelError
from ..engine.formula import FormulaError
from ..engine.lmm import NORMAL_APPROXIMATION_NOTE, LMMResult
from ..engine.prediction import PredictionError
from ..engine.profile import ProfileError
from ..engine.satterthwaite import SatterthwaiteError
from .values import SheetError

CATEGORY = "xlglmm"
ERROR_PREFIX = "#GLMM! "

FIT_STATS = ("logLik", "AIC", "BIC", "deviance", "nobs", "npar")
MAX_COUNT = 2**31 - 1   # largest nobs / npar a fit block may hold


MAX_MESSAGE = 290        # characters in an error cell, prefix included


def error(msg: str) -> str:
    """One line of text for the cell: '#GLMM! ' + the message (whitespace collapsed,
    cut to MAX_MESSAGE characters)."""
    msg = " ".join(str(msg).split())
    msg = ERROR_PREFIX + (msg[:1].lower() + msg[1:] if msg[:2] != msg[:2].upper() else msg)
    return shorten(msg, MAX_MESSAGE, ellipsis="...")


def _safe(impl, *args):
    """Run a worksheet function body; any failure becomes one '#GLMM!' cell."""
    try:
        return impl(*args)
    except (SheetError, FormulaError, DesignError, ModelError, PredictionError) as e:
        return error(str(e))
    except MemoryError:
        return error("not enough memory for this model; use fewer rows or predictors")
    except Exception as e:          # never let a traceback reach the cell
        return error(f"internal error ({type(e).__name__}): {e}")


# ---- implementations ------------------------------------------------------------------

def _poisson(y, X, groups, offset, x_random, fit_intercept, alpha, nAGQ):
    fi, a, q, _ = models.options(fit_intercept, alpha, nAGQ)
    m = models.model_from_ranges("poisson", y, X, groups, offset, x_random, fi, q)
    return _fit_block(m, a)


def _negbin(y, X, groups, offset, x_random, fit_intercept, alpha, nAGQ, theta):
    fi, a, q, _ = models.options(fit_intercept, alpha, nAGQ)
    th = values.scalar(theta, "theta", None, "number")
    if th is not None and not th > 0:
        raise SheetError("theta must be a positive number (leave it blank to estimate it)")
    m = models.model_from_ranges("negbin", y, X, groups, offset, x_random, fi, q)
    m = dataclasses.replace(m, nb_theta=th)
    return _fit_block(m, a)


#: LMM's ddf argument (any case) -> LMMResult.t_tests' ddf
DDF_CHOICES = {"satterthwaite": "Satterthwaite", "z": "z"}


def _lmm(y, X, groups, x_random, REML, alpha, fit_intercept, ddf):
    fi, a, _, _ = models.options(fit_intercept, alpha, 1)
    reml = values.scalar(REML, "REML", True, "bool")
    how = DDF_CHOICES[values.scalar(ddf, "ddf", "satterthwaite", "text",
                                    choices=tuple(DDF_CHOICES))]
    m = models.model_from_ranges("gaussian", y, X, groups, None, x_random, fi, 1)
    m = dataclasses.replace(m, reml=reml)
    return _fit_block(m, a, how)


def _binomial(y, X, groups, trials, x_random, fit_intercept, alpha, nAGQ, link):
    fi, a, q, lk = models.options(fit_intercept, alpha, nAGQ, link,
                               function_links("binomial"))
    m = models.model_from_ranges("binomial", y, X, groups, None, x_random, fi, q, trials, lk)
    return _fit_block(m, a)


def _glmm(formula, data, family, link, offset, weights, alpha, nAGQ):
    fam = models.family_argument(family)
    _, a, q, lk = models.options(True, alpha, nAGQ, link, SHEET_LINKS)
    m = models.model_from_formula(models.formula_text(formula), data, fam, lk, offset, weights, q)
    return _fit_block(m, a)


def _fit_block(m: models.SheetModel, alpha: float, ddf: str | None = None):
    """``ddf``: a linear mixed model's t tests (LMMResult.t_tests' ddf)."""
    def make():
        res = models.fit_model(m)
        tests, notes = _t_tests(res, ddf) if ddf is not None else (None, None)
        return block.fit_block(res, alpha, _extra_fit_rows(res), tests, notes)
    return cache.cached_block(cache.digest("block", m.key, alpha, ddf), make)


def _t_tests(res: LMMResult, ddf: str):
    """The LMM block's t tests and its notes: with Satterthwaite's df the engine's
    note on the normal approximation gives way to one on the df; where the df are
    undefined (a singular Hessian: a variance at its boundary), the table says so
    and shows no p or interval rather than a normal test in disguise."""
    notes = list(res.messages)
    if ddf == "z" or len(res.fe_params) == 0:
        return res.t_tests("z"), notes
    notes = [n for n in notes if n != NORMAL_APPROXIMATION_NOTE]
    try:
        tests = res.t_tests(ddf)
    except SatterthwaiteError as e:
        tests = res.t_tests("z")
        tests["df"] = tests["p"] = np.nan
        return tests, notes + [f"Satterthwaite's degrees of freedom could not be computed: "
                               f"{e}. No p-values or intervals; ddf \"z\" gives the "
                               "normal approximation's."]
    notes.append("p-values and intervals: t tests with Satterthwaite's degrees of freedom "
                 "(lmerTest's summary); ddf \"z\" gives the normal approximation.")
    undefined = list(tests.index[~np.isfinite(tests["df"])])
    if undefined:
        notes.append(f"Satterthwaite's df are undefined for {', '.join(undefined)} (the "
                     "Hessian of the variance parameters is not positive definite): no "
                     "p-value or interval there.")
    return tests, notes


def _extra_fit_rows(res) -> list:
    """Model-fit rows particular to a family: NB theta; LMM sigma, REML criterion, ICCs."""
    rows = []
    if getattr(res, "nb_theta", None) is not None:
        rows.append(("NB theta", res.nb_theta))
        if res.nb_theta_se is not None:
            lo, hi = res.nb_theta_ci
            rows += [("NB theta SE", res.nb_theta_se), ("NB theta CI low", lo),
                     ("NB theta CI high", hi)]
    if getattr(res, "phi", None) is not None:
        rows.append(("phi", res.phi))
        if res.phi_se is not None:
            lo, hi = res.phi_ci
            rows += [("phi SE", res.phi_se), ("phi CI low", lo), ("phi CI high", hi)]
    if getattr(res, "dispersion_se", None) is not None:
        lo, hi = res.dispersion_ci
        rows += [("dispersion", res.dispersion), ("dispersion SE", res.dispersion_se),
                 ("dispersion CI low", lo), ("dispersion CI high", hi)]
    if isinstance(res, LMMResult):
        rows.append(("sigma (residual SD)", res.sigma))
        if res.reml:
            rows.append(("REML criterion", res.REMLcrit))
        rows += [(f"ICC: {g}", v) for g, v in res.icc_by_group.items()]
    return rows


def _ranef(y, X, groups, offset, x_random, fit_intercept, nAGQ, family, trials, link):
    m = models.companion_model((y, X, groups, offset, x_random, fit_intercept, nAGQ, family,
                          trials, link),
                         (y, X, groups, offset, x_random, fit_intercept, nAGQ), y)
    return cache.cached_block(cache.digest("ranef", m.key),
                              lambda: block.ranef_block(models.fit_model(m)))


def _predict(y, X, groups, new_X, new_groups, offset, new_offset, x_random, new_x_random,
             type_, include_re, fit_intercept, nAGQ, family, trials, link, interval, alpha,
             new_trials):
    ptype = values.scalar(type_, "pred_type", "response", "text", choices=PRED_TYPES)
    inc = values.scalar(include_re, "include_re", True, "bool")
    ask = _interval_request(interval, alpha, ptype)
    if not values.is_empty(new_trials):
        ask["new_trials"] = new_trials
    if models.is_formula(y):
        # formula form: (formula, data, new_data, family, link, offset, weights,
        # new_offset) in the first eight places; pred_type, include_re, nAGQ stay put
        formula, data, new_data, fam_, link_, offset_, weights_, new_offset_ = (
            y, X, groups, new_X, new_groups, offset, new_offset, x_random)
        fam = models.family_argument(fam_)
        _, _, q, lk = models.options(True, 0.05, nAGQ, link_, SHEET_LINKS)
        m = models.model_from_formula(models.formula_text(formula), data, fam, lk, offset_, weights_, q)
        res = models.fit_model(m)
        _check_pred_type(res, ptype)
        return _predict_formula(res, m, new_data, new_offset_, ptype, inc, _trials(res, ask))
    m = models.companion_model((y, X, groups, offset, x_random, fit_intercept, nAGQ, family,
                          trials, link), None, y)
    res = models.fit_model(m)
    _check_pred_type(res, ptype)
    ask = _trials(res, ask)
    if not m.x_names and not values.is_empty(new_X):
        raise SheetError("the model has no predictors (X is blank): leave new_X blank and "
                         "give the new rows' group labels in new_groups")
    if values.is_empty(new_X) and (m.x_names or values.is_empty(new_groups)):
        if not values.is_empty(new_groups):
            raise SheetError("new_groups needs new_X (leave both blank for fitted values)")
        return _fitted_rows(res, m, ptype, inc, ask)
    # the new rows end at the last row holding a value in any of the new ranges (blank
    # rows below it: a whole-column selection); a blank cell above it is a missing
    # value -- a blank group label is a new level (random effect 0), as documented
    rows = values.data_extent(new_X, new_groups, new_x_random, new_offset)
    new = _new_frame(m, new_X, new_groups, new_x_random, rows)
    off = None
    if m.offset is not None or (not values.is_empty(new_offset)):
        if values.is_empty(new_offset):
            raise SheetError("the model has an offset: give new_offset for the new rows "
                             "(e.g. =LN(exposure))")
        _check_new_rows(new_offset, "new_offset", len(new), rows)
        off = models.aligned_vector(new_offset, "new_offset", len(new), 0,
                              log_scale=res.family.is_log_link, rows=rows)
    return _prediction_block(res.predict(new, type=ptype, include_re=inc, offset=off,
                                         **ask), ptype, ask)


#: GLMM_PREDICT's pred_type: the mean response, the linear predictor, and for
#: zero-inflated fits the count's mean mu and the structural-zero probability p0, for
#: count fits each row's P(Y = 0) (the fit's rows summed: the expected zeros)
PRED_TYPES = ("response", "link", "conditional", "zprob", "zero")


def _prediction_head(ptype) -> str:
    return f"predicted ({ptype})"


def _check_pred_type(res, ptype: str) -> None:
    """The pred_types that need a zero-inflated fit or a count fit, refused for
    the others with the reason."""
    if ptype in ("conditional", "zprob") and not res.family.zero_inflated:
        raise SheetError(f"pred_type \"{ptype}\" is for zero-inflated models (family "
                         f"\"zipoisson\", \"zinb\" or \"zinb1\"); this fit has no "
                         "zero inflation: use \"response\"")
    if ptype == "zero" and not res.family.counts_response:
        raise SheetError("pred_type \"zero\" (each row's probability of a zero count) is "
                         "for count models (poisson, negbin, nb1 and their zero-inflated "
                         "forms)")


def _trials(res, ask: dict) -> dict:
    """``ask`` with new_trials, when given, as predict's ``trials`` (checked against the
    new rows there): binomial fits only; refused for the fitted rows, which have
    their own trials."""
    ask = dict(ask)
    given = ask.pop("new_trials", None)
    if given is None:
        return ask
    if not res.family.is_binomial:
        raise SheetError("new_trials is for binomial models (the new rows' numbers of "
                         "trials)")
    vals, _, _ = values.vector(given, "new_trials")
    ask["trials"] = vals
    return ask


def _interval_request(interval, alpha, ptype) -> dict:
    """GLMM_PREDICT's interval and alpha as ``predict``'s keywords ({} for none),
    checked before the fit."""
    word = values.scalar(interval, "interval", "none", "text",
                         choices=("none", "confidence", "prediction"))
    a = models.alpha_argument(alpha)
    if word == "none":
        return {}
    if word == "prediction" and ptype != "response":
        raise SheetError("a prediction interval is for a new observation, on the response "
                         "scale: use pred_type \"response\" (or interval \"confidence\")")
    return {"interval": word, "level": 1.0 - a}


def _fitted_rows(res, m, ptype, inc, ask):
    """The fitted rows' predictions (new rows left blank), one per row of y: rows the
    fit dropped are blank."""
    pred = res.predict(type=ptype, include_re=inc, **ask)
    full = pd.DataFrame(np.nan, index=range(m.n_rows), columns=[0]) if not ask else \
        pd.DataFrame(np.nan, index=range(m.n_rows), columns=pred.columns)
    full.iloc[res.design.kept_rows] = pred.to_numpy().reshape(len(pred), -1)
    return _prediction_block(full if ask else full[0], ptype, ask)


def _prediction_block(pred, ptype, ask):
    """The predictions as cells: one column, or with an interval the predicted value,
    its SE (link) and the interval's limits under a header row naming them."""
    if not ask:
        return _prediction_column(pred.to_numpy(), ptype)
    pct = f"{100.0 * ask['level']:.10g}%"
    what = f"{pct} CI of the mean" if ask["interval"] == "confidence" else \
        f"{pct} prediction interval"
    head = [_prediction_head(ptype), "SE (link)", f"lower {what}", f"upper {what}"]
    cols = [block.significant(pred[c].to_numpy()) for c in ("fit", "se_link", "lower",
                                                            "upper")]
    return [head] + [[None if not np.isfinite(v) else float(v) for v in row]
                     for row in zip(*cols)]


def _check_new_rows(value, name, n_new, rows, src="new_X", header_ok=True):
    """A new-rows range that is not as long as the new rows (with a header row only
    where ``header_ok``), said in terms of the new rows rather than y's."""
    if values.is_empty(value):
        return
    g = values.cut_to_extent(values.as_grid(value, name), rows)
    if len(g) == 1 and len(g[0]) > 1:       # a single row: values.matrix explains it
        return
    if len(g) != n_new and not (header_ok and len(g) == n_new + 1):
        raise SheetError(f"{name} has {len(g)} rows but {src} has {n_new} new "
                         f"row{'s' if n_new != 1 else ''}: the ranges must cover the same rows")


def _names_groups(row, m: models.SheetModel) -> bool:
    """Whether a first row of new_groups is a header: it names the groups' columns."""
    return [values.clean_name(v) if isinstance(v, str) else None
            for v in row] == m.group_names


def _new_frame(m: models.SheetModel, new_X, new_groups, new_x_random, rows=None) -> pd.DataFrame:
    # the number of new rows comes from new_X (or new_groups when X is empty)
    src_name = "new_X" if m.x_names else "new_groups"
    src = new_X if m.x_names else new_groups
    g = values.cut_to_extent(values.as_grid(src, src_name), rows)
    if not g or all(values.is_blank(v) for r in g for v in r):
        raise SheetError(f"{src_name} is empty")
    nrow = len(g)
    ncol_x = len(m.x_names)
    data = {}
    if m.x_names:
        has_header = nrow > 1 and any(isinstance(v, str) and values.looks_like_text(v) and
                                      not values.is_error(v) for v in g[0])
        n_new = nrow - (1 if has_header else 0)
        cols, _ = values.matrix(new_X, "new_X", n_new, "column", rows=rows)
        if len(cols) != ncol_x:
            raise SheetError(f"new_X has {len(cols)} columns but X has {ncol_x}")
        for nm, (_, arr) in zip(m.x_names, cols):
            data[nm] = arr
    else:
        # no numbers to tell a header by: a first row naming the groups' columns is one
        has_header = nrow > 1 and _names_groups(g[0], m)
        n_new = nrow - (1 if has_header else 0)
    if not values.is_empty(new_groups):
        # one row more than the new rows is a header row only beside new_X's header, or
        # when it names the groups' columns (else it would shift every label by a row)
        gg = values.cut_to_extent(values.as_grid(new_groups, "new_groups"), rows)
        named = bool(gg) and _names_groups(gg[0], m)
        _check_new_rows(new_groups, "new_groups", n_new, rows, src_name,
                        header_ok=has_header or named)
        if named and len(gg) == n_new and n_new > 1:
            # its first row is the header, so the labels are one row short of new_X's
            k = n_new - 1
            raise SheetError(f"new_groups has a header and {k} row{'s' if k != 1 else ''} "
                             f"but {src_name} has {n_new} new rows: the ranges must cover "
                             "the same rows")
        gcols, _ = values.matrix(new_groups, "new_groups", n_new, "column", kind="labels",
                                rows=rows)
        if len(gcols) != len(m.group_names):
            raise SheetError(f"new_groups has {len(gcols)} columns but groups has "
                             f"{len(m.group_names)}")
        for nm, (_, arr) in zip(m.group_names, gcols):
            data[nm] = arr
    else:
        for nm in m.group_names:
            data[nm] = np.full(n_new, None, dtype=object)
    for nm in m.xr_names:
        if nm in data:
            continue
        if values.is_empty(new_x_random):
            raise SheetError("the model has random slopes: give new_x_random")
        _check_new_rows(new_x_random, "new_x_random", n_new, rows, src_name)
        xr, _ = values.matrix(new_x_random, "new_x_random", n_new, "column", rows=rows)
        for k, (_, arr) in zip(m.xr_names, xr):
            data.setdefault(k, arr)
    return pd.DataFrame(data)


def _predict_formula(res, m, new_data, new_offset, ptype, inc, ask):
    if values.is_empty(new_data):
        return _fitted_rows(res, m, ptype, inc, ask)
    cols, _ = values.table(new_data, "new_data")
    df = pd.DataFrame({k: models.typed_column(v, k) for k, v in cols.items()})
    off = None
    if not values.is_empty(new_offset) and new_offset != []:
        off = models.aligned_vector(new_offset, "new_offset", len(df), 0,
                              log_scale=res.family.is_log_link)
    elif m.offset is not None:
        raise SheetError("the model has an offset: give new_offset for the new rows")
    return _prediction_block(res.predict(df, type=ptype, include_re=inc, offset=off, **ask),
                             ptype, ask)


def _prediction_column(pred, ptype):
    head = _prediction_head(ptype)
    pred = block.significant(pred)
    return [[head]] + [[None if not np.isfinite(v) else float(v)] for v in pred]


def read_fit_block(value, name):
    """The fit statistics of a spilled fit block (its 'Model fit' rows)."""
    grid = values.as_grid(value, name)
    cells = [c for r in grid for c in r if not values.is_blank(c)]
    if len(cells) == 1 and isinstance(cells[0], str):
        one = cells[0].strip()
        if one.startswith("#GLMM!"):
            raise SheetError(f"{name} is an error, not a fit: {one}")
        if values.is_error(one):
            raise SheetError(f"{name} is an Excel error value ({one.upper()}), not a fit "
                             "block: pass the fit's whole spilled range, e.g. F2#")
    stats = {}
    bad = []
    for r in grid:
        if r and isinstance(r[0], str) and len(r) > 1:
            label = r[0].strip()
            if label in FIT_STATS:
                v = r[1]
                f = values.to_float(v) if values.is_number(v) else math.nan
                whole = label in ("nobs", "npar")
                if not math.isfinite(f) or (whole and not (1 <= f <= MAX_COUNT and
                                                           f.is_integer())):
                    if not (values.is_blank(v) and label in ("AIC", "BIC", "deviance")):
                        bad.append(label)
                    continue
                stats[label] = f
            elif label in ("family", "method", "likelihood", block.ZERO_INFLATION_ROW) \
                    and isinstance(r[1], str):
                stats[label] = r[1]
            elif label == "singular":
                stats[label] = bool(r[1]) if isinstance(r[1], (bool, np.bool_)) else False
    bad = [b for b in dict.fromkeys(bad) if b not in stats]
    if bad:
        raise SheetError(f"{name}'s {', '.join(bad)} row{'s do' if len(bad) > 1 else ' does'} "
                         "not hold a valid number: pass the fit block unchanged")
    missing = [s for s in ("logLik", "npar", "nobs") if s not in stats]
    if missing:
        raise SheetError(f"{name} is not a fit block from GLMM_POISSON, GLMM_BINOMIAL or "
                         f"GLMM (no {', '.join(missing)} row); pass the whole spilled "
                         "range, e.g. F2#")
    # a fit block's AIC and BIC follow from its logLik, npar and nobs (to the 12 digits
    # it shows): an edited or mixed-up row would otherwise give a test of nothing
    ll, k, n = stats["logLik"], stats["npar"], stats["nobs"]
    for crit, value, formula in (("AIC", 2 * k - 2 * ll, "2*npar - 2*logLik"),
                                 ("BIC", k * math.log(n) - 2 * ll, "npar*ln(nobs) - 2*logLik")):
        if crit in stats:
            tol = 1e-8 * (1 + abs(stats[crit]) + abs(value))
            if not abs(stats[crit] - value) <= tol:
                rows = "logLik, npar" + (", nobs" if crit == "BIC" else "") + f" and {crit}"
                raise SheetError(f"{name}'s {rows} rows do not agree ({crit} = {formula}): "
                                 "pass the fit block unchanged")
    return stats


def _approximation(likelihood) -> str | None:
    """"exact" or "lme4" from a fit block's likelihood row (None: another method, or
    no such row -- a block from before the row existed)."""
    if not isinstance(likelihood, str):
        return None
    if likelihood.startswith("lme4's"):
        return "lme4"
    return "exact" if "exact" in likelihood else None


def _compare_families(family) -> tuple:
    """GLMM_COMPARE's family: one (both formulas) or two values (a two-cell range:
    the first formula's, the second's, e.g. "negbin" and "zinb")."""
    if isinstance(family, list):
        cells = [c for r in values.as_grid(family, "family") for c in r
                 if not values.is_blank(c)]
        if len(cells) > 2:
            raise SheetError("family must be one value, or two (a two-cell range: the "
                             "first formula's family, then the second's)")
        if len(cells) == 2:
            return tuple(models.family_argument(c) for c in cells)
        family = cells[0] if cells else None
    fam = models.family_argument(family)
    return fam, fam


def _compare(model1, model2, data, family, link, offset, weights, nAGQ):
    if models.is_formula(model1):
        families = _compare_families(family)
        _, _, q, lk = models.options(True, 0.05, nAGQ, link, SHEET_LINKS)
        fits = []
        for k, (f, fam) in enumerate(zip((model1, model2), families), start=1):
            if not models.is_formula(f):
                raise SheetError(f"formula{k} must be a formula like the first one")
            m = models.model_from_formula(models.formula_text(f), data, fam, lk, offset, weights, q)
            r = models.fit_model(m)
            name = models.formula_text(f)
            if families[0] != families[1]:
                name = f"{name} ({fam})"
            fits.append({"name": name, "logLik": r.llf, "AIC": r.aic, "BIC": r.bic,
                         "deviance": r.deviance, "npar": r.npar, "nobs": r.nobs,
                         "singular": r.singular, "family": r.family.name,
                         "likelihood": getattr(r, "likelihood", None),
                         block.ZERO_INFLATION_ROW: block.zero_inflation_text(r)
                         if r.family.zero_inflated else None})
    else:
        fits = []
        for k, blk in enumerate((model1, model2), start=1):
            s = read_fit_block(blk, f"model{k}")
            s["name"] = f"model {k}"
            fits.append(s)
    if fits[0]["nobs"] != fits[1]["nobs"]:
        raise SheetError(f"the models were fitted to different rows ({int(fits[0]['nobs'])} "
                         f"and {int(fits[1]['nobs'])} observations): a likelihood-ratio test "
                         "needs the same data")
    fa, fb = fits[0].get("family"), fits[1].get("family")
    zi = [f.get(block.ZERO_INFLATION_ROW) is not None for f in fits]
    if fa and fb and (fa.split() or [""])[0] != (fb.split() or [""])[0]:
        if any(zi):
            raise SheetError("the models have different count families; a likelihood-ratio "
                             "test of zero inflation compares a family with and without it "
                             "(e.g. negbin and zinb): compare these by AIC instead (valid "
                             "across families)")
        raise SheetError("the models have different families; compare them by AIC instead")
    kinds = {_approximation(f.get("likelihood")) for f in fits}
    if {"exact", "lme4"} <= kinds:
        raise SheetError("the models were fitted by different Laplace approximations (one "
                         "exact, one lme4's): their log-likelihoods are not comparable; "
                         "refit both the same way (both with or both without ':lme4')")
    for f in fits:
        for k in ("AIC", "BIC", "deviance"):
            f.setdefault(k, float("nan"))
        f["npar"] = int(f["npar"])
    if not math.isfinite(2.0 * (fits[0]["logLik"] - fits[1]["logLik"])):
        raise SheetError("the models' log-likelihoods are too far apart for a "
                         "likelihood-ratio test (their difference overflows)")
    # the test of zero inflation: the larger model is the smaller one with it added
    small, big = sorted((0, 1), key=lambda k: fits[k]["npar"])
    if zi[small] and not zi[big] and fits[small]["npar"] < fits[big]["npar"]:
        # (a model without zero inflation never contains one with it: the test would
        # read "Chisq 0, Df 1, p 1" for a ZIP 300 units of logLik above the Poisson)
        raise SheetError("the models are not nested: the zero-inflated one has fewer "
                         "parameters, and a model without zero inflation cannot contain "
                         "it; compare them by AIC instead (valid across families)")
    how = ("boundary" if zi[big] and not zi[small] else "both") if any(zi) else None
    return block.compare_block(fits[0], fits[1], how)


#: GLMM_CONFINT's methods (any case) -> the name its block shows
CONFINT_METHODS = {"wald": "Wald", "profile": "profile", "bootstrap": "bootstrap"}
def _confint(y, X, groups, offset, x_random, fit_intercept, nAGQ, family, trials, link,
             method, nsim, seed, alpha):
    how = CONFINT_METHODS[values.scalar(method, "method", "wald", "text",
                                        choices=tuple(CONFINT_METHODS))]
    n = models.nsim_argument(nsim, 1000, models.MAX_SHEET_NSIM, "each replicate is a refit, "
                             "and a worksheet call has a time budget", least=1)
    s = models.seed_argument(seed)
    a = models.alpha_argument(alpha)
    m = models.companion_model((y, X, groups, offset, x_random, fit_intercept, nAGQ, family,
                                trials, link),
                               (y, X, groups, offset, x_random, fit_intercept, nAGQ), y)
    def make():
        if how == "profile" and a < PROFILE_MIN_ALPHA:
            raise SheetError(f"alpha must be at least {PROFILE_MIN_ALPHA} for profile "
                             "intervals: the profile is walked to a 99% interval")
        clock = jit.Stopwatch()         # the fit's time (no compilation) counts too
        res = models.fit_model(m)
        return _intervals_block(res, how, int(n), int(s), a, models.remaining_budget(clock))
    # nsim and seed change only a bootstrap
    return cache.cached_block(cache.digest("confint", m.key, how, a,
                                           (int(n), int(s)) if how == "bootstrap" else None),
                              make)


#: a zero-inflation coefficient the fit could not determine (at the boundary)
ZI_UNDETERMINED_NOTE = ("not determined: at the boundary, where the likelihood is flat "
                        "(see the fit block's note); no interval")

#: profile intervals hold the zero-inflation coefficients at their estimates (they are
#: not profiled over): too narrow, and none for the coefficients themselves
PROFILE_ZI_MESSAGE = ("no profile intervals for a zero-inflated model yet: the profile "
                      "would hold the zero-inflation coefficients at their estimates; use "
                      "method \"Wald\" or \"bootstrap\"")

#: the profile's walks stop past |zeta| = 2.6 (a 99.07% interval): smaller alphas
#: would have no limits
PROFILE_MIN_ALPHA = 0.01


def _intervals_block(res, how: str, nsim: int, seed: int, alpha: float,
                     budget: float) -> list:
    """The fit's parameters (the SDs and correlations of the random effects, then the
    fixed effects: ``statistics_of``'s rows, the bootstrap's) with the method's
    intervals; the profile and the bootstrap run within what the fit left of the
    call's time budget (``budget``, seconds), and their refusals (a model they cannot
    handle yet) become one message."""
    estimates = statistics_of(res)
    try:
        if how == "Wald":
            ci = res.conf_int(alpha)
            if res.family.zero_inflated:        # the zero-inflation coefficients too
                zci = res.zi_conf_int(alpha)
                zci.index = [f"zi_{n}" for n in zci.index]
                ci = pd.concat([ci, zci])
            ci["note"] = ""
            for n in res.zi_undetermined if res.family.zero_inflated else ():
                ci.loc[f"zi_{n}", "note"] = ZI_UNDETERMINED_NOTE
            replicates, note = None, ""
        elif how == "profile":
            if res.family.zero_inflated:
                raise SheetError(PROFILE_ZI_MESSAGE)
            prof = res.profile(time_budget=budget)
            ci = prof.conf_int(alpha)
            # parameters profiled beyond the bootstrap's statistics (an LMM's sigma, an
            # NB theta) follow them, with the profile's estimate
            extra = [n for n in prof.traces if n not in estimates.index]
            estimates = pd.concat([estimates, pd.Series(
                [prof.traces[n].estimate for n in extra], index=extra, dtype=float)])
            replicates, note = None, ""
        else:
            boot = res.bootstrap(nsim, seed, time_budget=budget, progress=models.quietly)
            # the intervals that cover (benchmarks/coverage_study.py): bootstrap-t for
            # the fixed effects, basic for the variance parameters
            ci = boot.recommended(alpha)
            ci["note"] = ""
            replicates, note = len(boot.replicates), _bootstrap_note(boot, budget, alpha)
    except (ProfileError, BootstrapError) as e:
        raise SheetError(f"no {how} intervals: {e}") from None
    except models.NUMERIC_FAILURES:
        raise SheetError(f"no {how} intervals: the computation broke down (an overflow or "
                         "a division by zero) away from the estimates") from None
    rows = []
    for name, est in estimates.items():
        kind = ci.loc[name, "kind"] if "kind" in ci.columns and name in ci.index else how
        if name in ci.index:
            lo, hi, why = ci.loc[name, "lower"], ci.loc[name, "upper"], ci.loc[name, "note"]
        else:
            lo = hi = None
            what, reason = {
                "sigma": ("the residual SD", "the fit gives it no standard error"),
                "nb_theta": ("the negative binomial's theta", "see the fit block's CI"),
                "phi": ("phi", "see the fit block's CI")
            }.get(name, ("a random-effect SD or correlation",
                         "its likelihood is far from quadratic"))
            why = (f"no {how} interval for {what}" +
                   (f": {reason}; use method \"profile\" or \"bootstrap\""
                    if how == "Wald" else ""))
        rows.append((name, est, lo, hi, kind, "; ".join(w for w in (why, note) if w)))
    return block.confint_block(rows, alpha, replicates)


def _bootstrap_note(boot, budget: float, alpha: float) -> str:
    """What the bootstrap's count of replicates leaves out: refits that failed, the
    singular ones (kept), a stop by the time budget."""
    parts = []
    if boot.stopped_by_budget:
        done = len(boot.replicates) + boot.failed
        parts.append(f"the time budget ({budget:.2g} s left after the fit) stopped the "
                     f"bootstrap after {done:,} of {boot.nsim:,} replicates: how many finish "
                     "depends on this machine's speed, so the limits may differ elsewhere "
                     "(ask for fewer replicates, or set XLGLMM_TIME_BUDGET higher)")
    if len(boot.replicates) < 2.0 / alpha:
        parts.append(f"only {len(boot.replicates):,} replicates: too few for a "
                     f"{1 - alpha:.0%} interval, whose limits are then the extreme replicates "
                     f"(use nsim of at least {math.ceil(20 / alpha):,})")
    if boot.failed:
        parts.append(f"{boot.failed:,} refit{'s' if boot.failed != 1 else ''} failed (not "
                     "used)")
    if boot.singular:
        parts.append(f"{boot.singular:,} refit{'s were' if boot.singular != 1 else ' was'} "
                     "singular (used)")
    return "; ".join(parts)


# Function Wizard help shared by several functions (each under 255 characters)
DOC_COUNTS = "Counts (one column; a text header is used as name)"
DOC_X = "Predictor columns (header row optional)"
DOC_GROUPS = "Grouping columns: one random intercept each"
DOC_OFFSET = "Optional. Offset on the log scale, e.g. =LN(exposure)"
DOC_X_RANDOM = "Optional. Columns with random slopes on the first grouping column"
DOC_INTERCEPT = "Optional. TRUE (default) includes an intercept"
DOC_ALPHA = "Optional. 1 - confidence level of the intervals (default 0.05)"
DOC_FAMILY = ("Optional. \"poisson\" (default), \"binomial\", \"gamma\", \"negbin\", \"nb1\", "
              "\"beta\", \"betabinomial\", \"gaussian\" (\":lme4\" after it: lme4's Laplace); "
              "zero-inflated: \"zipoisson\", \"zinb\", \"zinb1\", e.g. \"zinb ~ x\"")
DOC_NAGQ = "Optional. 1 = Laplace (default); 2-100 = adaptive Gauss-Hermite points; 0 = fast"


# ---- the worksheet functions ----------------------------------------------------------
# Declared once, here: ``@worksheet_function`` records each function with its arguments
# in FUNCTIONS (the only list of their names) and applies xlwings' decorators.  Every
# door reads FUNCTIONS: Excel through xlwings, ``xlglmm recalc`` (evaluator.Engine), the
# LibreOffice bridge (libreoffice.evaluate and its generated Basic module).
# Help texts stay under 255 characters (Excel's Function Wizard limit).

@dataclass(frozen=True)
class Argument:
    """One argument as a worksheet function declares it: ``range`` arguments take a
    block of cells, handed over as rows of values with Excel's errors as text (xlwings'
    ``ndim=2, err_to_str=True``); the others take one value."""
    name: str
    doc: str
    range: bool = False


def cells(name: str, doc: str) -> Argument:
    """A range argument (see :class:`Argument`)."""
    return Argument(name, doc, True)


def value(name: str, doc: str) -> Argument:
    """A one-value argument (see :class:`Argument`)."""
    return Argument(name, doc, False)


#: the arguments GLMM_POISSON and GLMM_NEGBIN share (NEGBIN adds theta)
COUNT_MODEL_ARGUMENTS = (
    cells("y", DOC_COUNTS),
    cells("X", DOC_X),
    cells("groups", DOC_GROUPS),
    cells("offset", DOC_OFFSET),
    cells("x_random", DOC_X_RANDOM),
    value("fit_intercept", DOC_INTERCEPT),
    value("alpha", DOC_ALPHA),
    value("nAGQ", DOC_NAGQ),
)


#: the leading arguments of the companions that take the fit's (GLMM_RANEF,
#: GLMM_CONFINT): the range form's, or the formula form's in their places
COMPANION_ARGUMENTS = (
    cells("y", "As in the fit: y (or the formula, then data, family, link, offset, weights, nAGQ)"),
    cells("X", "As in the fit: predictor columns"),
    cells("groups", "As in the fit: grouping columns"),
    cells("offset", "Optional. As in the fit"),
    cells("x_random", "Optional. As in the fit"),
    value("fit_intercept", "Optional. As in the fit"),
    value("nAGQ", "Optional. As in the fit"),
    value("family", DOC_FAMILY),
    cells("trials", "Optional. Binomial trials, as in GLMM_BINOMIAL"),
    value("link", "Optional. Link function"),
)


class WorksheetFunction(NamedTuple):
    """A declared worksheet function: the callable, its parameter names in order, the
    names a call must give (no default), and the names declared as ranges."""
    function: Callable
    parameters: tuple
    required: tuple
    ranges: frozenset


#: name -> WorksheetFunction, in the order of declaration (the order of the add-ins)
FUNCTIONS: dict = {}


def worksheet_function(*arguments: Argument):
    """Declare a worksheet function: every parameter described once, in the order the
    decorators list them; xlwings' ``@xw.func``/``@xw.arg`` are applied from this
    declaration (no-ops off Windows, where FUNCTIONS is what recalc and the LibreOffice
    bridge read)."""
    def declare(f):
        params = inspect.signature(f).parameters
        names = [a.name for a in arguments]
        if sorted(names) != sorted(params):
            raise TypeError(f"{f.__name__}: the declared arguments {names} are not its "
                            f"parameters {list(params)}")
        if f.__name__ in FUNCTIONS:
            raise TypeError(f"{f.__name__} is declared twice")
        for a in reversed(arguments):      # as stacked decorators apply: bottom first
            f = (xw.arg(a.name, ndim=2, err_to_str=True, doc=a.doc) if a.range
                 else xw.arg(a.name, doc=a.doc))(f)
        f = xw.func(category=CATEGORY, call_in_wizard=False)(f)
        FUNCTIONS[f.__name__] = WorksheetFunction(
            f, tuple(params),
            tuple(p for p in params if params[p].default is inspect.Parameter.empty),
            frozenset(a.name for a in arguments if a.range))
        return f
    return declare


@worksheet_function(*COUNT_MODEL_ARGUMENTS)
def GLMM_POISSON(y, X, groups, offset=None, x_random=None, fit_intercept=True, alpha=0.05,
                 nAGQ=1):
    """Poisson GLMM (log link) with random intercepts per grouping column, fitted as lme4::glmer. Spills estimates, SEs, z, p, CIs, rate ratios, variance components and fit statistics."""
    return _safe(_poisson, y, X, groups, offset, x_random, fit_intercept, alpha, nAGQ)


@worksheet_function(
    cells("y", "0/1 outcomes, or numbers of successes with trials"),
    cells("X", DOC_X),
    cells("groups", DOC_GROUPS),
    cells("trials", "Optional. Number of trials per row (y = successes)"),
    cells("x_random", DOC_X_RANDOM),
    value("fit_intercept", DOC_INTERCEPT),
    value("alpha", DOC_ALPHA),
    value("nAGQ", DOC_NAGQ),
    value("link", "Optional. \"logit\" (default), \"probit\" or \"cloglog\""))
def GLMM_BINOMIAL(y, X, groups, trials=None, x_random=None, fit_intercept=True, alpha=0.05,
                  nAGQ=1, link="logit"):
    """Binomial (logistic) GLMM with random intercepts per grouping column, fitted as lme4::glmer. Spills estimates, SEs, z, p, CIs, odds ratios, variance components and fit statistics."""
    return _safe(_binomial, y, X, groups, trials, x_random, fit_intercept, alpha, nAGQ, link)


@worksheet_function(
    value("formula", "lme4 formula, e.g. y ~ x + (1|g) + (x|h) + offset(log(n))"),
    cells("data", "Table with column names in its first row"),
    value("family", DOC_FAMILY),
    value("link", "Optional. Link function; default the family's"),
    cells("offset", "Optional. Offset values (link scale), one per data row"),
    cells("weights", "Optional. Prior weights; binomial: trials, with the response a proportion"),
    value("alpha", DOC_ALPHA),
    value("nAGQ", DOC_NAGQ))
def GLMM(formula, data, family="poisson", link=None, offset=None, weights=None, alpha=0.05,
         nAGQ=1):
    """GLMM from an lme4 formula over a table (header row = column names): crossed, nested, correlated or uncorrelated random effects. Spills the same block as GLMM_POISSON."""
    return _safe(_glmm, formula, data, family, link, offset, weights, alpha, nAGQ)


@worksheet_function(*COMPANION_ARGUMENTS)
def GLMM_RANEF(y, X, groups=None, offset=None, x_random=None, fit_intercept=True, nAGQ=1,
               family="poisson", trials=None, link=None):
    """Random effects (conditional modes, BLUPs) with conditional SDs: one row per group level. Same leading arguments as the fit; the cached fit is reused."""
    return _safe(_ranef, y, X, groups, offset, x_random, fit_intercept, nAGQ, family, trials,
                 link)


@worksheet_function(
    cells("y", "As in the fit: y (or a formula; then data, new_data, family, link, offset, weights, new_offset follow)"),
    cells("X", "As in the fit: predictor columns"),
    cells("groups", "As in the fit: grouping columns"),
    cells("new_X", "Optional. Predictors of the rows to predict (blank: fitted values)"),
    cells("new_groups", "Optional. Their group labels; blank or unseen levels get random effect 0"),
    cells("offset", "Optional. As in the fit"),
    cells("new_offset", "Optional. Offset of the new rows"),
    cells("x_random", "Optional. As in the fit"),
    cells("new_x_random", "Optional. Random-slope columns of the new rows"),
    value("pred_type", "Optional. \"response\" (default) or \"link\" scale; zero-inflated fits: \"conditional\" (the count's mean) or \"zprob\" (structural-zero probability); counts: \"zero\" (P(y = 0); summed: expected zeros)"),
    value("include_re", "Optional. TRUE (default) adds the groups' random effects"),
    value("fit_intercept", "Optional. As in the fit"),
    value("nAGQ", "Optional. As in the fit"),
    value("family", DOC_FAMILY),
    cells("trials", "Optional. Binomial trials, as in the fit"),
    value("link", "Optional. Link function"),
    value("interval", "Optional. \"none\" (default), \"confidence\" (of the mean) or \"prediction\" (a new observation): adds SE (link), lower and upper columns"),
    value("alpha", "Optional. 1 - level of the interval (default 0.05)"),
    cells("new_trials", "Optional. Binomial: the new rows' trials (default 1), for their prediction interval of successes"))
def GLMM_PREDICT(y, X, groups=None, new_X=None, new_groups=None, offset=None, new_offset=None,
                 x_random=None, new_x_random=None, pred_type="response", include_re=True,
                 fit_intercept=True, nAGQ=1, family="poisson", trials=None, link=None,
                 interval="none", alpha=0.05, new_trials=None):
    """Predictions from a GLMM for new rows (response or link scale, with or without random effects), optionally with a confidence or prediction interval. Same leading arguments as the fit; unseen group levels get 0."""
    return _safe(_predict, y, X, groups, new_X, new_groups, offset, new_offset, x_random,
                 new_x_random, pred_type, include_re, fit_intercept, nAGQ, family, trials,
                 link, interval, alpha, new_trials)


@worksheet_function(
    cells("model1", "The first fit's spilled block (e.g. F2#), or a formula"),
    cells("model2", "The second fit's spilled block, or a second formula"),
    cells("data", "Optional. With formulas: the data table"),
    value("family", "Optional. With formulas: the family, or two cells: each formula's (e.g. \"negbin\" and \"zinb\", a test of zero inflation)"),
    value("link", "Optional. With formulas: the link"),
    cells("offset", "Optional. With formulas: offset values"),
    cells("weights", "Optional. With formulas: prior weights"),
    value("nAGQ", "Optional. With formulas: nAGQ"))
def GLMM_COMPARE(model1, model2, data=None, family="poisson", link=None, offset=None,
                 weights=None, nAGQ=1):
    """Likelihood-ratio test of two nested GLMMs, as R's anova(): npar, AIC, BIC, logLik, deviance, Chisq, Df, p. Give the two fits' spilled blocks, or two formulas and the data."""
    return _safe(_compare, model1, model2, data, family, link, offset, weights, nAGQ)


@worksheet_function(
    *COUNT_MODEL_ARGUMENTS,
    value("theta", "Optional. NB2 shape (variance mu + mu^2/theta); blank = estimated by maximum likelihood"))
def GLMM_NEGBIN(y, X, groups, offset=None, x_random=None, fit_intercept=True, alpha=0.05,
                nAGQ=1, theta=None):
    """Negative binomial (NB2) GLMM for overdispersed counts, as lme4::glmer.nb: theta estimated (or fixed). Spills the GLMM_POISSON block plus theta, its SE and CI."""
    return _safe(_negbin, y, X, groups, offset, x_random, fit_intercept, alpha, nAGQ, theta)


@worksheet_function(
    cells("y", "Numeric response (one column; a text header is used as name)"),
    cells("X", DOC_X),
    cells("groups", DOC_GROUPS),
    cells("x_random", DOC_X_RANDOM),
    value("REML", "Optional. TRUE (default) REML, FALSE maximum likelihood (to compare fixed effects)"),
    value("alpha", DOC_ALPHA),
    value("fit_intercept", DOC_INTERCEPT),
    value("ddf", "Optional. \"Satterthwaite\" (default): t tests with Satterthwaite's df, as lmerTest; \"z\": the normal approximation"))
def LMM(y, X, groups, x_random=None, REML=True, alpha=0.05, fit_intercept=True,
        ddf="Satterthwaite"):
    """Linear mixed model, as lme4::lmer (REML or ML): estimates, SEs, Satterthwaite df, t tests and CIs (lmerTest), variance components with the residual, ICC per grouping factor, logLik / REML criterion, AIC, BIC."""
    return _safe(_lmm, y, X, groups, x_random, REML, alpha, fit_intercept, ddf)


@worksheet_function(
    *COMPANION_ARGUMENTS,
    value("method", "Optional. \"Wald\" (default), \"profile\" (profile likelihood) or \"bootstrap\" (parametric, percentile)"),
    value("nsim", "Optional. Bootstrap replicates, 1 to 100,000 (default 1000)"),
    value("seed", "Optional. Bootstrap seed, a whole number >= 0 (default 1): the same seed, the same intervals"),
    value("alpha", DOC_ALPHA))
def GLMM_CONFINT(y, X, groups=None, offset=None, x_random=None, fit_intercept=True, nAGQ=1,
                 family="poisson", trials=None, link=None, method="Wald", nsim=1000, seed=1,
                 alpha=0.05):
    """Confidence intervals of a fit's parameters (random-effect SDs and fixed effects): Wald, profile likelihood or parametric bootstrap. Same leading arguments as the fit; the cached fit is reused."""
    return _safe(_confint, y, X, groups, offset, x_random, fit_intercept, nAGQ, family,
                 trials, link, method, nsim, seed, alpha)


@worksheet_function(
    *COMPANION_ARGUMENTS,
    value("nsim", "Optional. Simulations, each refitted (default 250; 0 leaves the simulation tests out)"),
    value("seed", "Optional. Seed, a whole number >= 0 (default 1): the same seed, the same block"))
def GLMM_CHECK(y, X, groups=None, offset=None, x_random=None, fit_intercept=True, nAGQ=1,
               family="poisson", trials=None, link=None, nsim=250, seed=1):
    """Model checks with a verdict each: dispersion ratio, simulated-residual tests (uniformity, dispersion, zeros, outliers), R2, ICC, singular fit, convergence. Same leading arguments as the fit; the cached fit is reused."""
    return _safe(diagnostics.check, (y, X, groups, offset, x_random, fit_intercept, nAGQ,
                                     family, trials, link), nsim, seed)


@worksheet_function(
    *COMPANION_ARGUMENTS,
    value("resid_type", "Optional. The residual the normal-quantile column ranks: \"deviance\" (default), \"pearson\", \"response\" or \"quantile\""),
    value("nsim", "Optional. Simulations behind the quantile residual (default 250)"),
    value("seed", "Optional. Seed, a whole number >= 0 (default 1)"))
def GLMM_RESID(y, X, groups=None, offset=None, x_random=None, fit_intercept=True, nAGQ=1,
               family="poisson", trials=None, link=None, resid_type="deviance", nsim=250,
               seed=1):
    """Fitted values and residuals (response, Pearson, deviance, simulated quantile) with normal quantiles for a Q-Q chart: one row per data row. Same leading arguments as the fit."""
    return _safe(diagnostics.resid, (y, X, groups, offset, x_random, fit_intercept, nAGQ,
                                     family, trials, link), resid_type, nsim, seed)


@worksheet_function(
    *COMPANION_ARGUMENTS,
    value("group", "Optional. The grouping factor whose levels are left out one at a time (default: the first)"))
def GLMM_INFLUENCE(y, X, groups=None, offset=None, x_random=None, fit_intercept=True, nAGQ=1,
                   family="poisson", trials=None, link=None, group=None):
    """Influence of each level of a grouping factor, as lme4's influence(): the model refitted without it; DFBETAS, Cook's distance, change in the SDs; levels above the cut-offs flagged."""
    return _safe(diagnostics.influence, (y, X, groups, offset, x_random, fit_intercept, nAGQ,
                                         family, trials, link), group)


@worksheet_function(
    *COMPANION_ARGUMENTS,
    value("term", "Optional. The fixed effect tested, a header of X (or a term of the formula); blank: the first after the intercept"),
    value("effect", "Optional. Its true value on the link scale, e.g. =LN(0.7) for a rate ratio of 0.7; blank: the fit's estimate"),
    value("test", "Optional. \"lrt\" (default: likelihood ratio), \"wald\" or \"profile\""),
    value("nsim", "Optional. Simulations per design point, each refitted (default 200; 1 to 100,000)"),
    value("seed", "Optional. Seed, a whole number >= 0 (default 1): the same seed, the same block"),
    value("along", "Optional. What the design points vary: a grouping factor's header (its number of levels), \"rows\" (copies of each row) or \"effect\"; blank: the fit's design"),
    cells("values", "Optional. With along: the design points, e.g. a column of plant counts 10, 20, 30, 40"),
    value("alpha", "Optional. The test's level (default 0.05)"))
def GLMM_POWER(y, X, groups=None, offset=None, x_random=None, fit_intercept=True, nAGQ=1,
               family="poisson", trials=None, link=None, term=None, effect=None, test="lrt",
               nsim=200, seed=1, along=None, values=None, alpha=0.05):
    """Power by simulation (as R's simr): data simulated from the fit, the effect set to a size to detect, refitted and tested; one row per design point (e.g. number of plants): power, its 95% CI, failures. Same leading arguments as the fit."""
    return _safe(planning.power, (y, X, groups, offset, x_random, fit_intercept, nAGQ,
                                  family, trials, link), term, effect, test, nsim, seed,
                 along, values, alpha)


#: the functions themselves, in the order of FUNCTIONS
UDFS = tuple(w.function for w in FUNCTIONS.values())
