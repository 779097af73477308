"""What a fit will cost, from its design, before the fit allocates anything big.

The kernels (``linalg.py``) hold the random-effects terms other than the first
and, in the first stage, the fixed effects in a dense "rest" block of r x r
numbers, r = (levels x columns of the other terms) + (fixed-effect columns), and
every PIRLS iteration forms and factors it.  So two crossed grouping factors of
12,000 levels need 12,000 x 12,000 doubles (1.15 GB) per copy, and ~3e11
multiply-adds per iteration; ``a*b`` with two 40-level text columns has 1,600
fixed-effect columns, and each of its rows touches all of them (~4e9 per
iteration on 3,200 rows).  Such fits used to run for minutes past their time
budget (an evaluation is never interrupted) and reach gigabytes.

``check(design, time_budget)`` refuses, with one line that says why:

* a fit whose arrays would need more than ``MAX_FIT_BYTES`` (2 GB): the rest
  block's copies, the row-wise structures (n x columns), the model matrix;
* with a time budget, a fit of which ``MIN_ITERATIONS`` PIRLS iterations would
  take longer than the budget on a fast computer (``RATE`` multiply-adds a
  second): a fit needs hundreds of iterations, so it could only be stopped
  unconverged -- or not even reach its first estimate.

The predicted seconds come from counts (multiply-adds), not from the clock, so the
same model gets the same answer on every run and machine.  ``fixed_columns``
counts the fixed-effect columns before the model matrix is built (the design
calls it), so that ``a*b*c`` of many-level factors is refused before n x p numbers
are allocated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .design import DesignError

MAX_FIT_BYTES = 2e9          # memory a fit may use (the documented cap)
RATE = 2e9                   # multiply-adds a second of the kernels on a fast CPU
MIN_ITERATIONS = 20          # a fit needs (many) more PIRLS iterations than this
PIECE_SHARE = 0.02           # PIRLS runs in pieces of at most this share of the time
                             # budget (predicted), the budget checked in between
COPIES_OF_REST = 4           # r x r blocks alive at once (states kept by the fit)


class CostError(DesignError):
    """The fit would exceed the memory cap or could not run within its budget."""


def _gb(b: float) -> str:
    if b >= 1e11:
        return f"{b / 1e9:,.0f} GB"
    return f"{b / 1e9:.1f} GB" if b >= 1e8 else f"{b / 1e6:.0f} MB"


def fixed_columns(terms, intercept, specs, values=None) -> int:
    """The number of columns ``design._model_matrix`` will make (R's treatment
    contrasts), from the factors' level counts, without building anything.  With
    ``values`` (the variables' kept values): at most the columns that are not all
    zero -- per term, the level combinations present in rows whose numeric parts are
    not 0 (the rank check drops the others first) -- O(n) per term with factors."""
    present = {frozenset(t) for t in terms}
    if intercept:
        present.add(frozenset())
    p = int(bool(intercept))
    for t in terms:
        width = 1
        coded = []
        for v in t:
            sp = specs[v]
            if sp.kind == "numeric":
                continue
            contrast = frozenset(set(t) - {v}) in present
            if len(t) == 1 and frozenset() not in present:
                present.add(frozenset())
            width *= max(len(sp.levels) - (1 if contrast else 0), 0)
            coded.append((v, int(contrast)))
        if values is not None and width > 0:
            width = min(width, _present_columns(t, coded, specs, values))
        p += width
    return p


def _present_columns(t, coded, specs, values) -> int:
    """Columns of term ``t`` that some row makes non-zero: the distinct level
    combinations (contrast-coded factors: not their first level) among the rows
    whose numeric variables are all non-zero."""
    n = len(next(iter(values.values()))) if values else 0
    rows = np.ones(n, bool)
    for v in t:
        if specs[v].kind == "numeric":
            rows &= np.asarray(values[v]) != 0.0
    for v, first in coded:
        rows &= np.asarray(values[v]) >= first
    if not coded:
        return int(rows.any())
    key = np.zeros(int(rows.sum()), np.int64)
    span = 1
    for v, _ in coded:
        nl = len(specs[v].levels) + 1
        if span * nl >= 2 ** 62:       # too many combinations for one key: row-wise unique
            stacked = np.stack([np.asarray(values[w])[rows] for w, _ in coded], axis=1)
            return int(len(np.unique(stacked, axis=0)))
        key = key * nl + np.asarray(values[v])[rows]
        span *= nl
    return int(len(np.unique(key)))


def check_fixed_columns(terms, intercept, specs, n: int) -> int:
    """Refuse a fixed-effect model matrix (n x p doubles, a few copies) beyond the
    memory cap before it is built; return p.  The one count of fixed-effect columns
    and the one message for too many of them, for every door (worksheet functions,
    Python API, recalc): it bounds the columns far below ``formula.MAX_TERMS``
    (p^2 x 32 bytes alone exceed 2 GB beyond 7,905 columns)."""
    p = fixed_columns(terms, intercept, specs)
    # the model matrix's copies, and what the fit makes of it (``fit_cost``: the
    # rows' rest columns, the dense rest block of the fixed effects)
    need = 8.0 * n * (3.0 * p + 7.0 * p) + COPIES_OF_REST * 8.0 * p * p
    if need > MAX_FIT_BYTES:
        raise CostError(f"the fixed effects would have {p:,} columns for {n:,} rows "
                        f"(about {_gb(need)} of memory, the limit is {_gb(MAX_FIT_BYTES)}): "
                        "factors with many levels, or their interactions; simplify the "
                        "formula")
    return p


MAX_THETA = 200      # variance-covariance parameters of the random effects


def check_random_columns(f, specs, n: int) -> None:
    """Before the random-effects matrices are built: refuse terms whose variances
    cannot be identified (more columns per level than half the rows: lme4's
    check.nobs.vs.nRE in spirit, e.g. a factor with many levels as a random slope)
    and more than ``MAX_THETA`` variance parameters (each costs a dimension of the
    optimizer and a column per row of every level).  Column counts as the design
    makes them (``fixed_columns`` of each term's left-hand side; (x || g) split as
    the design splits it)."""
    ntheta = 0
    for rt in f.random:
        if rt.correlated:
            blocks = [fixed_columns(rt.terms, rt.intercept, specs)]
        else:
            blocks = [1] * int(rt.intercept) + [fixed_columns([t], False, specs)
                                                for t in rt.terms]
        for g in rt.groups:
            for k in blocks:
                ntheta += k * (k + 1) // 2
                if k > 1 and 2 * k > n:
                    raise CostError(
                        f"the random-effects term {rt.text or '(...)'} has {k:,} columns per "
                        f"level of {':'.join(v.label for v in g)} but there are {n:,} rows: "
                        "its variances cannot be identified; use fewer random slopes (a "
                        "factor with many levels?)")
    if ntheta > MAX_THETA:
        raise CostError(f"the random effects would need {ntheta:,} variance and "
                        f"correlation parameters (the limit is {MAX_THETA}); use fewer random "
                        "slopes, uncorrelated ones (||), or factors with fewer levels")


def rank_work(n: int, p: int) -> float:
    """Multiply-adds of the rank check of an n x p model matrix
    (``design.full_rank_columns``): two QRs (or Gram-Schmidt twice), ~2 n p^2."""
    return 2.0 * n * p * p if p > 1 else 0.0


def check_before_matrix(n: int, p: int, re_terms, time_budget, p_present=None) -> None:
    """The cost guards before the fixed-effect model matrix exists (``check`` with the
    columns ``check_fixed_columns`` counted): the time bound counts the rank check
    (n p^2, the most expensive step of building the design) and the fit's
    iterations.  ``p_present()`` (the columns that are not all zero,
    ``fixed_columns`` with values) refines p when the level counts alone come
    near the budget."""
    if _checked(n, p, re_terms, time_budget, rank_work(n, p), raise_time=False) is None:
        if p_present is not None:
            p = p_present()
        _checked(n, p, re_terms, time_budget, rank_work(n, p))


@dataclass
class Cost:
    n: int
    p: int
    r: int                   # the rest block's size in the first stage
    bytes: float             # predicted peak memory of the fit's arrays
    rest_bytes: float        # of which the rest block's copies
    work: float              # multiply-adds of one PIRLS iteration (first stage)
    what: str                # the model's expensive part, in words

    @property
    def iteration_seconds(self) -> float:
        return self.work / RATE


def _rest_structure(terms):
    """Per level of the first term: the number of distinct rest columns its rows
    touch; per rest random-effect column: the first column it shares a level with
    (the envelope of the rest block's Cholesky factor).  O(n) per term."""
    t1 = terms[0]
    ng = t1.nlevels
    codes1 = np.asarray(t1.codes, np.int64)
    nloc = np.zeros(ng)
    q2 = sum(t.nlevels * t.k for t in terms[1:])
    minloc = np.full(ng, q2, np.int64)
    cols = []
    base = 0
    for t in terms[1:]:
        c = base + np.asarray(t.codes, np.int64) * t.k
        cols.append(c)
        pairs = np.unique(codes1 * (q2 + 1) + c)
        nloc += np.bincount(pairs // (q2 + 1), minlength=ng) * t.k
        np.minimum.at(minloc, codes1, c)
        base += t.nlevels * t.k
    first = np.arange(q2, dtype=np.int64)
    for c, t in zip(cols, terms[1:]):
        for j in range(t.k):
            np.minimum.at(first, c + j, minloc[codes1])
    return nloc, first, q2


def _rest_bounds(terms):
    """``_rest_structure``'s upper bounds from the level counts alone (a
    bincount): a level touches at most its rows x the rest terms' columns, and the
    envelope is at most the whole triangle."""
    t1 = terms[0]
    q2 = sum(t.nlevels * t.k for t in terms[1:])
    m_re = sum(t.k for t in terms[1:])
    counts = np.bincount(np.asarray(t1.codes, np.int64), minlength=t1.nlevels)
    nloc = np.minimum(counts * float(m_re), float(q2))
    return nloc, np.zeros(q2, np.int64), q2


def fit_cost(design, exact: bool = False) -> Cost:
    """The cost model of a design (see the module's docstring): upper bounds from
    the level counts, or with ``exact`` from the rest block's structure (O(n log n)
    numpy work, done by ``check`` only when the bounds come near a limit)."""
    return _cost(int(design.nobs), int(design.X.shape[1]), design.re_terms, exact)


def _cost(n: int, p: int, terms, exact: bool = False) -> Cost:
    t1 = terms[0]
    k1 = t1.k
    m_re = sum(t.k for t in terms[1:])
    m = m_re + p
    nloc, first, q2 = (_rest_structure if exact else _rest_bounds)(terms)
    nloc = nloc + p
    r = q2 + p
    chol = _chol_work(first, q2, r)
    schur = min(float(np.sum(nloc * nloc)) * k1, len(nloc) * k1 * r * r / 2.0)
    rows = n * (k1 * k1 + k1 * m + m * (m + 1) / 2.0 + 4.0 * (k1 + m))
    work = rows + schur + chol + 2.0 * r * r + float(np.sum(nloc)) * k1 * k1
    rest_bytes = COPIES_OF_REST * 8.0 * r * r
    row_bytes = 8.0 * n * (7.0 * max(m, 1) + 3.0 * p + 2.0 * k1 + 12.0)
    level_bytes = COPIES_OF_REST * 8.0 * k1 * float(np.sum(nloc)) + 8.0 * 1024 * r
    total = rest_bytes + row_bytes + level_bytes
    if q2 and q2 >= p:
        names = " x ".join(f"{t.group} ({t.nlevels:,} levels)" for t in terms[:2])
        what = f"crossed random effects {names}"
    elif p > 1:
        what = f"{p:,} fixed-effect columns"
    else:
        what = f"{n:,} rows"
    return Cost(n, p, r, total, rest_bytes, work, what)


def _chol_work(first, q2: int, r: int) -> float:
    """Multiply-adds of the rest block's Cholesky: by envelope (each row from its
    first nonzero; the fixed-effect rows are full) or dense, as linalg.chol_lower
    chooses."""
    prof = np.concatenate([np.arange(q2) - first, np.arange(q2, r)]).astype(float)
    envelope = float(np.sum(prof * prof)) / 2.0
    return min(envelope, r ** 3 / 6.0) if 4 * float(np.sum(prof)) < r * (r - 1) \
        else r ** 3 / 6.0


def rest_cholesky_work(terms, exact: bool = False) -> float:
    """Multiply-adds of one Cholesky factorization of the rest block with the fixed
    effects held fixed (r = the rest terms' columns): its upper bound from the
    level counts (dense), or with ``exact`` from the block's envelope (nested
    designs are far cheaper than crossed ones)."""
    _, first, q2 = (_rest_structure if exact else _rest_bounds)(terms)
    return _chol_work(first, q2, q2)


def piece_iterations(c: Cost, time_budget, maxit: int) -> int:
    """How many PIRLS iterations one kernel call may run so that the time budget is
    checked at least every ``PIECE_SHARE`` of it (predicted); 0 when a whole PIRLS
    (``maxit`` iterations) fits in that, as for all but the slowest models -- each
    piece repeats the pass over the rows that starts an evaluation, so pieces are
    only as small as the budget needs."""
    if time_budget is None or not math.isfinite(time_budget):
        return 0
    secs = c.iteration_seconds
    if secs <= 0 or secs * maxit <= PIECE_SHARE * time_budget:
        return 0
    return max(1, int(PIECE_SHARE * time_budget / secs))


def check(design, time_budget=None) -> Cost:
    """Refuse a fit beyond the memory cap, or one that cannot run within its time
    budget (see the module's docstring); return its cost otherwise."""
    return _checked(int(design.nobs), int(design.X.shape[1]), design.re_terms, time_budget)


def _checked(n, p, terms, time_budget, extra_work=0.0, raise_time=True):
    """``check`` on (n, p, random-effects terms), with ``extra_work`` multiply-adds
    to do before the fit (the rank check) counted against the budget.  With
    ``raise_time=False``: None when the time bound would refuse (the caller
    refines p first)."""
    def slow(c):
        return time_budget is not None and math.isfinite(time_budget) and \
            (MIN_ITERATIONS * c.work + extra_work) / RATE > time_budget
    c = _cost(n, p, terms)
    if c.bytes > MAX_FIT_BYTES or slow(c):
        c = _cost(n, p, terms, exact=True)     # near a limit: the bounds made exact
    if c.bytes > MAX_FIT_BYTES:
        part = (f"make a dense block of {c.r:,} x {c.r:,} numbers"
                if c.rest_bytes > c.bytes / 2 else f"on {c.n:,} rows")
        raise CostError(f"the model would need about {_gb(c.bytes)} of memory (the limit is "
                        f"{_gb(MAX_FIT_BYTES)}): {c.what} {part}; use fewer levels or "
                        "predictors")
    if slow(c):
        if not raise_time:
            return None
        secs = c.iteration_seconds
        each = f"{secs:.2g}" if secs < 10 else f"{secs:,.0f}"
        raise CostError(f"the model cannot be fitted within the time budget of "
                        f"{time_budget:g} s: {c.what} make each of the hundreds of steps "
                        f"of the fit take about {each} s even on a fast computer; use fewer "
                        "levels or predictors, or a larger budget")
    return c


# ---- the numbers' range ----------------------------------------------------------------

MAX_COUNT = 2.0 ** 53   # counts and binomial trials: whole numbers are exact up to here
NOTE_COUNT = 1e12       # above it the log-likelihood carries fewer digits (a note)
MAX_GAUSSIAN = 1e150    # |response| of a linear mixed model
MIN_GAUSSIAN = 1e-150


def check_response_range(family, y, w, rows) -> None:
    """Refuse responses whose arithmetic double precision cannot carry.

    Counts (Poisson, negative binomial) and binomial trials above 2^53
    (9.007e15): doubles no longer hold every whole number, so successes and
    failures, or a count and its neighbour, cannot be told apart; there the
    log-likelihood -- terms of size y log y (lgamma) that cancel to O(log y) --
    has lost all its digits (1e16 trials gave a positive log-likelihood of +1752;
    y = 1e300 an intercept of 0.057 for a log of 690.8).  Between 1e12 and 2^53
    the fit is made with a note (``range_note``); counts of a billion are exact to
    ~1e-6.  A linear mixed model squares its response: values beyond
    ``MAX_GAUSSIAN`` overflow, and a response whose values are all below
    ``MIN_GAUSSIAN`` underflows (the fit gave estimates of 0.0 with "converged").
    The Gamma variance is mu^2: responses beyond that range (y = 1e-300 gave an
    intercept of 653 for a log of -690, "converged").  ``rows(mask)`` gives the 'rows 5, 9' text of a mask."""
    y = np.asarray(y, float)
    w = np.asarray(w, float)
    if family.counts_response:
        big = y > MAX_COUNT
        if big.any():
            raise CostError(f"counts must be at most 2^53 = 9.007e15 ({rows(big)}, up to "
                            f"{np.max(y[big]):.4g}): beyond it double precision cannot hold "
                            "whole numbers exactly; count in larger units")
    elif family.is_binomial:
        big = w > MAX_COUNT
        if big.any():
            raise CostError(f"binomial trials must be at most 2^53 = 9.007e15 ({rows(big)}, "
                            f"up to {np.max(w[big]):.4g}): beyond it double precision cannot "
                            "hold whole numbers exactly")
    elif family.positive_response and y.size:
        out = (y > MAX_GAUSSIAN) | ((y > 0) & (y < MIN_GAUSSIAN))   # (<= 0: its own check)
        if out.any():
            raise CostError(f"Gamma response values must be between 1e-150 and 1e150 "
                            f"({rows(out)}, e.g. {y[out][0]:.3g}): the Gamma variance is the "
                            "mean squared, which overflows or underflows double precision "
                            "beyond them; rescale the response")
    elif family.is_gaussian and y.size:
        a = np.abs(y)
        big = a > MAX_GAUSSIAN
        if big.any():
            raise CostError(f"the response has values as large as {np.max(a):.3g} "
                            f"({rows(big)}): beyond 1e150 their squares overflow double "
                            "precision; rescale it (divide it by a power of ten)")
        if 0 < np.max(a) < MIN_GAUSSIAN:
            raise CostError(f"the response's values are all below 1e-150 (the largest is "
                            f"{np.max(a):.3g}): their squares underflow double precision; "
                            "rescale it (multiply it by a power of ten)")


def range_note(family, y, w) -> str:
    """The note of a fit whose counts (or binomial trials) exceed ``NOTE_COUNT``:
    the log-likelihood's rounding per row, eps * y log y (empty when none do)."""
    if family.counts_response:
        top, what = float(np.max(y, initial=0.0)), "Counts"
    elif family.is_binomial:
        top, what = float(np.max(w, initial=0.0)), "Binomial trials"
    else:
        return ""
    if top <= NOTE_COUNT:
        return ""
    err = np.finfo(float).eps * top * math.log(top)
    return (f"{what} reach {top:.3g}: above 1e12 double precision carries the "
            f"log-likelihood to only about {err:.1g} per row, so logLik, AIC and the "
            "standard errors lose digits; counting in larger units keeps them.")
