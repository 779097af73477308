"""The model a worksheet call describes, and its fit (cached).

Cell values -> a validated :class:`SheetModel` (``model_from_ranges`` for the range
functions, ``model_from_formula`` for GLMM's typed formula, ``companion_model`` for
the two calling forms of the companions) -> ``fit_model`` runs the engine on it once:
the result (or the error) is cached on the model's key, so a recalculation with
unchanged inputs and every companion reuse the fit.  The checks that refuse models
without finite or identifiable estimates run here, on the design the fit uses.
"""
from __future__ import annotations

import contextlib
import functools
import os
from contextvars import ContextVar
import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import cache, values
from ..engine import jit
from ..engine.design import ROW_LABELS, DesignError
from ..engine.design import zero_inflation_formula
from ..engine.family import (LAPLACE_MODES, SHEET_FAMILIES, SHEET_LINKS, ZERO_INFLATED_WORDS,
                             make_family, split_zero_inflation)
from ..engine.fit import ModelError, NegativeBinomial2, glmer
from ..engine.lmm import lmer
from ..engine.formula import Formula, FormulaError, RandomTerm, Response, Variable, parse_formula
from .values import SheetError

#: seconds a worksheet fit may take (compilation not counted); part of the cache key
DEFAULT_TIME_BUDGET = float(os.environ.get("XLGLMM_TIME_BUDGET", "60"))


@dataclass
class SheetModel:
    """A worksheet call's model: the validated data table, the formula (as text and
    parsed), family, link, offset, weights and options, and where its rows sit in the
    sheet (for messages naming rows); ``key`` identifies its fit in the cache."""

    data: pd.DataFrame
    formula: str
    family: str
    link: str | None
    offset: np.ndarray | None
    weights: np.ndarray | None
    nAGQ: int
    x_names: list
    group_names: list
    xr_names: list
    y_name: str
    n_rows: int
    first_row: int
    nb_theta: float | None = None   # negative binomial: fixed theta (None: estimated)
    reml: bool = True               # linear mixed models (family "gaussian")
    # the parsed formula: GLMM's typed text parsed once, or the model of the range
    # functions built directly (its text is ``formula``): never parsed, so a header is
    # a name whatever it holds, and no limit on typed formulas applies
    parsed: Formula | None = None
    laplace: str = "exact"          # the Laplace approximation (family.LAPLACE_MODES)
    #: zero inflation: the zero-inflation formula's text ("~1", "~YEAR"; glmmTMB's
    #: ``ziformula``), ``family`` then the count family ("zinb" -> "negbin"); None: none
    ziformula: str | None = None

    def model_formula(self):
        """What the fit gets: the parsed Formula (or the text, when there is none)."""
        return self.parsed if self.parsed is not None else self.formula

    @functools.cached_property
    def key(self) -> str:
        cols = [(c, _hashable(self.data[c].to_numpy())) for c in self.data.columns]
        # the link as the fit uses it: GLMM_BINOMIAL's "logit" and a companion's blank
        # (the family's default) are the same model, so they share one fit
        link = make_family(self.family, self.link).link
        return cache.digest("fit", self.formula, self.family, link, self.nAGQ, cols,
                            self.offset, self.weights, DEFAULT_TIME_BUDGET, self.nb_theta,
                            self.reml, self.laplace, self.ziformula)


def _hashable(arr: np.ndarray) -> np.ndarray:
    """Label columns (object arrays of str/None) -> 64-bit hashes of their values
    (pandas' fixed-key hash: the same in every process), so that the cache key of a
    million-row column is computed in vectorised code."""
    if arr.dtype != object:
        return arr
    try:
        return pd.util.hash_array(arr, categorize=True)
    except TypeError:
        return arr


def _q(name: str) -> str:
    return f"`{name}`"


