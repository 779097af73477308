"""Model design: from a parsed formula and a table to the arrays a fit needs.

``build_design(formula, data, family, offset=, weights=, groups=)`` resolves every
name against the data, drops rows with missing values (and counts them), builds
the fixed-effect model matrix with R's treatment contrasts and R's column names,
one :class:`ReTerm` per random-effects term (sorted as lme4 sorts them), the
response and prior weights as the family reads them, and the offset.

The same recipe (:class:`DesignSpec`: variable kinds and factor levels, terms)
rebuilds X and Z for new data in ``predict``.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .family import Family
from .formula import Formula, RandomTerm, Variable, parse_formula

RANK_TOL = 1e-7


class DesignError(ValueError):
    """The data do not fit the model (unknown column, bad values, nothing left...)."""


ROW_LABELS = "xlglmm_row_labels"   # DataFrame.attrs key: row numbers to show in messages


def _rows_text(mask_or_idx, labels=None, limit=8) -> str:
    """'rows 5, 9' style text: 1-based positions in the data as given, or the row
    labels the caller attached (the worksheet layer attaches range row numbers)."""
    idx = np.flatnonzero(mask_or_idx) if np.asarray(mask_or_idx).dtype == bool else \
        np.asarray(mask_or_idx)
    if labels is None:
        labels = _CURRENT_LABELS.value
    shown = [str(labels[int(i)]) if labels is not None else str(int(i) + 1)
             for i in idx[:limit]]
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    word = "row" if len(idx) == 1 else "rows"
    return f"{word} {', '.join(shown)}{more}"


class _Labels(threading.local):
    value = None


_CURRENT_LABELS = _Labels()   # row labels of the table being built (per thread)


# ---- variables ------------------------------------------------------------------------

@dataclass
class VarSpec:
    """How a variable is read: 'numeric', or 'factor' with its levels."""

    kind: str
    levels: list = field(default_factory=list)


def _level_label(v) -> str:
    if type(v) is str:
        return v
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (float, np.floating)):
        if math.isfinite(v) and float(v).is_integer():
            return str(int(v))
        return repr(float(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def _is_missing_scalar(v) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (float, np.floating)) and math.isnan(v):
        return True
    if isinstance(v, str) and not v.strip():
        return True
    return False


def _missing_mask(series: pd.Series) -> np.ndarray:
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
        return np.fromiter((_is_missing_scalar(v) for v in series), bool, len(series))
    return series.isna().to_numpy()


def _is_categorical_like(series: pd.Series) -> bool:
    return (isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object
            or isinstance(series.dtype, pd.StringDtype) or series.dtype == bool)


def _numeric_values(series: pd.Series, what: str) -> np.ndarray:
    """Float values; missing -> NaN; text or other non-numbers -> DesignError."""
    if series.dtype == bool:
        return series.to_numpy(float)
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iuf":
        return series.to_numpy().astype(float)   # (a copy; NaN stays: what na_value gives)
    if pd.api.types.is_numeric_dtype(series.dtype) and not isinstance(
            series.dtype, pd.CategoricalDtype):
        return series.to_numpy(dtype=float, na_value=np.nan)
    out = np.empty(len(series))
    bad = []
    for i, v in enumerate(series):
        if _is_missing_scalar(v):
            out[i] = np.nan
        elif isinstance(v, (bool, np.bool_)):
            out[i] = float(v)
        elif isinstance(v, (int, float, np.integer, np.floating)):
            out[i] = float(v)
        else:
            bad.append(i)
    if bad:
        raise DesignError(f"{what} has non-numeric values in {_rows_text(np.array(bad))}")
    return out


def _factor_codes(series: pd.Series, levels: list | None = None):
    """Integer codes (-1 = missing; -2 = a label not in the ``levels`` given) and
    level labels (data order rules as R: numbers sorted as numbers, booleans
    FALSE < TRUE, anything else sorted as text, each value labelled by
    ``_level_label``).

    Vectorised: a Categorical through its codes; a column of numbers, or of text
    and blanks, through its distinct values (``_distinct_codes``), each labelled
    once; other columns (mixed types, nullable dtypes) value by value."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cat = series.array          # (the Categorical itself: .cat builds Series)
        cats = cat.categories.tolist()      # (plain Python scalars: fast)
        codes = cat.codes.astype(np.int64)  # (-1: missing)
        if levels is not None:
            index = {lab: k for k, lab in enumerate(levels)}
            to_level = np.array([index.get(_level_label(c), -2) for c in cats] + [-1],
                                np.int64)
            return to_level[codes], list(levels)
        counts = np.bincount(codes[codes >= 0], minlength=len(cats))
        keep = np.flatnonzero(counts)
        if len(keep) < len(cats):
            remap = -np.ones(len(cats) + 1, np.int64)
            remap[keep] = np.arange(len(keep))
            codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
        return codes, [_level_label(cats[k]) for k in keep]
    distinct = _distinct_codes(series)
    if distinct is not None:
        inv, uniq, numeric = distinct
        labels = [_level_label(u) for u in uniq]
        if levels is None:
            if numeric:         # sorted already, each value its own label
                return inv, labels
            order = sorted(range(len(uniq)), key=labels.__getitem__)
            rank = np.empty(len(uniq) + 1, np.int64)
            rank[order] = np.arange(len(uniq))
            rank[-1] = -1                       # (inv's -1, missing, stays -1)
            return rank[inv], [labels[k] for k in order]
        index = {lab: k for k, lab in enumerate(levels)}
        to_level = np.array([index.get(lab, -2) for lab in labels] + [-1], np.int64)
        return to_level[inv], list(levels)
    return _codes_by_value(series, levels)


