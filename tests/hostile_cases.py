"""One worksheet call per bad-input class, with the exact answer it must give.

Used by tests/sheet/test_hostile.py (``test_bad_input_class``) and by
docs/make_bad_input_table.py, which runs them and writes the table in
docs/bad-input.md, so the documented messages are the ones the functions give.

``expect`` is the exact text of the '#GLMM!' cell, or None when the right answer
is a block; then ``check`` is a predicate on the block and ``summary(block)``
describes it for the table (rows dropped, notes...).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from xlglmm.sheet import models, udfs

Y = [2, 3, 5, 1, 2, 4, 6, 2, 3, 1, 0, 4]
X = [1, 2, 3, 1, 2, 3, 4, 1, 2, 3, 1, 2]
X2 = [0.5, -1, 0.3, 2, -0.7, 1.1, 0, -0.2, 0.9, -1.5, 0.4, 1.3]
G = list("aaabbbcccddd")
H = list("pqpqpqpqpqpq")
YB = [0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1]
YS = [1, 2, 0, 3, 1, 2, 2, 1, 0, 3, 1, 2]
T = [3] * 12


def col(values, header=None):
    """A worksheet column as xlwings passes it (ndim=2): numbers as floats."""
    cells = [[float(v) if isinstance(v, int) and not isinstance(v, bool) else v]
             for v in values]
    return ([[header]] if header is not None else []) + cells


def cols(*columns):
    return [[float(v) if isinstance(v, int) and not isinstance(v, bool) else v
             for v in r] for r in zip(*columns)]


def table(**columns):
    names = list(columns)
    return [names] + cols(*columns.values())


TAB = table(y=Y, x=X, g=G)


def with_(values, i, v):
    out = list(values)
    out[i] = v
    return out


@dataclass
class Case:
    cls: str                      # the bad-input class (a row of the docs table)
    example: str                  # the input, in words
    fn: str                       # worksheet function name
    args: tuple
    kwargs: dict = field(default_factory=dict)
    expect: str | None = None     # exact '#GLMM!' text, or None for a block
    check: object = None          # predicate on the block
    budget: float | None = None   # fit time budget for this call (seconds)

    def run(self):
        saved = models.DEFAULT_TIME_BUDGET
        if self.budget is not None:
            models.DEFAULT_TIME_BUDGET = self.budget
        try:
            return getattr(udfs, self.fn)(*self.args, **self.kwargs)
        finally:
            models.DEFAULT_TIME_BUDGET = saved


def value(block, label):
    for r in block:
        if r and r[0] == label:
            return r[1]
    return None


def notes(block):
    out, on = [], False
    for r in block:
        if r and r[0] == "Notes":
            on = True
        elif on and r and r[0] and r[0] != "none":
            out.append(r[0])
    return out


def fixed_names(block):
    names = []
    for r in block[1:]:
        if not r or r[0] is None:
            break
        names.append(r[0])
    return names


def summary(block) -> str:
    """A block in a few words, for the docs table."""
    if isinstance(block, str):
        return block
    if block and block[0] and block[0][0] == "group":
        return f"ranef block ({len(block) - 1} rows)"
    if block and block[0] and str(block[0][0]).startswith("predicted"):
        return f"prediction column ({len(block) - 1} rows)"
    if block and block[0] and block[0][0] == "Model":
        return "comparison block"
    if block and block[0] and block[0][0] == "Parameter":
        said = sorted({r[6] for r in block[1:] if r[6]})
        return (f"intervals block ({len(block) - 1} parameters, {block[1][4]})"
                + (f"; notes: {' / '.join(repr(n) for n in said)}" if said else ""))
    parts = [f"block: fixed effects {', '.join(map(str, fixed_names(block)))}",
             f"nobs {value(block, 'nobs'):g}", f"rows dropped {value(block, 'rows dropped'):g}",
             f"converged {'TRUE' if value(block, 'converged') else 'FALSE'}"]
    ns = notes(block)
    if ns:
        parts.append("notes: " + " / ".join(f"'{n}'" for n in ns))
    return "; ".join(parts)


def _has_note(text):
    return lambda b: any(text in n for n in notes(b))


P, B, GL = "GLMM_POISSON", "GLMM_BINOMIAL", "GLMM"

CASES = [
    # -- cell types in numeric ranges
    Case("text in a numeric range", "X has 'abc' in row 2", P,
         (col(Y), col(with_(X, 1, "abc")), col(G)),
         expect="#GLMM! X has non-numeric values in row 2"),
    Case("text in a numeric range", "y (with header) has 'x', 'n/a' in rows 3, 6", P,
         (col(with_(with_(Y, 1, "x"), 4, "n/a"), "count"), col(X, "x"), col(G, "g")),
         expect="#GLMM! y has non-numeric values in rows 3, 6"),
    Case("number stored as text", "X has the text '3' in row 2", P,
         (col(Y), col(with_(X, 1, "3")), col(G)),
         expect="#GLMM! X has non-numeric values in row 2"),
    Case("booleans in a numeric range", "y has TRUE in row 2", P,
         (col(with_(Y, 1, True)), col(X), col(G)),
         expect="#GLMM! y has TRUE/FALSE values in row 2; use 1/0"),
    Case("dates in a numeric range", "X has a date in row 1", P,
         (col(Y), col(with_(X, 0, dt.datetime(2024, 1, 31))), col(G)),
         expect="#GLMM! X has dates in row 1; convert them to numbers"),
    Case("Excel error values", "X has #DIV/0! and #N/A in rows 2, 5", P,
         (col(Y), col(with_(with_(X, 1, "#DIV/0!"), 4, "#N/A")), col(G)),
         expect="#GLMM! X has Excel error values (#DIV/0!, #N/A) in rows 2, 5; fix them or "
                "leave the cells blank"),
    Case("Excel error values", "second X column has #VALUE! in row 4", P,
         (col(Y), cols(X, with_(X2, 3, "#VALUE!")), col(G)),
         expect="#GLMM! X column 2 (x2) has Excel error values (#VALUE!) in row 4; fix them "
                "or leave the cells blank"),
    Case("Excel error values", "groups has #REF! in row 3", P,
         (col(Y), col(X), col(with_(G, 2, "#REF!"))),
         expect="#GLMM! groups has Excel error values in row 3"),
    Case("Excel error values", "GLMM data column x has #N/A in row 3 of the table", GL,
         ("y ~ x + (1|g)", table(y=Y, x=with_(X, 1, "#N/A"), g=G)),
         expect="#GLMM! data column 'x' has Excel error values in row 3"),
    Case("Excel error values", "alpha is #NUM!", P, (col(Y), col(X), col(G)),
         {"alpha": "#NUM!"}, expect="#GLMM! alpha is an Excel error value (#NUM!)"),
    Case("text in a numeric data column", "GLMM data column x has 'oops' in row 6", GL,
         ("y ~ x + (1|g)", table(y=Y, x=with_(X, 4, "oops"), g=G)),
         expect="#GLMM! data column 'x' has non-numeric values in row 6"),
    # -- blanks
    Case("blank cells", "y blank in rows 2 and 7", P,
         (col(with_(with_(Y, 1, None), 6, None)), col(X), col(G)),
         check=lambda b: value(b, "rows dropped") == 2 and value(b, "nobs") == 10
         and _has_note("2 rows with missing values removed.")(b)),
    Case("blank cells", "a blank X cell and a blank group label", P,
         (col(Y), col(with_(X, 3, None)), col(with_(G, 8, None))),
         check=lambda b: value(b, "rows dropped") == 2 and value(b, "nobs") == 10),
    Case("blank cells", "whole-column selection: 30 blank rows below the data", P,
         (col(Y + [None] * 30), col(X + [None] * 30), col(G + [None] * 30)),
         check=lambda b: value(b, "rows dropped") == 0 and value(b, "nobs") == 12),
    Case("blank cells", "NaN from a Python caller in y (treated as a blank cell)", P,
         (col(with_(Y, 0, math.nan)), col(X), col(G)),
         check=lambda b: value(b, "rows dropped") == 1),
    Case("blank cells", "the last 3 rows of y are blank (its range ends with the data)", P,
         (col(Y[:9] + [None] * 3), col(X), col(G)),
         check=lambda b: value(b, "rows dropped") == 3 and value(b, "nobs") == 9),
    Case("blank cells, nothing left", "y blank where X is filled and the reverse", P,
         (col(Y[:6] + [None] * 6), col([None] * 6 + X[6:]), col(G)),
         expect="#GLMM! no rows are left after removing rows with missing values"),
    Case("empty ranges", "y all blank", P, (col([None] * 12), col(X), col(G)),
         expect="#GLMM! y is empty"),
    Case("empty ranges", "groups omitted", P, (col(Y), col(X), None),
         expect="#GLMM! groups is empty: give at least one column of group labels"),
    Case("empty ranges", "X omitted (intercept-only model)", P, (col(Y), None, col(G)),
         check=lambda b: fixed_names(b) == ["(Intercept)"]),
    Case("empty ranges", "GLMM data with a header row only", GL,
         ("y ~ x + (1|g)", [["y", "x", "g"]]),
         expect="#GLMM! data must be a table with column names in its first row and data "
                "below"),
    # -- non-finite and extreme numbers
    Case("NaN/inf", "X is +inf in row 1 (a Python caller; Excel has no inf)", P,
         (col(Y), col(with_(X, 0, math.inf)), col(G)),
         expect="#GLMM! X has infinite or NaN values in row 1"),
    Case("NaN/inf", "X holds the int 10**400 in row 2 (a Python caller)", P,
         (col(Y), with_(col(X), 1, [10 ** 400]), col(G)),
         expect="#GLMM! X has infinite or NaN values in row 2"),
    Case("offsets of +-inf", "offset = -inf in row 1 (LN(0) from a Python caller)", P,
         (col(Y), col(X), col(G), col(with_([0.0] * 12, 0, -math.inf))),
         expect="#GLMM! offset has infinite or NaN values in row 1"),
    Case("offsets of +-inf", "offset = 1e300 in row 1", P,
         (col(Y), col(X), col(G), col(with_([0.0] * 12, 0, 1e300))),
         expect="#GLMM! offset has values beyond +-700 in row 1: the offset is on the log "
                "scale, e.g. =LN(exposure)"),
    Case("offsets of +-inf", "GLMM: offset(log(e)) with e = 0 in row 3 of the table", GL,
         ("y ~ x + offset(log(e)) + (1|g)", table(y=Y, x=X, e=with_([5] * 12, 1, 0), g=G)),
         expect="#GLMM! offset log(e) is infinite in row 3"),
    # -- counts
    Case("negative counts (Poisson)", "y = -1 in row 2", P,
         (col(with_(Y, 1, -1)), col(X), col(G)),
         expect="#GLMM! y has negative counts in row 2"),
    Case("non-integer counts (Poisson)", "y = 1.5 in row 2", P,
         (col(with_(Y, 1, 1.5)), col(X), col(G)),
         expect="#GLMM! y must hold whole-number counts; row 2 is not"),
    Case("all-zero counts", "y is 0 in every row", P, (col([0] * 12), col(X), col(G)),
         expect="#GLMM! y is 0 in every row used: a model of all-zero counts has no finite "
                "estimates (the fitted rate is 0)"),
    Case("huge counts", "y around 1e12", P, (col([v * 1e12 + 1e12 for v in Y]), col(X), col(G)),
         check=lambda b: isinstance(value(b, "logLik"), float)),
    # -- binomial
    Case("binomial y outside [0, 1]", "y = 2 in row 3, no trials", B,
         (col(with_(YB, 2, 2)), col(X), col(G)),
         expect="#GLMM! y must be 0 or 1 without trials (row 3); for counts of successes "
                "give the trials argument"),
    Case("binomial y outside [0, 1]", "GLMM: proportion 1.5 in row 2 of the table", GL,
         ("p ~ x + (1|g)", table(p=with_(YB, 0, 1.5), x=X, g=G), "binomial"),
         expect="#GLMM! binomial response must be a proportion in [0, 1] or 0/1 (row 2); "
                "give counts of successes with trials (weights) or cbind(successes, "
                "failures)"),
    Case("successes > trials", "y = 5 successes of 3 trials in row 4", B,
         (col(with_(YS, 3, 5)), col(X), col(G), col(T)),
         expect="#GLMM! y has more successes than trials in row 4"),
    Case("successes > trials", "trials = 0 in row 1", B,
         (col(with_(YS, 0, 0)), col(X), col(G), col(with_(T, 0, 0))),
         expect="#GLMM! trials must be whole numbers above 0 (row 1)"),
    Case("complete separation", "x = 1 exactly when y = 1", B,
         (col([0, 0, 1] * 4), col([0, 0, 1] * 4), col(G)),
         expect="#GLMM! complete separation: the predictors (or groups) predict every "
                "outcome exactly, so the estimates are infinite; remove the separating "
                "predictor or combine categories"),
    Case("complete separation", "y = 1 in every row", B, (col([1] * 12), col(X), col(G)),
         expect="#GLMM! every outcome is a success: the model has no finite estimates"),
    # -- shapes
    Case("ranges of different lengths", "X has 11 rows, y 12", P,
         (col(Y), col(X[:11]), col(G)),
         expect="#GLMM! X has 11 rows but y has 12 data rows: the ranges must cover the "
                "same rows"),
    Case("ranges of different lengths", "X has one more row of numbers than y", P,
         (col(Y), col(X + [1]), col(G)),
         expect="#GLMM! X has 13 rows but y has 12 data rows"),
    Case("a row where a column was meant", "X given as one row of 12 values", P,
         (col(Y), [list(map(float, X))], col(G)),
         expect="#GLMM! X is a single row of 12 values but y is a column: give X as a "
                "column (12 rows)"),
    Case("a row where a column was meant", "y given as 2 columns", P,
         (cols(Y, X), col(X), col(G)),
         expect="#GLMM! y must be a single column (it has 2 columns)"),
    # -- identifiability
    Case("a single group", "every row in group 'a'", P, (col(Y), col(X), col(["a"] * 12)),
         expect="#GLMM! grouping factor 'group1' has 1 level: a random effect needs at "
                "least 2 groups"),
    Case("every row its own group", "Poisson, 12 groups of 1 row (observation-level "
         "random effect: identifiable)", P, (col(Y), col(X), col(list(range(12)))),
         check=lambda b: value(b, "groups: group1") == 12),
    Case("every row its own group", "0/1 outcomes, 12 groups of 1 row", B,
         (col(YB), col(X), col(list(range(12)))),
         expect="#GLMM! every row is its own level of 'group1' (12 levels, 12 rows): with "
                "0/1 outcomes a random intercept per row cannot be identified; give groups "
                "that contain several rows"),
    Case("every row its own group", "random slope on x with 12 groups of 1 row", P,
         (col(Y), col(X), col(list(range(12))), None, col(X)),
         expect="#GLMM! the random effects for 'group1' number 24 (12 levels x 2 terms) but "
                "there are 12 rows: their variances cannot be identified; use fewer random "
                "slopes or groups with more rows"),
    Case("constant X column", "X column 2 is 5 in every row", P,
         (col(Y), cols(X, [5] * 12), col(G)),
         check=lambda b: fixed_names(b) == ["(Intercept)", "x1"] and _has_note(
             "dropping 1 column: x2")(b)),
    Case("collinear X columns", "x2 = 2 * x1 + 1", P,
         (col(Y), cols(X, [2 * v + 1 for v in X]), col(G)),
         check=lambda b: fixed_names(b) == ["(Intercept)", "x1"] and _has_note(
             "dropping 1 column: x2")(b)),
    Case("models too large to build", "y ~ a*b*c, three text columns of 60 levels (60 rows)",
         GL, ("y ~ a*b*c + (1|g)", None),
         expect="#GLMM! the fixed effects would have 216,000 columns for 60 rows (about "
                "1,494 GB of memory, the limit is 2.0 GB): factors with many levels, or "
                "their interactions; simplify the formula"),
    Case("models too large to build", "a text column of 60 levels as a random slope", GL,
         ("y ~ 1 + (a|g)", None),
         expect="#GLMM! the random-effects term (a|g) has 60 columns per level of g but "
                "there are 60 rows: its variances cannot be identified; use fewer random "
                "slopes (a factor with many levels?)"),
    Case("models too large to build", "(d || g), d a text column of 30 levels", GL,
         ("y ~ 1 + (d||g)", None),
         expect="#GLMM! the random effects would need 466 variance and correlation "
                "parameters (the limit is 200); use fewer random slopes, uncorrelated ones "
                "(||), or factors with fewer levels"),
    # -- options
    Case("alpha outside (0, 1)", "alpha = 1.5", P, (col(Y), col(X), col(G)), {"alpha": 1.5},
         expect="#GLMM! alpha must be between 0 and 1 (e.g. 0.05 for 95% intervals)"),
    Case("alpha outside (0, 1)", "alpha = 0", P, (col(Y), col(X), col(G)), {"alpha": 0.0},
         expect="#GLMM! alpha must be between 0 and 1 (e.g. 0.05 for 95% intervals)"),
    Case("alpha outside (0, 1)", "alpha = '5%' (text)", P, (col(Y), col(X), col(G)),
         {"alpha": "5%"}, expect="#GLMM! alpha must be a number"),
    Case("nAGQ out of range", "nAGQ = 101", P, (col(Y), col(X), col(G)), {"nAGQ": 101.0},
         expect="#GLMM! nAGQ must be between 0 and 100"),
    Case("nAGQ out of range", "nAGQ = -1", P, (col(Y), col(X), col(G)), {"nAGQ": -1.0},
         expect="#GLMM! nAGQ must be between 0 and 100"),
    Case("nAGQ out of range", "nAGQ = 2.5", P, (col(Y), col(X), col(G)), {"nAGQ": 2.5},
         expect="#GLMM! nAGQ must be a whole number"),
    Case("nAGQ > 1 with crossed random effects", "nAGQ = 5, groups g and h", P,
         (col(Y), col(X), cols(G, H)), {"nAGQ": 5.0},
         expect="#GLMM! nAGQ > 1 is only available for models with one random-effects "
                "term on one grouping factor, such as (1|g) or (x|g); use nAGQ=1 "
                "(Laplace) for crossed, nested or uncorrelated (||) models"),
    Case("nAGQ > 1: too many points for vector random effects",
         "nAGQ = 100 with two random slopes", P,
         (col(Y), col(X), col(G), None, cols(X, X2)), {"nAGQ": 100.0},
         expect="#GLMM! nAGQ = 100 with 3 random effects per group needs 100^3 = 1e+06 "
                "quadrature points per group: 1.2e+07 evaluations over the 12 rows for "
                "each deviance, more than the limit of 10,000,000; use a smaller nAGQ or "
                "nAGQ=1 (Laplace)"),
    Case("other options", "fit_intercept = 'maybe'", P, (col(Y), col(X), col(G)),
         {"fit_intercept": "maybe"}, expect="#GLMM! fit_intercept must be TRUE or FALSE"),
    Case("other options", "family = 'normal'", GL, ("y ~ x + (1|g)", TAB, "normal"),
         expect="#GLMM! family must be one of: poisson, binomial, gamma, negbin, nb1, beta, betabinomial, gaussian"),
    Case("other options", "Poisson with link 'logit'", GL, ("y ~ x + (1|g)", TAB, "poisson",
                                                           "logit"),
         expect="#GLMM! link 'logit' is not available for the poisson family (use one of: "
                "log, identity, sqrt)"),
    Case("other options", "GLMM_BINOMIAL link 'log'", B, (col(YB), col(X), col(G)),
         {"link": "log"}, expect="#GLMM! link must be one of: logit, probit, cloglog"),
    # -- formulas
    Case("formula: unknown column", "y ~ z + (1|g)", GL, ("y ~ z + (1|g)", TAB),
         expect="#GLMM! column 'z' is not in the data (columns: y, x, g)"),
    Case("formula: bad syntax", "y ~ x + (1|g", GL, ("y ~ x + (1|g", TAB),
         expect="#GLMM! expected ')' but found 'end of formula' at position 13"),
    Case("formula: bad syntax", "two ~", GL, ("y ~ x ~ g", TAB),
         expect="#GLMM! a formula needs exactly one ~ (response ~ terms)"),
    Case("formula: bad syntax", "no random effects", GL, ("y ~ x", TAB),
         expect="#GLMM! the model has no random effects: add a term such as (1|group) or "
                "give groups=[...]"),
    Case("formula: Python code", "y ~ __import__('os').system('echo hi') + (1|g)", GL,
         ("y ~ __import__('os').system('echo hi') + (1|g)", TAB),
         expect="#GLMM! unexpected character \"'\" at position 16 of the formula"),
    Case("formula: Python code", "y ~ eval(x) + (1|g)", GL, ("y ~ eval(x) + (1|g)", TAB),
         expect="#GLMM! function 'eval' (position 5) is not allowed in a formula; allowed: "
                "log, log2, log10, log1p, exp, sqrt, abs, factor, as.factor, offset() and "
                "cbind()"),
    Case("formula: Python code", "y ~ x.__class__ + (1|g) (a name, looked up as a column)",
         GL, ("y ~ x.__class__ + (1|g)", TAB),
         expect="#GLMM! column 'x.__class__' is not in the data (columns: y, x, g)"),
    Case("formula: bad syntax", "60 nested parentheses", GL,
         ("y ~ " + "(" * 60 + "x" + ")" * 60 + " + (1|g)", TAB),
         expect="#GLMM! formula is nested too deeply"),
    Case("formula: not text", "formula cell holds the number 5", GL, (5.0, TAB),
         expect="#GLMM! formula must be text such as y ~ x + (1|group)"),
    Case("formula: not text", "formula argument is a 2-cell range", GL,
         ([["y ~ x + (1|g)", "y ~ 1 + (1|g)"]], TAB),
         expect="#GLMM! formula must be one cell of text such as y ~ x + (1|group) (the "
                "range has 2 non-blank cells)"),
    Case("table headers", "data has the column name 'x' twice", GL,
         ("y ~ x + (1|g)", [["y", "x", "x", "g"]] + cols(Y, X, X, G)),
         expect="#GLMM! data has the column name 'x' twice"),
    Case("table headers", "data has a blank column name", GL,
         ("y ~ x + (1|g)", [["y", None, "g"]] + cols(Y, X, G)),
         expect="#GLMM! data has a blank column name in column 2"),
    Case("Gamma response not positive", "GLMM gamma, y = 0 in row 12 of the table", GL,
         ("y ~ x + (1|g)", TAB, "gamma"),
         expect="#GLMM! gamma response must be positive (row 12)"),
    # -- companions
    Case("GLMM_PREDICT: new rows", "new_X with 2 columns for a 1-column X",
         "GLMM_PREDICT", (col(Y), col(X), col(G), [[1.0, 2.0]]),
         expect="#GLMM! new_X has 2 columns but X has 1"),
    Case("GLMM_PREDICT: new rows", "new_offset missing for a model with an offset",
         "GLMM_PREDICT", (col(Y), col(X), col(G), [[1.0]], [["a"]], col([0.0] * 12)),
         expect="#GLMM! the model has an offset: give new_offset for the new rows (e.g. "
                "=LN(exposure))"),
    Case("GLMM_COMPARE: not fit blocks", "two single numbers", "GLMM_COMPARE",
         ([[1.0]], [[2.0]]),
         expect="#GLMM! model1 is not a fit block from GLMM_POISSON, GLMM_BINOMIAL or GLMM "
                "(no logLik, npar, nobs row); pass the whole spilled range, e.g. F2#"),
    Case("GLMM_COMPARE: not fit blocks", "model1 is the error value #SPILL!", "GLMM_COMPARE",
         ([["#SPILL!"]], [[2.0]]),
         expect="#GLMM! model1 is an Excel error value (#SPILL!), not a fit block: pass "
                "the fit's whole spilled range, e.g. F2#"),
    Case("GLMM_COMPARE: not fit blocks", "model1 is a '#GLMM!' error cell", "GLMM_COMPARE",
         ([["#GLMM! y is empty"]], [[2.0]]),
         expect="#GLMM! model1 is an error, not a fit: #GLMM! y is empty"),
    Case("GLMM_COMPARE: not fit blocks", "model1's logLik edited to text", "GLMM_COMPARE",
         ([["logLik", "n/a"], ["npar", 3.0], ["nobs", 12.0]], [["logLik", -20.0],
                                                             ["npar", 4.0], ["nobs", 12.0]]),
         expect="#GLMM! model1's logLik row does not hold a valid number: pass the fit "
                "block unchanged"),
    # -- budget
    Case("fit over its time budget", "time budget 0.05 s for a 10,000-row crossed fit "
         "(tests/data/pois_crossed_1e4.csv)", P, (), budget=0.05,
         check=lambda b: value(b, "converged") is False and _has_note("NOT converged")(b)),
]


def _budget_args():
    """10,000 rows, 3 predictors, crossed groups: a fit that takes ~2 s."""
    import pathlib

    import pandas as pd
    df = pd.read_csv(pathlib.Path(__file__).parent / "data" / "pois_crossed_1e4.csv")
    return (col(df.y.tolist(), "y"),
            [["x1", "x2", "x3"]] + cols(df.x1.tolist(), df.x2.tolist(), df.x3.tolist()),
            [["g1", "g2"]] + cols(df.g1.tolist(), df.g2.tolist()),
            col([math.log(v) for v in df.exposure]))


CASES[-1].args = _budget_args()

# a 60-row table with many-level text columns for the model-size cases
BIG_LEVELS = table(y=[float(i % 7) for i in range(60)], a=[f"a{i}" for i in range(60)],
                   b=[f"b{i * 7 % 60}" for i in range(60)],
                   c=[f"c{i * 11 % 60}" for i in range(60)], d=[f"d{i % 30}" for i in range(60)],
                   g=[f"g{i % 5}" for i in range(60)])
for _c in CASES:
    if _c.cls == "models too large to build":
        _c.args = (_c.args[0], BIG_LEVELS)


def check_case(case: Case, out) -> None:
    if case.expect is not None:
        assert out == case.expect, f"{case.cls}: {out!r}"
    else:
        assert isinstance(out, list), f"{case.cls}: expected a block, got {out!r}"
        assert case.check(out), f"{case.cls}: {summary(out)}"

# ---- issue 18: installers and sheet functions (GLMM_COMPARE, GLMM_PREDICT, long labels)
_YG = [1, 2, 1, 5, 6, 7, 10, 12, 11, 0, 1, 0]       # group effects that are not zero
_FIT = [["logLik", -19.7613552856], ["AIC", 45.5227105713], ["BIC", 46.9774305207],
        ["nobs", 12.0], ["npar", 3.0]]
_FIT2 = [["logLik", -23.0029810102], ["AIC", 50.0059620205], ["BIC", 50.97577532],
         ["nobs", 12.0], ["npar", 2.0]]
_LONG = 32_767
CASES += [
    Case("GLMM_COMPARE: edited fit blocks", "model1's npar edited to 1e300", "GLMM_COMPARE",
         ([r if r[0] != "npar" else ["npar", 1e300] for r in _FIT], _FIT2),
         expect="#GLMM! model1's npar row does not hold a valid number: pass the fit "
                "block unchanged"),
    Case("GLMM_COMPARE: edited fit blocks", "model1's logLik edited to -5 (AIC left as it "
         "was)", "GLMM_COMPARE",
         ([r if r[0] != "logLik" else ["logLik", -5.0] for r in _FIT], _FIT2),
         expect="#GLMM! model1's logLik, npar and AIC rows do not agree "
                "(AIC = 2*npar - 2*logLik): pass the fit block unchanged"),
    Case("GLMM_PREDICT: new rows", "new_groups' last row blank (3 rows of new_X)",
         "GLMM_PREDICT", (col(_YG), col(X), col(G), col([1, 2, 3]), col(["a", "b", None])),
         check=lambda b: len(b) == 4 and all(isinstance(r[0], float) for r in b[1:])),
    Case("GLMM_PREDICT: new rows", "new_groups 2 rows for 3 rows of new_X", "GLMM_PREDICT",
         (col(_YG), col(X), col(G), col([1, 2, 3]), col(["a", "b"])),
         expect="#GLMM! new_groups has 2 rows but new_X has 3 new rows: the ranges must "
                "cover the same rows"),
    Case("labels longer than a cell", "(1|a:b) with two 32,767-character labels",
         "GLMM_RANEF", ("y ~ x + (1|a:b)", table(y=Y, x=X, a=["a" * _LONG, "c"] * 6,
                                                  b=["b" * _LONG, "x", "x"] * 4)),
         check=lambda b: max(len(v) for r in b for v in r if isinstance(v, str)) == _LONG
         and any(isinstance(r[1], str) and "\u2026 (cut: 65,535 characters, #" in r[1]
                 for r in b)),
]

# ---- issue 18: formula grammar and names
_V15 = "y ~ " + "*".join(f"v{i}" for i in range(15)) + " + (1|g)"
_YEARS = [float(1 + i // 3) for i in range(12)]
CASES += [
    Case("formula: explosive expansion", "y ~ v0*v1*...*v14 + (1|g) (32,767 terms)", GL,
         (_V15, TAB),
         expect="#GLMM! the formula would expand to up to 32,767 terms at '*' (position 50); "
                "at most 20,000 are allowed: use fewer interactions, e.g. (a+b+c)^2 instead "
                "of a*b*c"),
    Case("formula: explosive expansion", "y ~ (v0+...+v14)^10 + (1|g)", GL,
         ("y ~ (" + "+".join(f"v{i}" for i in range(15)) + ")^10 + (1|g)", TAB),
         expect="#GLMM! the formula would expand to up to 30,826 terms at '^' (position 56); "
                "at most 20,000 are allowed: use fewer interactions, e.g. (a+b+c)^2 instead "
                "of a*b*c"),
    Case("headers that look like calls", "X headers x and exp(y) (a column so named)", P,
         (col(Y, "y"), [["x", "exp(y)"]] + cols(X, X2), col(G, "g")),
         check=lambda b: fixed_names(b) == ["(Intercept)", "x", "`exp(y)`"]),
    Case("headers that look like calls", "X header (Intercept)", P,
         (col(Y, "y"), [["(Intercept)"]] + cols(X2), col(G, "g")),
         check=lambda b: fixed_names(b) == ["(Intercept)", "`(Intercept)`"]
         and all(isinstance(r[1], float) for r in b[1:3])),
    Case("headers that look like calls", "header with ~ (y ~ count, a~b)", P,
         (col(Y, "y ~ count"), [["a~b"]] + cols(X2), col(G, "g")),
         check=lambda b: fixed_names(b) == ["(Intercept)", "a~b"]),
    Case("variables used twice", "y ~ year + (1|year): a trend and a random year", GL,
         ("y ~ year + (1|year)", table(y=Y, year=_YEARS)),
         check=lambda b: fixed_names(b) == ["(Intercept)", "year"]),
    Case("variables used twice", "cbind(s, n - s) ~ n + (1|g)", GL,
         ("cbind(s, n - s) ~ n + (1|g)",
          table(s=YS, n=[v + 2 + i % 3 for i, v in enumerate(YS)], g=G), "binomial"),
         check=lambda b: fixed_names(b) == ["(Intercept)", "n"]),
    Case("variables used twice", "y ~ y + x + (1|g): the response on the right", GL,
         ("y ~ y + x + (1|g)", TAB),
         check=lambda b: fixed_names(b) == ["(Intercept)", "x"] and _has_note(
             "the response y appeared on the right-hand side and was dropped")(b)),
]

# ---- issue 18: cost guards, the time budget inside the fit, numerical extremes
_CROSSED = [["y", "g1", "g2"]] + [[float(k % 3), f"p{k % 9000}", f"q{(k * 7 + k // 9000) % 9000}"]
                                  for k in range(30_000)]
_AB20 = [["y", "a", "b", "g"]] + [[float(k % 5), f"a{k % 20}", f"b{(k // 20) % 20}", f"g{k % 10}"]
                                  for k in range(800)]
CASES += [
    Case("models beyond the memory cap", "two crossed groupings of 9,000 levels on 30,000 rows",
         GL, ("y ~ 1 + (1|g1) + (1|g2)", _CROSSED),
         expect="#GLMM! the model would need about 2.7 GB of memory (the limit is 2.0 GB): "
                "crossed random effects g1 (9,000 levels) x g2 (9,000 levels) make a dense "
                "block of 9,001 x 9,001 numbers; use fewer levels or predictors"),
    Case("models too slow for the time budget", "y ~ a*b, two 20-level text columns "
         "(400 fixed effects), budget 0.5 s", GL, ("y ~ a*b + (1|g)", _AB20), budget=0.5,
         expect="#GLMM! the model cannot be fitted within the time budget of 0.5 s: 400 "
                "fixed-effect columns make each of the hundreds of steps of the fit take "
                "about 0.039 s even on a fast computer; use fewer levels or predictors, or a "
                "larger budget"),
    Case("counts beyond double precision", "y = 1e300 in row 5", P,
         (col(with_(Y, 4, 1e300)), col(X), col(G)),
         expect="#GLMM! counts must be at most 2^53 = 9.007e15 (row 5, up to 1e+300): beyond "
                "it double precision cannot hold whole numbers exactly; count in larger units"),
    Case("counts beyond double precision", "trials 1e16", B,
         (col(YS), col(X2), col(G), col([1e16] * 12)),
         expect="#GLMM! binomial trials must be at most 2^53 = 9.007e15 (rows 1, 2, 3, 4, 5, 6, "
                "7, 8 and 4 more, up to 1e+16): beyond it double precision cannot hold whole "
                "numbers exactly"),
    Case("response beyond double precision", "LMM of y x 1e300", "LMM",
         (col([v * 1e300 for v in Y]), col(X), col(G)),
         expect="#GLMM! the response has values as large as 6e+300 (rows 1, 2, 3, 4, 5, 6, 7, "
                "8 and 3 more): beyond 1e150 their squares overflow double precision; rescale "
                "it (divide it by a power of ten)"),
    Case("predictors of extreme scale", "x in units of 1e155: kept, its estimate x 1e-155", P,
         (col(Y, "y"), col([v * 1e155 for v in X], "x"), col(G, "g")),
         check=lambda b: abs(value(b, "x") * 1e155 / 0.449382693432 - 1) < 1e-9
         and _has_note("The variances of x are beyond double precision")(b)),
]

# ---- issue 14: GLMM_CONFINT's options, the methods a model does not have yet, LMM's ddf
CI = "GLMM_CONFINT"
_CI_ARGS = (col(_YG), col(X), col(G))
CASES += [
    Case("GLMM_CONFINT: options", "method \"jackknife\"", CI, _CI_ARGS,
         {"method": "jackknife"},
         expect="#GLMM! method must be one of: wald, profile, bootstrap"),
    Case("GLMM_CONFINT: options", "nsim 1,000,000", CI, _CI_ARGS,
         {"method": "bootstrap", "nsim": 1e6},
         expect="#GLMM! nsim must be a whole number from 1 to 100,000 (each replicate is a "
                "refit, and a worksheet call has a time budget)"),
    Case("GLMM_CONFINT: options", "nsim 2.5", CI, _CI_ARGS,
         {"method": "bootstrap", "nsim": 2.5},
         expect="#GLMM! nsim must be a whole number from 1 to 100,000 (each replicate is a "
                "refit, and a worksheet call has a time budget)"),
    Case("GLMM_CONFINT: options", "seed -1", CI, _CI_ARGS,
         {"method": "bootstrap", "seed": -1.0},
         expect="#GLMM! seed must be a whole number from 0 to 9,007,199,254,740,991 (the "
                "same seed gives the same simulations)"),
    Case("GLMM_CONFINT: options", "alpha 1.5", CI, _CI_ARGS, {"alpha": 1.5},
         expect="#GLMM! alpha must be between 0 and 1 (e.g. 0.05 for 95% intervals)"),
    Case("GLMM_CONFINT: methods not available", "profile of an nAGQ = 0 fit", CI,
         _CI_ARGS, {"nAGQ": 0, "method": "profile"},
         expect="#GLMM! no profile intervals: profiles need the Laplace or AGQ deviance "
                "(nAGQ >= 1): the nAGQ = 0 criterion is not a likelihood"),
    Case("GLMM_CONFINT: time budget", "100,000 bootstrap replicates, budget 0.5 s", CI,
         _CI_ARGS, {"method": "bootstrap", "nsim": 1e5}, budget=0.5,
         check=lambda b: 0 < b[1][5] < 100_000 and b[1][2] is not None
         and "left after the fit) stopped the bootstrap" in b[1][6]),
    Case("LMM: ddf", "ddf \"Kenward-Roger\"", "LMM", _CI_ARGS, {"ddf": "Kenward-Roger"},
         expect="#GLMM! ddf must be one of: satterthwaite, z"),
]

# ---- issue 15: the model checks' own arguments and their time budget
CASES += [
    Case("GLMM_CHECK: options", "nsim 1,000,000", "GLMM_CHECK", _CI_ARGS, {"nsim": 1e6},
         expect="#GLMM! nsim must be a whole number from 0 to 10,000 (each simulation is a "
                "refit, and below 40 no p-value can fall below 5%; 0 leaves the simulation "
                "tests out)"),
    Case("GLMM_CHECK: time budget", "10,000 refitted simulations, budget 0.5 s",
         "GLMM_CHECK", _CI_ARGS, {"nsim": 1e4}, budget=0.5,
         check=lambda b: any(r[0] == "note" and "time budget" in r[5] for r in b)),
    Case("GLMM_RESID: options", "resid_type \"working\"", "GLMM_RESID", _CI_ARGS,
         {"resid_type": "working"},
         expect="#GLMM! resid_type must be one of: response, pearson, deviance, quantile"),
    Case("GLMM_RESID: options", "nsim 0", "GLMM_RESID", _CI_ARGS, {"nsim": 0},
         expect="#GLMM! nsim must be at least 1: the quantile residual is simulated"),
    Case("GLMM_INFLUENCE: options", "group \"site\" (not a factor of the model)",
         "GLMM_INFLUENCE", _CI_ARGS, {"group": "site"},
         expect="#GLMM! group must be a grouping factor of the model ('group1'), not 'site'"),
]

# ---- issue 17: zero inflation -- the family words and their formula, the pred_types
CASES += [
    Case("zero inflation", "family \"zinb ~ z\" (z is not a column)", GL,
         ("y ~ x + (1|g)", TAB, "zinb ~ z"),
         expect="#GLMM! column 'z' is not in the data (columns: y, x, g)"),
    Case("zero inflation", "family \"zinb:lme4\"", GL, ("y ~ x + (1|g)", TAB, "zinb:lme4"),
         expect="#GLMM! lme4 has no zero-inflated models: they are fitted by the exact "
                "Laplace approximation only (glmmTMB's); leave ':lme4' out"),
    Case("zero inflation", "family \"gamma ~ x\" (zero inflation of a non-count family)",
         GL, ("y ~ x + (1|g)", TAB, "gamma ~ x"),
         expect="#GLMM! 'gamma' takes no formula: zero inflation (of counts only) is "
                "written with a zero-inflated word (zipoisson, zinb, zinb1) and its "
                "formula, e.g. \"zinb ~ YEAR\""),
    Case("zero inflation", "family \"zigamma\"", GL, ("y ~ x + (1|g)", TAB, "zigamma"),
         expect="#GLMM! the zero-inflated families are: zipoisson, zinb, zinb1 (optionally "
                "with a formula, e.g. \"zinb ~ YEAR\"), not 'zigamma'"),
    Case("zero inflation", "family \"zipoisson ~ (1|g)\"", GL,
         ("y ~ x + (1|g)", TAB, "zipoisson ~ (1|g)"),
         expect="#GLMM! the family's zero-inflation formula: the zero-inflation formula "
                "takes fixed effects only, with no response, random effects or offset "
                "(e.g. '~1' or '~ x')"),
    Case("zero inflation", "family \"zipoisson\" with nAGQ 5", GL,
         ("y ~ x + (1|g)", TAB, "zipoisson"), {"nAGQ": 5},
         expect="#GLMM! zero-inflated models are fitted by the Laplace approximation: nAGQ "
                "must be 1"),
    Case("zero inflation", "pred_type \"zprob\" of a Poisson fit", "GLMM_PREDICT",
         ("y ~ x + (1|g)", TAB), {"pred_type": "zprob"},
         expect="#GLMM! pred_type \"zprob\" is for zero-inflated models (family "
                "\"zipoisson\", \"zinb\" or \"zinb1\"); this fit has no zero inflation: use "
                "\"response\""),
    Case("zero inflation", "GLMM_CONFINT method \"profile\" of a zero-inflated fit", CI,
         ("y ~ x + (1|g)", TAB, "zipoisson"), {"method": "profile"},
         expect="#GLMM! no profile intervals for a zero-inflated model yet: the profile "
                "would hold the zero-inflation coefficients at their estimates; use method "
                "\"Wald\" or \"bootstrap\""),
    Case("zero inflation", "GLMM_COMPARE of Poisson and zero-inflated NB2 blocks",
         "GLMM_COMPARE", (udfs.GLMM("y ~ x + (1|g)", TAB), udfs.GLMM("y ~ x + (1|g)", TAB,
                                                                     "zinb")),
         expect="#GLMM! the models have different count families; a likelihood-ratio test "
                "of zero inflation compares a family with and without it (e.g. negbin and "
                "zinb): compare these by AIC instead (valid across families)"),
]

# ---- issue 19: GLMM_POWER's own arguments and its time budget
PW = "GLMM_POWER"
CASES += [
    Case("GLMM_POWER: options", "term \"z\" (not a fixed effect of the model)", PW, _CI_ARGS,
         {"term": "z"},
         expect="#GLMM! term 'z' is not a fixed effect of the model (its terms: 'x1')"),
    Case("GLMM_POWER: options", "along \"site\" (not a grouping factor)", PW, _CI_ARGS,
         {"along": "site", "values": col([4, 8])},
         expect="#GLMM! along must be a grouping factor of the model ('group1'), \"rows\" or "
                "\"effect\", not 'site'"),
    Case("GLMM_POWER: options", "zero groups: along \"group1\", values 0 and 8", PW, _CI_ARGS,
         {"along": "group1", "values": col([0, 8])},
         expect="#GLMM! values are the number of levels of 'group1': each must be a whole "
                "number >= 1, not 0 (a design needs at least one level of every factor)"),
    Case("GLMM_POWER: options", "values holding text (\"ten\")", PW, _CI_ARGS,
         {"along": "group1", "values": col(["ten", 20])},
         expect="#GLMM! values must be numbers; it holds the text 'ten'"),
    Case("GLMM_POWER: options", "along without values", PW, _CI_ARGS, {"along": "group1"},
         expect="#GLMM! along needs values: a range of the design points (e.g. the numbers "
                "of plants 10, 20, 30, 40)"),
    Case("GLMM_POWER: options", "nsim 2.5", PW, _CI_ARGS, {"nsim": 2.5},
         expect="#GLMM! nsim must be a whole number from 1 to 100,000 (each simulation is a "
                "refit, two for the LRT, and a worksheet call has a time budget)"),
    Case("GLMM_POWER: options", "nsim 1,000,000", PW, _CI_ARGS, {"nsim": 1e6},
         expect="#GLMM! nsim must be a whole number from 1 to 100,000 (each simulation is a "
                "refit, two for the LRT, and a worksheet call has a time budget)"),
    Case("GLMM_POWER: options", "effect \"30%\" (text)", PW, _CI_ARGS, {"effect": "30%"},
         expect="#GLMM! effect must be a number on the link scale (e.g. =LN(0.7) for a rate "
                "or odds ratio of 0.7), or blank for the fit's estimate"),
    Case("GLMM_POWER: options", "test \"t\"", PW, _CI_ARGS, {"test": "t"},
         expect="#GLMM! test must be one of: wald, lrt, profile"),
    Case("GLMM_POWER: time budget", "100,000 simulations, budget 0.5 s", PW, _CI_ARGS,
         {"nsim": 1e5}, budget=0.5,
         check=lambda b: 0 < b[1][7] < 100_000 and b[1][4] is not None
         and any("stopped the run after" in str(r[0]) and "XLGLMM_TIME_BUDGET" in r[0]
                 for r in b)),
]