def _check_counts(y, name, first_row, family, trials=None):
    """``family``: the :class:`~xlglmm.engine.family.Family` (its response rules)."""
    rows = lambda m: values.rows_text(np.flatnonzero(m) + first_row)
    ok = ~np.isnan(y)
    if family.counts_response:
        neg = ok & (y < 0)
        if neg.any():
            raise SheetError(f"{name} has negative counts in {rows(neg)}")
        frac = ok & (np.abs(y - np.round(y)) > 1e-9 * np.maximum(1, np.abs(y)))
        if frac.any():
            raise SheetError(f"{name} must hold whole-number counts; {rows(frac)} "
                             f"{'is' if frac.sum() == 1 else 'are'} not")
    elif family.is_binomial:
        if trials is None:
            bad = ok & ~np.isin(y, (0.0, 1.0))
            if bad.any():
                raise SheetError(f"{name} must be 0 or 1 without trials ({rows(bad)}); for "
                                 "counts of successes give the trials argument")
        else:
            tok = ~np.isnan(trials)
            bad_t = tok & ((trials <= 0) | (np.abs(trials - np.round(trials)) > 1e-9))
            if bad_t.any():
                raise SheetError(f"trials must be whole numbers above 0 ({rows(bad_t)})")
            neg = ok & ((y < 0) | (np.abs(y - np.round(y)) > 1e-9))
            if neg.any():
                raise SheetError(f"{name} must hold whole numbers of successes from 0 "
                                 f"({rows(neg)})")
            over = ok & tok & (y > trials)
            if over.any():
                raise SheetError(f"{name} has more successes than trials in {rows(over)}")


#: the family (or link) text's suffix naming the Laplace approximation: "gamma:lme4",
#: "probit:lme4" (``engine.family.LAPLACE_MODES``; none: the exact one)
LAPLACE_SUFFIX = ":"


def split_laplace(text):
    """(text without its Laplace suffix, the suffix's mode or None): "gamma:lme4" ->
    ("gamma", "lme4"); SheetError for a suffix that names no mode."""
    if not isinstance(text, str) or LAPLACE_SUFFIX not in text:
        return text, None
    base, _, mode = text.rpartition(LAPLACE_SUFFIX)
    mode = mode.strip().lower()
    if mode not in LAPLACE_MODES:
        raise SheetError(f"the Laplace approximation after ':' must be one of: "
                         f"{', '.join(LAPLACE_MODES)} (e.g. \"gamma:lme4\")")
    return base.strip() or None, mode


def split_family(text):
    """(the family's text with its Laplace suffix if any, the zero-inflation formula or
    None): "zinb" -> ("negbin", "~1"), "zipoisson ~ YEAR" -> ("poisson", "~YEAR"),
    "gamma:lme4" -> ("gamma:lme4", None).  The formula stays text (parsed by the
    engine, never evaluated).  SheetError for a zero-inflation formula after a word
    that is not a zero-inflated family, or a zero-inflated word with ":lme4"."""
    if not isinstance(text, str):
        return text, None
    word, tilde, rest = text.partition("~")
    base, mode = split_laplace(word) if not tilde or LAPLACE_SUFFIX in word else (word, None)
    name, zi = split_zero_inflation(base) if isinstance(base, str) else (base, None)
    if zi is None:
        if tilde:
            raise SheetError(f"'{word.strip()}' takes no formula: zero inflation (of counts "
                             f"only) is written with a zero-inflated word "
                             f"({', '.join(ZI_MESSAGE_WORDS)}) and its formula, e.g. "
                             f"\"zinb ~ YEAR\"")
        return text, None
    if mode is not None or rest.rstrip().lower().endswith(LAPLACE_SUFFIX + "lme4"):
        raise SheetError(ZI_LME4_MESSAGE)
    rest = " ".join(rest.split())       # one text per model: one fit in the cache
    return name, f"~{rest}" if rest else ("~1" if not tilde else "~")   # as R prints it