def _codes_by_value(series: pd.Series, levels: list | None = None):
    """``_factor_codes`` value by value: any column (the vectorised paths' reference)."""
    miss = _missing_mask(series)
    if levels is None:
        vals = series[~miss]
        uniq = pd.unique(vals.to_numpy(dtype=object))
        if all(isinstance(u, (bool, np.bool_)) for u in uniq):
            ordered = sorted(uniq)
        elif all(isinstance(u, (int, float, np.integer, np.floating)) and
                 not isinstance(u, (bool, np.bool_)) for u in uniq):
            ordered = sorted(uniq, key=float)
        else:
            ordered = sorted(uniq, key=lambda u: str(u))
        labels = []
        seen = {}
        for u in ordered:
            lab = _level_label(u)
            if lab not in seen:
                seen[lab] = len(labels)
                labels.append(lab)
        levels = labels
    index = {lab: k for k, lab in enumerate(levels)}
    codes = np.full(len(series), -1, np.int64)
    for i, v in enumerate(series.to_numpy(dtype=object)):
        if not miss[i]:
            codes[i] = index.get(_level_label(v), -2)
    return codes, list(levels)


_NA_TYPES = (type(None), float, type(pd.NA), type(pd.NaT))
_EXACT_INT = 2 ** 53        # integers beyond it do not all have a float of their own