def _first_word_per_family(words: dict) -> tuple:
    """One word per zero-inflated count family, the first the registry lists."""
    first: dict = {}
    for word, family in words.items():
        first.setdefault(family, word)
    return tuple(first.values())


#: the zero-inflated family words, as the messages list them
ZI_MESSAGE_WORDS = _first_word_per_family(ZERO_INFLATED_WORDS)
ZI_LME4_MESSAGE = ("lme4 has no zero-inflated models: they are fitted by the exact Laplace "
                   "approximation only (glmmTMB's); leave ':lme4' out")


def _check_family_link(family, link):
    """The link must suit the family (checked before any data are read); returns
    (the :class:`~xlglmm.engine.family.Family`, the family's and the link's text
    without a Laplace suffix or zero-inflation formula, the Laplace approximation:
    "exact" unless the family or the link ends in ":lme4", the zero-inflation
    formula or None)."""
    family, ziformula = split_family(family)
    family, mode_f = split_laplace(family)
    link, mode_l = split_laplace(link)
    if mode_f and mode_l and mode_f != mode_l:
        raise SheetError("the family and the link name different Laplace approximations")
    laplace = mode_f or mode_l or "exact"
    if ziformula is not None and laplace != "exact":
        raise SheetError(ZI_LME4_MESSAGE)
    try:
        fam = make_family(family, link)
        if ziformula is not None:
            fam = dataclasses.replace(fam, zero_inflated=True)
            zero_inflation_formula(ziformula, fam)     # its shape, before the data
    except (FormulaError, DesignError) as e:
        raise SheetError(f"the family's zero-inflation formula: {e}") from None
    except (ValueError, TypeError) as e:
        raise SheetError(str(e)) from None
    return dataclasses.replace(fam, laplace=laplace), family, link, laplace, ziformula


def model_from_ranges(family, y, X, groups, offset=None, x_random=None, fit_intercept=True,
                      nAGQ=1, trials=None, link=None) -> SheetModel:
    fam, family, link, laplace, zi = _check_family_link(family, link)
    rows = values.data_extent(y, X, groups, offset, x_random, trials)
    yv, _, orient = values.vector(y, "y", rows=rows)
    y_header, ydata, yoff = values.split_header(yv, None, "y", numeric=True)
    n = len(ydata)
    if n == 0:
        raise SheetError("y has no data rows")
    first = 1 + yoff
    yarr = values.numeric(ydata, "y", yoff)
    xcols = [] if values.is_empty(X) else values.matrix(X, "X", n, orient, rows=rows)[0]
    if values.is_empty(groups):
        raise SheetError("groups is empty: give at least one column of group labels")
    gcols = values.matrix(groups, "groups", n, orient, kind="labels", rows=rows)[0]
    xrcols = [] if values.is_empty(x_random) \
        else values.matrix(x_random, "x_random", n, orient, rows=rows)[0]
    off = aligned_vector(offset, "offset", n, yoff,
                          log_scale=fam.is_log_link, rows=rows)
    tri = aligned_vector(trials, "trials", n, yoff, rows=rows)
    _check_counts(yarr, "y", first, fam, tri)
    used: set = set()
    data = {}
    y_name = values.unique_name(values.clean_name(y_header) if y_header else "y", used)
    x_names = []
    for nm, arr in xcols:
        nm = values.unique_name(nm, used)
        data[nm] = arr
        x_names.append(nm)
    g_names = []
    for nm, arr in gcols:
        nm = values.unique_name(nm, used)
        data[nm] = arr
        g_names.append(nm)
    xr_names = []
    for nm, arr in xrcols:
        same = next((x for x in x_names if x == nm and np.array_equal(data[x], arr, equal_nan=True)),
                    None)
        if same is None:
            nm = values.unique_name(nm if nm not in used else f"{nm}.random", used)
            data[nm] = arr
        xr_names.append(nm)
    weights = None
    if fam.is_binomial and tri is not None:
        with np.errstate(all="ignore"):
            data[y_name] = np.where(tri > 0, yarr / tri, np.nan)
        weights = tri
    else:
        data[y_name] = yarr
    df = pd.DataFrame(data)
    df.index = np.arange(first, first + n)
    df.attrs[ROW_LABELS] = df.index.to_numpy()
    parsed = _ranges_formula(y_name, x_names, g_names, xr_names, fit_intercept)
    return SheetModel(df, parsed.text, family, link, off, weights, nAGQ, x_names, g_names,
                      xr_names, y_name, n, first, parsed=parsed, laplace=laplace,
                      ziformula=zi)


def _ranges_formula(y_name, x_names, g_names, xr_names, fit_intercept) -> Formula:
    """The model of the range functions, built as a Formula (every header is a column
    name, whatever characters it has), with its text for display and the cache:
    ``y ~ 1 + x1 + ... + (1 + xr... | g1) + (1 | g2) ...``."""
    fixed = ["1" if fit_intercept else "0"] + [_q(x) for x in x_names]
    random, re_text = [], []
    for k, g in enumerate(g_names):
        lhs = xr_names if k == 0 else []
        text = f"(1 + {' + '.join(_q(x) for x in lhs)} | {_q(g)})" if lhs else f"(1 | {_q(g)})"
        random.append(RandomTerm(True, [(Variable(x),) for x in lhs], [(Variable(g),)],
                                 True, text))
        re_text.append(text)
    text = f"{_q(y_name)} ~ {' + '.join(fixed + re_text)}"
    return Formula(Response(name=Variable(y_name)), bool(fit_intercept),
                   [(Variable(x),) for x in x_names], random, [], text)


def aligned_vector(value, name, n, yoff, log_scale=False, rows=None):
    if values.is_empty(value):
        return None
    vals, _, _ = values.vector(value, name, rows=rows)
    if vals is None:
        return None
    if len(vals) == 1 and n > 1:
        raise SheetError(f"{name} must be a column with one value per row of y")
    header, data, off = values.split_header(vals, n, name, numeric=True)
    arr = values.numeric(data, name, off)
    if name in ("offset", "new_offset"):
        _check_log_offset(arr, name, 1 + off, log_scale)
    return arr


MAX_LOG_OFFSET = 700.0     # e^709 overflows a double


def _check_log_offset(arr, name, row0, log_scale):
    """An offset on the log scale beyond +-700 is not the log of an exposure (and
    e^offset overflows)."""
    if not log_scale or arr is None:
        return
    with np.errstate(invalid="ignore"):
        big = np.abs(arr) > MAX_LOG_OFFSET
    if big.any():
        raise SheetError(f"{name} has values beyond +-{MAX_LOG_OFFSET:g} in "
                         f"{values.rows_text(np.flatnonzero(big) + row0)}: the offset is on "
                         "the log scale, e.g. =LN(exposure)")


def model_from_formula(formula, data, family="poisson", link=None, offset=None,
                       weights=None, nAGQ=1) -> SheetModel:
    if not isinstance(formula, str) or "~" not in formula:
        raise SheetError("formula must be text such as y ~ x + (1|group)")
    fam, family, link, laplace, zi = _check_family_link(family, link)
    parsed = parse_formula(formula)      # once, and before any data are read
    cols, off = values.table(data, "data")
    n = len(next(iter(cols.values())))
    frame = {}
    for name, vals in cols.items():
        frame[name] = typed_column(vals, name)
    df = pd.DataFrame(frame)
    df.index = np.arange(2, 2 + n)
    df.attrs[ROW_LABELS] = df.index.to_numpy()
    o = _vector_or_column(offset, "offset", n, df,
                          log_scale=fam.is_log_link)
    w = _vector_or_column(weights, "weights", n, df)
    return SheetModel(df, formula, family, link, o, w, nAGQ, [], [], [], "", n, 2,
                      parsed=parsed, laplace=laplace, ziformula=zi)