def _distinct_codes(series: pd.Series):
    """(inv, uniq, numeric): each row's index into ``uniq``, the distinct present
    values (-1 for a missing row), for the columns whose values can be told apart
    and labelled without looking at each row in Python -- exactly as the row by row
    code does:

    * numbers (numpy int, unsigned, float or bool dtype): ``np.unique``, sorted as
      numbers (``numeric`` True: each distinct number has a label of its own, so
      the labels come out sorted and distinct: 0.0 and -0.0 are one value and one
      label "0"); NaN is missing;
    * text and blanks (object or string dtype holding only ``str`` and missing
      markers -- None, NaN, pd.NA, NaT): ``pd.factorize``; a blank text (empty or
      spaces) is missing, as ``_is_missing_scalar`` says.

    None for other columns (mixed types, nullable or extension dtypes, integers
    beyond 2^53, whose float sort keys would tie)."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iufb":
        a = series.to_numpy()
        if dtype.kind in "iu" and len(a) and (a.max() > _EXACT_INT or a.min() < -_EXACT_INT):
            return None
        present = ~np.isnan(a) if dtype.kind == "f" else None
        if present is None or present.all():
            uniq, inv = np.unique(a, return_inverse=True)
            return inv.reshape(-1).astype(np.int64), uniq.tolist(), True
        uniq, inv_present = np.unique(a[present], return_inverse=True)
        inv = np.full(len(a), -1, np.int64)
        inv[present] = inv_present.reshape(-1)
        return inv, uniq.tolist(), True
    if not (dtype == object or isinstance(dtype, pd.StringDtype)):
        return None
    a = series.to_numpy(dtype=object)
    types = set(map(type, a))
    if not types <= {str, *_NA_TYPES}:
        return None
    if float in types and any(type(v) is float and not math.isnan(v) for v in a):
        return None                 # (numbers among the text: value by value)
    inv, uniq = pd.factorize(a, use_na_sentinel=True)    # None, NaN, NA, NaT: -1
    inv = inv.astype(np.int64)
    uniq = list(uniq)
    blank = [k for k, u in enumerate(uniq) if not u.strip()]
    if blank:                       # blank text is missing
        keep = [k for k in range(len(uniq)) if k not in set(blank)]
        remap = np.full(len(uniq) + 1, -1, np.int64)
        remap[keep] = np.arange(len(keep))
        inv = remap[inv]
        uniq = [uniq[k] for k in keep]
    return inv, uniq, False


_TRANSFORMS = {"log": np.log, "log2": np.log2, "log10": np.log10, "log1p": np.log1p,
               "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs}


class DataTable:
    """Column access by name with clear errors."""

    def __init__(self, data):
        if isinstance(data, pd.DataFrame):
            self.df = data
        elif isinstance(data, dict):
            try:
                self.df = pd.DataFrame(data)
            except ValueError as e:
                raise DesignError(f"the data columns have different lengths ({e})") from None
        else:
            raise DesignError("data must be a pandas DataFrame or a dict of columns")
        self.n = len(self.df)

    def column(self, name: str) -> pd.Series:
        if name not in self.df.columns:
            cols = ", ".join(map(str, list(self.df.columns)[:20]))
            raise DesignError(f"column '{name}' is not in the data (columns: {cols})")
        col = self.df[name]
        if isinstance(col, pd.DataFrame):
            raise DesignError(f"column name '{name}' appears more than once in the data")
        idx = col.index
        if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
            return col          # (positions already: no new Series)
        return col.reset_index(drop=True)


@dataclass
class ReTerm:
    """One random-effects term: ``k`` columns of Z per level of a grouping factor."""

    name: str                 # lme4's VarCorr 'grp' (made unique: g, g.1)
    group: str                # grouping factor name (b:a for nested)
    codes: np.ndarray         # level index per row (int64)
    levels: list              # level labels
    Z: np.ndarray             # n x k raw model rows of the term
    colnames: list            # e.g. ['(Intercept)', 'x']
    spec: RandomTerm = None   # where it came from (for predict)
    lhs_terms: list = field(default_factory=list)
    lhs_intercept: bool = True
    group_vars: tuple = ()

    @property
    def k(self) -> int:
        return self.Z.shape[1]

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def ntheta(self) -> int:
        return self.k * (self.k + 1) // 2


@dataclass
class DesignSpec:
    """The recipe to rebuild X and Z for new data."""

    formula: Formula
    vars: dict                # Variable -> VarSpec (of the fixed and random-slope terms)
    x_terms: list
    x_intercept: bool
    x_names_full: list        # before dropping rank-deficient columns
    x_keep: np.ndarray        # indices kept
    #: the zero-inflation model (glmmTMB's ``ziformula``: fixed effects only) and the
    #: indices of its columns kept; None without zero inflation
    zi_formula: Formula | None = None
    zi_keep: np.ndarray | None = None


@dataclass
class ModelDesign:
    y: np.ndarray
    weights: np.ndarray       # prior weights (binomial: trials)
    offset: np.ndarray
    X: np.ndarray
    x_names: list
    re_terms: list
    nobs: int
    n_input: int
    n_dropped: int
    dropped_rows: np.ndarray  # positions (0-based) in the input data
    kept_rows: np.ndarray
    row_labels: pd.Index      # index labels of the kept rows
    response_name: str
    spec: DesignSpec
    messages: list = field(default_factory=list)
    # the offset= argument: its column name, "values" when given as numbers, None
    # when absent (the formula's offset() terms are in spec.formula.offsets)
    offset_arg: str | None = None
    #: the zero-inflation model's columns (``spec.zi_formula``) and their names:
    #: logit(p0) = zi_X zi_coef; None without zero inflation
    zi_X: np.ndarray | None = None
    zi_names: list | None = None

    @property
    def ngroups(self) -> dict:
        """Each grouping factor's number of levels, in the terms' order (a factor of
        two terms once: lme4's ``ngrps``)."""
        out: dict = {}
        for t in self.re_terms:
            out.setdefault(t.group, t.nlevels)
        return out


# ---- model matrices --------------------------------------------------------------------

def _model_matrix(terms, intercept, values: dict, specs: dict, n: int, assign=None):
    """R's model.matrix with treatment contrasts: columns and names (and, in
    ``assign`` when a list is given, R's ``assign``: each column's term, its index in
    ``terms``, -1 for the intercept)."""
    cols, names = [], []
    assign = [] if assign is None else assign
    if intercept:
        cols.append(np.ones(n))
        names.append("(Intercept)")
        assign.append(-1)
    present = {frozenset(t) for t in terms}
    if intercept:
        present.add(frozenset())
    for it, t in enumerate(terms):
        parts = []
        for v in t:
            sp = specs[v]
            if sp.kind == "numeric":
                parts.append([(v.label, values[v])])
            else:
                codes = values[v]
                contrast = frozenset(set(t) - {v}) in present
                if len(t) == 1 and frozenset() not in present:
                    # R: without an intercept the first factor is coded in full,
                    # and then stands in for the intercept
                    present.add(frozenset())
                idx = range(1, len(sp.levels)) if contrast else range(len(sp.levels))
                parts.append([(f"{v.label}{sp.levels[j]}", (codes == j).astype(float))
                              for j in idx])
        # R: the first variable varies fastest
        for combo in itertools.product(*reversed(parts)):
            combo = combo[::-1]
            names.append(":".join(c[0] for c in combo))
            assign.append(it)
            col = combo[0][1].copy()
            for c in combo[1:]:
                col = col * c[1]
            cols.append(col)
    X = np.column_stack(cols) if cols else np.zeros((n, 0))
    return np.ascontiguousarray(X, dtype=float), names


def term_columns(spec: DesignSpec) -> dict:
    """Each fixed-effects term's label (``x``, ``factor(k)``, ``x:k``; R's term
    labels) -> the names of its columns kept in X, in X's order (a term whose
    columns were all dropped as rank-deficient has none)."""
    values = {v: (np.zeros(0) if sp.kind == "numeric" else np.zeros(0, np.int64))
              for v, sp in spec.vars.items()}
    assign: list = []
    _, names = _model_matrix(spec.x_terms, spec.x_intercept, values, spec.vars, 0, assign)
    kept = set(int(j) for j in spec.x_keep)
    out: dict = {}
    for j, (name, it) in enumerate(zip(names, assign)):
        if it < 0:
            continue
        label = ":".join(v.label for v in spec.x_terms[it])
        out.setdefault(label, [])
        if j in kept:
            out[label].append(name)
    return out


SCALE_WARNING = ("Some predictor variables are on very different scales: consider "
                 "rescaling (lme4's check: a predictor's standard deviation is above 1,000 "
                 "or below 0.001, or two differ by more than 1,000 times)")


def scales_differ(X: np.ndarray, tol: float = 1e3) -> bool:
    """lme4's check.scaleX: among the columns that are not all 0/1, a standard
    deviation beyond [1/tol, tol] or two whose ratio exceeds tol."""
    if X.shape[0] < 2 or not X.shape[1]:
        return False
    # columns all 0/1 (a first row outside {0, 1} tells at once that a column is not)
    cont = (X[0] != 0.0) & (X[0] != 1.0)
    check = np.flatnonzero(~cont)
    if len(check):
        Xk = X[:, check]
        cont[check] = ~np.all((Xk == 0.0) | (Xk == 1.0), axis=0)
    if not cont.any():
        return False
    with np.errstate(all="ignore"):
        # through the column's largest magnitude, so that 1e300 or 1e-310 do not
        # overflow or vanish on the way (the check is about logs)
        Xc = X[:, cont]
        big = np.max(np.abs(Xc), axis=0)
        big[big == 0.0] = 1.0
        sd = np.std(Xc / big, axis=0, ddof=1)
        logsd = np.log(sd) + np.log(big)
    bound = np.log(tol)
    if not np.all(np.isfinite(logsd)):
        return True                     # a constant column (sd 0), as R's -Inf
    return bool(np.any(np.abs(logsd) > bound) or logsd.max() - logsd.min() > bound)


def full_rank_columns(X: np.ndarray, tol: float = RANK_TOL) -> np.ndarray:
    """Indices of columns kept when later columns that depend on earlier ones are
    dropped (as R's LINPACK QR with limited pivoting does).

    Scale-invariant: each column is first scaled by a power of two to a largest
    value in [0.5, 1) (exact: no digit changes), so a predictor in units of 1e155
    or 1e-200 is judged as the same predictor in units of 1 (the norms used to
    overflow or underflow, and such columns were dropped as "constant").  Many
    columns: one Householder QR proposes the dependent ones, a second pass
    confirms (``_rank_by_qr``)."""
    n, p = X.shape
    if _clearly_full_rank(X):   # (every column finite and nonzero, none near the others)
        return np.arange(p, dtype=np.int64)
    with np.errstate(all="ignore"):
        big = np.max(np.abs(X), axis=0) if n else np.zeros(p)
    use = np.flatnonzero(np.isfinite(big) & (big > 0))
    if len(use) == 0:
        return np.zeros(0, np.int64)
    if len(use) < p and _clearly_full_rank(X[:, use]):
        return use
    Xs = scale_by_exponents(X[:, use], column_exponents(big[use]))
    if len(use) > RANK_QR_MIN_COLUMNS:
        keep = _rank_by_qr(Xs, tol)
        if keep is not None:
            return use[keep]
    return use[_rank_sequential(Xs, tol)]


def _clearly_full_rank(X: np.ndarray) -> bool:
    """True when no column is anywhere near depending on the others, so that the
    column-by-column check would keep them all: the smallest eigenvalue of the
    columns' correlation-like Gram matrix C = D^-1/2 X'X D^-1/2 (D its diagonal)
    is at least 1e-8 (well above the rounding of C, at most ~p n eps), i.e. every
    column is at least ~1e-4 of its norm away from the span of the others, a
    thousand times ``RANK_TOL``.  One BLAS product and a p x p eigenvalue
    problem instead of p Gram-Schmidt passes over the rows; False (check column
    by column) when X'X is not finite or a column's squared norm is outside
    [1e-250, 1e250] (scaled columns are then needed)."""
    n, p = X.shape
    if p == 0 or n < p:
        return False
    with np.errstate(all="ignore"):
        G = X.T @ X
        d = np.diag(G).copy()
        if not (np.all(np.isfinite(G)) and d.min() > 1e-250 and d.max() < 1e250):
            return False
        s = 1.0 / np.sqrt(d)
        C = G * s[:, None] * s[None, :]
    bound = max(1e-8, 100.0 * p * n * np.finfo(float).eps)
    return bool(np.linalg.eigvalsh(C)[0] >= bound)


def column_exponents(big) -> np.ndarray:
    """Per column, the power of two e with ``big * 2**-e`` in [0.5, 1) (frexp's
    exponent; 0 for a zero or non-finite ``big``): the exact rescaling of a column
    whose largest absolute value is ``big``.  Subnormal values have exponents below
    -1022, whose scale 2**-e is not a double (it overflowed to inf, and the column
    was dropped as "constant"): apply it with ``scale_by_exponents``, never as a
    factor."""
    big = np.asarray(big, float)
    with np.errstate(all="ignore"):
        return np.frexp(np.where(np.isfinite(big), big, 0.0))[1].astype(np.int64)


def scale_by_exponents(X, e) -> np.ndarray:
    """``X * 2**-e`` column by column, exactly (ldexp: no intermediate scale, so
    subnormal columns are scaled up without overflow)."""
    return np.ldexp(np.asarray(X, float), -np.asarray(e, np.int64))


RANK_QR_MIN_COLUMNS = 200   # more columns: QR (O(n p^2) in BLAS), not column by column


def _rank_sequential(X: np.ndarray, tol: float) -> np.ndarray:
    """Column by column: Gram-Schmidt (twice) against the kept ones; a column whose
    residual is at most ``tol`` times its norm depends on them."""
    keep = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        c = X[:, j]
        nrm = np.linalg.norm(c)
        if nrm == 0.0:
            continue
        r = c - Q @ (Q.T @ c)
        r = r - Q @ (Q.T @ r)
        rn = np.linalg.norm(r)
        if rn > tol * nrm:
            keep.append(j)
            Q = np.column_stack([Q, r / rn])
    return np.array(keep, dtype=np.int64)


def _rank_by_qr(X: np.ndarray, tol: float):
    """The same decisions as ``_rank_sequential`` in two LAPACK QRs: the first, of
    all columns, proposes as dependent those whose diagonal of R is at most ``tol``
    times their norm; the second, of the others, confirms that each kept column is
    independent of the kept ones before it and each dropped one depends on them.
    None when a check fails (the caller goes column by column)."""
    norms = np.linalg.norm(X, axis=0)
    R = np.linalg.qr(X, mode="r")
    d = np.abs(np.diag(R)) if R.shape[0] >= X.shape[1] else np.zeros(X.shape[1])
    if R.shape[0] < X.shape[1]:
        d[:R.shape[0]] = np.abs(np.diag(R))
    keep = np.flatnonzero(d > tol * norms)
    if len(keep) == X.shape[1]:
        return keep                 # no column depends on the ones before it
    Q, R2 = np.linalg.qr(X[:, keep])
    if not np.all(np.abs(np.diag(R2)) > tol * norms[keep]):
        return None
    for j in np.setdiff1d(np.arange(X.shape[1]), keep):
        Qt = Q[:, :int(np.searchsorted(keep, j))]
        c = X[:, j]
        r = c - Qt @ (Qt.T @ c)
        r = r - Qt @ (Qt.T @ r)
        if np.linalg.norm(r) > tol * norms[j]:
            return None
    return keep


# ---- the builder -----------------------------------------------------------------------

def _resolve(table: DataTable, var: Variable, kind_hint: str | None, notes=None,
             offset=False):
    """Raw values of one variable: ('numeric', float array) or ('factor', codes, levels).
    kind_hint: 'numeric', 'factor' or None (decide from the column's type).  The
    column is var.column exactly as named (a column may be called 'log(x1)')."""
    func, col = var.transform, var.column
    series = table.column(col)
    if var.is_factor or kind_hint == "factor":
        codes, levels = _factor_codes(series)
        return VarSpec("factor", levels), codes
    if func is None and kind_hint is None and _is_categorical_like(series):
        codes, levels = _factor_codes(series)
        return VarSpec("factor", levels), codes
    vals = _numeric_values(series, f"column '{col}'")
    if func in _TRANSFORMS:
        raw = vals
        with np.errstate(all="ignore"):
            vals = _TRANSFORMS[func](vals)
        _check_transform(var, func, raw, vals, notes, offset)
    return VarSpec("numeric"), vals


def _check_transform(var, func, raw, vals, notes, offset=False) -> None:
    """A transform of a present value that is not a finite number, as R treats it:
    +-Inf (log of 0, exp beyond ~709.78) is an error naming the rows (R stops with
    "NA/NaN/Inf in 'x'"; the rows used to be dropped as missing without a word);
    NaN (log or sqrt of a negative number) makes the row missing, as R's NaN does
    ("NaNs produced", then na.omit), with a note in ``notes`` saying so.  (An
    offset's infinities have their own message: ``offset``.)"""
    present = np.isfinite(raw)
    inf = np.isinf(vals) & present
    if inf.any() and not offset:
        why = {"exp": "exp of a value beyond 709.78 overflows double precision",
               "log1p": "log1p of -1"}.get(func, f"{func} of 0")
        raise DesignError(f"{var} is not finite in {_rows_text(inf)} ({why})")
    nan = np.isnan(vals) & present
    if nan.any() and notes is not None:
        notes.append(f"{var} is not a number in {_rows_text(nan)} ({func} of a negative "
                     "number): those rows were removed, as R's NaN is.")


def _missing(kind: str, vals) -> np.ndarray:
    return (vals < 0) if kind == "factor" else ~np.isfinite(vals)


def build_design(formula, data, family: Family, offset=None, weights=None,
                 groups=None, time_budget=None, ziformula=None) -> ModelDesign:
    """The design (see the module's docstring).  The cost guards run before the
    matrices are built (``cost.check_fixed_columns``, ``check_random_columns``,
    ``check_before_matrix``): with ``time_budget`` a model that could not be fitted
    within it is refused before the rank check of its model matrix."""
    f = parse_formula(formula) if isinstance(formula, str) else formula
    table = DataTable(data)
    n = table.n
    _CURRENT_LABELS.value = table.df.attrs.get(ROW_LABELS)
    try:
        zf = zero_inflation_formula(ziformula, family)
        return _build(f, table, n, family, offset, weights, groups, time_budget, zf)
    finally:
        _CURRENT_LABELS.value = None


def zero_inflation_formula(ziformula, family: Family) -> Formula | None:
    """The zero-inflation model's formula (``~1``, ``~ x + f``: fixed effects, no
    response, random effects or offset), parsed -- never evaluated; None without one.
    DesignError when it is malformed or the family is not zero-inflated."""
    if ziformula is None:
        if family.zero_inflated:
            raise DesignError("a zero-inflated family needs its zero-inflation formula "
                              "(ziformula, e.g. '~1')")
        return None
    if not family.zero_inflated:
        raise DesignError("ziformula is given but the family is not zero-inflated")
    if not isinstance(ziformula, (str, Formula)):
        raise DesignError(f"the zero-inflation formula must be text such as '~1' or '~ x', "
                          f"not {type(ziformula).__name__}")
    zf = parse_formula(ziformula) if isinstance(ziformula, str) else ziformula
    if zf.response is not None or zf.random or zf.offsets:
        raise DesignError("the zero-inflation formula takes fixed effects only, with no "
                          "response, random effects or offset (e.g. '~1' or '~ x')")
    if not zf.intercept and not zf.terms:
        raise DesignError("the zero-inflation formula has no columns (use '~1' for one "
                          "probability of a structural zero)")
    return zf


def _build(f, table, n, family, offset, weights, groups, time_budget=None,
           zf: Formula | None = None) -> ModelDesign:
    messages = []
    if groups:
        if isinstance(groups, str):
            groups = [groups]
        f = dataclasses.replace(f, random=list(f.random))     # the caller's stays as it is
        for g in groups:
            gv = (Variable(str(g)),)
            if f.random and any(gv in rt.groups for rt in f.random):
                continue
            f.random.append(RandomTerm(True, [], [gv], True, f"(1|{g})"))
    if f.response is None:
        raise DesignError("the formula has no response (write y ~ ...)")
    if not f.random:
        raise DesignError("the model has no random effects: add a term such as (1|group) "
                          "or give groups=[...]")
    resp = f.response
    if resp.name is not None and (resp.name,) in f.terms:
        # R's model.matrix: the response as a term of its own has no columns
        messages.append(f"the response {resp.name} appeared on the right-hand side and "
                        "was dropped")
        f = dataclasses.replace(f, terms=[t for t in f.terms if t != (resp.name,)])

    # the variables of the fixed and random-slope terms, read as their columns say
    # (text: factor; numbers: numeric); grouping factors apart, always factors: in
    # y ~ year + (1|year) the fixed year stays numeric, as in lme4
    term_vars = dict.fromkeys(v for t in f.terms for v in t)
    term_vars.update(dict.fromkeys(v for rt in f.random for t in rt.terms for v in t))
    if zf is not None:
        if weights is not None:
            raise DesignError("prior weights are not available with zero inflation")
        used = {v.column for v in resp.variables} & \
            {v.column for t in zf.terms for v in t}
        if used:
            # (zi ~ y: every zero a structural one, p0 = 1 exactly where y = 0 -- a
            # "converged" fit 200 units of logLik above the model's)
            raise DesignError(f"the zero-inflation formula uses the response "
                              f"({', '.join(sorted(used))}): the probability of a "
                              "structural zero cannot depend on the count itself")
        term_vars.update(dict.fromkeys(v for t in zf.terms for v in t))
    group_vars = dict.fromkeys(v for rt in f.random for g in rt.groups for v in g)
    specs: dict = {}
    values: dict = {}
    gspecs: dict = {}
    gvalues: dict = {}
    missing = np.zeros(n, bool)
    for v in term_vars:
        sp, vals = _resolve(table, v, None, messages)
        specs[v], values[v] = sp, vals
        missing |= _missing(sp.kind, vals)
    for v in group_vars:
        sp, vals = _resolve(table, v, "factor")
        gspecs[v], gvalues[v] = sp, vals
        missing |= _missing(sp.kind, vals)

    # response
    fam = family
    binomial = fam.is_binomial
    if resp.name:
        series = table.column(resp.name.column)
        if binomial and resp.name.transform is None and _is_categorical_like(series) and \
                series.dtype != bool and not _all_numbers(series):
            codes, levels = _factor_codes(series)
            if len(levels) != 2:
                raise DesignError(f"the binomial response '{resp.name}' has {len(levels)} "
                                  "distinct values; it needs two (or 0/1 numbers)")
            y = np.where(codes < 0, np.nan, (codes == 1).astype(float))
        else:
            _, y = _resolve(table, resp.name, "numeric", messages)
        trials = None
    else:
        s = _numeric_values(table.column(resp.successes.column),
                            f"column '{resp.successes.column}'")
        if resp.failures:
            fl = _numeric_values(table.column(resp.failures.column),
                                 f"column '{resp.failures.column}'")
            trials = s + fl
        else:
            trials = _numeric_values(table.column(resp.total_minus.column),
                                     f"column '{resp.total_minus.column}'")
        if not binomial:
            raise DesignError("cbind(successes, failures) is a binomial response; "
                              "use family='binomial'")
        with np.errstate(all="ignore"):
            y = np.where(trials > 0, s / trials, 0.0)
        y[~np.isfinite(s) | ~np.isfinite(trials)] = np.nan
    miss_y = ~np.isfinite(y)
    missing |= miss_y

    # weights
    if weights is not None:
        w = _vector_arg(table, weights, n, "weights")
        miss_w = ~np.isfinite(w)
        missing |= miss_w
    else:
        w = np.ones(n)
    if trials is not None:
        w = w * trials

    # offset: formula offset() terms plus the argument
    off = np.zeros(n)
    for v in f.offsets:
        _, vals = _resolve(table, v, "numeric", messages, offset=True)
        if np.isinf(vals).any():
            raise DesignError(f"offset {v} is infinite in {_rows_text(np.isinf(vals))}")
        missing |= np.isnan(vals)
        off = off + vals
    if offset is not None:
        o = _vector_arg(table, offset, n, "offset")
        if np.isinf(o).any():
            raise DesignError(f"offset is infinite in {_rows_text(np.isinf(o))} "
                              "(log of a zero exposure?)")
        missing |= np.isnan(o)
        off = off + o

    keep = ~missing
    kept_rows = np.flatnonzero(keep)
    dropped = np.flatnonzero(missing)
    nobs = len(kept_rows)
    if nobs == 0:
        raise DesignError("no rows are left after removing rows with missing values")
    y, w, off = y[keep], w[keep], off[keep]
    vals_kept = _kept(values, specs, keep)
    gvals_kept = _kept(gvalues, gspecs, keep)

    check_response(fam, y, w, kept_rows)

    # the size and time guards, before any matrix is built (cost imports this module)
    from .cost import (check_before_matrix, check_fixed_columns, check_random_columns,
                       fixed_columns)
    p_full = check_fixed_columns(f.terms, f.intercept, specs, nobs)
    check_random_columns(f, specs, nobs)
    re_terms = _build_re_terms(f, vals_kept, specs, gvals_kept, gspecs, nobs)
    check_before_matrix(nobs, p_full, re_terms, time_budget,
                        lambda: fixed_columns(f.terms, f.intercept, specs, vals_kept))

    # fixed effects
    X_full, names_full = _model_matrix(f.terms, f.intercept, vals_kept, specs, nobs)
    keep_cols = full_rank_columns(X_full) if X_full.shape[1] else np.zeros(0, np.int64)
    if len(keep_cols) < X_full.shape[1]:
        gone = [names_full[j] for j in range(X_full.shape[1]) if j not in set(keep_cols)]
        messages.append(f"fixed-effect model matrix is rank deficient so dropping "
                        f"{len(gone)} column{'s' if len(gone) > 1 else ''}: "
                        f"{', '.join(gone)} (constant, duplicated or collinear)")
    # (a column subset by fancy indexing is Fortran-ordered: take, or nothing to take)
    X = X_full if len(keep_cols) == X_full.shape[1] else \
        np.ascontiguousarray(X_full.take(keep_cols, axis=1))
    x_names = [names_full[j] for j in keep_cols]
    zi_X = zi_names = zi_keep = None
    if zf is not None:
        Zi_full, zi_full_names = _model_matrix(zf.terms, zf.intercept, vals_kept, specs, nobs)
        zi_keep = full_rank_columns(Zi_full)
        if len(zi_keep) < Zi_full.shape[1]:
            gone = [zi_full_names[j] for j in range(Zi_full.shape[1]) if j not in set(zi_keep)]
            messages.append(f"the zero-inflation model matrix is rank deficient so dropping "
                            f"{', '.join(gone)} (constant, duplicated or collinear)")
        zi_X = np.ascontiguousarray(Zi_full.take(zi_keep, axis=1))
        zi_names = [zi_full_names[j] for j in zi_keep]
    if scales_differ(X):
        messages.append(SCALE_WARNING)

    spec = DesignSpec(f, specs, f.terms, f.intercept, names_full, keep_cols, zf, zi_keep)
    rn = str(resp.name or resp.successes)
    return ModelDesign(y=np.ascontiguousarray(y, float), weights=np.ascontiguousarray(w, float),
                       offset=np.ascontiguousarray(off, float), X=X, x_names=x_names,
                       re_terms=re_terms, nobs=nobs, n_input=n, n_dropped=len(dropped),
                       dropped_rows=dropped, kept_rows=kept_rows,
                       row_labels=table.df.index[kept_rows], response_name=rn, spec=spec,
                       messages=messages, zi_X=zi_X, zi_names=zi_names,
                       offset_arg=None if offset is None else
                       offset if isinstance(offset, str) else "values")


def _kept(values: dict, specs: dict, keep: np.ndarray) -> dict:
    """The values of the rows kept; factors lose the levels no kept row has (R drops
    them for grouping factors; we do for all).  Updates specs."""
    out = {}
    for v, vals in values.items():
        vv = vals[keep]
        if specs[v].kind == "factor":
            # (the rows kept have a level: codes >= 0)
            used = np.flatnonzero(np.bincount(vv, minlength=len(specs[v].levels)))
            if len(used) == len(specs[v].levels):
                out[v] = vv             # every level is used: codes and levels as they are
                continue
            lev = [specs[v].levels[k] for k in used]
            remap = np.full(len(specs[v].levels), -1, np.int64)
            remap[used] = np.arange(len(used))
            vv = remap[vv]
            specs[v] = VarSpec("factor", lev)
        out[v] = vv
    return out


def _all_numbers(series: pd.Series) -> bool:
    for v in series:
        if _is_missing_scalar(v):
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            return False
    return True


def _vector_arg(table: DataTable, arg, n: int, what: str) -> np.ndarray:
    if isinstance(arg, str):
        return _numeric_values(table.column(arg), f"{what} column '{arg}'")
    a = np.asarray(arg)
    if a.ndim != 1:
        a = a.reshape(-1) if a.size == n else a
    if a.shape != (n,):
        raise DesignError(f"{what} has {a.size} values but the data have {n} rows")
    if a.dtype.kind not in "fiub":
        return _numeric_values(pd.Series(a, dtype=object), what)
    return a.astype(float)


def check_response(fam: Family, y, w, kept_rows):
    """The response suits the family (counts whole and >= 0, proportions in [0, 1], ...)
    and the weights are not negative: ``build_design`` checks the data's, a model's
    ``refit`` a new response.  Raises DesignError naming the rows."""
    def rows(mask):
        return _rows_text(kept_rows[np.flatnonzero(mask)])
    if (w < 0).any():
        raise DesignError(f"weights must not be negative ({rows(w < 0)})")
    from .cost import check_response_range     # (cost imports this module)
    check_response_range(fam, y, w, rows)
    problem = fam.response_problem(y, w)
    if problem is not None:
        mask, message = problem
        raise DesignError(message.format(rows=rows(mask)))


def _group_factor(gvars: tuple, vals: dict, specs: dict, n: int):
    """Codes and labels of a grouping factor (an interaction when several columns);
    interaction levels are those present, ordered with the first column slowest."""
    if len(gvars) == 1:
        v = gvars[0]
        return vals[v], list(specs[v].levels)
    codes = np.stack([vals[v] for v in gvars], axis=1)
    uniq, inv = np.unique(codes, axis=0, return_inverse=True)
    labels = [":".join(specs[v].levels[c] for v, c in zip(gvars, row)) for row in uniq]
    return inv.reshape(-1).astype(np.int64), labels


def _build_re_terms(f: Formula, vals: dict, specs: dict, gvals: dict, gspecs: dict,
                    n: int) -> list:
    raw = []
    for rt in f.random:
        pieces = [(rt.intercept, rt.terms)]
        if not rt.correlated:   # (x || g) = (1|g) + (0 + x|g) ...
            pieces = ([(True, [])] if rt.intercept else []) + [(False, [t]) for t in rt.terms]
        for gvars in rt.groups:
            codes, levels = _group_factor(tuple(gvars), gvals, gspecs, n)
            gname = ":".join(v.label for v in gvars)
            for icpt, terms in pieces:
                Z, cn = _model_matrix(terms, icpt, vals, specs, n)
                if Z.shape[1] == 0:
                    continue
                raw.append(ReTerm(gname, gname, codes, levels, Z, cn, rt, terms, icpt,
                                  tuple(gvars)))
    if not raw:
        raise DesignError("the random-effects terms have no columns")
    nl = np.array([t.nlevels for t in raw])
    if np.any(np.diff(nl) > 0):           # lme4: rev(order(nl)), ties reversed too
        order = np.argsort(nl, kind="stable")[::-1]
        raw = [raw[i] for i in order]
    names = [t.group for t in raw]
    if len(set(names)) < len(names):      # make.names(unique = TRUE)
        seen: dict = {}
        for t in raw:
            base = t.group.replace(":", ".")
            k = seen.get(base, 0)
            t.name = base if k == 0 else f"{base}.{k}"
            seen[base] = k + 1
    return raw


def new_data_matrices(spec: DesignSpec, re_terms: list, data, nrow_hint=None):
    """X (kept columns) and, per random-effects term, (codes with -1 for unseen levels,
    Z) for new data, using the fitted model's factor levels.  Returns
    (X, [(codes, Z)], offset-from-formula, missing-mask)."""
    table = DataTable(data)
    n = table.n
    f = spec.formula
    needed = []
    for t in spec.x_terms:
        needed += [v for v in t if v not in needed]
    for t in re_terms:
        needed += [v for tt in t.lhs_terms for v in tt if v not in needed]
    vals, missing = _new_values(spec, table, needed)
    X_full, _ = _model_matrix(spec.x_terms, spec.x_intercept, vals, spec.vars, n)
    X = X_full[:, spec.x_keep]
    zs = []
    for t in re_terms:
        Z, _ = _model_matrix(t.lhs_terms, t.lhs_intercept, vals, spec.vars, n)
        cols = [table.column(v.column) for v in t.group_vars] \
            if all(v.column in table.df.columns for v in t.group_vars) else None
        gcodes = _group_codes(cols, t.levels) if cols is not None \
            else np.full(n, -1, np.int64)
        zs.append((gcodes, Z))
    off = np.zeros(n)
    for v in f.offsets:
        _, o = _resolve(table, v, "numeric")
        off = off + o
    return X, zs, off, missing


def _new_values(spec: DesignSpec, table, variables) -> tuple:
    """(values, missing): each variable of new data read as the fit read it (factor
    codes with the fit's levels -- DesignError for a level it did not see --, or
    numbers with their transform), and the rows where any is missing."""
    vals, missing = {}, np.zeros(table.n, bool)
    for v in variables:
        sp = spec.vars[v]
        series = table.column(v.column)
        if sp.kind == "factor":
            codes, _ = _factor_codes(series, sp.levels)
            if (codes == -2).any():
                raise DesignError(f"'{v}' has levels not seen in the fit "
                                  f"({_rows_text(codes == -2)})")
            vals[v] = codes
            missing |= codes < 0
        else:
            x = _numeric_values(series, f"column '{v.column}'")
            if v.transform in _TRANSFORMS:
                with np.errstate(all="ignore"):
                    x = _TRANSFORMS[v.transform](x)
            vals[v] = x
            missing |= ~np.isfinite(x)
    return vals, missing


def new_offset_column(data, name: str, n: int) -> np.ndarray:
    """The offset of new rows when the fit's ``offset=`` named a column: that column
    of the new data, read as the fit read it (DesignError when it is missing)."""
    table = DataTable(data)
    if name not in table.df.columns:
        raise DesignError(f"the model's offset is the column '{name}': the new data need "
                          "it too")
    return _vector_arg(table, name, n, "offset")


def new_zi_matrix(spec: DesignSpec, data) -> np.ndarray:
    """The zero-inflation model's columns (those the fit kept) for new data, with the
    fit's factor levels; NaN rows where a value is missing."""
    table = DataTable(data)
    zf = spec.zi_formula
    vals, missing = _new_values(spec, table, list(dict.fromkeys(v for t in zf.terms
                                                                  for v in t)))
    Z, _ = _model_matrix(zf.terms, zf.intercept, vals, spec.vars, table.n)
    Z = Z[:, spec.zi_keep]
    Z[missing] = np.nan
    return Z


def _group_codes(cols: list, levels: list) -> np.ndarray:
    """Each new row's level of a grouping factor of the fit (-1: a level the fit did
    not see, or a missing value in any of its columns): the level labelled
    ``a:b`` by the ``_level_label`` of the row's values in ``cols``.  Each distinct
    value (and combination) is labelled once (``_value_labels``)."""
    index = {lab: k for k, lab in enumerate(levels)}
    per = [_value_labels(c) for c in cols]
    if len(per) == 1:
        inv, labels = per[0]
        to_level = np.array([index.get(lab, -1) for lab in labels] + [-1], np.int64)
        return to_level[inv]
    invs = np.stack([inv for inv, _ in per], axis=1)
    present = np.all(invs >= 0, axis=1)
    out = np.full(len(invs), -1, np.int64)
    if present.any():
        combos, inv = np.unique(invs[present], axis=0, return_inverse=True)
        to_level = np.array([index.get(":".join(per[j][1][c] for j, c in enumerate(row)), -1)
                             for row in combos.tolist()], np.int64)
        out[present] = to_level[inv.reshape(-1)]
    return out


def _value_labels(series: pd.Series):
    """(inv, labels): each row's index into the labels of the column's distinct
    values (``_level_label``; -1 for a missing value, as ``_is_missing_scalar``
    says), without reading the rows one by one where the column allows
    (a Categorical, or what ``_distinct_codes`` takes)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cat = series.array
        cats = cat.categories.tolist()
        inv = cat.codes.astype(np.int64)
        missing = [k for k, c in enumerate(cats) if _is_missing_scalar(c)]
        if missing:                             # (a blank text category)
            inv = np.where(np.isin(inv, missing), -1, inv)
        return inv, [_level_label(c) for c in cats]
    distinct = _distinct_codes(series)
    if distinct is not None:
        inv, uniq, _ = distinct
        return inv, [_level_label(u) for u in uniq]
    inv = np.full(len(series), -1, np.int64)
    seen: dict = {}
    for i, v in enumerate(series.to_numpy(dtype=object)):
        if not _is_missing_scalar(v):
            inv[i] = seen.setdefault(_level_label(v), len(seen))
    return inv, list(seen)