def typed_column(vals, name):
    """A data-table column: numbers -> floats; text (or TRUE/FALSE) -> labels.  A
    column that is mostly numbers with a few text cells is an error, not a factor."""
    types = set(map(type, vals))
    if types <= values.FLOAT_TYPES:                   # fast paths: numbers and blanks,
        return values.numeric(vals, f"data column '{name}'", 1)
    if types <= {str, type(None)}:                   # or text and blanks
        out = values.labels(vals, f"data column '{name}'", 1)
        if any(v is not None for v in out):
            return out
        return np.full(len(vals), np.nan)
    nums = texts = 0
    text_rows, err_rows = [], []
    for i, v in enumerate(vals):
        if values.is_blank(v):
            continue
        if values.is_error(v):
            err_rows.append(i + 2)
        elif values.is_number(v):
            nums += 1
        else:
            texts += 1
            text_rows.append(i + 2)
    if err_rows:
        raise SheetError(f"data column '{name}' has Excel error values in "
                         f"{values.rows_text(err_rows)}")
    if nums and texts and nums >= 4 * texts:
        raise SheetError(f"data column '{name}' has non-numeric values in "
                         f"{values.rows_text(text_rows)}")
    if texts:
        return values.labels(vals, f"data column '{name}'", 1)
    return values.numeric(vals, f"data column '{name}'", 1)


def _vector_or_column(value, name, n, df, log_scale=False):
    if values.is_empty(value):
        return None
    if isinstance(value, str):
        col = value.strip()
        if col not in df.columns:
            raise SheetError(f"{name} '{col}' is not a column of data")
        arr = df[col].to_numpy()
        if arr.dtype == object:
            raise SheetError(f"{name} column '{col}' is not numeric")
        if name == "offset":
            raise SheetError("give the offset as a range of values (e.g. =LN(exposure)) or "
                             "write offset(log(column)) in the formula")
        return arr.astype(float)
    vals, _, _ = values.vector(value, name)
    header, data, off = values.split_header(vals, n, name, numeric=True)
    arr = values.numeric(data, name, off + 1)
    if name == "offset":
        _check_log_offset(arr, name, 2 + off, log_scale)
    return arr


# arithmetic failures inside the engine (Numba kernels raise ZeroDivisionError on a
# float division by zero; LAPACK refuses non-finite matrices)
NUMERIC_FAILURES = (ZeroDivisionError, FloatingPointError, OverflowError,
                    np.linalg.LinAlgError)


def _raised_in(exc: BaseException, function: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return True
        tb = tb.tb_next
    return False


#: a normal response with another link than the identity: not fitted (it was fitted
#: with the identity link, the link silently dropped)
GAUSSIAN_LINK_MESSAGE = ("family gaussian is fitted as a linear mixed model with the "
                         "identity link; a log or inverse link is not available yet")


def _numeric_failure(exc: BaseException) -> ModelError:
    what = {ZeroDivisionError: "a division by zero", OverflowError: "an overflow",
            FloatingPointError: "an overflow"}.get(type(exc), "infinite or NaN numbers")
    return ModelError(f"the model could not be fitted: the computation broke down ({what}). "
                      "Check y, X and the offset for extreme values, and that the link "
                      "suits the model (e.g. Gamma's inverse link needs an intercept)")


def _check_design(d, family, y_name: str = "") -> None:
    """Models without finite or identifiable estimates, refused with a clear message
    instead of a block of meaningless numbers: an all-zero (or all-success)
    response, more random effects than rows (lme4's check.nobs.vs.nRE), a random
    intercept per row of 0/1 outcomes.  ``d``: the model design."""
    y = d.y
    name = "y" if y_name else f"the response '{d.response_name}'"
    if family.counts_response and np.all(y == 0.0):
        raise ModelError(f"{name} is 0 in every row used: a model of all-zero counts has no "
                         "finite estimates (the fitted rate is 0)")
    if family.is_binomial and (np.all(y == 0.0) or np.all(y == 1.0)):
        what = "0 (no successes)" if np.all(y == 0.0) else "a success"
        raise ModelError(f"every outcome is {what}: the model has no finite estimates")
    for t in d.re_terms:
        if t.nlevels * t.k > d.nobs:
            raise ModelError(
                f"the random effects for '{t.group}' number {t.nlevels * t.k} ({t.nlevels} "
                f"levels x {t.k} terms) but there are {d.nobs} rows: their variances "
                "cannot be identified; use fewer random slopes or groups with more rows")
    bernoulli = family.is_binomial and np.all(d.weights == 1.0) and \
        np.all((d.y == 0.0) | (d.y == 1.0))
    for t in d.re_terms:
        if bernoulli and t.nlevels == d.nobs and t.k == 1:
            raise ModelError(
                f"every row is its own level of '{t.group}' ({d.nobs} levels, {d.nobs} rows): "
                "with 0/1 outcomes a random intercept per row cannot be identified; give "
                "groups that contain several rows")


def _check_fit(res, y_name: str = "") -> None:
    """The design checks (when not done before the fit), and complete separation."""
    _check_design(res.design, res.family, y_name)
    if res.family.is_binomial:
        mu = np.asarray(res.fittedvalues, float)
        if mu.size and np.all((mu < 1e-6) | (mu > 1.0 - 1e-6)):
            raise ModelError("complete separation: the predictors (or groups) predict every "
                             "outcome exactly, so the estimates are infinite; remove the "
                             "separating predictor or combine categories")


# Who is told about the fits: recalc's and the demo's status line and fit count
# (recalc.watching_fits).  A context variable, so one thread's recalculation never sees
# another's fits.
FIT_OBSERVER: ContextVar = ContextVar("xlglmm_fit_observer", default=None)


@contextlib.contextmanager
def observing_fits(observer):
    """Within the block, every model fit a worksheet function runs (a cache hit runs
    none; a refit with the accurate Hessian is a second one) is run inside
    ``observer.fitting(kind)``, kind "glmm" or "lmm": a context manager that yields the
    progress callback for the fit (``callback(stage, evaluations)``, as
    :func:`xlglmm.engine.fit.glmer` takes; ``lmer`` takes none) or None."""
    token = FIT_OBSERVER.set(observer)
    try:
        yield observer
    finally:
        FIT_OBSERVER.reset(token)


def fit_model(m: SheetModel):
    key = m.key
    hit = cache.FITS.get(key)
    if hit is not None:
        if isinstance(hit, Exception):
            raise hit
        return hit
    clock = jit.Stopwatch()      # fitting time: compilation of the kernels not counted

    data = m.data    # text label columns: the design codes them in vectorised code

    def check(design, family):    # before the fit, on the design the fit uses
        _check_design(design, family, m.y_name)

    def run(budget=DEFAULT_TIME_BUDGET, **kw):
        observer = FIT_OBSERVER.get()
        fam = make_family(m.family, m.link)
        kind = "lmm" if fam.is_gaussian else "glmm"
        watch = observer.fitting(kind) if observer is not None else contextlib.nullcontext()
        with watch as progress:
            # (the size and cost guards run in the design, for every door: cost.py)
            if kind == "lmm":
                if (fam.link or "identity") != "identity":
                    raise ModelError(GAUSSIAN_LINK_MESSAGE)
                return lmer(m.model_formula(), data, REML=m.reml, offset=m.offset,
                            weights=m.weights, time_budget=budget, check_design=check)
            family = m.family
            if fam.has_theta and m.nb_theta is not None:
                family = NegativeBinomial2(m.nb_theta, fam.link, m.laplace)
            return glmer(m.model_formula(), data, family=family,
                         link=m.link if family is m.family else None, offset=m.offset,
                         weights=m.weights, nAGQ=m.nAGQ, laplace=m.laplace,
                         ziformula=m.ziformula, time_budget=budget, check_design=check,
                         progress=progress, **kw)
    try:
        try:
            res = run()
        except NUMERIC_FAILURES as e:
            if not _raised_in(e, "lme4_devfun"):
                raise
            # lme4's own finite-difference Hessian (the default SEs) broke down, e.g.
            # on a perfect fit (deviance exactly 0): use the accurate Hessian
            res = run(max(1.0, DEFAULT_TIME_BUDGET - clock.elapsed()),
                      se_method="hessian")
            res.messages.append("lme4's finite-difference Hessian could not be evaluated "
                                "here; the accurately computed Hessian is used.")
        _check_fit(res, m.y_name)
    except NUMERIC_FAILURES as e:
        err = _numeric_failure(e)
        cache.FITS.put(key, err)
        raise err from None
    except ModelError as e:
        if clock.elapsed() >= DEFAULT_TIME_BUDGET and "could not be evaluated" in str(e):
            # the budget ran out before the first evaluation (not a PIRLS failure);
            # not cached: another recalculation may have the time
            raise ModelError(f"the time budget of {DEFAULT_TIME_BUDGET:g} s ran out before "
                             "the model could be evaluated once; use fewer rows or "
                             "predictors") from None
        cache.FITS.put(key, e)
        raise
    except (DesignError, FormulaError, SheetError) as e:
        cache.FITS.put(key, e)
        raise
    cache.FITS.put(key, res)
    return res


def options(fit_intercept, alpha, nAGQ, link=None, links=None):
    fi = values.scalar(fit_intercept, "fit_intercept", True, "bool")
    a = alpha_argument(alpha)
    q = values.scalar(nAGQ, "nAGQ", 1, "int", 0, 100)
    lk = link_argument(link, links) if links else None
    return fi, a, q, lk


def alpha_argument(alpha) -> float:
    """1 - the intervals' level: a number strictly between 0 and 1 (0.05 when blank)."""
    a = values.scalar(alpha, "alpha", 0.05, "number")
    # (and 1 - alpha below 1: alpha = 1e-300 would make a 100% interval)
    if not (0.0 < a < 1.0 and 1.0 - a < 1.0):
        raise SheetError("alpha must be between 0 and 1 (e.g. 0.05 for 95% intervals)")
    return a


#: the most simulations a cell may ask for where each is a refit (the bootstrap's
#: replicates, a power analysis's data sets): a worksheet call has the fit's time
#: budget (100,000 refits of even a small model take minutes)
MAX_SHEET_NSIM = 100_000


def nsim_argument(nsim, default: int, most: int, what: str, least: int = 0) -> int:
    """A whole number of simulations from ``least`` to ``most`` (``what`` says what
    one costs, for the message)."""
    n = values.scalar(nsim, "nsim", default, "number")
    if not (float(n).is_integer() and least <= n <= most):
        raise SheetError(f"nsim must be a whole number from {least} to {most:,} ({what})")
    return int(n)


#: the largest whole number a worksheet cell holds exactly
MAX_SEED = 2**53 - 1


def seed_argument(seed, default: int = 1) -> int:
    """A whole number from 0 to MAX_SEED: the same seed, the same simulations."""
    s = values.scalar(seed, "seed", default, "number")
    if not (float(s).is_integer() and 0 <= s <= MAX_SEED):
        raise SheetError(f"seed must be a whole number from 0 to {MAX_SEED:,} (the same "
                         "seed gives the same simulations)")
    return int(s)


def remaining_budget(clock: jit.Stopwatch) -> float:
    """What the fit left of the call's time budget, for the work after it (a tenth
    of the budget at least, so that a fit that used it up still leaves a chance)."""
    total = DEFAULT_TIME_BUDGET
    return max(0.1 * total, total - clock.elapsed())


def quietly(*_):
    """A progress callback that reports nothing: a worksheet cell has no terminal
    line to keep, and recalc shows its own progress."""


def family_argument(value, default="poisson"):
    """The family's text, one of SHEET_FAMILIES with its Laplace suffix if any
    ("gamma:lme4", ``split_laplace``), or a zero-inflated count family's word with its
    zero-inflation formula if any ("zinb", "zipoisson ~ YEAR": ``split_family``)."""
    if isinstance(value, list):
        value = values.scalar(value, "family", None, "text")
    name, zi = split_family(value)
    if zi is not None:
        word = value.partition("~")[0].strip().lower()
        zero_inflation = value.partition("~")[2].strip()
        _check_family_link(value, None)
        return f"{word} ~ {zero_inflation}" if zero_inflation else word
    base, mode = split_laplace(value)
    if isinstance(base, str) and base.strip().lower().startswith("zi") \
            and base.strip().lower() not in SHEET_FAMILIES:
        raise SheetError(f"the zero-inflated families are: {', '.join(ZI_MESSAGE_WORDS)} "
                         f"(optionally with a formula, e.g. \"zinb ~ YEAR\"), not "
                         f"'{base.strip()}'")
    fam = values.scalar(base, "family", default, "text", choices=SHEET_FAMILIES)
    return fam if mode is None else f"{fam}{LAPLACE_SUFFIX}{mode}"


def link_argument(value, links=SHEET_LINKS):
    """The link's text (None: the family's default), one of ``links``, with its
    Laplace suffix if any ("probit:lme4")."""
    base, mode = split_laplace(value)
    lk = values.scalar(base, "link", None, "text", choices=links)
    if mode is None:
        return lk
    return f"{lk or ''}{LAPLACE_SUFFIX}{mode}"


def _one_cell(v):
    """The single non-blank cell of a range (None when there are 0 or several)."""
    found = None
    for r in values.as_grid(v, "formula"):
        for c in r:
            if not values.is_blank(c):
                if found is not None:
                    return None
                found = c
    return found


def is_formula(v) -> bool:
    if isinstance(v, (list, tuple)):
        v = _one_cell(v)
    return isinstance(v, str) and "~" in v


def formula_text(v):
    """The formula cell: a scalar, or the one non-blank cell of a range."""
    if isinstance(v, (list, tuple)):
        cells = [c for r in values.as_grid(v, "formula") for c in r if not values.is_blank(c)]
        if len(cells) != 1:
            raise SheetError("formula must be one cell of text such as y ~ x + (1|group)"
                             + (f" (the range has {len(cells)} non-blank cells)" if cells
                                else ""))
        return cells[0]
    return v



def companion_model(args_range, args_formula, first):
    """Both calling forms of the companions -> SheetModel."""
    if is_formula(first):
        formula, data, family, link, offset, weights, nAGQ = args_formula
        if isinstance(weights, (bool, np.bool_)):
            weights = None      # the range form's fit_intercept default sits in this slot
        fam = family_argument(family)
        _, _, q, lk = options(True, 0.05, nAGQ, link, SHEET_LINKS)
        return model_from_formula(formula_text(formula), data, fam, lk, offset, weights, q)
    y, X, groups, offset, x_random, fit_intercept, nAGQ, family, trials, link = args_range
    fam = family_argument(family)
    fi, _, q, lk = options(fit_intercept, 0.05, nAGQ, link, SHEET_LINKS)
    if make_family(split_laplace(split_family(fam)[0])[0]).is_binomial:
        return model_from_ranges(fam, y, X, groups, None, x_random, fi, q, trials, lk)
    if not values.is_empty(trials):
        raise SheetError("trials is only for family \"binomial\"")
    return model_from_ranges(fam, y, X, groups, offset, x_random, fi, q, None, lk)
